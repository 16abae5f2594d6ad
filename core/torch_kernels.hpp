// torch_kernels.hpp — internal to the shim: where apl's own CPU kernels (activation.h, smallm.h,
// attention.h, rowsoftmax.h) stand in for libtorch. Never included by C code.
//
//   if (auto y = apl_kernels::linear(x, w, b)) return *y;   // the kernel ran
//   return at::linear(x, w, b);                             // it does not apply: libtorch's op
//
// Each function returns the result when its kernel applies, and nothing (before doing any work)
// when it does not: f32 CPU tensors with no autograd graph to record, the layouts the kernel
// handles, the CPU features it needs, and apl_fast_kernels() on. Results are new tensors the
// caller wraps; errors are thrown as C++ exceptions, which the shim's tensor_op turns into
// statuses like any libtorch error.
#ifndef APL_TORCH_KERNELS_HPP
#define APL_TORCH_KERNELS_HPP

#include "torch_compat.hpp" // ATen, and GradMode, which libtorch 2.x declares apart

#include <optional>

namespace apl_kernels {

// GELU, tanh form: libtorch's takes ~5x as long (SLEEF's tanh).
std::optional<at::Tensor> gelu_tanh(const at::Tensor &a);
// x (..., K) · w (N, K)ᵀ + b (N): few rows (decoding). b may be null.
std::optional<at::Tensor> linear(const at::Tensor &x, const at::Tensor &w, const at::Tensor *b);
// q (B, H, T, D), k and v (B, H_kv, S, D), bias (B or 1, 1, T, S) -> (B, H, T, D), a view of a
// (B, T, H, D) tensor.
std::optional<at::Tensor> attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                                    const at::Tensor &bias, double scale);
// log_softmax(x, -1) at targets: x (B, T, V) or (T, V), targets i64 -> x's shape without V.
std::optional<at::Tensor> target_logprobs(const at::Tensor &x, const at::Tensor &targets);

} // namespace apl_kernels

#endif
