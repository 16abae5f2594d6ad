// torch_compat.hpp — every difference between the libtorch versions apl builds against, in one
// place; the shim has no other version test. Internal to the shim's .cpp files.
//
// Versions covered, each built and tested in CI (.ci/run):
//   1.13  Debian 12 (libtorch-dev), amd64 and arm64
//   2.6   Debian 13 (libtorch-dev, and libtorch-cuda-dev from contrib)
//   ≥ 2.1 pip wheels and the official zips (LIBTORCH=...), on a GPU machine by tools/gpu-check.sh
//
// What differs:
//   - at::GradMode and at::NoGradGuard: ATen/ATen.h brings them in 1.13; in 2.x only
//     <ATen/core/grad_mode.h> declares them (Debian 13's build stopped there).
//   - scaled_dot_product_attention: 2.0 added it, 2.1 its `scale` argument. Before 2.1 apl
//     computes the same attention by hand.
//   - c10d (torch_dist.cpp): the process groups derive from c10d::ProcessGroup in 1.13 and from
//     c10d::Backend since 2.0; TCPStoreOptions gained useLibUV in 2.2 (on by default since 2.4,
//     and the Debian builds may lack libuv): apl keeps the plain socket server everywhere.
#ifndef APL_TORCH_COMPAT_HPP
#define APL_TORCH_COMPAT_HPP

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/version.h>

#define APL_TORCH_AT_LEAST(major, minor) \
    (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))
#ifdef APL_COMPAT_C10D // torch_dist.cpp only: the c10d headers are heavy
#if APL_TORCH_AT_LEAST(2, 0)
#include <torch/csrc/distributed/c10d/Backend.hpp>
#endif
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace apl_compat {

// softmax(q·kᵀ·scale + bias)·v over (B, H, T, D) with an additive bias broadcast to (B, H, T, S);
// k and v already have q's head count.
inline at::Tensor attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v,
                            const at::Tensor &bias, double scale)
{
#if APL_TORCH_AT_LEAST(2, 1)
    return at::scaled_dot_product_attention(q, k, v, bias, 0.0, false, scale);
#else
    at::Tensor scores = q.matmul(k.transpose(-2, -1)).mul(scale).add(bias);
    // softmax in f32 for half types, as HF's eager attention does; f64 stays f64 (in f32 its
    // lowest mask value would overflow to -inf and padded rows would turn NaN)
    at::ScalarType acc = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    return scores.softmax(-1, acc).to(q.scalar_type()).matmul(v);
#endif
}

#ifdef APL_COMPAT_C10D
#if APL_TORCH_AT_LEAST(2, 0)
using CommBackend = c10d::Backend;
#else
using CommBackend = c10d::ProcessGroup;
#endif

inline void plain_tcp_store(c10d::TCPStoreOptions &so)
{
#if APL_TORCH_AT_LEAST(2, 2)
    so.useLibUV = false;
#else
    (void)so;
#endif
}
#endif

} // namespace apl_compat

#endif
