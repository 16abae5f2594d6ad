// torch_kernels.cpp — the dispatch from the shim's ops to apl's own CPU kernels (see
// torch_kernels.hpp): whether a kernel applies, and running it over libtorch's tensors. Part of
// the shim: every function here is called inside a tensor_op, which catches what it throws.
#include "torch_kernels.hpp"
#include "torch_shim.h"

#include "activation.h"
#include "attention.h"
#include "rowsoftmax.h"
#include "smallm.h"

#include <ATen/Parallel.h>

#include <string>
#include <vector>

// ------------------------------------------------------------------------------------------
// The switch (apl.fast_kernels(false) turns every kernel off, for comparisons)

static bool fast_kernels = true;

extern "C" int apl_set_fast_kernels(int on)
{
    int was = fast_kernels;
    fast_kernels = on != 0;
    return was;
}

extern "C" int apl_fast_kernels(void) { return fast_kernels; }

static bool plain_f32_cpu(const at::Tensor &t)
{
    return t.device().is_cpu() && t.scalar_type() == at::kFloat && !t.is_sparse();
}

// Whether an op on t must record a graph for autograd (the kernels record none).
static bool recorded(const at::Tensor &t) { return t.requires_grad() && at::GradMode::is_enabled(); }

namespace apl_kernels {

// ------------------------------------------------------------------------------------------
// GELU (activation.h)

std::optional<at::Tensor> gelu_tanh(const at::Tensor &a)
{
    if (!fast_kernels || !apl_activation_usable() || !plain_f32_cpu(a) || !a.is_contiguous() ||
        recorded(a))
        return std::nullopt;
    at::Tensor y = at::empty_like(a);
    apl_gelu_tanh(a.data_ptr<float>(), y.data_ptr<float>(), a.numel(), at::get_num_threads());
    return y;
}

// ------------------------------------------------------------------------------------------
// Linear layers while decoding (smallm.h)

// w as a linear layer sees it, (N, K): stored (N, K), or a transposed view of a (K, N) Conv1D.
static bool smallm_layout(const at::Tensor &w, apl_smallm_layout *layout)
{
    if (w.dim() != 2) return false;
    if (w.is_contiguous()) *layout = APL_SMALLM_NK;
    else if (w.stride(0) == 1 && w.stride(1) == w.size(0)) *layout = APL_SMALLM_KN;
    else return false;
    return true;
}

// The kernels apply to a product with no autograd graph to record, f32 on the CPU, of few rows.
static bool smallm_applies(const at::Tensor &x, const at::Tensor &w, const at::Tensor *b,
                           apl_smallm_layout *layout)
{
    if (!fast_kernels || x.dim() < 1 || !plain_f32_cpu(x) || !plain_f32_cpu(w)) return false;
    if (b && (!plain_f32_cpu(*b) || b->dim() != 1 || !b->is_contiguous())) return false;
    if (recorded(x) || recorded(w) || (b && recorded(*b))) return false;
    int64_t K = x.size(-1);
    if (w.dim() != 2 || w.size(1) != K || K == 0 || (b && b->size(0) != w.size(0))) return false;
    return apl_smallm_usable(x.numel() / K) && smallm_layout(w, layout);
}

std::optional<at::Tensor> linear(const at::Tensor &x_in, const at::Tensor &w, const at::Tensor *b)
{
    apl_smallm_layout layout;
    if (!smallm_applies(x_in, w, b, &layout)) return std::nullopt;
    at::Tensor x = x_in.contiguous();
    int64_t K = x.size(-1), M = x.numel() / K, N = w.size(0);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = N;
    at::Tensor y = at::empty(shape, x.options());
    const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
    const float *bp = b ? b->data_ptr<float>() : nullptr;
    float *yp = y.data_ptr<float>();
    apl_smallm_linear(xp, M, K, wp, layout, bp, yp, N, at::get_num_threads());
    return y;
}

// ------------------------------------------------------------------------------------------
// Attention (attention.h)

// The kernels apply to f32 CPU attention that autograd need not record, with contiguous last
// dimensions (KV-cache views and the heads of a fused QKV projection have them) and a bias as
// apl_t_attention_bias makes it.
static bool attention_applies(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                              const at::Tensor &bias)
{
    if (!fast_kernels || !apl_attention_usable()) return false;
    for (const at::Tensor *t : {&q, &k, &v, &bias})
        if (!plain_f32_cpu(*t) || t->dim() != 4 || t->stride(3) != 1) return false;
    if (recorded(q) || recorded(k) || recorded(v)) return false;
    int64_t T = q.size(2), S = k.size(2);
    if (q.stride(2) > APL_ATTENTION_MAX_STRIDE || k.stride(2) > APL_ATTENTION_MAX_STRIDE) return false;
    // the bias's rows contiguous, S apart: a view narrowed to the queries of a tail qualifies
    return S > 0 && v.size(3) == q.size(3) && bias.stride(2) == S && bias.size(1) == 1 &&
           bias.size(2) == T && bias.size(3) == S && (bias.size(0) == 1 || bias.size(0) == q.size(0));
}

static apl_attention_view attention_view(const at::Tensor &t)
{
    return apl_attention_view{t.data_ptr<float>(), t.stride(0), t.stride(1), t.stride(2)};
}

std::optional<at::Tensor> attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                    const at::Tensor &bias, double scale)
{
    if (!attention_applies(q, k, v, bias)) return std::nullopt;
    int64_t B = q.size(0), H = q.size(1), T = q.size(2), D = q.size(3), S = k.size(2);
    int threads = at::get_num_threads();
    at::Tensor out = at::empty({B, T, H, D}, q.options());
    at::Tensor scratch = at::empty({apl_attention_scratch(B, T, S, D, threads)}, q.options());
    apl_attention(attention_view(q), attention_view(k), attention_view(v), bias.data_ptr<float>(),
                  bias.size(0) == 1 ? 0 : bias.stride(0), B, H, k.size(1), T, S, D, (float)scale,
                  out.data_ptr<float>(), scratch.data_ptr<float>(), threads);
    return out.transpose(1, 2);
}

// ------------------------------------------------------------------------------------------
// Log-probabilities of targets, one pass per row (rowsoftmax.h)

// For f32 CPU logits with nothing for autograd to record and rows whose last dimension is
// contiguous; otherwise the shim does log_softmax then gather.
static bool rowsoftmax_applies(const at::Tensor &x, const at::Tensor &t)
{
    if (!fast_kernels || !apl_rowsoftmax_usable() || !plain_f32_cpu(x) || x.stride(-1) != 1) return false;
    if (recorded(x)) return false;
    return (x.dim() == 2 || x.dim() == 3) && t.device().is_cpu() && t.scalar_type() == at::kLong;
}

std::optional<at::Tensor> target_logprobs(const at::Tensor &x, const at::Tensor &targets)
{
    if (!rowsoftmax_applies(x, targets)) return std::nullopt;
    bool flat = x.dim() == 2;
    int64_t B = flat ? 1 : x.size(0), T = x.size(-2), V = x.size(-1);
    int64_t sb = flat ? 0 : x.stride(0), st = x.stride(-2);
    at::Tensor t = targets.contiguous(), out = at::empty(targets.sizes(), x.options());
    int64_t bad = apl_row_target_logprobs(x.data_ptr<float>(), B, T, V, sb, st, t.data_ptr<int64_t>(),
                                          out.data_ptr<float>(), at::get_num_threads());
    if (bad >= 0)
        throw std::invalid_argument("target " + std::to_string(t.view(-1)[bad].item<int64_t>()) +
                                    " is outside the " + std::to_string(V) + " classes");
    return out;
}

} // namespace apl_kernels
