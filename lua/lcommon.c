/* lcommon.c — error raising, tensor userdata, option tables and dtype/device names: what all the
 * bindings share, written once. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apl_lua.h"

int apl_lua_error(lua_State *L, const char *fname, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!fname) return luaL_error(L, "%s", msg);
    return luaL_error(L, "%s: %s", fname, msg);
}

void apl_lua_check(lua_State *L, apl_status st, const char *fname)
{
    if (st != APL_OK) apl_lua_error(L, fname, "%s", apl_last_error());
}

/* ------------------------------------------------------------------------------------------ */
/* Tensor userdata (the metatable itself is made by luaopen_apl_tensor in ltensor.c) */

void apl_lua_pushtensor_ref(lua_State *L, apl_tensor *t, int base, const char *fname)
{
    if (!t) apl_lua_error(L, fname, "%s", apl_last_error());
    base = lua_absindex(L, base);
    /* The box is created empty first; if the allocation raises, t is not yet owned by anything,
     * so a leak of one handle on out-of-memory is the worst case, never a double free. */
    apl_tensor_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->t = NULL;
    luaL_setmetatable(L, APL_TENSOR_MT);
    b->t = t;
    if (base) {
        lua_pushvalue(L, base);
        lua_setiuservalue(L, -2, 1);
    }
    /* Lua's collector sees a tensor as a few bytes; charging its real size as GC debt gets
     * dropped tensors collected at the pace of their memory (without it, 2000 dropped 4 MB
     * tensors grew RSS by 4 GB before a collection). Views are charged too: that only makes
     * collection a little eager. */
    size_t kb = (size_t)apl_t_numel(t) * apl_dtype_size(apl_t_dtype(t)) / 1024;
    lua_gc(L, LUA_GCSTEP, kb < 1 ? 1 : kb > INT_MAX ? INT_MAX : (int)kb);
}

void apl_lua_pushtensor(lua_State *L, apl_tensor *t, const char *fname)
{
    apl_lua_pushtensor_ref(L, t, 0, fname);
}

apl_tensor *apl_lua_totensor(lua_State *L, int idx)
{
    apl_tensor_box *b = luaL_testudata(L, idx, APL_TENSOR_MT);
    return b ? b->t : NULL;
}

apl_tensor *apl_lua_checktensor(lua_State *L, int idx)
{
    apl_tensor_box *b = luaL_checkudata(L, idx, APL_TENSOR_MT);
    if (!b->t) luaL_argerror(L, idx, "tensor was freed");
    return b->t;
}

/* ------------------------------------------------------------------------------------------ */
/* Option tables */

/* Pushes field k of the options at idx and returns 1, or pushes nothing and returns 0 when it is
 * absent (nil, or no options at all). Options that are not a table are an error, not ignored. */
static int push_field(lua_State *L, int idx, const char *k, const char *fname)
{
    if (lua_isnoneornil(L, idx)) return 0;
    if (!lua_istable(L, idx))
        apl_lua_error(L, fname, "options must be a table, got %s", luaL_typename(L, idx));
    if (lua_getfield(L, idx, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    return 1;
}

static int type_error(lua_State *L, const char *fname, const char *k, const char *want)
{
    return apl_lua_error(L, fname, "option '%s' must be %s, got %s", k, want, luaL_typename(L, -1));
}

lua_Integer apl_lua_opt_int(lua_State *L, int idx, const char *k, lua_Integer def, const char *fname)
{
    idx = lua_absindex(L, idx);
    if (!push_field(L, idx, k, fname)) return def;
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) type_error(L, fname, k, "an integer");
    lua_pop(L, 1);
    return v;
}

lua_Number apl_lua_opt_num(lua_State *L, int idx, const char *k, lua_Number def, const char *fname)
{
    idx = lua_absindex(L, idx);
    if (!push_field(L, idx, k, fname)) return def;
    int ok;
    lua_Number v = lua_tonumberx(L, -1, &ok);
    if (!ok) type_error(L, fname, k, "a number");
    lua_pop(L, 1);
    return v;
}

/* The string stays valid while the option table holds it. */
const char *apl_lua_opt_str(lua_State *L, int idx, const char *k, const char *def, const char *fname)
{
    idx = lua_absindex(L, idx);
    if (!push_field(L, idx, k, fname)) return def;
    if (lua_type(L, -1) != LUA_TSTRING) type_error(L, fname, k, "a string");
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 1);
    return s;
}

int apl_lua_opt_bool(lua_State *L, int idx, const char *k, int def, const char *fname)
{
    idx = lua_absindex(L, idx);
    if (!push_field(L, idx, k, fname)) return def;
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

int apl_lua_opt_enum(lua_State *L, int idx, const char *k, const char *const names[], int def,
                     const char *fname)
{
    const char *s = apl_lua_opt_str(L, idx, k, NULL, fname);
    if (!s) return def;
    char list[256] = "";
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], s) == 0) return i;
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s\"%s\"", !i ? "" : names[i + 1] ? ", " : " or ", names[i]);
    }
    return apl_lua_error(L, fname, "option '%s' must be %s, got \"%s\"", k, list, s);
}

/* ------------------------------------------------------------------------------------------ */
/* dtypes and devices */

/* torch's names for the shim's dtypes (apl_dtype_from_name knows "f32", "i64", "bool", ...) */
static const struct { const char *alias, *name; } dtype_aliases[] = {
    {"float32", "f32"}, {"float", "f32"}, {"float16", "f16"}, {"half", "f16"},
    {"bfloat16", "bf16"}, {"float64", "f64"}, {"double", "f64"}, {"int64", "i64"},
    {"long", "i64"}, {"int32", "i32"}, {"int", "i32"}, {"uint8", "u8"}, {NULL, NULL},
};

int apl_lua_parse_dtype(const char *s, apl_dtype *out)
{
    for (int i = 0; dtype_aliases[i].alias; i++)
        if (strcmp(s, dtype_aliases[i].alias) == 0) s = dtype_aliases[i].name;
    return apl_dtype_from_name(s, out);
}

static int is_float(apl_dtype dt) { return dt == APL_F32 || dt == APL_F16 || dt == APL_BF16 || dt == APL_F64; }

apl_dtype apl_lua_check_dtype(lua_State *L, const char *s, int float_only, const char *fname)
{
    static const char floats[] = "f32, f16, bf16, f64";
    apl_dtype dt;
    if (!apl_lua_parse_dtype(s, &dt))
        apl_lua_error(L, fname, "unknown dtype '%s' (%s%s)", s, floats, float_only ? "" : ", i64, i32, u8, bool");
    if (float_only && !is_float(dt)) apl_lua_error(L, fname, "dtype '%s' is not a float type (%s)", s, floats);
    return dt;
}

/* "cuda" alone is this process's GPU: cuda:LOCAL_RANK when it is one rank of several (apl.dist;
 * Slurm's SLURM_LOCALID when that is what is set), as torch.cuda.set_device(local_rank) makes
 * it in PyTorch scripts; cuda:0 in a single process. */
static int own_cuda_index(void)
{
    const char *world = getenv("WORLD_SIZE") ? getenv("WORLD_SIZE") : getenv("SLURM_NTASKS");
    const char *local = getenv("LOCAL_RANK") ? getenv("LOCAL_RANK") : getenv("SLURM_LOCALID");
    if (!world || atoi(world) <= 1 || !local) return 0;
    return atoi(local) > 0 ? atoi(local) : 0;
}

int apl_lua_parse_device(lua_State *L, const char *s, apl_device *out, const char *fname)
{
    int k = 0, n = 0;
    if (strcmp(s, "cpu") == 0) {
        *out = APL_CPU;
        return 1;
    }
    if (strcmp(s, "cuda") != 0 && !(sscanf(s, "cuda:%d%n", &k, &n) == 1 && s[n] == 0 && k >= 0))
        return 0;
    if (!apl_cuda_available()) apl_lua_error(L, fname, "CUDA is not available in this libtorch build");
    if (strcmp(s, "cuda") == 0) k = own_cuda_index();
    if (k >= apl_cuda_device_count())
        apl_lua_error(L, fname, "device '%s' (cuda:%d): only %d CUDA device(s)", s, k, apl_cuda_device_count());
    *out = k;
    return 1;
}

apl_device apl_lua_check_device(lua_State *L, const char *s, const char *fname)
{
    apl_device dev;
    if (!apl_lua_parse_device(L, s, &dev, fname))
        apl_lua_error(L, fname, "unknown device '%s' (cpu, cuda, cuda:N)", s);
    return dev;
}

void apl_lua_to_target(lua_State *L, const char *s, int float_only, apl_dtype *dt, apl_device *dev,
                       const char *fname)
{
    apl_dtype d;
    if (apl_lua_parse_dtype(s, &d)) *dt = apl_lua_check_dtype(L, s, float_only, fname);
    else if (!apl_lua_parse_device(L, s, dev, fname))
        apl_lua_error(L, fname, "'%s' is neither a dtype nor a device", s);
}

void apl_lua_pushdevice(lua_State *L, apl_device dev)
{
    if (dev == APL_CPU) lua_pushliteral(L, "cpu");
    else lua_pushfstring(L, "cuda:%d", dev);
}
