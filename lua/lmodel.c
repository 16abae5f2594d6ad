/* lmodel.c — apl.core.model: causal LMs (metatable "apl.Model") and their KV caches
 * ("apl.KVCache"). lua/apl/model.lua is the face recipes use; it adds option tables on top.
 *
 *   local core = require "apl.core.model"
 *   local m = core.load("gpt2/", "f32", "cpu")
 *   local logits = m:_forward(ids, mask, cache)   -- ids (B, T) i64 tensor; mask, cache or nil
 *
 * Ownership. A model box owns its apl_model; :free(), __gc and __close are one function, safe
 * twice. Tensors handed out by :parameters() share the parameters' storage and hold the model as
 * their user value; a cache holds its model the same way.
 */
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "apl_lua.h"
#include "lora.h"
#include "model.h"
#include "safetensors.h"

#define MODEL_MT "apl.Model"
#define CACHE_MT "apl.KVCache"

typedef struct { apl_model *m; } model_box;
typedef struct { apl_kv_cache *c; } cache_box;

apl_model *apl_lua_checkmodel(lua_State *L, int idx)
{
    model_box *b = luaL_checkudata(L, idx, MODEL_MT);
    if (!b->m) luaL_argerror(L, idx, "model was freed");
    /* a reference view reads its model's weights: it dies with them */
    if (apl_model_is_view(b->m) && lua_getiuservalue(L, idx, 1) == LUA_TUSERDATA) {
        int gone = ((model_box *)lua_touserdata(L, -1))->m == NULL;
        lua_pop(L, 1);
        if (gone) luaL_argerror(L, idx, "the model this reference views was freed");
        if (apl_model_is_stale(b->m))
            luaL_argerror(L, idx, "stale reference: its model was moved or its adapters changed since"
                          " (take a new reference)");
    }
    return b->m;
}

static apl_kv_cache *check_cache(lua_State *L, int idx)
{
    cache_box *b = luaL_checkudata(L, idx, CACHE_MT);
    if (!b->c) luaL_argerror(L, idx, "cache was freed");
    return b->c;
}

/* The box is made empty first, so that an error while opening leaves nothing dangling. */
static model_box *new_model_box(lua_State *L)
{
    model_box *b = lua_newuserdatauv(L, sizeof *b, 1); /* a view's user value: its model */
    b->m = NULL;
    luaL_setmetatable(L, MODEL_MT);
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Lua tables <-> JSON, for configs */

static cJSON *to_json(lua_State *L, int idx, int depth, const char *fname)
{
    idx = lua_absindex(L, idx);
    if (depth > 32) apl_lua_error(L, fname, "config nests too deeply");
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: return cJSON_CreateNumber(lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: break;
    default: apl_lua_error(L, fname, "config values must be tables, strings, numbers or booleans");
    }
    lua_Unsigned n = lua_rawlen(L, idx);
    cJSON *o = n > 0 ? cJSON_CreateArray() : cJSON_CreateObject();
    if (n > 0) {
        for (lua_Unsigned i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (lua_Integer)i);
            cJSON_AddItemToArray(o, to_json(L, -1, depth + 1, fname));
            lua_pop(L, 1);
        }
        return o;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING)
            cJSON_AddItemToObject(o, lua_tostring(L, -2), to_json(L, -1, depth + 1, fname));
        lua_pop(L, 1);
    }
    return o;
}

static void push_json(lua_State *L, const cJSON *j)
{
    if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
    else if (cJSON_IsNumber(j) && j->valuedouble == (double)(lua_Integer)j->valuedouble)
        lua_pushinteger(L, (lua_Integer)j->valuedouble);
    else if (cJSON_IsNumber(j)) lua_pushnumber(L, j->valuedouble);
    else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
    else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        lua_newtable(L);
        int i = 1;
        const cJSON *c;
        cJSON_ArrayForEach(c, j) {
            push_json(L, c);
            if (cJSON_IsArray(j)) lua_rawseti(L, -2, i++);
            else lua_setfield(L, -2, c->string);
        }
    } else lua_pushnil(L); /* JSON null: the key is absent in Lua */
}

/* ------------------------------------------------------------------------------------------ */
/* Module functions */

/* core.load(dir, dtype, device) */
static int l_model_load(lua_State *L)
{
    const char *fname = "apl.model.load";
    const char *dir = luaL_checkstring(L, 1);
    apl_dtype dt = apl_lua_check_dtype(L, luaL_optstring(L, 2, "f32"), 1, fname);
    apl_device dev = apl_lua_check_device(L, luaL_optstring(L, 3, "cpu"), fname);
    model_box *b = new_model_box(L);
    apl_lua_check(L, apl_model_load(dir, dt, dev, &b->m), fname);
    return 1;
}

/* core.init(config (table or JSON text), seed, dtype, device) */
static int l_model_init(lua_State *L)
{
    const char *fname = "apl.model.init";
    lua_Integer seed = luaL_optinteger(L, 2, 0);
    apl_dtype dt = apl_lua_check_dtype(L, luaL_optstring(L, 3, "f32"), 1, fname);
    apl_device dev = apl_lua_check_device(L, luaL_optstring(L, 4, "cpu"), fname);
    if (lua_type(L, 1) == LUA_TTABLE) {
        cJSON *j = to_json(L, 1, 0, fname);
        char *txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        if (!txt) return apl_lua_error(L, fname, "out of memory");
        lua_pushstring(L, txt);
        cJSON_free(txt);
        lua_replace(L, 1);
    }
    const char *json = luaL_checkstring(L, 1);
    model_box *b = new_model_box(L);
    apl_lua_check(L, apl_model_init(json, (uint64_t)seed, dt, dev, &b->m), fname);
    return 1;
}

/* core.save_tensors(path, {name = tensor, ...}): a safetensors file, keys in sorted order */
static int l_model_save_tensors(lua_State *L)
{
    const char *fname = "apl.model.save_tensors";
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        if (lua_type(L, -2) != LUA_TSTRING || !apl_lua_totensor(L, -1))
            return apl_lua_error(L, fname, "expects a table of name = tensor");
        n++;
        lua_pop(L, 1);
    }
    const char **names = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *names, 0);
    apl_tensor **ts = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ts, 0);
    int i = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        names[i] = lua_tostring(L, -2); /* the table keeps the key alive */
        ts[i++] = apl_lua_totensor(L, -1);
        lua_pop(L, 1);
    }
    apl_lua_check(L, apl_st_write(path, names, ts, n), fname);
    return 0;
}

/* core.load_tensors(path) -> {name = tensor}: copy-on-write views of the file */
static int l_model_load_tensors(lua_State *L)
{
    const char *fname = "apl.model.load_tensors";
    apl_st *st;
    apl_lua_check(L, apl_st_open(luaL_checkstring(L, 1), &st), fname);
    lua_createtable(L, 0, apl_st_count(st));
    for (int i = 0; i < apl_st_count(st); i++) {
        const apl_st_info *e = apl_st_at(st, i);
        apl_tensor *t;
        if (apl_st_tensor(st, e, &t) != APL_OK) {
            apl_st_close(st);
            return apl_lua_error(L, fname, "%s", apl_last_error());
        }
        lua_pushstring(L, e->name);
        apl_lua_pushtensor(L, t, fname);
        lua_settable(L, -3);
    }
    apl_st_close(st);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Model methods */

static int l_model_free(lua_State *L)
{
    model_box *b = luaL_checkudata(L, 1, MODEL_MT);
    apl_model_free(b->m);
    b->m = NULL;
    return 0;
}

/* m:_forward(ids, mask|nil, cache|nil) -> logits (B, T, V) */
static int l_model_forward(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_tensor *ids = apl_lua_checktensor(L, 2);
    apl_tensor *mask = lua_isnoneornil(L, 3) ? NULL : apl_lua_checktensor(L, 3);
    apl_kv_cache *c = lua_isnoneornil(L, 4) ? NULL : check_cache(L, 4);
    apl_tensor *logits;
    apl_lua_check(L, apl_model_forward(m, ids, mask, c, &logits), "apl.model.forward");
    apl_lua_pushtensor(L, logits, "apl.model.forward");
    return 1;
}

static int l_model_save(lua_State *L)
{
    apl_lua_check(L, apl_model_save(apl_lua_checkmodel(L, 1), luaL_checkstring(L, 2)), "apl.model.save");
    return 0;
}

/* m:parameters() -> { {name = "transformer.wte.weight", tensor = <apl.Tensor>}, ... } */
static int l_model_parameters(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    int n = apl_model_num_tensors(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, apl_model_tensor_name(m, i));
        lua_setfield(L, -2, "name");
        apl_lua_pushtensor_ref(L, apl_t_share(apl_model_tensor(m, i)), 1, "apl.model.parameters");
        lua_setfield(L, -2, "tensor");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_model_config(lua_State *L)
{
    cJSON *j = cJSON_Parse(apl_model_config_json(apl_lua_checkmodel(L, 1)));
    push_json(L, j);
    cJSON_Delete(j);
    return 1;
}

static int l_model_num_params(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)apl_model_num_params(apl_lua_checkmodel(L, 1)));
    return 1;
}

/* m:to("f16") or m:to("cuda") — one dtype or device name; returns m */
static int l_model_to(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    const char *s = luaL_checkstring(L, 2);
    apl_dtype dt = apl_model_dtype(m);
    apl_device dev = apl_model_device(m);
    apl_lua_to_target(L, s, 1, &dt, &dev, "apl.model.to");
    apl_lua_check(L, apl_model_to(m, dt, dev), "apl.model.to");
    lua_settop(L, 1);
    return 1;
}

static int l_model_clone(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    model_box *b = new_model_box(L);
    apl_lua_check(L, apl_model_clone(m, &b->m), "apl.model.clone");
    return 1;
}

static int l_model_copy_from(lua_State *L)
{
    apl_lua_check(L, apl_model_copy_from(apl_lua_checkmodel(L, 1), apl_lua_checkmodel(L, 2)), "apl.model.copy_from");
    lua_settop(L, 1);
    return 1;
}

/* m:info() -> {model_type, vocab_size, max_positions, eos_id, dtype, device, source} */
static int l_model_info(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, apl_model_type(m));
    lua_setfield(L, -2, "model_type");
    lua_pushinteger(L, (lua_Integer)apl_model_vocab_size(m));
    lua_setfield(L, -2, "vocab_size");
    lua_pushinteger(L, (lua_Integer)apl_model_max_positions(m));
    lua_setfield(L, -2, "max_positions");
    if (apl_model_eos_id(m) >= 0) {
        lua_pushinteger(L, (lua_Integer)apl_model_eos_id(m));
        lua_setfield(L, -2, "eos_id");
    }
    lua_pushstring(L, apl_dtype_name(apl_model_dtype(m)));
    lua_setfield(L, -2, "dtype");
    lua_pushstring(L, apl_model_source(m)); /* nil for a model made in memory */
    lua_setfield(L, -2, "source");
    apl_lua_pushdevice(L, apl_model_device(m));
    lua_setfield(L, -2, "device");
    return 1;
}

static int l_model_kv_cache(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    lua_Integer batch = luaL_checkinteger(L, 2), max_len = luaL_checkinteger(L, 3);
    cache_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->c = NULL;
    luaL_setmetatable(L, CACHE_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    apl_lua_check(L, apl_kv_cache_new(m, batch, max_len, &b->c), "apl.model.kv_cache");
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* θ0 and LoRA adapters (lora.h); lua/apl/lora.lua is their face */

/* m:reference() -> a read-only view of θ0 (model.h), holding m */
static int l_model_reference(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    model_box *b = new_model_box(L);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    apl_lua_check(L, apl_model_reference(m, &b->m), "apl.model.reference");
    return 1;
}

/* ref:is_reference_of(m) -> whether ref is m's θ0 view */
static int l_model_is_reference_of(lua_State *L)
{
    lua_pushboolean(L, apl_model_is_reference_of(apl_lua_checkmodel(L, 1), apl_lua_checkmodel(L, 2)));
    return 1;
}

static int l_model_reset(lua_State *L)
{
    apl_lua_check(L, apl_model_reset(apl_lua_checkmodel(L, 1)), "apl.model.reset");
    lua_settop(L, 1);
    return 1;
}

/* m:_lora_attach(r, alpha, dropout, seed, targets or nil); lora.lua checks the options */
static int l_model_lora_attach(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    apl_lora_opts o = {.r = luaL_checkinteger(L, 2), .alpha = luaL_checknumber(L, 3),
                       .dropout = luaL_checknumber(L, 4), .seed = (uint64_t)luaL_checkinteger(L, 5)};
    if (!lua_isnil(L, 6)) {
        luaL_checktype(L, 6, LUA_TTABLE);
        o.n_targets = (int)lua_rawlen(L, 6);
        const char **t = lua_newuserdatauv(L, (size_t)(o.n_targets + 1) * sizeof *t, 0);
        for (int i = 0; i < o.n_targets; i++) {
            lua_rawgeti(L, 6, i + 1);
            t[i] = lua_tostring(L, -1); /* the table keeps it alive */
            lua_pop(L, 1);
            if (!t[i]) return apl_lua_error(L, "apl.lora.attach", "targets[%d] is not a string", i + 1);
        }
        o.targets = t;
    }
    apl_lua_check(L, apl_lora_attach(m, &o), "apl.lora.attach");
    return 0;
}

/* m:adapters() -> on; m:adapters(on) -> m */
static int l_model_adapters(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    if (lua_isnone(L, 2)) {
        lua_pushboolean(L, apl_lora_enabled(m));
        return 1;
    }
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    apl_lua_check(L, apl_lora_set_enabled(m, lua_toboolean(L, 2)), "apl.model.adapters");
    lua_settop(L, 1);
    return 1;
}

/* m:lora() -> nil, or {r, alpha, dropout, seed, targets, adapters = { {module, A, B}, ... }} with
 * A and B sharing the adapters' storage */
static int l_model_lora(lua_State *L)
{
    apl_model *m = apl_lua_checkmodel(L, 1);
    const apl_lora_opts *o = apl_lora_options(m);
    if (!o) return lua_pushnil(L), 1;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)o->r);
    lua_setfield(L, -2, "r");
    lua_pushnumber(L, o->alpha);
    lua_setfield(L, -2, "alpha");
    lua_pushnumber(L, o->dropout);
    lua_setfield(L, -2, "dropout");
    lua_pushinteger(L, (lua_Integer)o->seed);
    lua_setfield(L, -2, "seed");
    lua_createtable(L, o->n_targets, 0);
    for (int i = 0; i < o->n_targets; i++) {
        lua_pushstring(L, o->targets[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "targets");
    int n = apl_lora_count(m);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        const char *module;
        apl_tensor *a, *b;
        apl_lua_check(L, apl_lora_tensor(m, i, &module, &a, &b), "apl.model.lora");
        lua_createtable(L, 0, 3);
        lua_pushstring(L, module);
        lua_setfield(L, -2, "module");
        apl_lua_pushtensor_ref(L, apl_t_share(a), 1, "apl.model.lora");
        lua_setfield(L, -2, "A");
        apl_lua_pushtensor_ref(L, apl_t_share(b), 1, "apl.model.lora");
        lua_setfield(L, -2, "B");
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "adapters");
    return 1;
}

static int l_model_merge_adapter(lua_State *L)
{
    apl_lua_check(L, apl_lora_merge(apl_lua_checkmodel(L, 1)), "apl.model.merge_adapter");
    lua_settop(L, 1);
    return 1;
}

static int l_model_detach_adapter(lua_State *L)
{
    apl_lora_detach(apl_lua_checkmodel(L, 1));
    lua_settop(L, 1);
    return 1;
}

/* m:lora_default_targets() -> PEFT's target_modules for the family */
static int l_model_lora_default_targets(lua_State *L)
{
    const char *const *t = apl_lora_default_targets(apl_lua_checkmodel(L, 1));
    lua_newtable(L);
    for (int i = 0; t[i]; i++) {
        lua_pushstring(L, t[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_model_tostring(lua_State *L)
{
    model_box *b = luaL_checkudata(L, 1, MODEL_MT);
    if (!b->m) return lua_pushliteral(L, "apl.Model (freed)"), 1;
    const apl_lora_opts *o = apl_lora_options(b->m);
    lua_pushfstring(L, "apl.Model(%s, %I params, %s", apl_model_type(b->m),
                    (lua_Integer)apl_model_num_params(b->m), apl_dtype_name(apl_model_dtype(b->m)));
    if (apl_model_is_view(b->m)) lua_pushliteral(L, ", θ0 reference)");
    else if (o) lua_pushfstring(L, ", LoRA r=%I on %d modules, %s)", (lua_Integer)o->r,
                                apl_lora_count(b->m), apl_lora_enabled(b->m) ? "on" : "off");
    else lua_pushliteral(L, ")");
    lua_concat(L, 2);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* KV cache methods */

static int l_cache_free(lua_State *L)
{
    cache_box *b = luaL_checkudata(L, 1, CACHE_MT);
    apl_kv_cache_free(b->c);
    b->c = NULL;
    return 0;
}

static int l_cache_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)apl_kv_cache_len(check_cache(L, 1)));
    return 1;
}

static int l_cache_reset(lua_State *L)
{
    apl_kv_cache_reset(check_cache(L, 1));
    return 0;
}

/* cache:select_rows(rows): rows a 1-based Lua list or a 0-based i64 tensor, like index_select */
static int l_cache_select_rows(lua_State *L)
{
    apl_kv_cache *c = check_cache(L, 1);
    apl_tensor *rows;
    if (lua_istable(L, 2)) {
        int64_t n = (int64_t)lua_rawlen(L, 2);
        int64_t *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
        for (int64_t i = 0; i < n; i++) {
            lua_rawgeti(L, 2, i + 1);
            v[i] = (int64_t)luaL_checkinteger(L, -1) - 1;
            lua_pop(L, 1);
        }
        rows = apl_t_from_data(v, &n, 1, APL_I64);
    } else {
        rows = apl_t_share(apl_lua_checktensor(L, 2));
    }
    if (!rows) return apl_lua_error(L, "apl.model.select_rows", "%s", apl_last_error());
    apl_status st = apl_kv_cache_select_rows(c, rows);
    apl_t_free(rows);
    apl_lua_check(L, st, "apl.model.select_rows");
    return 0;
}

static const luaL_Reg model_methods[] = {
    {"_forward", l_model_forward}, {"save", l_model_save}, {"parameters", l_model_parameters},
    {"config", l_model_config},    {"num_params", l_model_num_params}, {"to", l_model_to},
    {"clone", l_model_clone},      {"copy_from", l_model_copy_from}, {"info", l_model_info},
    {"kv_cache", l_model_kv_cache}, {"free", l_model_free},
    {"reference", l_model_reference}, {"reset", l_model_reset},
    {"is_reference_of", l_model_is_reference_of},
    {"_lora_attach", l_model_lora_attach}, {"adapters", l_model_adapters}, {"lora", l_model_lora},
    {"merge_adapter", l_model_merge_adapter}, {"detach_adapter", l_model_detach_adapter},
    {"lora_default_targets", l_model_lora_default_targets}, {NULL, NULL},
};

static const luaL_Reg cache_methods[] = {
    {"len", l_cache_len}, {"reset", l_cache_reset}, {"select_rows", l_cache_select_rows},
    {"free", l_cache_free}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"load", l_model_load}, {"init", l_model_init}, {"save_tensors", l_model_save_tensors},
    {"load_tensors", l_model_load_tensors}, {NULL, NULL},
};

/* A metatable whose __index is its method table, with __gc/__close = free; leaves the methods
 * table on the stack. */
static void new_type(lua_State *L, const char *mt, const luaL_Reg *methods, lua_CFunction freefn)
{
    luaL_newmetatable(L, mt);
    lua_pushcfunction(L, freefn);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, freefn);
    lua_setfield(L, -2, "__close");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "__index");
    lua_remove(L, -2);
}

int luaopen_apl_core_model(lua_State *L)
{
    luaL_newlib(L, functions);
    new_type(L, MODEL_MT, model_methods, l_model_free);
    luaL_getmetatable(L, MODEL_MT);
    lua_pushcfunction(L, l_model_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_setfield(L, -2, "Model"); /* model.lua adds Lua methods here */
    new_type(L, CACHE_MT, cache_methods, l_cache_free);
    lua_setfield(L, -2, "KVCache");
    return 1;
}
