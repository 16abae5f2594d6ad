/* activation.c — GELU, tanh form (see activation.h). */
#include "activation.h"

#include "vecmath.h"

enum { CHUNK = 64 * 1024 }; /* floats per task: 256 KB, large enough to not feel the scheduling */

int apl_activation_usable(void) { return __builtin_cpu_supports("avx512f"); }

/* σ(z) = 1 / (1 + e^-|z|) for z >= 0 and e^-|z| / (1 + e^-|z|) below: e^-|z| never overflows. */
INLINE_KERNEL __m512 gelu16(__m512 x)
{
    const __m512 two_c = _mm512_set1_ps(2 * 0.7978845608f), a = _mm512_set1_ps(0.044715f);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 z = _mm512_mul_ps(_mm512_mul_ps(two_c, x), _mm512_fmadd_ps(_mm512_mul_ps(a, x), x, one)); // 2u
    __m512 e = exp_nonpositive(_mm512_min_ps(z, _mm512_sub_ps(_mm512_setzero_ps(), z)));
    __m512 num = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ), one, e);
    return _mm512_div_ps(_mm512_mul_ps(x, num), _mm512_add_ps(one, e));
}

KERNEL static void gelu_range(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += LANES) {
        __mmask16 m = lanes_below(n - i);
        _mm512_mask_storeu_ps(y + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

void apl_gelu_tanh(const float *x, float *y, int64_t n, int threads)
{
    int64_t chunks = (n + CHUNK - 1) / CHUNK;
    int team = team_for(chunks, 1, threads);
#pragma omp parallel for schedule(static) num_threads(team) if (team > 1)
    for (int64_t c = 0; c < chunks; c++) {
        int64_t i = c * CHUNK;
        gelu_range(x + i, y + i, n - i < CHUNK ? n - i : CHUNK);
    }
}
