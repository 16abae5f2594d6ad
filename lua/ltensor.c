/* ltensor.c — apl.tensor: libtorch tensors for Lua (metatable "apl.Tensor").
 *
 *   local T = apl.tensor
 *   local x = T{{1, 2}, {3, 4}}                    -- i64 (2, 2), like torch.tensor
 *   local y = T.randn({2, 3}, {dtype = "f32"})
 *   local p = (x:float() * 2 + 1):matmul(y):softmax(2)
 *   print(p[1], p:sum(2), p:max(2))                -- max(dim) returns values, indices
 *
 * Index conventions (Lua's, as in torch7), everywhere in this module:
 *   - dims are 1-based: dim 1 is the first; -1 is the last, -2 the one before.
 *   - indices are 1-based: t[1] is the first row; -1 the last. This holds for t[i], t[i] = v,
 *     select, narrow's start, the values in index()'s index table or tensor (a table may hold
 *     negative indices; a tensor must hold positive ones), and for every index a method returns
 *     (max/min with a dim, argmax/argmin, topk, sort).
 *   - arange keeps torch's meaning (values, not indices): arange(3) is 0, 1, 2.
 *   - t[i] is a 0-dim tensor when t is 1-D (like PyTorch); use :item() for the number.
 *
 * Ownership. Every apl.Tensor owns one shim handle; __gc, __close and :free() are one function
 * and safe twice. A view (select, narrow, reshape, ...) keeps its base userdata as its user value.
 * `==` stays identity: comparisons are the methods eq/ne/lt/le/gt/ge, which return bool tensors.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "apl_lua.h"

#define MOD "apl.tensor."

/* ------------------------------------------------------------------------------------------ */
/* Arguments: dims, indices, dtypes, devices, shapes */

/* 1-based (or negative) dim -> 0-based, for a tensor of ndim dims (range = ndim, or ndim + 1
 * for ops that insert a dim). */
static int64_t check_dim(lua_State *L, lua_Integer d, int range, const char *fname)
{
    if (d >= 1 && d <= range) return d - 1;
    if (d < 0 && d >= -range) return range + d;
    if (range == 0) apl_lua_error(L, fname, "dim %lld out of range: the tensor has no dims", (long long)d);
    apl_lua_error(L, fname, "dim %lld out of range (1..%d or -%d..-1)", (long long)d, range, range);
    return 0;
}

static int64_t arg_dim(lua_State *L, int arg, apl_tensor *t, const char *fname)
{
    return check_dim(L, luaL_checkinteger(L, arg), apl_t_ndim(t), fname);
}

/* Optional dim argument; APL_ALL_DIMS when absent. */
static int64_t opt_dim(lua_State *L, int arg, apl_tensor *t, const char *fname)
{
    if (lua_isnoneornil(L, arg)) return APL_ALL_DIMS;
    return arg_dim(L, arg, t, fname);
}

/* 1-based (or negative) index into a dim of the given size -> 0-based. */
static int64_t check_index(lua_State *L, lua_Integer i, int64_t size, int64_t dim, const char *fname)
{
    if (i >= 1 && i <= size) return i - 1;
    if (i < 0 && i >= -size) return size + i;
    apl_lua_error(L, fname, "index %lld out of range for dim %lld of size %lld", (long long)i,
                  (long long)dim + 1, (long long)size);
    return 0;
}

/* Reads {dtype=, device=} at idx (may be none/nil) into *dt / *dev, which hold the defaults. */
static void read_opts(lua_State *L, int idx, apl_dtype *dt, apl_device *dev, const char *fname)
{
    const char *s = apl_lua_opt_str(L, idx, "dtype", NULL, fname);
    if (s) *dt = apl_lua_check_dtype(L, s, 0, fname);
    s = apl_lua_opt_str(L, idx, "device", NULL, fname);
    if (s) *dev = apl_lua_check_device(L, s, fname);
}

/* The integer at idx as a shape entry (-1 is allowed: reshape infers it). */
static int64_t shape_entry(lua_State *L, int idx, const char *fname)
{
    int isnum;
    lua_Integer v = lua_tointegerx(L, idx, &isnum);
    if (!isnum) apl_lua_error(L, fname, "shape entries must be integers, got %s", luaL_typename(L, idx));
    if (v < -1) apl_lua_error(L, fname, "negative size %lld in shape", (long long)v);
    return v;
}

/* A shape given as one table {2, 3} or as integers 2, 3 from arg on. Returns ndim and sets *next
 * to the first argument after the shape. */
static int read_shape(lua_State *L, int arg, int64_t *shape, int *next, const char *fname)
{
    int n = 0;
    if (lua_istable(L, arg)) {
        n = (int)luaL_len(L, arg);
        if (n > APL_MAX_DIMS) apl_lua_error(L, fname, "more than %d dims", APL_MAX_DIMS);
        for (int i = 0; i < n; i++) {
            lua_geti(L, arg, i + 1);
            shape[i] = shape_entry(L, -1, fname);
            lua_pop(L, 1);
        }
        *next = arg + 1;
        return n;
    }
    for (; lua_type(L, arg + n) == LUA_TNUMBER; n++) {
        if (n == APL_MAX_DIMS) apl_lua_error(L, fname, "more than %d dims", APL_MAX_DIMS);
        shape[n] = shape_entry(L, arg + n, fname);
    }
    *next = arg + n;
    return n;
}

/* The tensor at idx, or NULL when idx holds something else; raises when it was freed. */
static apl_tensor *opt_tensor(lua_State *L, int idx)
{
    apl_tensor_box *b = luaL_testudata(L, idx, APL_TENSOR_MT);
    if (b && !b->t) luaL_argerror(L, idx, "tensor was freed");
    return b ? b->t : NULL;
}

/* Raises "fname: shapes (2, 3) and (4, 5): <libtorch message>" for a failed two-tensor op. */
static void check_result2(lua_State *L, apl_tensor *r, apl_tensor *a, apl_tensor *b, const char *fname)
{
    char sa[128], sb[128];
    if (r) return;
    apl_lua_error(L, fname, "shapes %s and %s: %s", apl_t_shape_str(a, sa, sizeof sa),
                  apl_t_shape_str(b, sb, sizeof sb), apl_last_error());
}

static int is_integer_dtype(apl_dtype dt) { return dt == APL_I64 || dt == APL_I32 || dt == APL_U8; }

/* ------------------------------------------------------------------------------------------ */
/* Lifetime */

static int l_tensor_free(lua_State *L)
{
    apl_tensor_box *b = luaL_checkudata(L, 1, APL_TENSOR_MT);
    apl_t_free(b->t);
    b->t = NULL;
    return 0;
}

static int l_tensor_is_tensor(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, APL_TENSOR_MT) != NULL);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Creation from nested Lua tables */

enum { KIND_NONE, KIND_INT, KIND_FLOAT, KIND_BOOL };

typedef struct {
    int64_t shape[APL_MAX_DIMS];
    int ndim, kind;
    int64_t n;   /* elements written so far */
    void *buf;   /* int64_t, double or uint8_t per kind; NULL in the first pass */
    const char *fname;
} nested;

static void nested_shape(lua_State *L, int idx, nested *s)
{
    lua_pushvalue(L, idx);
    for (s->ndim = 0; lua_istable(L, -1); s->ndim++) {
        if (s->ndim == APL_MAX_DIMS) apl_lua_error(L, s->fname, "more than %d dims", APL_MAX_DIMS);
        s->shape[s->ndim] = (int64_t)luaL_len(L, -1);
        if (s->shape[s->ndim] == 0) {
            s->ndim++;
            break;
        }
        lua_geti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
}

/* Checks (buf == NULL) or writes (buf set) the leaf at the stack top. */
static void nested_leaf(lua_State *L, nested *s)
{
    int t = lua_type(L, -1);
    int kind = t == LUA_TBOOLEAN ? KIND_BOOL : lua_isinteger(L, -1) ? KIND_INT
                                 : t == LUA_TNUMBER ? KIND_FLOAT : KIND_NONE;
    if (kind == KIND_NONE)
        apl_lua_error(L, s->fname, "element %lld is a %s, expected a number or boolean",
                      (long long)s->n + 1, luaL_typename(L, -1));
    if (!s->buf) {
        if ((kind == KIND_BOOL) != (s->kind == KIND_BOOL) && s->kind != KIND_NONE)
            apl_lua_error(L, s->fname, "mixes booleans and numbers");
        if (kind > s->kind) s->kind = kind;
    } else if (s->kind == KIND_BOOL) {
        ((uint8_t *)s->buf)[s->n] = (uint8_t)lua_toboolean(L, -1);
    } else if (s->kind == KIND_INT) {
        ((int64_t *)s->buf)[s->n] = lua_tointeger(L, -1);
    } else {
        ((double *)s->buf)[s->n] = lua_tonumber(L, -1);
    }
    s->n++;
}

static void nested_walk(lua_State *L, nested *s, int depth)
{
    if (depth == s->ndim) {
        nested_leaf(L, s);
        return;
    }
    if (!lua_istable(L, -1) || luaL_len(L, -1) != s->shape[depth])
        apl_lua_error(L, s->fname, "ragged nested table: expected %lld elements at depth %d",
                      (long long)s->shape[depth], depth + 1);
    for (int64_t i = 1; i <= s->shape[depth]; i++) {
        lua_geti(L, -1, i);
        nested_walk(L, s, depth + 1);
        lua_pop(L, 1);
    }
}

/* Pushes a new tensor holding the nested table (or number/boolean) at idx. */
static void push_from_lua(lua_State *L, int idx, int opts, const char *fname)
{
    nested s = {.fname = fname};
    static const apl_dtype src_dtype[] = {APL_F32, APL_I64, APL_F64, APL_BOOL};
    static const apl_dtype def_dtype[] = {APL_F32, APL_I64, APL_F32, APL_BOOL};
    static const size_t elem[] = {1, sizeof(int64_t), sizeof(double), 1};
    nested_shape(L, idx, &s);
    lua_pushvalue(L, idx);
    nested_walk(L, &s, 0);
    int64_t numel = s.n;
    /* A GC-owned buffer: nothing to free if the second walk raises. */
    s.buf = lua_newuserdatauv(L, numel * elem[s.kind] + 1, 0);
    lua_insert(L, -2);
    s.n = 0;
    if (numel) nested_walk(L, &s, 0);
    lua_pop(L, 1);
    apl_dtype dt = def_dtype[s.kind];
    apl_device dev = APL_CPU;
    read_opts(L, opts, &dt, &dev, fname);
    apl_tensor *raw = apl_t_from_data(s.buf, s.shape, s.ndim, src_dtype[s.kind]);
    lua_pop(L, 1);
    if (raw && (dt != src_dtype[s.kind] || dev != APL_CPU)) {
        apl_tensor *r = apl_t_to(raw, dt, dev);
        apl_t_free(raw);
        raw = r;
    }
    apl_lua_pushtensor(L, raw, fname);
}

/* apl.tensor.new(data[, {dtype=, device=}]): data is a nested table, a number, a boolean or a
 * tensor (copied). Integers give i64, any float gives f32, booleans give bool (torch's rules). */
static int l_tensor_new(lua_State *L)
{
    const char *fname = MOD "new";
    lua_settop(L, 2); /* opts stays at 2 while buffers are pushed above it */
    apl_tensor *t = opt_tensor(L, 1);
    if (t) {
        apl_dtype dt = apl_t_dtype(t);
        apl_device dev = apl_t_device(t);
        read_opts(L, 2, &dt, &dev, fname);
        int same = dt == apl_t_dtype(t) && dev == apl_t_device(t);
        apl_lua_pushtensor(L, same ? apl_t_clone(t) : apl_t_to(t, dt, dev), fname);
        return 1;
    }
    int tp = lua_type(L, 1);
    if (tp != LUA_TTABLE && tp != LUA_TNUMBER && tp != LUA_TBOOLEAN)
        return luaL_typeerror(L, 1, "table, number, boolean or tensor");
    push_from_lua(L, 1, 2, fname);
    return 1;
}

/* apl.tensor(data, opts) is apl.tensor.new(data, opts). */
static int l_tensor_call(lua_State *L)
{
    lua_remove(L, 1);
    return l_tensor_new(L);
}

/* ------------------------------------------------------------------------------------------ */
/* Creation from shapes: zeros(2, 3[, opts]), zeros({2, 3}[, opts]), full(shape, v[, opts]) ... */

enum { FILL_ZEROS, FILL_ONES, FILL_FULL, FILL_RANDN, FILL_RAND };

static int l_tensor_fill_new(lua_State *L)
{
    int how = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    int64_t shape[APL_MAX_DIMS];
    int next;
    int ndim = read_shape(L, 1, shape, &next, fname);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) apl_lua_error(L, fname, "negative size %lld in shape", (long long)shape[i]);
    double v = how == FILL_ONES ? 1 : 0;
    if (how == FILL_FULL) v = luaL_checknumber(L, next++);
    apl_dtype dt = APL_F32;
    apl_device dev = APL_CPU;
    read_opts(L, next, &dt, &dev, fname);
    apl_tensor *r = how == FILL_RANDN ? apl_t_randn(shape, ndim, dt, dev, NULL)
                  : how == FILL_RAND  ? apl_t_rand(shape, ndim, dt, dev, NULL)
                                      : apl_t_full(shape, ndim, v, dt, dev);
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

/* arange(end) / arange(start, end[, step])[, opts]: i64 when every bound is an integer. */
static int l_tensor_arange(lua_State *L)
{
    const char *fname = MOD "arange";
    int n = 0, all_int = 1;
    double b[3] = {0, 0, 1};
    while (n < 3 && lua_type(L, n + 1) == LUA_TNUMBER) {
        all_int &= lua_isinteger(L, n + 1);
        b[n] = lua_tonumber(L, n + 1);
        n++;
    }
    if (n == 0) return luaL_typeerror(L, 1, "number");
    if (n == 1) {
        b[1] = b[0];
        b[0] = 0;
    }
    if (b[2] == 0) apl_lua_error(L, fname, "step must be nonzero");
    apl_dtype dt = all_int ? APL_I64 : APL_F32;
    apl_device dev = APL_CPU;
    read_opts(L, n + 1, &dt, &dev, fname);
    apl_lua_pushtensor(L, apl_t_arange(b[0], b[1], b[2], dt, dev), fname);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Inspection and conversion to Lua values */

static void push_shape(lua_State *L, apl_tensor *t)
{
    int64_t shape[APL_MAX_DIMS];
    int n = apl_t_shape(t, shape);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

static int l_tensor_shape(lua_State *L)
{
    push_shape(L, apl_lua_checktensor(L, 1));
    return 1;
}

/* size() is the shape table; size(dim) one extent. */
static int l_tensor_size(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    if (lua_isnoneornil(L, 2)) {
        push_shape(L, t);
        return 1;
    }
    lua_pushinteger(L, apl_t_size(t, arg_dim(L, 2, t, MOD "size")));
    return 1;
}

static int l_tensor_dim(lua_State *L)
{
    lua_pushinteger(L, apl_t_ndim(apl_lua_checktensor(L, 1)));
    return 1;
}

static int l_tensor_numel(lua_State *L)
{
    lua_pushinteger(L, apl_t_numel(apl_lua_checktensor(L, 1)));
    return 1;
}

static int l_tensor_dtype(lua_State *L)
{
    lua_pushstring(L, apl_dtype_name(apl_t_dtype(apl_lua_checktensor(L, 1))));
    return 1;
}

static int l_tensor_device(lua_State *L)
{
    apl_lua_pushdevice(L, apl_t_device(apl_lua_checktensor(L, 1)));
    return 1;
}

static int l_tensor_len(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    if (apl_t_ndim(t) == 0) apl_lua_error(L, MOD "__len", "a 0-dim tensor has no length");
    lua_pushinteger(L, apl_t_size(t, 0));
    return 1;
}

/* Converts element i of a buffer read as F64 / I64 / BOOL into a Lua value. */
static void push_elem(lua_State *L, const void *buf, apl_dtype as, int64_t i)
{
    if (as == APL_I64) lua_pushinteger(L, ((const int64_t *)buf)[i]);
    else if (as == APL_BOOL) lua_pushboolean(L, ((const uint8_t *)buf)[i]);
    else lua_pushnumber(L, ((const double *)buf)[i]);
}

/* The dtype a tensor is read back as: integers stay Lua integers, bools booleans. */
static apl_dtype lua_read_dtype(apl_tensor *t)
{
    apl_dtype dt = apl_t_dtype(t);
    return is_integer_dtype(dt) ? APL_I64 : dt == APL_BOOL ? APL_BOOL : APL_F64;
}

static int l_tensor_item(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    char s[128];
    if (apl_t_numel(t) != 1)
        apl_lua_error(L, MOD "item", "a tensor of shape %s has %lld elements, not one",
                      apl_t_shape_str(t, s, sizeof s), (long long)apl_t_numel(t));
    apl_dtype as = lua_read_dtype(t);
    union { double d; int64_t i; uint8_t b; } v;
    apl_lua_check(L, apl_t_read(t, as, &v, apl_dtype_size(as)), MOD "item");
    push_elem(L, &v, as, 0);
    return 1;
}

static void push_nested(lua_State *L, const void *buf, apl_dtype as, const int64_t *shape,
                        int ndim, int64_t *pos)
{
    if (ndim == 0) {
        push_elem(L, buf, as, (*pos)++);
        return;
    }
    lua_createtable(L, (int)shape[0], 0);
    for (int64_t i = 0; i < shape[0]; i++) {
        push_nested(L, buf, as, shape + 1, ndim - 1, pos);
        lua_rawseti(L, -2, i + 1);
    }
}

/* Nested Lua tables (a plain value for a 0-dim tensor); i64 as Lua integers. */
static int l_tensor_totable(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    apl_dtype as = lua_read_dtype(t);
    int64_t shape[APL_MAX_DIMS], pos = 0;
    int ndim = apl_t_shape(t, shape);
    size_t nbytes = (size_t)apl_t_numel(t) * apl_dtype_size(as);
    void *buf = lua_newuserdatauv(L, nbytes + 1, 0);
    apl_lua_check(L, apl_t_read(t, as, buf, nbytes), MOD "totable");
    push_nested(L, buf, as, shape, ndim, &pos);
    return 1;
}

/* Formatting lives in Lua (apl/tensor_fmt.lua): it is string work, and it can use the methods. */
static int l_tensor_tostring(lua_State *L)
{
    apl_tensor_box *b = luaL_checkudata(L, 1, APL_TENSOR_MT);
    if (!b->t) {
        lua_pushliteral(L, "apl.Tensor (freed)");
        return 1;
    }
    lua_getglobal(L, "require");
    lua_pushliteral(L, "apl.tensor_fmt");
    lua_call(L, 1, 1);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Shape and indexing */

/* Pushes r, a new shape of t (a view of it where possible); a failure names t's shape. */
static int push_reshaped(lua_State *L, apl_tensor *t, apl_tensor *r, const char *fname)
{
    if (!r) {
        char s[128];
        apl_lua_error(L, fname, "shape %s: %s", apl_t_shape_str(t, s, sizeof s), apl_last_error());
    }
    apl_lua_pushtensor_ref(L, r, 1, fname);
    return 1;
}

static int l_tensor_reshape_view(lua_State *L)
{
    int view = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t shape[APL_MAX_DIMS];
    int next, n = read_shape(L, 2, shape, &next, fname);
    return push_reshaped(L, t, view ? apl_t_view(t, shape, n) : apl_t_reshape(t, shape, n), fname);
}

static int l_tensor_expand(lua_State *L)
{
    const char *fname = MOD "expand";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t shape[APL_MAX_DIMS];
    int next, n = read_shape(L, 2, shape, &next, fname);
    return push_reshaped(L, t, apl_t_expand(t, shape, n), fname);
}

static int l_tensor_transpose(lua_State *L)
{
    const char *fname = MOD "transpose";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t d0 = lua_isnoneornil(L, 2) ? 0 : arg_dim(L, 2, t, fname);
    int64_t d1 = lua_isnoneornil(L, 3) ? 1 : arg_dim(L, 3, t, fname);
    apl_lua_pushtensor_ref(L, apl_t_transpose(t, d0, d1), 1, fname);
    return 1;
}

/* permute(3, 1, 2) or permute({3, 1, 2}) */
static int l_tensor_permute(lua_State *L)
{
    const char *fname = MOD "permute";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dims[APL_MAX_DIMS];
    int next, n = read_shape(L, 2, dims, &next, fname);
    int ndim = apl_t_ndim(t);
    if (n != ndim) apl_lua_error(L, fname, "got %d dims for a tensor with %d", n, ndim);
    for (int i = 0; i < n; i++) dims[i] = check_dim(L, dims[i], ndim, fname);
    apl_lua_pushtensor_ref(L, apl_t_permute(t, dims, n), 1, fname);
    return 1;
}

static int l_tensor_narrow(lua_State *L)
{
    const char *fname = MOD "narrow";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dim = arg_dim(L, 2, t, fname), size = apl_t_size(t, dim);
    int64_t start = check_index(L, luaL_checkinteger(L, 3), size, dim, fname);
    lua_Integer len = luaL_checkinteger(L, 4);
    if (len < 0 || start + len > size)
        apl_lua_error(L, fname, "start %lld length %lld out of range for dim %lld of size %lld",
                      (long long)start + 1, (long long)len, (long long)dim + 1, (long long)size);
    apl_lua_pushtensor_ref(L, apl_t_narrow(t, dim, start, len), 1, fname);
    return 1;
}

static void push_select(lua_State *L, int idx, apl_tensor *t, int64_t dim, lua_Integer i,
                        const char *fname)
{
    if (apl_t_ndim(t) == 0) apl_lua_error(L, fname, "cannot index a 0-dim tensor");
    int64_t k = check_index(L, i, apl_t_size(t, dim), dim, fname);
    apl_lua_pushtensor_ref(L, apl_t_select(t, dim, k), idx, fname);
}

static int l_tensor_select(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    push_select(L, 1, t, arg_dim(L, 2, t, MOD "select"), luaL_checkinteger(L, 3), MOD "select");
    return 1;
}

/* A 0-based i64 index tensor from a table of 1-based (or negative) indices. */
static apl_tensor *index_from_table(lua_State *L, int idx, int64_t size, int64_t dim, const char *fname)
{
    int64_t n = (int64_t)luaL_len(L, idx);
    int64_t *buf = lua_newuserdatauv(L, n * sizeof *buf + 1, 0);
    for (int64_t i = 0; i < n; i++) {
        int isnum;
        lua_geti(L, idx, i + 1);
        lua_Integer v = lua_tointegerx(L, -1, &isnum);
        if (!isnum) apl_lua_error(L, fname, "index table entries must be integers");
        buf[i] = check_index(L, v, size, dim, fname);
        lua_pop(L, 1);
    }
    apl_tensor *r = apl_t_from_data(buf, &n, 1, APL_I64);
    lua_pop(L, 1);
    return r;
}

/* index(dim, {1, 3}) or index(dim, idx_tensor): the rows at those 1-based indices (a copy). */
static int l_tensor_index(lua_State *L)
{
    const char *fname = MOD "index";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dim = arg_dim(L, 2, t, fname);
    apl_tensor *given = opt_tensor(L, 3), *idx;
    if (given) {
        idx = apl_t_binary_s(APL_SUB, given, 1);
    } else {
        luaL_checktype(L, 3, LUA_TTABLE);
        idx = index_from_table(L, 3, apl_t_size(t, dim), dim, fname);
    }
    apl_tensor *r = apl_t_index_select(t, dim, idx);
    apl_t_free(idx);
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

static int l_tensor_unsqueeze(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t d = check_dim(L, luaL_checkinteger(L, 2), apl_t_ndim(t) + 1, MOD "unsqueeze");
    apl_lua_pushtensor_ref(L, apl_t_unsqueeze(t, d), 1, MOD "unsqueeze");
    return 1;
}

static int l_tensor_squeeze(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    apl_lua_pushtensor_ref(L, apl_t_squeeze(t, arg_dim(L, 2, t, MOD "squeeze")), 1, MOD "squeeze");
    return 1;
}

/* apl.tensor.cat({a, b, ...}[, dim = 1]) and stack(...) */
static int l_tensor_join(lua_State *L)
{
    int stack = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    lua_settop(L, 2); /* dim stays at 2 while the handle array is pushed above it */
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n == 0) apl_lua_error(L, fname, "needs at least one tensor");
    apl_tensor **ts = lua_newuserdatauv(L, n * sizeof *ts, 0);
    luaL_Buffer shapes;
    luaL_buffinit(L, &shapes);
    for (int i = 0; i < n; i++) {
        char s[128];
        lua_geti(L, 1, i + 1);
        ts[i] = opt_tensor(L, -1);
        if (!ts[i]) apl_lua_error(L, fname, "element %d is a %s, not a tensor", i + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
        luaL_addstring(&shapes, i ? ", " : "");
        luaL_addstring(&shapes, apl_t_shape_str(ts[i], s, sizeof s));
    }
    luaL_pushresult(&shapes);
    int64_t dim = check_dim(L, luaL_optinteger(L, 2, 1), apl_t_ndim(ts[0]) + stack, fname);
    apl_tensor *r = stack ? apl_t_stack(ts, n, dim) : apl_t_cat(ts, n, dim);
    if (!r) apl_lua_error(L, fname, "shapes %s: %s", lua_tostring(L, -1), apl_last_error());
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* __index / __newindex: methods by name, rows by integer */

static int l_tensor_index_mm(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TNUMBER) {
        int isint;
        lua_Integer i = lua_tointegerx(L, 2, &isint);
        if (!isint) apl_lua_error(L, MOD "__index", "index %s is not an integer", lua_tostring(L, 2));
        push_select(L, 1, apl_lua_checktensor(L, 1), 0, i, MOD "__index");
        return 1;
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, lua_upvalueindex(1));
    return 1;
}

/* t[i] = number | tensor: fills or copies into row i (broadcasting). */
static int l_tensor_newindex(lua_State *L)
{
    const char *fname = MOD "__newindex";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int isint;
    lua_Integer i = lua_tointegerx(L, 2, &isint);
    if (!isint) apl_lua_error(L, fname, "cannot set field %s of a tensor", luaL_tolstring(L, 2, NULL));
    if (apl_t_ndim(t) == 0) apl_lua_error(L, fname, "cannot index a 0-dim tensor");
    apl_tensor *src = opt_tensor(L, 3);
    if (!src && lua_type(L, 3) != LUA_TNUMBER && lua_type(L, 3) != LUA_TBOOLEAN)
        return luaL_typeerror(L, 3, "number, boolean or tensor");
    int64_t k = check_index(L, i, apl_t_size(t, 0), 0, fname);
    apl_tensor *row = apl_t_select(t, 0, k);
    if (!row) apl_lua_error(L, fname, "%s", apl_last_error());
    double v = lua_isboolean(L, 3) ? lua_toboolean(L, 3) : lua_tonumber(L, 3);
    apl_status st = src ? apl_t_copy_(row, src) : apl_t_fill_(row, v);
    if (st != APL_OK) {
        char a[128], b[128];
        apl_t_shape_str(row, a, sizeof a);
        apl_t_free(row);
        apl_lua_error(L, fname, "shapes %s and %s: %s", a, apl_t_shape_str(src, b, sizeof b),
                      apl_last_error());
    }
    apl_t_free(row);
    return 0;
}

/* t:fill_(v) and t:copy_(src) work in place and return t. */
static int l_tensor_fill_(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : luaL_checknumber(L, 2);
    apl_lua_check(L, apl_t_fill_(t, v), MOD "fill_");
    lua_settop(L, 1);
    return 1;
}

static int l_tensor_copy_(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1), *src = apl_lua_checktensor(L, 2);
    if (apl_t_copy_(t, src) != APL_OK) check_result2(L, NULL, t, src, MOD "copy_");
    lua_settop(L, 1);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Elementwise ops (one closure per op: upvalues are the op and its error name) */

static int l_tensor_unary(lua_State *L)
{
    apl_unary_op op = (apl_unary_op)lua_tointeger(L, lua_upvalueindex(1));
    apl_tensor *t = apl_lua_checktensor(L, 1);
    apl_lua_pushtensor(L, apl_t_unary(op, t), lua_tostring(L, lua_upvalueindex(2)));
    return 1;
}

static double check_scalar(lua_State *L, int idx, const char *fname)
{
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx);
    if (lua_type(L, idx) != LUA_TNUMBER)
        apl_lua_error(L, fname, "expected tensors or numbers, got %s and %s", luaL_typename(L, 1),
                      luaL_typename(L, 2));
    return lua_tonumber(L, idx);
}

/* tensor op tensor (broadcasting), tensor op number, number op tensor. */
static int l_tensor_binary(lua_State *L)
{
    apl_binary_op op = (apl_binary_op)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    apl_tensor *a = opt_tensor(L, 1), *b = opt_tensor(L, 2), *r;
    if (a && b) {
        r = apl_t_binary(op, a, b);
        check_result2(L, r, a, b, fname);
    } else if (a) {
        r = apl_t_binary_s(op, a, check_scalar(L, 2, fname));
    } else if (b) {
        r = apl_t_s_binary(op, check_scalar(L, 1, fname), b);
    } else {
        return luaL_typeerror(L, 1, "tensor");
    }
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

static int l_tensor_matmul(lua_State *L)
{
    apl_tensor *a = apl_lua_checktensor(L, 1), *b = apl_lua_checktensor(L, 2);
    apl_tensor *r = apl_t_matmul(a, b);
    check_result2(L, r, a, b, MOD "matmul");
    apl_lua_pushtensor(L, r, MOD "matmul");
    return 1;
}

static int l_tensor_where(lua_State *L)
{
    apl_tensor *c = apl_lua_checktensor(L, 1), *a = apl_lua_checktensor(L, 2);
    apl_tensor *b = apl_lua_checktensor(L, 3), *r = apl_t_where(c, a, b);
    check_result2(L, r, a, b, MOD "where");
    apl_lua_pushtensor(L, r, MOD "where");
    return 1;
}

static int l_tensor_masked_fill(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1), *mask = apl_lua_checktensor(L, 2);
    apl_tensor *r = apl_t_masked_fill(t, mask, luaL_checknumber(L, 3));
    check_result2(L, r, t, mask, MOD "masked_fill");
    apl_lua_pushtensor(L, r, MOD "masked_fill");
    return 1;
}

static int l_tensor_clamp(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    double lo = luaL_optnumber(L, 2, -HUGE_VAL), hi = luaL_optnumber(L, 3, HUGE_VAL);
    apl_lua_pushtensor(L, apl_t_clamp(t, lo, hi), MOD "clamp");
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Reductions */

/* Turns a 0-based index tensor from libtorch into a 1-based one; frees idx. */
static apl_tensor *one_based(apl_tensor *idx)
{
    apl_tensor *r = apl_t_binary_s(APL_ADD, idx, 1);
    apl_t_free(idx);
    return r;
}

/* sum/mean/prod/logsumexp/argmax/argmin([dim[, keepdim]]): no dim reduces everything. */
static int l_tensor_reduce(lua_State *L)
{
    apl_reduce_op op = (apl_reduce_op)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dim = opt_dim(L, 2, t, fname);
    apl_tensor *r = apl_t_reduce(op, t, dim, lua_toboolean(L, 3));
    if (op == APL_ARGMAX || op == APL_ARGMIN) r = one_based(r);
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

/* max()/min() is the extreme value; max(dim[, keepdim]) returns values, 1-based indices. */
static int l_tensor_extreme(lua_State *L)
{
    int is_max = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dim = opt_dim(L, 2, t, fname);
    int keep = lua_toboolean(L, 3);
    apl_lua_pushtensor(L, apl_t_reduce(is_max ? APL_AMAX : APL_AMIN, t, dim, keep), fname);
    if (dim == APL_ALL_DIMS) return 1;
    apl_tensor *idx = apl_t_reduce(is_max ? APL_ARGMAX : APL_ARGMIN, t, dim, keep);
    apl_lua_pushtensor(L, one_based(idx), fname);
    return 2;
}

/* softmax/log_softmax/cumsum([dim = -1]) */
static int l_tensor_along(lua_State *L)
{
    int which = (int)lua_tointeger(L, lua_upvalueindex(1));
    const char *fname = lua_tostring(L, lua_upvalueindex(2));
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int64_t dim = check_dim(L, luaL_optinteger(L, 2, -1), apl_t_ndim(t), fname);
    apl_tensor *r = which == 0 ? apl_t_softmax(t, dim) : which == 1 ? apl_t_log_softmax(t, dim)
                                                                     : apl_t_cumsum(t, dim);
    apl_lua_pushtensor(L, r, fname);
    return 1;
}

/* Pushes values and 1-based indices from a topk/sort call. */
static int push_pair(lua_State *L, apl_status st, apl_tensor *values, apl_tensor *indices,
                     const char *fname)
{
    apl_lua_check(L, st, fname);
    apl_lua_pushtensor(L, values, fname);
    apl_lua_pushtensor(L, one_based(indices), fname);
    return 2;
}

/* topk(k[, dim = -1[, largest = true]]) -> values, indices */
static int l_tensor_topk(lua_State *L)
{
    const char *fname = MOD "topk";
    apl_tensor *t = apl_lua_checktensor(L, 1), *v = NULL, *i = NULL;
    lua_Integer k = luaL_checkinteger(L, 2);
    int64_t dim = check_dim(L, luaL_optinteger(L, 3, -1), apl_t_ndim(t), fname);
    int largest = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
    if (k < 0 || k > apl_t_size(t, dim))
        apl_lua_error(L, fname, "k = %lld out of range for dim %lld of size %lld", (long long)k,
                      (long long)dim + 1, (long long)apl_t_size(t, dim));
    apl_status st = apl_t_topk(t, k, dim, largest, &v, &i);
    return push_pair(L, st, v, i, fname);
}

/* sort([dim = -1[, descending = false]]) -> values, indices */
static int l_tensor_sort(lua_State *L)
{
    const char *fname = MOD "sort";
    apl_tensor *t = apl_lua_checktensor(L, 1), *v = NULL, *i = NULL;
    int64_t dim = check_dim(L, luaL_optinteger(L, 2, -1), apl_t_ndim(t), fname);
    apl_status st = apl_t_sort(t, dim, lua_toboolean(L, 3), &v, &i);
    return push_pair(L, st, v, i, fname);
}

/* ------------------------------------------------------------------------------------------ */
/* Copies and conversions */

static int l_tensor_clone(lua_State *L)
{
    apl_lua_pushtensor(L, apl_t_clone(apl_lua_checktensor(L, 1)), MOD "clone");
    return 1;
}

static int l_tensor_contiguous(lua_State *L)
{
    apl_lua_pushtensor_ref(L, apl_t_contiguous(apl_lua_checktensor(L, 1)), 1, MOD "contiguous");
    return 1;
}

static int l_tensor_detach(lua_State *L)
{
    apl_lua_pushtensor_ref(L, apl_t_detach(apl_lua_checktensor(L, 1)), 1, MOD "detach");
    return 1;
}

/* to("bf16"), to("cuda"), to{dtype=, device=}: a new tensor (shares storage when nothing changes,
 * like torch's .to). */
static int l_tensor_to(lua_State *L)
{
    const char *fname = MOD "to";
    apl_tensor *t = apl_lua_checktensor(L, 1);
    apl_dtype dt = apl_t_dtype(t);
    apl_device dev = apl_t_device(t);
    if (lua_type(L, 2) == LUA_TSTRING) {
        apl_lua_to_target(L, lua_tostring(L, 2), 0, &dt, &dev, fname);
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        read_opts(L, 2, &dt, &dev, fname);
    }
    apl_lua_pushtensor_ref(L, apl_t_to(t, dt, dev), 1, fname);
    return 1;
}

/* t:float(), t:long(), ...: t:to(<upvalue>) */
static int l_tensor_to_named(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    return l_tensor_to(L);
}

/* ------------------------------------------------------------------------------------------ */
/* Library state: grad mode, CUDA (the seed and threads are apl.core.sys's: see luaopen_apl_tensor) */

/* no_grad(fn, ...) runs fn(...) with grad disabled, restores the mode even when fn raises, and
 * returns fn's results. */
static int l_tensor_no_grad(lua_State *L)
{
    luaL_checkany(L, 1);
    int prev = apl_set_grad_enabled(0);
    int st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    apl_set_grad_enabled(prev);
    if (st != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int l_tensor_is_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, apl_grad_enabled());
    return 1;
}

static int l_tensor_cuda_available(lua_State *L)
{
    lua_pushboolean(L, apl_cuda_available());
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Registration */

typedef struct { const char *name; int op; } op_entry;

static const op_entry unary_ops[] = {
    {"neg", APL_NEG}, {"exp", APL_EXP}, {"log", APL_LOG}, {"sigmoid", APL_SIGMOID},
    {"logsigmoid", APL_LOGSIGMOID}, {"tanh", APL_TANH}, {"relu", APL_RELU}, {"gelu", APL_GELU},
    {"gelu_tanh", APL_GELU_TANH}, {"silu", APL_SILU}, {"sqrt", APL_SQRT}, {"rsqrt", APL_RSQRT},
    {"abs", APL_ABS}, {"logical_not", APL_NOT}, {"floor", APL_FLOOR}, {"square", APL_SQUARE},
    {"__unm", APL_NEG}, {NULL, 0},
};

static const op_entry binary_ops[] = {
    {"add", APL_ADD}, {"sub", APL_SUB}, {"mul", APL_MUL}, {"div", APL_DIV}, {"pow", APL_POW},
    {"maximum", APL_MAXIMUM}, {"minimum", APL_MINIMUM}, {"eq", APL_EQ}, {"ne", APL_NE},
    {"lt", APL_LT}, {"le", APL_LE}, {"gt", APL_GT}, {"ge", APL_GE}, {"logical_and", APL_AND},
    {"logical_or", APL_OR}, {"__add", APL_ADD}, {"__sub", APL_SUB}, {"__mul", APL_MUL},
    {"__div", APL_DIV}, {"__pow", APL_POW}, {NULL, 0},
};

static const op_entry reduce_ops[] = {
    {"sum", APL_SUM}, {"mean", APL_MEAN}, {"prod", APL_PROD}, {"logsumexp", APL_LOGSUMEXP},
    {"argmax", APL_ARGMAX}, {"argmin", APL_ARGMIN}, {NULL, 0},
};

static const op_entry fill_ops[] = {
    {"zeros", FILL_ZEROS}, {"ones", FILL_ONES}, {"full", FILL_FULL}, {"randn", FILL_RANDN},
    {"rand", FILL_RAND}, {NULL, 0},
};

/* Sets t[name] = fn closed over (op, "apl.tensor.<name>"), for each entry; the error name drops
 * the metamethod underscores (__add reports as apl.tensor.add). */
static void set_op_closures(lua_State *L, int t, const op_entry *ops, lua_CFunction fn)
{
    t = lua_absindex(L, t);
    for (; ops->name; ops++) {
        const char *bare = strncmp(ops->name, "__", 2) == 0 ? ops->name + 2 : ops->name;
        lua_pushinteger(L, ops->op);
        lua_pushfstring(L, MOD "%s", bare);
        lua_pushcclosure(L, fn, 2);
        lua_setfield(L, t, ops->name);
    }
}

static const op_entry reshape_ops[] = {{"reshape", 0}, {"view", 1}, {NULL, 0}};
static const op_entry extreme_ops[] = {{"max", 1}, {"min", 0}, {NULL, 0}};
static const op_entry along_ops[] = {{"softmax", 0}, {"log_softmax", 1}, {"cumsum", 2}, {NULL, 0}};
static const op_entry join_ops[] = {{"cat", 0}, {"stack", 1}, {NULL, 0}};

static const luaL_Reg methods[] = {
    {"free", l_tensor_free}, {"shape", l_tensor_shape}, {"size", l_tensor_size},
    {"dim", l_tensor_dim}, {"numel", l_tensor_numel}, {"dtype", l_tensor_dtype},
    {"device", l_tensor_device}, {"item", l_tensor_item}, {"totable", l_tensor_totable},
    {"expand", l_tensor_expand}, {"transpose", l_tensor_transpose}, {"permute", l_tensor_permute},
    {"narrow", l_tensor_narrow}, {"select", l_tensor_select}, {"index", l_tensor_index},
    {"unsqueeze", l_tensor_unsqueeze}, {"squeeze", l_tensor_squeeze}, {"fill_", l_tensor_fill_},
    {"copy_", l_tensor_copy_}, {"matmul", l_tensor_matmul}, {"masked_fill", l_tensor_masked_fill},
    {"clamp", l_tensor_clamp}, {"topk", l_tensor_topk}, {"sort", l_tensor_sort},
    {"clone", l_tensor_clone}, {"contiguous", l_tensor_contiguous}, {"detach", l_tensor_detach},
    {"to", l_tensor_to}, {NULL, NULL},
};

static const luaL_Reg metamethods[] = {
    {"__gc", l_tensor_free}, {"__close", l_tensor_free}, {"__tostring", l_tensor_tostring},
    {"__len", l_tensor_len}, {"__newindex", l_tensor_newindex}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"new", l_tensor_new}, {"arange", l_tensor_arange}, {"is_tensor", l_tensor_is_tensor},
    {"where", l_tensor_where}, {"no_grad", l_tensor_no_grad},
    {"is_grad_enabled", l_tensor_is_grad_enabled},
    {"cuda_available", l_tensor_cuda_available}, {NULL, NULL},
};

/* t:float() is t:to("f32"), and so on. */
static const struct { const char *method, *target; } conversions[] = {
    {"float", "f32"}, {"double", "f64"}, {"half", "f16"}, {"bfloat16", "bf16"}, {"long", "i64"},
    {"int", "i32"}, {"byte", "u8"}, {"bool", "bool"}, {"cpu", "cpu"}, {"cuda", "cuda"}, {NULL, NULL},
};

/* The methods table, at the stack top. */
static void push_methods(lua_State *L)
{
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    set_op_closures(L, -1, unary_ops, l_tensor_unary);
    set_op_closures(L, -1, binary_ops, l_tensor_binary);
    set_op_closures(L, -1, reduce_ops, l_tensor_reduce);
    set_op_closures(L, -1, reshape_ops, l_tensor_reshape_view);
    set_op_closures(L, -1, extreme_ops, l_tensor_extreme);
    set_op_closures(L, -1, along_ops, l_tensor_along);
    for (int i = 0; conversions[i].method; i++) {
        lua_pushstring(L, conversions[i].target);
        lua_pushcclosure(L, l_tensor_to_named, 1);
        lua_setfield(L, -2, conversions[i].method);
    }
}

int luaopen_apl_tensor(lua_State *L)
{
    luaL_newmetatable(L, APL_TENSOR_MT);
    push_methods(L);
    /* Metamethods come from the methods table (__add, __unm ... live there), then move over. */
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *k = lua_tostring(L, -2);
        if (strncmp(k, "__", 2) == 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_tensor_index_mm, 1);
    lua_setfield(L, -3, "__index");
    lua_setfield(L, -2, "methods");
    luaL_setfuncs(L, metamethods, 0);
    lua_pop(L, 1);

    luaL_newlib(L, functions);
    set_op_closures(L, -1, fill_ops, l_tensor_fill_new);
    set_op_closures(L, -1, join_ops, l_tensor_join);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_tensor_call);
    lua_setfield(L, -2, "__call");
    lua_setmetatable(L, -2);
    /* The seed and the thread count have one home, apl.core.sys (lsys.c, with the bounds);
     * apl.tensor.manual_seed and friends are the same functions. */
    static const char *const from_sys[] = {"manual_seed", "set_num_threads", "get_num_threads", NULL};
    luaL_requiref(L, "apl.core.sys", luaopen_apl_core_sys, 0);
    for (int i = 0; from_sys[i]; i++) {
        lua_getfield(L, -1, from_sys[i]);
        lua_setfield(L, -3, from_sys[i]);
    }
    lua_pop(L, 1);
    return 1;
}
