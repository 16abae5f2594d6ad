/* torch_shim.h — the C face of libtorch: opaque tensor handles and the ops the engine needs.
 *
 *   int mark = apl_scope_push();
 *   apl_tensor *h = apl_t_linear(x, w, b);              // (B, T, C) @ (O, C)^T + (O) -> (B, T, O)
 *   apl_tensor *y = apl_t_unary(APL_GELU_TANH, h);
 *   apl_status st = apl_t_ok(y);                        // one check for the whole chain
 *   if (st == APL_OK) apl_keep(y);                      // y survives the scope, caller frees it
 *   apl_scope_pop(mark);                                // frees h (and y if not kept)
 *
 * Error model. Every op that makes a tensor returns a new handle, or NULL when libtorch threw (the
 * message, prefixed with the op's name, is in apl_last_error()). An op given a NULL input returns
 * NULL without touching the message, so a chain of ops is checked once at its end, the way ggml
 * builds graphs; this keeps model code readable. Functions that return apl_status follow CONTRIBUTING.md.
 * No C++ exception ever leaves this interface.
 *
 * Ownership. The caller owns every returned handle and frees it with apl_t_free (NULL-safe).
 * While a scope is open (apl_scope_push), new handles are also recorded in it and apl_scope_pop
 * frees those not passed to apl_keep; a kept handle belongs to the caller. Handles share storage
 * like torch tensors do: a view keeps its base's storage alive by itself.
 *
 * Threads. Scopes and the last error are thread-local. The global RNG is libtorch's.
 */
#ifndef APL_TORCH_SHIM_H
#define APL_TORCH_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apl_tensor apl_tensor;
typedef struct apl_gen apl_gen; /* a private random generator (per-prompt sampling) */

typedef enum { APL_F32, APL_F16, APL_BF16, APL_F64, APL_I64, APL_I32, APL_U8, APL_BOOL } apl_dtype;
enum { APL_NDTYPES = APL_BOOL + 1 };
const char *apl_dtype_name(apl_dtype dt);          /* "f32", "bf16", ... */
int apl_dtype_from_name(const char *name, apl_dtype *out); /* 1 when known */
size_t apl_dtype_size(apl_dtype dt);

/* -1 is the CPU, k >= 0 is cuda:k. */
typedef int apl_device;
#define APL_CPU (-1)
#define APL_ALL_DIMS (INT64_MIN) /* reduce over every dimension */
#define APL_MAX_DIMS 16

/* ------------------------------------------------------------------------------------------ */
/* Library state */
const char *apl_torch_version(void);
int apl_cuda_available(void);
int apl_cuda_device_count(void);
void apl_manual_seed(uint64_t seed);
void apl_set_num_threads(int n);
int apl_get_num_threads(void);
int apl_set_grad_enabled(int on); /* returns the previous mode; thread-local like torch */
int apl_grad_enabled(void);
/* apl's own CPU kernels for f32 tensors with no graph to record, on CPUs that have them: linear
 * layers of 1-8 rows (smallm.h), attention (attention.h), GELU (activation.h), log-probs at the
 * targets (rowsoftmax.h). Off, everything goes to libtorch. Returns the previous setting. */
int apl_set_fast_kernels(int on);
int apl_fast_kernels(void);

/* ------------------------------------------------------------------------------------------ */
/* Lifetime */
void apl_t_free(apl_tensor *t);
apl_tensor *apl_t_share(apl_tensor *t); /* a second handle to the same tensor (no copy) */
int apl_scope_push(void);
void apl_scope_pop(int mark);
apl_tensor *apl_keep(apl_tensor *t); /* returns t; NULL-safe */
/* APL_OK when t is not NULL; else APL_ETORCH (the message of the failed op is kept). */
apl_status apl_t_ok(const apl_tensor *t);

/* ------------------------------------------------------------------------------------------ */
/* Creation */
apl_tensor *apl_t_empty(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev);
apl_tensor *apl_t_full(const int64_t *shape, int ndim, double v, apl_dtype dt, apl_device dev);
apl_tensor *apl_t_arange(double start, double end, double step, apl_dtype dt, apl_device dev);
apl_tensor *apl_t_randn(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev, apl_gen *g);
apl_tensor *apl_t_rand(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev, apl_gen *g);
/* Copies `data` (dense, row-major, of dtype dt) into a new CPU tensor. */
apl_tensor *apl_t_from_data(const void *data, const int64_t *shape, int ndim, apl_dtype dt);
/* Wraps memory without copying (e.g. an mmap'd safetensors entry); `release(ctx)` runs when the
 * last tensor using the storage dies. The memory must stay valid until then. */
apl_tensor *apl_t_from_blob(void *data, const int64_t *shape, int ndim, apl_dtype dt,
                            void (*release)(void *ctx), void *ctx);

apl_gen *apl_gen_new(uint64_t seed); /* CPU generator; samples are moved to the device */
void apl_gen_free(apl_gen *g);

/* ------------------------------------------------------------------------------------------ */
/* Inspection */
int apl_t_ndim(const apl_tensor *t);
int64_t apl_t_size(const apl_tensor *t, int64_t dim); /* negative dims count from the end */
int apl_t_shape(const apl_tensor *t, int64_t *shape); /* fills up to APL_MAX_DIMS, returns ndim */
int64_t apl_t_numel(const apl_tensor *t);
apl_dtype apl_t_dtype(const apl_tensor *t);
apl_device apl_t_device(const apl_tensor *t);
int apl_t_requires_grad(const apl_tensor *t);
int apl_t_is_contiguous(const apl_tensor *t);
/* Writes "(2, 3)" into buf; for error messages. */
const char *apl_t_shape_str(const apl_tensor *t, char *buf, size_t n);
/* Pointer to the data of a contiguous CPU tensor, else NULL. */
void *apl_t_data(apl_tensor *t);
/* Copies t converted to dtype dt (moved to CPU, made contiguous) into buf of nbytes. */
apl_status apl_t_read(const apl_tensor *t, apl_dtype dt, void *buf, size_t nbytes);
apl_status apl_t_item(const apl_tensor *t, double *out); /* single-element tensors */

/* ------------------------------------------------------------------------------------------ */
/* Shape and indexing (results are views where torch makes views) */
apl_tensor *apl_t_reshape(apl_tensor *a, const int64_t *shape, int ndim);
apl_tensor *apl_t_view(apl_tensor *a, const int64_t *shape, int ndim);
apl_tensor *apl_t_transpose(apl_tensor *a, int64_t d0, int64_t d1);
apl_tensor *apl_t_permute(apl_tensor *a, const int64_t *dims, int ndim);
apl_tensor *apl_t_contiguous(apl_tensor *a);
apl_tensor *apl_t_narrow(apl_tensor *a, int64_t dim, int64_t start, int64_t len);
apl_tensor *apl_t_select(apl_tensor *a, int64_t dim, int64_t index);
apl_tensor *apl_t_index_select(apl_tensor *a, int64_t dim, apl_tensor *index);
apl_tensor *apl_t_unsqueeze(apl_tensor *a, int64_t dim);
apl_tensor *apl_t_squeeze(apl_tensor *a, int64_t dim);
apl_tensor *apl_t_expand(apl_tensor *a, const int64_t *shape, int ndim);
apl_tensor *apl_t_cat(apl_tensor *const *ts, int n, int64_t dim);
apl_tensor *apl_t_stack(apl_tensor *const *ts, int n, int64_t dim);
/* out-of-place scatter: a copy of a with src written at index along dim */
apl_tensor *apl_t_scatter(apl_tensor *a, int64_t dim, apl_tensor *index, apl_tensor *src);
apl_tensor *apl_t_to(apl_tensor *a, apl_dtype dt, apl_device dev);
apl_tensor *apl_t_clone(apl_tensor *a);
apl_tensor *apl_t_detach(apl_tensor *a);

/* ------------------------------------------------------------------------------------------ */
/* Elementwise */
typedef enum {
    APL_NEG, APL_EXP, APL_LOG, APL_SIGMOID, APL_LOGSIGMOID, APL_TANH, APL_RELU, APL_GELU,
    APL_GELU_TANH, APL_SILU, APL_SQRT, APL_RSQRT, APL_ABS, APL_NOT, APL_FLOOR, APL_SQUARE
} apl_unary_op;
typedef enum {
    APL_ADD, APL_SUB, APL_MUL, APL_DIV, APL_POW, APL_MAXIMUM, APL_MINIMUM,
    APL_EQ, APL_NE, APL_LT, APL_LE, APL_GT, APL_GE, APL_AND, APL_OR
} apl_binary_op;
const char *apl_binary_op_name(apl_binary_op op);
apl_tensor *apl_t_unary(apl_unary_op op, apl_tensor *a);
apl_tensor *apl_t_binary(apl_binary_op op, apl_tensor *a, apl_tensor *b); /* broadcasting */
apl_tensor *apl_t_binary_s(apl_binary_op op, apl_tensor *a, double s);   /* a op s */
apl_tensor *apl_t_s_binary(apl_binary_op op, double s, apl_tensor *a);   /* s op a */
apl_tensor *apl_t_where(apl_tensor *cond, apl_tensor *a, apl_tensor *b);
apl_tensor *apl_t_masked_fill(apl_tensor *a, apl_tensor *mask, double v);
apl_tensor *apl_t_clamp(apl_tensor *a, double lo, double hi);

/* ------------------------------------------------------------------------------------------ */
/* Reductions (dim may be APL_ALL_DIMS for SUM/MEAN/MAX/MIN) */
typedef enum { APL_SUM, APL_MEAN, APL_AMAX, APL_AMIN, APL_ARGMAX, APL_ARGMIN, APL_LOGSUMEXP,
               APL_PROD } apl_reduce_op;
apl_tensor *apl_t_reduce(apl_reduce_op op, apl_tensor *a, int64_t dim, int keepdim);
apl_tensor *apl_t_softmax(apl_tensor *a, int64_t dim);
apl_tensor *apl_t_log_softmax(apl_tensor *a, int64_t dim);
apl_tensor *apl_t_cumsum(apl_tensor *a, int64_t dim);
apl_status apl_t_topk(apl_tensor *a, int64_t k, int64_t dim, int largest, apl_tensor **values,
                      apl_tensor **indices);
apl_status apl_t_sort(apl_tensor *a, int64_t dim, int descending, apl_tensor **values,
                      apl_tensor **indices);

/* ------------------------------------------------------------------------------------------ */
/* Neural-network building blocks */
apl_tensor *apl_t_matmul(apl_tensor *a, apl_tensor *b);
/* x (..., in) @ w (out, in)^T + b (out); b may be NULL. */
apl_tensor *apl_t_linear(apl_tensor *x, apl_tensor *w, apl_tensor *b);
apl_tensor *apl_t_layer_norm(apl_tensor *x, apl_tensor *w, apl_tensor *b, double eps);
apl_tensor *apl_t_rms_norm(apl_tensor *x, apl_tensor *w, double eps); /* computed in f32 */
apl_tensor *apl_t_embedding(apl_tensor *weight, apl_tensor *ids);
/* The additive bias of causal attention over T queries and S >= T keys, query i sitting at key
 * position S - T + i: 0 where a query may attend, the dtype's lowest value elsewhere. mask:
 * (B, S) key-padding mask (nonzero = attend) or NULL. (B or 1, 1, T, S) of dtype dt on dev.
 * A forward pass builds it once and hands it to every layer's attention. */
apl_tensor *apl_t_attention_bias(apl_tensor *mask, int64_t T, int64_t S, apl_dtype dt,
                                 apl_device dev);
/* The same convention from an explicit (B, 1, T, S) mask of allowed pairs (nonzero = may attend),
 * for rows that pack several sequences (apl_model_forward_packed). */
apl_tensor *apl_t_attention_bias_of(apl_tensor *allowed, apl_dtype dt, apl_device dev);
/* Softmax attention. q (B, H, T, D), k/v (B, H_kv, S, D) where H_kv divides H (grouped-query
 * attention: query head h reads key/value head h / (H / H_kv)), bias from apl_t_attention_bias.
 * Returns (B, H, T, D). f32 CPU attention with no graph to record runs attention.h's kernel. */
apl_tensor *apl_t_attention(apl_tensor *q, apl_tensor *k, apl_tensor *v, apl_tensor *bias,
                            double scale);
/* log_softmax(x, -1) at the targets: x (..., V), targets (...) i64 -> (...). Without a graph to
 * record, f32 CPU logits take one pass per row (rowsoftmax.h) instead of writing the softmax. */
apl_tensor *apl_t_target_logprobs(apl_tensor *x, apl_tensor *targets);

/* ------------------------------------------------------------------------------------------ */
/* In place (these return a status: they make no new tensor) */
apl_status apl_t_copy_(apl_tensor *dst, apl_tensor *src); /* broadcasting, casts dtype/device */
apl_status apl_t_fill_(apl_tensor *t, double v);
apl_status apl_t_add_(apl_tensor *t, apl_tensor *other, double alpha); /* t += alpha * other */
/* Writes src into dst.narrow(dim, start, src.size(dim)): the KV-cache append. */
apl_status apl_t_write_at_(apl_tensor *dst, int64_t dim, int64_t start, apl_tensor *src);

/* ------------------------------------------------------------------------------------------ */
/* Autograd and optimisation */
apl_status apl_t_requires_grad_(apl_tensor *t, int on);
apl_status apl_t_backward(apl_tensor *loss); /* loss must be a scalar */
/* *out is a new handle to t's gradient, or NULL when it has none. */
apl_status apl_t_grad(apl_tensor *t, apl_tensor **out);
apl_status apl_t_zero_grad(apl_tensor *t); /* drops the gradient */
/* Clips the global L2 norm of the gradients of params to max_norm (<= 0: no clip); writes the
 * norm before clipping. */
apl_status apl_clip_grad_norm(apl_tensor *const *params, int n, double max_norm, double *norm);

typedef struct {
    double lr, beta1, beta2, eps, weight_decay; /* weight_decay is decoupled (AdamW) */
} apl_adam_opts;
/* One Adam step (bias-corrected) for each param with a gradient; m and v are the moment tensors
 * (same shapes, f32), `step` is 1-based. Params without a gradient are skipped. */
apl_status apl_adam_step(apl_tensor *const *params, apl_tensor *const *m, apl_tensor *const *v,
                         int n, int64_t step, const apl_adam_opts *o);

#ifdef __cplusplus
}
#endif
#endif
