/* rowsoftmax.c — log-probabilities at chosen entries of long rows (see rowsoftmax.h). */
#include "rowsoftmax.h"

#include "vecmath.h"

#include <math.h>

int apl_rowsoftmax_usable(void) { return __builtin_cpu_supports("avx512f"); }

/* logsumexp of one row: its max, then the sum of e^(x - max) while the row is still in cache. */
KERNEL static float row_logsumexp(const float *x, int64_t V)
{
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < V; j += LANES)
        mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, lanes_below(V - j), x + j)); // no read past V
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
    int team = team_for(B * T, 4, threads);
#pragma omp parallel for schedule(dynamic, 4) num_threads(team) if (team > 1)
    for (int64_t i = 0; i < B * T; i++) {
        const float *row = x + (i / T) * sb + (i % T) * st;
        out[i] = row[target[i]] - row_logsumexp(row, V);
    }
    return -1;
}
