/* rowsoftmax.c — log-probabilities at chosen entries of long rows (see rowsoftmax.h). */
#include "rowsoftmax.h"

#include <immintrin.h>
#include <math.h>

#define KERNEL __attribute__((target("avx512f,fma")))

enum { LANES = 16 };

int apl_rowsoftmax_usable(void) { return __builtin_cpu_supports("avx512f"); }

static __mmask16 lanes_below(int64_t n) { return n >= LANES ? 0xFFFF : (__mmask16)((1u << n) - 1); }

/* e^x for x <= 0: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor polynomial to r^7 (Horner),
 * then scaled by 2^n (scalef underflows cleanly to 0 far below the f32 range). */
KERNEL static __m512 exp_nonpositive(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504f), ln2_hi = _mm512_set1_ps(0.693359375f);
    const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    // e^-104 is 0 in f32 and this keeps n finite; NaN passes through (max returns its second
    // operand when either is NaN), so a NaN logit makes the row's result NaN, as in log_softmax
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    static const float c[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
    __m512 p = _mm512_set1_ps(c[0]);
    for (int i = 1; i < 8; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c[i]));
    return _mm512_scalef_ps(p, n);
}

/* logsumexp of one row: its max, then the sum of e^(x - max) while the row is still in cache. */
KERNEL static float row_logsumexp(const float *x, int64_t V)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < V; j += LANES)
        mx = _mm512_mask_max_ps(mx, lanes_below(V - j), mx, _mm512_loadu_ps(x + j));
    float m = _mm512_reduce_max_ps(mx);
    __m512 sum = _mm512_setzero_ps(), mv = _mm512_set1_ps(m);
    for (int64_t j = 0; j < V; j += LANES) {
        __mmask16 k = lanes_below(V - j);
        __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv));
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
    }
    return m + logf(_mm512_reduce_add_ps(sum));
}

KERNEL int64_t apl_row_target_logprobs(const float *x, int64_t B, int64_t T, int64_t V, int64_t sb,
                                       int64_t st, const int64_t *target, float *out, int threads)
{
    for (int64_t i = 0; i < B * T; i++)
        if (target[i] < 0 || target[i] >= V) return i;
    int team = (B * T + 3) / 4 < threads ? (int)((B * T + 3) / 4) : threads;
#pragma omp parallel for schedule(dynamic, 4) num_threads(team) if (team > 1)
    for (int64_t i = 0; i < B * T; i++) {
        const float *row = x + (i / T) * sb + (i % T) * st;
        out[i] = row[target[i]] - row_logsumexp(row, V);
    }
    return -1;
}
