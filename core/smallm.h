/* smallm.h — linear layers for a few rows at a time (decoding), without BLAS.
 *
 *   if (apl_smallm_usable(M))
 *       apl_smallm_linear(x, M, K, w, APL_SMALLM_KN, b, y, N, 2);   // y = x · w + b, 2 threads
 *
 * Why: a decoding step multiplies batch-size rows (1–8) by every weight matrix once. BLAS packs
 * each weight panel before multiplying, which at so few rows costs more than the product: on
 * the development machine OpenBLAS ran GPT-2's (8, 768) × (768, 50257) head at ~6 GB/s of
 * weight traffic. These kernels read each weight once, straight from where the model keeps it,
 * with every row's accumulators in registers (AVX-512), so they run near memory bandwidth.
 *
 * Exactness: y[m][n] is summed in the same order whatever M and whatever column range, so a
 * row's result does not depend on which other rows share the batch.
 *
 * Layouts: APL_SMALLM_NK is a weight stored (N, K), the usual linear layer (Llama, GPT-NeoX, the
 * tied GPT-2 head); APL_SMALLM_KN is (K, N), HF's Conv1D (GPT-2's projections).
 * x is (M, K) row-major, y is (M, N) row-major, b is (N) or NULL; all f32. The columns are
 * shared among `threads` OpenMP threads.
 */
#ifndef APL_SMALLM_H
#define APL_SMALLM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { APL_SMALLM_MAX_ROWS = 8 };
typedef enum { APL_SMALLM_NK, APL_SMALLM_KN } apl_smallm_layout;

/* 1 when this CPU has the kernels (AVX-512F) and 1 <= rows <= APL_SMALLM_MAX_ROWS. */
int apl_smallm_usable(int64_t rows);

void apl_smallm_linear(const float *x, int64_t M, int64_t K, const float *w,
                       apl_smallm_layout layout, const float *b, float *y, int64_t N, int threads);

#ifdef __cplusplus
}
#endif
#endif
