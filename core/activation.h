/* activation.h — GELU in its tanh form (GPT-2's "gelu_new") over f32 arrays, AVX-512.
 *
 *   if (apl_activation_usable()) apl_gelu_tanh(x, y, n, 2);   // y[i] = gelu(x[i]), 2 threads
 *
 * Why: libtorch evaluates tanh with SLEEF's 1-ulp routine, which made GELU 6 ms of GPT-2's
 * ~60 ms per block at 1024 positions (2 threads), more than attention's softmax and every
 * layer norm together. Here gelu(x) = x · σ(2u), u = √(2/π)(x + 0.044715 x³), since
 * 0.5 (1 + tanh u) = σ(2u), with σ from one exponential of a non-positive argument (relative
 * error ~2e-7, no overflow for any x). x and y may be the same array.
 */
#ifndef APL_ACTIVATION_H
#define APL_ACTIVATION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int apl_activation_usable(void); /* 1 when this CPU has AVX-512F */

void apl_gelu_tanh(const float *x, float *y, int64_t n, int threads);

#ifdef __cplusplus
}
#endif
#endif
