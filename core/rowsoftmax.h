/* rowsoftmax.h — the log-probability of one chosen entry per row of long rows (a vocabulary's
 * logits), without writing the log-softmax out:
 *
 *   out[b][t] = x[b][t][target[b][t]] - logsumexp(x[b][t][:])
 *
 *   if (apl_rowsoftmax_usable() && apl_row_target_logprobs(x, B, T, V, sb, st, tgt, out, 2) < 0)
 *       ...                                   // all targets were in [0, V)
 *
 * Why: scoring needs one number per position, and log_softmax followed by gather allocates,
 * writes and reads a second (B, T, V) tensor (100 MB for 8 rows of 64 tokens of GPT-2). Here
 * each row is read twice while it sits in L2 (max, then sum of exponentials), nothing is written
 * but out. The exponential is a polynomial with AVX-512 scaling (relative error ~2e-7, f32).
 *
 * x: f32 with its last dimension contiguous; row (b, t) starts at x + b * sb + t * st.
 * target and out: (B, T) contiguous. Returns -1, or the flat index of the first target outside
 * [0, V) (then out is not filled). Rows are shared among `threads` OpenMP threads.
 */
#ifndef APL_ROWSOFTMAX_H
#define APL_ROWSOFTMAX_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int apl_rowsoftmax_usable(void); /* 1 when this CPU has AVX-512F */

int64_t apl_row_target_logprobs(const float *x, int64_t B, int64_t T, int64_t V, int64_t sb,
                                int64_t st, const int64_t *target, float *out, int threads);

#ifdef __cplusplus
}
#endif
#endif
