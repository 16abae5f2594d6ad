// torch_shim_impl.hpp — internal to the shim's .cpp files: the handle struct and the wrappers that
// turn every C++ exception into a status and a message. Never included by C code.
#ifndef APL_TORCH_SHIM_IMPL_HPP
#define APL_TORCH_SHIM_IMPL_HPP

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "torch_shim.h"

struct apl_tensor {
    at::Tensor t;
    bool in_scope = false; // recorded in the thread's scope stack
    bool kept = false;     // apl_keep'd: the scope must not free it
    bool dead = false;     // apl_t_free'd while in a scope: the scope deletes the struct
};

namespace apl_shim {

apl_tensor *wrap(at::Tensor t);
at::ScalarType to_scalar(apl_dtype dt);
apl_dtype from_scalar(at::ScalarType st);
at::Device to_device(apl_device dev);
at::IntArrayRef dims(const int64_t *shape, int ndim);
void set_error(const char *op, const char *what);

// Records the exception being handled as "op: message". Call only inside a catch block.
inline void record_exception(const char *op)
{
    try {
        throw;
    } catch (const c10::Error &e) {
        set_error(op, e.what_without_backtrace());
    } catch (const std::exception &e) {
        set_error(op, e.what());
    } catch (...) {
        set_error(op, "unknown C++ exception");
    }
}

// Runs f (which returns an at::Tensor) and wraps the result; on any exception records
// "op: message" and returns NULL.
template <class F> apl_tensor *tensor_op(const char *op, F &&f)
{
    try {
        return wrap(f());
    } catch (...) {
        record_exception(op);
    }
    return nullptr;
}

// Runs f (returning void) and maps exceptions to APL_ETORCH.
template <class F> apl_status status_op(const char *op, F &&f)
{
    try {
        f();
        return APL_OK;
    } catch (...) {
        record_exception(op);
    }
    return APL_ETORCH;
}

} // namespace apl_shim

// An op on a failed (NULL) input fails too, keeping the first failure's message.
#define APL_NEED(...)                                                                              \
    do {                                                                                           \
        const void *need_[] = {__VA_ARGS__};                                                       \
        for (const void *p_ : need_)                                                               \
            if (!p_) return nullptr;                                                               \
    } while (0)

#endif
