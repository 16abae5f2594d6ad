// torch_shim.cpp — libtorch behind the extern "C" API of torch_shim.h. Where apl's own CPU kernels
// can stand in for libtorch, torch_kernels.cpp decides and runs them (apl_kernels::*).
// Every exported body runs inside tensor_op/status_op (torch_shim_impl.hpp), so no exception
// ever crosses into C or Lua frames.
#include "torch_compat.hpp"
#include "torch_kernels.hpp"
#include "torch_shim_impl.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

using apl_shim::dims;
using apl_shim::status_op;
using apl_shim::tensor_op;
using apl_shim::to_device;
using apl_shim::to_scalar;

// ------------------------------------------------------------------------------------------
// Handles and scopes

namespace {
thread_local std::vector<apl_tensor *> scope_stack; // handles made while a scope is open
thread_local int scope_depth = 0;
} // namespace

namespace apl_shim {

apl_tensor *wrap(at::Tensor t)
{
    auto *h = new apl_tensor{std::move(t)};
    if (scope_depth > 0) {
        h->in_scope = true;
        scope_stack.push_back(h);
    }
    return h;
}

void set_error(const char *op, const char *what)
{
    // libtorch messages can span lines (hints, frames); the first lines carry the meaning.
    std::string msg(what ? what : "");
    size_t cut = msg.find("\nException raised from");
    if (cut != std::string::npos) msg.resize(cut);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    apl_set_error("%s: %s", op, msg.c_str());
}

at::ScalarType to_scalar(apl_dtype dt)
{
    switch (dt) {
    case APL_F32: return at::kFloat;
    case APL_F16: return at::kHalf;
    case APL_BF16: return at::kBFloat16;
    case APL_F64: return at::kDouble;
    case APL_I64: return at::kLong;
    case APL_I32: return at::kInt;
    case APL_U8: return at::kByte;
    case APL_BOOL: return at::kBool;
    }
    throw std::invalid_argument("unknown dtype code " + std::to_string((int)dt));
}

apl_dtype from_scalar(at::ScalarType st)
{
    switch (st) {
    case at::kFloat: return APL_F32;
    case at::kHalf: return APL_F16;
    case at::kBFloat16: return APL_BF16;
    case at::kDouble: return APL_F64;
    case at::kLong: return APL_I64;
    case at::kInt: return APL_I32;
    case at::kByte: return APL_U8;
    case at::kBool: return APL_BOOL;
    default: return APL_F32; // apl never creates other dtypes
    }
}

at::Device to_device(apl_device dev)
{
    if (dev < 0) return at::Device(at::kCPU);
    if (!at::hasCUDA()) throw std::runtime_error("CUDA is not available in this libtorch build");
    return at::Device(at::kCUDA, (c10::DeviceIndex)dev);
}

at::IntArrayRef dims(const int64_t *shape, int ndim) { return at::IntArrayRef(shape, (size_t)ndim); }

} // namespace apl_shim

namespace {
at::TensorOptions opts(apl_dtype dt, apl_device dev)
{
    return at::TensorOptions().dtype(to_scalar(dt)).device(to_device(dev));
}

std::vector<at::Tensor> tensors_of(apl_tensor *const *ts, int n)
{
    std::vector<at::Tensor> v;
    v.reserve(n);
    for (int i = 0; i < n; i++) v.push_back(ts[i]->t);
    return v;
}
} // namespace

// Both outputs are made before either is handed out, so a failure leaks nothing.
template <class F>
static apl_status pair_out(const char *op, apl_tensor **values, apl_tensor **indices, F &&f)
{
    *values = *indices = nullptr;
    std::tuple<at::Tensor, at::Tensor> r;
    apl_status st = status_op(op, [&] { r = f(); });
    if (st != APL_OK) return st;
    *values = apl_shim::wrap(std::get<0>(r));
    *indices = apl_shim::wrap(std::get<1>(r));
    return APL_OK;
}

extern "C" {

void apl_t_free(apl_tensor *t)
{
    if (!t) return;
    if (t->in_scope) {
        t->t = at::Tensor(); // storage released now; the scope deletes the struct at pop
        t->dead = true;
        return;
    }
    delete t;
}

apl_tensor *apl_t_share(apl_tensor *t)
{
    APL_NEED(t);
    return tensor_op("share", [&] { return t->t; });
}

int apl_scope_push(void)
{
    scope_depth++;
    return (int)scope_stack.size();
}

void apl_scope_pop(int mark)
{
    for (size_t i = (size_t)mark; i < scope_stack.size(); i++) {
        apl_tensor *h = scope_stack[i];
        h->in_scope = false;
        if (h->dead || !h->kept) delete h;
        else h->kept = false; // the caller owns it now
    }
    scope_stack.resize((size_t)mark);
    if (scope_depth > 0) scope_depth--;
}

apl_tensor *apl_keep(apl_tensor *t)
{
    if (t) t->kept = true;
    return t;
}

apl_status apl_t_ok(const apl_tensor *t) { return t ? APL_OK : APL_ETORCH; }

// ------------------------------------------------------------------------------------------
// Library state

const char *apl_torch_version(void) { return TORCH_VERSION; }
int apl_cuda_available(void) { return at::hasCUDA() ? 1 : 0; }

int apl_cuda_device_count(void)
{
    try {
        return at::hasCUDA() ? (int)at::detail::getCUDAHooks().getNumGPUs() : 0;
    } catch (...) {
        return 0;
    }
}

void apl_manual_seed(uint64_t seed)
{
    try {
        at::manual_seed(seed);
    } catch (...) {
        // CUDA seeding can throw on a broken driver; the CPU generator is already seeded.
    }
}

void apl_set_num_threads(int n)
{
    try {
        if (n > 0) at::set_num_threads(n);
    } catch (...) {
    }
}

int apl_get_num_threads(void) { return at::get_num_threads(); }

int apl_set_grad_enabled(int on)
{
    int prev = at::GradMode::is_enabled() ? 1 : 0;
    at::GradMode::set_enabled(on != 0);
    return prev;
}

int apl_grad_enabled(void) { return at::GradMode::is_enabled() ? 1 : 0; }

// ------------------------------------------------------------------------------------------
// dtypes

static const char *const dtype_names[APL_NDTYPES] = {"f32", "f16", "bf16", "f64",
                                                     "i64", "i32", "u8",   "bool"};

const char *apl_dtype_name(apl_dtype dt)
{
    return (unsigned)dt < APL_NDTYPES ? dtype_names[dt] : "?";
}

int apl_dtype_from_name(const char *name, apl_dtype *out)
{
    static const struct { const char *alias; apl_dtype dt; } aliases[] = {
        {"float32", APL_F32}, {"float", APL_F32},   {"float16", APL_F16},  {"half", APL_F16},
        {"bfloat16", APL_BF16}, {"float64", APL_F64}, {"double", APL_F64}, {"int64", APL_I64},
        {"long", APL_I64},    {"int32", APL_I32},   {"int", APL_I32},      {"uint8", APL_U8}};
    for (int i = 0; i < APL_NDTYPES; i++)
        if (strcmp(name, dtype_names[i]) == 0) return *out = (apl_dtype)i, 1;
    for (auto &a : aliases)
        if (strcmp(name, a.alias) == 0) return *out = a.dt, 1;
    return 0;
}

size_t apl_dtype_size(apl_dtype dt)
{
    static const size_t sizes[APL_NDTYPES] = {4, 2, 2, 8, 8, 4, 1, 1};
    return (unsigned)dt < APL_NDTYPES ? sizes[dt] : 0;
}

// ------------------------------------------------------------------------------------------
// Creation

apl_tensor *apl_t_empty(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev)
{
    return tensor_op("empty", [&] { return at::empty(dims(shape, ndim), opts(dt, dev)); });
}

apl_tensor *apl_t_full(const int64_t *shape, int ndim, double v, apl_dtype dt, apl_device dev)
{
    return tensor_op("full", [&] { return at::full(dims(shape, ndim), v, opts(dt, dev)); });
}

apl_tensor *apl_t_arange(double start, double end, double step, apl_dtype dt, apl_device dev)
{
    return tensor_op("arange", [&] { return at::arange(start, end, step, opts(dt, dev)); });
}

struct apl_gen {
    at::Generator g;
};

// Random tensors are drawn on the CPU when a private generator is given (it is a CPU generator),
// then moved: the numbers then do not depend on the device.
apl_tensor *apl_t_randn(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev, apl_gen *g)
{
    return tensor_op("randn", [&] {
        if (!g) return at::randn(dims(shape, ndim), opts(dt, dev));
        return at::randn(dims(shape, ndim), g->g, opts(dt, APL_CPU)).to(to_device(dev));
    });
}

apl_tensor *apl_t_rand(const int64_t *shape, int ndim, apl_dtype dt, apl_device dev, apl_gen *g)
{
    return tensor_op("rand", [&] {
        if (!g) return at::rand(dims(shape, ndim), opts(dt, dev));
        return at::rand(dims(shape, ndim), g->g, opts(dt, APL_CPU)).to(to_device(dev));
    });
}

apl_tensor *apl_t_from_data(const void *data, const int64_t *shape, int ndim, apl_dtype dt)
{
    return tensor_op("from_data", [&] {
        return at::from_blob(const_cast<void *>(data), dims(shape, ndim), opts(dt, APL_CPU)).clone();
    });
}

apl_tensor *apl_t_from_blob(void *data, const int64_t *shape, int ndim, apl_dtype dt,
                            void (*release)(void *ctx), void *ctx)
{
    return tensor_op("from_blob", [&] {
        return at::from_blob(
            data, dims(shape, ndim), [release, ctx](void *) { if (release) release(ctx); },
            opts(dt, APL_CPU));
    });
}

apl_gen *apl_gen_new(uint64_t seed)
{
    try {
        return new apl_gen{at::make_generator<at::CPUGeneratorImpl>(seed)};
    } catch (const std::exception &e) {
        apl_shim::set_error("gen_new", e.what());
        return nullptr;
    }
}

void apl_gen_free(apl_gen *g) { delete g; }

// ------------------------------------------------------------------------------------------
// Inspection (no libtorch call here throws for a live tensor)

int apl_t_ndim(const apl_tensor *t) { return (int)t->t.dim(); }

int64_t apl_t_size(const apl_tensor *t, int64_t dim)
{
    int64_t n = t->t.dim();
    if (dim < 0) dim += n;
    return dim >= 0 && dim < n ? t->t.size(dim) : -1;
}

int apl_t_shape(const apl_tensor *t, int64_t *shape)
{
    int n = (int)t->t.dim();
    for (int i = 0; i < n && i < APL_MAX_DIMS; i++) shape[i] = t->t.size(i);
    return n;
}

int64_t apl_t_numel(const apl_tensor *t) { return t->t.numel(); }
apl_dtype apl_t_dtype(const apl_tensor *t) { return apl_shim::from_scalar(t->t.scalar_type()); }

apl_device apl_t_device(const apl_tensor *t)
{
    return t->t.is_cuda() ? (apl_device)t->t.device().index() : APL_CPU;
}

int apl_t_requires_grad(const apl_tensor *t) { return t->t.requires_grad() ? 1 : 0; }
int apl_t_is_contiguous(const apl_tensor *t) { return t->t.is_contiguous() ? 1 : 0; }

const char *apl_t_shape_str(const apl_tensor *t, char *buf, size_t n)
{
    if (!t || !t->t.defined()) {
        snprintf(buf, n, "(freed)");
        return buf;
    }
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int64_t i = 0; i < t->t.dim() && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "",
                                 (long long)t->t.size(i));
    if (used < n) snprintf(buf + used, n - used, "%s)", t->t.dim() == 1 ? "," : "");
    return buf;
}

void *apl_t_data(apl_tensor *t)
{
    if (!t->t.defined() || t->t.is_cuda() || !t->t.is_contiguous()) return nullptr;
    return t->t.data_ptr();
}

apl_status apl_t_read(const apl_tensor *t, apl_dtype dt, void *buf, size_t nbytes)
{
    return status_op("read", [&] {
        at::Tensor c = t->t.detach().to(at::kCPU, to_scalar(dt)).contiguous();
        size_t want = (size_t)c.numel() * apl_dtype_size(dt);
        if (want != nbytes)
            throw std::invalid_argument("buffer holds " + std::to_string(nbytes) +
                                        " bytes, tensor needs " + std::to_string(want));
        if (want) memcpy(buf, c.data_ptr(), want);
    });
}

apl_status apl_t_item(const apl_tensor *t, double *out)
{
    return status_op("item", [&] { *out = t->t.item<double>(); });
}

// ------------------------------------------------------------------------------------------
// Shape and indexing

apl_tensor *apl_t_reshape(apl_tensor *a, const int64_t *shape, int ndim)
{
    APL_NEED(a);
    return tensor_op("reshape", [&] { return a->t.reshape(dims(shape, ndim)); });
}

apl_tensor *apl_t_view(apl_tensor *a, const int64_t *shape, int ndim)
{
    APL_NEED(a);
    return tensor_op("view", [&] { return a->t.view(dims(shape, ndim)); });
}

apl_tensor *apl_t_transpose(apl_tensor *a, int64_t d0, int64_t d1)
{
    APL_NEED(a);
    return tensor_op("transpose", [&] { return a->t.transpose(d0, d1); });
}

apl_tensor *apl_t_permute(apl_tensor *a, const int64_t *d, int ndim)
{
    APL_NEED(a);
    return tensor_op("permute", [&] { return a->t.permute(dims(d, ndim)); });
}

apl_tensor *apl_t_contiguous(apl_tensor *a)
{
    APL_NEED(a);
    return tensor_op("contiguous", [&] { return a->t.contiguous(); });
}

apl_tensor *apl_t_narrow(apl_tensor *a, int64_t dim, int64_t start, int64_t len)
{
    APL_NEED(a);
    return tensor_op("narrow", [&] { return a->t.narrow(dim, start, len); });
}

apl_tensor *apl_t_select(apl_tensor *a, int64_t dim, int64_t index)
{
    APL_NEED(a);
    return tensor_op("select", [&] { return a->t.select(dim, index); });
}

apl_tensor *apl_t_index_select(apl_tensor *a, int64_t dim, apl_tensor *index)
{
    APL_NEED(a, index);
    return tensor_op("index_select", [&] { return a->t.index_select(dim, index->t); });
}

apl_tensor *apl_t_unsqueeze(apl_tensor *a, int64_t dim)
{
    APL_NEED(a);
    return tensor_op("unsqueeze", [&] { return a->t.unsqueeze(dim); });
}

apl_tensor *apl_t_squeeze(apl_tensor *a, int64_t dim)
{
    APL_NEED(a);
    return tensor_op("squeeze", [&] { return a->t.squeeze(dim); });
}

apl_tensor *apl_t_expand(apl_tensor *a, const int64_t *shape, int ndim)
{
    APL_NEED(a);
    return tensor_op("expand", [&] { return a->t.expand(dims(shape, ndim)); });
}

apl_tensor *apl_t_cat(apl_tensor *const *ts, int n, int64_t dim)
{
    for (int i = 0; i < n; i++) APL_NEED(ts[i]);
    return tensor_op("cat", [&] { return at::cat(tensors_of(ts, n), dim); });
}

apl_tensor *apl_t_stack(apl_tensor *const *ts, int n, int64_t dim)
{
    for (int i = 0; i < n; i++) APL_NEED(ts[i]);
    return tensor_op("stack", [&] { return at::stack(tensors_of(ts, n), dim); });
}

apl_tensor *apl_t_scatter(apl_tensor *a, int64_t dim, apl_tensor *index, apl_tensor *src)
{
    APL_NEED(a, index, src);
    return tensor_op("scatter", [&] { return a->t.scatter(dim, index->t, src->t); });
}

apl_tensor *apl_t_to(apl_tensor *a, apl_dtype dt, apl_device dev)
{
    APL_NEED(a);
    return tensor_op("to", [&] { return a->t.to(to_device(dev), to_scalar(dt)); });
}

apl_tensor *apl_t_clone(apl_tensor *a)
{
    APL_NEED(a);
    return tensor_op("clone", [&] { return a->t.clone(); });
}

apl_tensor *apl_t_detach(apl_tensor *a)
{
    APL_NEED(a);
    return tensor_op("detach", [&] { return a->t.detach(); });
}

// ------------------------------------------------------------------------------------------
// Elementwise

const char *apl_binary_op_name(apl_binary_op op)
{
    static const char *const names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                        "eq",  "ne",  "lt",  "le",  "gt",  "ge",      "logical_and",
                                        "logical_or"};
    return (unsigned)op < sizeof names / sizeof *names ? names[op] : "?";
}

static at::Tensor unary(apl_unary_op op, const at::Tensor &a)
{
    switch (op) {
    case APL_NEG: return a.neg();
    case APL_EXP: return a.exp();
    case APL_LOG: return a.log();
    case APL_SIGMOID: return a.sigmoid();
    case APL_LOGSIGMOID: return at::log_sigmoid(a);
    case APL_TANH: return a.tanh();
    case APL_RELU: return a.relu();
    case APL_GELU: return at::gelu(a);
    case APL_GELU_TANH: return at::gelu(a, "tanh");
    case APL_SILU: return at::silu(a);
    case APL_SQRT: return a.sqrt();
    case APL_RSQRT: return a.rsqrt();
    case APL_ABS: return a.abs();
    case APL_NOT: return a.logical_not();
    case APL_FLOOR: return a.floor();
    case APL_SQUARE: return a.square();
    }
    throw std::invalid_argument("unknown unary op");
}

static at::Tensor binary(apl_binary_op op, const at::Tensor &a, const at::Tensor &b)
{
    switch (op) {
    case APL_ADD: return a.add(b);
    case APL_SUB: return a.sub(b);
    case APL_MUL: return a.mul(b);
    case APL_DIV: return a.div(b);
    case APL_POW: return a.pow(b);
    case APL_MAXIMUM: return at::maximum(a, b);
    case APL_MINIMUM: return at::minimum(a, b);
    case APL_EQ: return a.eq(b);
    case APL_NE: return a.ne(b);
    case APL_LT: return a.lt(b);
    case APL_LE: return a.le(b);
    case APL_GT: return a.gt(b);
    case APL_GE: return a.ge(b);
    case APL_AND: return a.logical_and(b);
    case APL_OR: return a.logical_or(b);
    }
    throw std::invalid_argument("unknown binary op");
}

// A scalar operand becomes a 0-dim tensor: type promotion then follows torch's rules for
// Python numbers (an f32 tensor stays f32, an i64 tensor times 0.5 becomes float).
static at::Tensor scalar_like(double s, const at::Tensor &a)
{
    at::Tensor w = at::scalar_tensor(s, at::TensorOptions().dtype(at::kDouble).device(a.device()));
    at::ScalarType st = a.scalar_type();
    bool integral_value = std::floor(s) == s;
    if (at::isFloatingType(st)) return w.to(st);
    if (integral_value && st != at::kBool) return w.to(st);
    return w.to(at::kFloat);
}

apl_tensor *apl_t_unary(apl_unary_op op, apl_tensor *a)
{
    APL_NEED(a);
    return tensor_op("unary", [&] {
        if (op == APL_GELU_TANH)
            if (auto y = apl_kernels::gelu_tanh(a->t)) return *y;
        return unary(op, a->t);
    });
}

apl_tensor *apl_t_binary(apl_binary_op op, apl_tensor *a, apl_tensor *b)
{
    APL_NEED(a, b);
    return tensor_op(apl_binary_op_name(op), [&] { return binary(op, a->t, b->t); });
}

apl_tensor *apl_t_binary_s(apl_binary_op op, apl_tensor *a, double s)
{
    APL_NEED(a);
    return tensor_op(apl_binary_op_name(op), [&] { return binary(op, a->t, scalar_like(s, a->t)); });
}

apl_tensor *apl_t_s_binary(apl_binary_op op, double s, apl_tensor *a)
{
    APL_NEED(a);
    return tensor_op(apl_binary_op_name(op), [&] { return binary(op, scalar_like(s, a->t), a->t); });
}

apl_tensor *apl_t_where(apl_tensor *cond, apl_tensor *a, apl_tensor *b)
{
    APL_NEED(cond, a, b);
    return tensor_op("where", [&] { return at::where(cond->t.to(at::kBool), a->t, b->t); });
}

apl_tensor *apl_t_masked_fill(apl_tensor *a, apl_tensor *mask, double v)
{
    APL_NEED(a, mask);
    return tensor_op("masked_fill", [&] { return a->t.masked_fill(mask->t.to(at::kBool), v); });
}

apl_tensor *apl_t_clamp(apl_tensor *a, double lo, double hi)
{
    APL_NEED(a);
    return tensor_op("clamp", [&] { return a->t.clamp(lo, hi); });
}

// ------------------------------------------------------------------------------------------
// Reductions

static at::Tensor reduce(apl_reduce_op op, const at::Tensor &a, int64_t dim, bool keep)
{
    bool all = dim == APL_ALL_DIMS;
    switch (op) {
    case APL_SUM: return all ? a.sum() : a.sum(dim, keep);
    case APL_MEAN: return all ? a.mean() : a.mean(dim, keep);
    case APL_AMAX: return all ? a.max() : std::get<0>(a.max(dim, keep));
    case APL_AMIN: return all ? a.min() : std::get<0>(a.min(dim, keep));
    case APL_ARGMAX: return all ? a.argmax() : a.argmax(dim, keep);
    case APL_ARGMIN: return all ? a.argmin() : a.argmin(dim, keep);
    case APL_LOGSUMEXP: return all ? a.flatten().logsumexp(0) : a.logsumexp(dim, keep);
    case APL_PROD: return all ? a.prod() : a.prod(dim, keep);
    }
    throw std::invalid_argument("unknown reduction");
}

apl_tensor *apl_t_reduce(apl_reduce_op op, apl_tensor *a, int64_t dim, int keepdim)
{
    APL_NEED(a);
    return tensor_op("reduce", [&] { return reduce(op, a->t, dim, keepdim != 0); });
}

apl_tensor *apl_t_softmax(apl_tensor *a, int64_t dim)
{
    APL_NEED(a);
    return tensor_op("softmax", [&] { return a->t.softmax(dim); });
}

apl_tensor *apl_t_log_softmax(apl_tensor *a, int64_t dim)
{
    APL_NEED(a);
    return tensor_op("log_softmax", [&] { return a->t.log_softmax(dim); });
}

apl_tensor *apl_t_cumsum(apl_tensor *a, int64_t dim)
{
    APL_NEED(a);
    return tensor_op("cumsum", [&] { return a->t.cumsum(dim); });
}

apl_status apl_t_topk(apl_tensor *a, int64_t k, int64_t dim, int largest, apl_tensor **values,
                      apl_tensor **indices)
{
    if (!a) return apl_fail(APL_ETORCH, "topk: input failed");
    return pair_out("topk", values, indices, [&] { return a->t.topk(k, dim, largest != 0, true); });
}

apl_status apl_t_sort(apl_tensor *a, int64_t dim, int descending, apl_tensor **values,
                      apl_tensor **indices)
{
    if (!a) return apl_fail(APL_ETORCH, "sort: input failed");
    // stable, so equal keys keep their order and rankings are reproducible
    return pair_out("sort", values, indices, [&] { return a->t.sort(true, dim, descending != 0); });
}

// ------------------------------------------------------------------------------------------
// Neural-network building blocks

apl_tensor *apl_t_matmul(apl_tensor *a, apl_tensor *b)
{
    APL_NEED(a, b);
    return tensor_op("matmul", [&] { return a->t.matmul(b->t); });
}

// BLAS, or while decoding the small-row kernels of smallm.h (torch_kernels.cpp)
apl_tensor *apl_t_linear(apl_tensor *x, apl_tensor *w, apl_tensor *b)
{
    APL_NEED(x, w);
    return tensor_op("linear", [&] {
        if (auto y = apl_kernels::linear(x->t, w->t, b ? &b->t : nullptr)) return *y;
        return at::linear(x->t, w->t, b ? c10::optional<at::Tensor>(b->t) : c10::nullopt);
    });
}

apl_tensor *apl_t_layer_norm(apl_tensor *x, apl_tensor *w, apl_tensor *b, double eps)
{
    APL_NEED(x);
    return tensor_op("layer_norm", [&] {
        int64_t c = x->t.size(-1);
        return at::layer_norm(x->t, {c}, w ? c10::optional<at::Tensor>(w->t) : c10::nullopt,
                              b ? c10::optional<at::Tensor>(b->t) : c10::nullopt, eps);
    });
}

// As HF's LlamaRMSNorm: normalise in f32, cast back, then scale.
apl_tensor *apl_t_rms_norm(apl_tensor *x, apl_tensor *w, double eps)
{
    APL_NEED(x, w);
    return tensor_op("rms_norm", [&] {
        at::Tensor xf = x->t.to(at::kFloat);
        at::Tensor y = xf * (xf.pow(2).mean(-1, true) + eps).rsqrt();
        return w->t * y.to(x->t.scalar_type());
    });
}

apl_tensor *apl_t_embedding(apl_tensor *weight, apl_tensor *ids)
{
    APL_NEED(weight, ids);
    return tensor_op("embedding", [&] { return at::embedding(weight->t, ids->t); });
}

// torch.finfo(dtype).min, which HF uses for masked scores
static double dtype_lowest(at::ScalarType st)
{
    switch (st) {
    case at::kHalf: return -65504.0;
    case at::kBFloat16: return -3.3895313892515355e38;
    case at::kDouble: return std::numeric_limits<double>::lowest();
    default: return std::numeric_limits<float>::lowest();
    }
}

// Additive mask (B or 1, 1, T, S): 0 where a query may attend, the dtype's lowest finite value
// elsewhere (as HF uses): a query that may attend to nothing (a padding position) gets a uniform
// softmax, never NaN, so it cannot poison the others.
static at::Tensor bias_of(const at::Tensor &allowed, const at::TensorOptions &opts)
{
    return at::zeros(allowed.sizes(), opts).masked_fill(allowed.logical_not(),
                                                         dtype_lowest(c10::typeMetaToScalarType(opts.dtype())));
}

apl_tensor *apl_t_attention_bias(apl_tensor *mask, int64_t T, int64_t S, apl_dtype dt,
                                 apl_device dev)
{
    return tensor_op("attention_bias", [&] {
        if (S < T) throw std::invalid_argument("fewer keys than queries");
        auto opts = at::TensorOptions().dtype(to_scalar(dt)).device(to_device(dev));
        at::Tensor allowed = at::ones({T, S}, opts.dtype(at::kBool)).tril(S - T).view({1, 1, T, S});
        if (mask) {
            int64_t B = mask->t.size(0);
            allowed = allowed.logical_and(mask->t.to(opts.device()).to(at::kBool).view({B, 1, 1, S}));
        }
        return bias_of(allowed, opts);
    });
}

apl_tensor *apl_t_attention_bias_of(apl_tensor *allowed, apl_dtype dt, apl_device dev)
{
    APL_NEED(allowed);
    return tensor_op("attention_bias_of", [&] {
        auto opts = at::TensorOptions().dtype(to_scalar(dt)).device(to_device(dev));
        return bias_of(allowed->t.to(opts.device()).to(at::kBool), opts);
    });
}

apl_tensor *apl_t_attention(apl_tensor *q, apl_tensor *k, apl_tensor *v, apl_tensor *bias_h,
                            double scale)
{
    APL_NEED(q, k, v, bias_h);
    return tensor_op("attention", [&] {
        const at::Tensor &bias = bias_h->t;
        int64_t H = q->t.size(1), H_kv = k->t.size(1);
        if (H_kv != v->t.size(1) || H % H_kv != 0)
            throw std::invalid_argument("key/value heads must divide the query heads");
        if (auto y = apl_kernels::attention(q->t, k->t, v->t, bias, scale)) return *y;
        at::Tensor kk = H_kv == H ? k->t : k->t.repeat_interleave(H / H_kv, 1);
        at::Tensor vv = H_kv == H ? v->t : v->t.repeat_interleave(H / H_kv, 1);
        return apl_compat::attention(q->t, kk, vv, bias, scale);
    });
}

apl_tensor *apl_t_target_logprobs(apl_tensor *x, apl_tensor *targets)
{
    APL_NEED(x, targets);
    return tensor_op("target_logprobs", [&] {
        if (targets->t.sizes() != x->t.sizes().slice(0, x->t.dim() - 1))
            throw std::invalid_argument("targets must have the logits' shape without the last dimension");
        if (auto y = apl_kernels::target_logprobs(x->t, targets->t)) return *y;
        return x->t.log_softmax(-1).gather(-1, targets->t.unsqueeze(-1)).squeeze(-1);
    });
}

// ------------------------------------------------------------------------------------------
// In place

apl_status apl_t_copy_(apl_tensor *dst, apl_tensor *src)
{
    if (!dst || !src) return apl_fail(APL_ETORCH, "copy_: input failed");
    return status_op("copy_", [&] {
        at::NoGradGuard ng;
        dst->t.copy_(src->t);
    });
}

apl_status apl_t_fill_(apl_tensor *t, double v)
{
    if (!t) return apl_fail(APL_ETORCH, "fill_: input failed");
    return status_op("fill_", [&] {
        at::NoGradGuard ng;
        t->t.fill_(v);
    });
}

apl_status apl_t_add_(apl_tensor *t, apl_tensor *other, double alpha)
{
    if (!t || !other) return apl_fail(APL_ETORCH, "add_: input failed");
    return status_op("add_", [&] {
        at::NoGradGuard ng;
        t->t.add_(other->t, alpha);
    });
}

apl_status apl_t_write_at_(apl_tensor *dst, int64_t dim, int64_t start, apl_tensor *src)
{
    if (!dst || !src) return apl_fail(APL_ETORCH, "write_at_: input failed");
    return status_op("write_at_", [&] {
        // No grad guard: writing into a KV cache inside a training forward must stay
        // differentiable; the caches apl preallocates do not require grad themselves.
        dst->t.narrow(dim, start, src->t.size(dim)).copy_(src->t);
    });
}

// ------------------------------------------------------------------------------------------
// Autograd and optimisation

apl_status apl_t_requires_grad_(apl_tensor *t, int on)
{
    if (!t) return apl_fail(APL_ETORCH, "requires_grad_: input failed");
    return status_op("requires_grad_", [&] { t->t.requires_grad_(on != 0); });
}

apl_status apl_t_backward(apl_tensor *loss)
{
    if (!loss) return apl_fail(APL_ETORCH, "backward: input failed");
    return status_op("backward", [&] { loss->t.backward(); });
}

apl_status apl_t_grad(apl_tensor *t, apl_tensor **out)
{
    *out = nullptr;
    if (!t) return apl_fail(APL_ETORCH, "grad: input failed");
    return status_op("grad", [&] {
        const at::Tensor &g = t->t.grad();
        if (g.defined()) *out = apl_shim::wrap(g);
    });
}

apl_status apl_t_zero_grad(apl_tensor *t)
{
    if (!t) return apl_fail(APL_ETORCH, "zero_grad: input failed");
    return status_op("zero_grad", [&] { t->t.mutable_grad().reset(); });
}

apl_status apl_clip_grad_norm(apl_tensor *const *params, int n, double max_norm, double *norm)
{
    return status_op("clip_grad_norm", [&] {
        at::NoGradGuard ng;
        double total = 0;
        for (int i = 0; i < n; i++) {
            const at::Tensor &g = params[i]->t.grad();
            if (g.defined()) total += g.to(at::kFloat).pow(2).sum().item<double>();
        }
        total = std::sqrt(total);
        *norm = total;
        if (max_norm <= 0 || total <= max_norm) return;
        double s = max_norm / (total + 1e-6);
        for (int i = 0; i < n; i++) {
            at::Tensor g = params[i]->t.grad();
            if (g.defined()) g.mul_(s);
        }
    });
}

// The update is computed in f32 and cast to the parameter's dtype, so bf16 parameters keep
// f32 optimizer state (moments) while their weights stay bf16.
apl_status apl_adam_step(apl_tensor *const *params, apl_tensor *const *m, apl_tensor *const *v,
                         int n, int64_t step, const apl_adam_opts *o)
{
    return status_op("adam_step", [&] {
        at::NoGradGuard ng;
        double bc1 = 1 - std::pow(o->beta1, (double)step);
        double bc2 = 1 - std::pow(o->beta2, (double)step);
        for (int i = 0; i < n; i++) {
            at::Tensor &p = params[i]->t;
            const at::Tensor &graw = p.grad();
            if (!graw.defined()) continue;
            at::Tensor g = graw.to(at::kFloat);
            m[i]->t.mul_(o->beta1).add_(g, 1 - o->beta1);
            v[i]->t.mul_(o->beta2).addcmul_(g, g, 1 - o->beta2);
            at::Tensor denom = (v[i]->t / bc2).sqrt_().add_(o->eps);
            at::Tensor upd = (m[i]->t / bc1).div_(denom).mul_(-o->lr);
            if (o->weight_decay > 0) upd.sub_(p.to(at::kFloat), o->lr * o->weight_decay);
            p.add_(upd.to(p.scalar_type()));
        }
    });
}

} // extern "C"
