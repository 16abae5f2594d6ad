/* attention.h — softmax attention over f32 views of (B, H, T, D) tensors, without libtorch's
 * per-head GEMMs and their (B, H, T, S) score tensors.
 *
 *   if (apl_attention_usable()) {
 *       float *scratch = malloc(sizeof(float) * apl_attention_scratch(B, T, S, D, 2));
 *       apl_attention(q, k, v, bias, T * S, B, H, H_kv, T, S, D, 0.125f, out, scratch, 2);
 *   }
 *
 *   out[b][t][h] = softmax_j(scale · q[b][h][t] · k[b][h / G][j] + bias[b][t][j]) · v[b][h / G][j]
 *
 * over the S keys j, where G = H / H_kv (grouped-query attention reads the shared head in place).
 * q, k, v are given by base pointer and element strides of their (B, H, T or S, D) views (the
 * last dimension contiguous: KV-cache views and the heads of a fused QKV projection qualify; q's
 * and k's position strides at most APL_ATTENTION_MAX_STRIDE).
 * bias is (B or 1, T, S), its rows contiguous and S apart, bias_b its batch stride (0 to share
 * one set of rows), 0 where a query may attend and the f32 lowest value (-FLT_MAX) where it may
 * not, as apl_t_attention_bias makes it: a query that may attend to nothing averages all values,
 * as libtorch's softmax over equal scores does. out is (B, T, H, D) contiguous; scratch holds
 * apl_attention_scratch(...) floats, the caller's.
 *
 * Two ways, by the number of queries: up to APL_ATTENTION_FEW (decoding), one task per (row,
 * head, query); more (prefill, scoring), blocks of 16 queries against tiles of 16 keys with the
 * scores in registers, where a tile whose keys are all masked for the whole block (the upper
 * triangle of a causal mask) is skipped. The result does not depend on the thread count.
 */
#ifndef APL_ATTENTION_H
#define APL_ATTENTION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* APL_ATTENTION_MAX_STRIDE: the largest position stride of q and k (gathers index in int32). */
enum { APL_ATTENTION_FEW = 8, APL_ATTENTION_MAX_STRIDE = 1 << 26 };

typedef struct {
    const float *p;
    int64_t sb, sh, st; /* strides of the batch, head and position dimensions */
} apl_attention_view;

int apl_attention_usable(void); /* 1 when this CPU has AVX-512F */

/* Floats of scratch apl_attention needs for these sizes (B: the batch; the bias's rows count
 * whether or not they are shared). */
int64_t apl_attention_scratch(int64_t B, int64_t T, int64_t S, int64_t D, int threads);

void apl_attention(apl_attention_view q, apl_attention_view k, apl_attention_view v,
                   const float *bias, int64_t bias_b, int64_t B, int64_t H, int64_t H_kv, int64_t T,
                   int64_t S, int64_t D, float scale, float *out, float *scratch, int threads);

#ifdef __cplusplus
}
#endif
#endif
