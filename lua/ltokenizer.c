/* ltokenizer.c — the apl.Tokenizer userdata over core/tokenizer.h (module "apl.core.tokenizer").
 *
 *   local tok = apl.tokenizer.load("gpt2/")           -- or from_files("vocab.json", "merges.txt")
 *   local ids = tok:encode("Hello world")             -- {15496, 995}
 *   local text = tok:decode(ids)                      -- a list of ids or a 1-D apl.Tensor
 *   local x, mask, lists = tok:encode_batch({"a", "b c"}, {padding_side = "left"})
 *
 * Ids are the tokenizer's own (0-based) numbers. Results are built from scratch space that a
 * userdata owns, so an error raised half-way (out of memory) never leaks C memory.
 */
#include <stdlib.h>
#include <string.h>

#include "apl_lua.h"
#include "tokenizer.h"

#define TOKENIZER_MT "apl.Tokenizer"
#define BATCH_MT "apl.TokenizerBatch"

typedef struct {
    apl_tokenizer *tok;
    apl_ids ids; /* scratch for encode / decode */
    char *text;  /* decoded text, until Lua has its copy */
} tok_box;

static tok_box *check_box(lua_State *L, const char *fname)
{
    tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
    if (!b->tok) apl_lua_error(L, fname, "the tokenizer was freed");
    return b;
}

/* __gc, __close and :free() */
static int l_tokenizer_free(lua_State *L)
{
    tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
    apl_tokenizer_free(b->tok);
    b->tok = NULL;
    apl_ids_free(&b->ids);
    free(b->text);
    b->text = NULL;
    return 0;
}

/* Made closed (NULL) first, so that a failed load leaves nothing behind. */
static tok_box *new_box(lua_State *L)
{
    tok_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, TOKENIZER_MT);
    return b;
}

/* apl.tokenizer.load(path): a tokenizer.json, or a folder with it or vocab.json + merges.txt */
static int l_tokenizer_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    tok_box *b = new_box(L);
    apl_lua_check(L, apl_tokenizer_load(path, &b->tok), "apl.tokenizer.load");
    return 1;
}

static int l_tokenizer_from_files(lua_State *L)
{
    const char *vocab = luaL_checkstring(L, 1), *merges = luaL_checkstring(L, 2);
    tok_box *b = new_box(L);
    apl_lua_check(L, apl_tokenizer_from_files(vocab, merges, &b->tok), "apl.tokenizer.from_files");
    return 1;
}

static void push_ids(lua_State *L, const int32_t *v, size_t n)
{
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
}

/* tok:encode(text [, {add_special = true}]) -> list of ids */
static int l_tokenizer_encode(lua_State *L)
{
    const char *F = "apl.tokenizer.encode";
    tok_box *b = check_box(L, F);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    int add_special = apl_lua_opt_bool(L, 3, "add_special", 1, F);
    b->ids.n = 0;
    apl_lua_check(L, apl_tokenizer_encode(b->tok, text, len, add_special, &b->ids), F);
    push_ids(L, b->ids.v, b->ids.n);
    return 1;
}

/* Fills b->ids from a list of integers or an integer tensor. */
static void read_ids(lua_State *L, tok_box *b, int idx, const char *fname)
{
    apl_tensor *t = apl_lua_totensor(L, idx);
    lua_Integer n = t ? apl_t_numel(t) : (luaL_checktype(L, idx, LUA_TTABLE), luaL_len(L, idx));
    b->ids.n = 0;
    apl_lua_check(L, apl_ids_reserve(&b->ids, (size_t)n), fname);
    int64_t *tmp = NULL;
    if (t) {
        if (apl_t_ndim(t) > 1) apl_lua_error(L, fname, "expected a 1-D tensor of ids");
        tmp = lua_newuserdatauv(L, (size_t)n * sizeof *tmp + 1, 0); /* the GC frees it */
        apl_lua_check(L, apl_t_read(t, APL_I64, tmp, (size_t)n * sizeof *tmp), fname);
    }
    for (lua_Integer i = 0; i < n; i++) {
        int ok = 1;
        lua_Integer v = tmp ? tmp[i] : (lua_rawgeti(L, idx, i + 1), lua_tointegerx(L, -1, &ok));
        if (!tmp) lua_pop(L, 1);
        if (!ok || v < INT32_MIN || v > INT32_MAX)
            apl_lua_error(L, fname, "ids[%lld] is not an integer id", (long long)i + 1);
        b->ids.v[b->ids.n++] = (int32_t)v;
    }
    if (tmp) lua_pop(L, 1);
}

/* tok:decode(ids [, {skip_special = false}]) -> string */
static int l_tokenizer_decode(lua_State *L)
{
    const char *F = "apl.tokenizer.decode";
    tok_box *b = check_box(L, F);
    int skip = apl_lua_opt_bool(L, 3, "skip_special", 0, F);
    read_ids(L, b, 2, F);
    size_t len;
    free(b->text);
    b->text = NULL;
    apl_lua_check(L, apl_tokenizer_decode(b->tok, b->ids.v, b->ids.n, skip, &b->text, &len), F);
    lua_pushlstring(L, b->text, len);
    free(b->text);
    b->text = NULL;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Batches */

static int l_batch_gc(lua_State *L)
{
    apl_tok_batch_free(luaL_checkudata(L, 1, BATCH_MT));
    return 0;
}

/* 1 for "left", 0 for "right" (the default) */
static int side_opt(lua_State *L, const char *key, const char *fname)
{
    static const char *const sides[] = {"right", "left", NULL};
    return apl_lua_opt_enum(L, 3, key, sides, 0, fname);
}

/* tok:encode_batch(texts [, {padding_side = "right", max_length = 0, truncation_side = "right",
 * add_special = true}]) -> ids (B, T) i64, attention mask (B, T) i64, lists of ids per text */
static int l_tokenizer_encode_batch(lua_State *L)
{
    const char *F = "apl.tokenizer.encode_batch";
    tok_box *b = check_box(L, F);
    luaL_checktype(L, 2, LUA_TTABLE);
    apl_tok_batch_opts o = { 0 };
    o.pad_left = side_opt(L, "padding_side", F);
    o.truncate_left = side_opt(L, "truncation_side", F);
    o.add_special = apl_lua_opt_bool(L, 3, "add_special", 1, F);
    o.max_length = apl_lua_opt_int(L, 3, "max_length", 0, F);
    if (o.max_length < 0) apl_lua_error(L, F, "option 'max_length' must be >= 0");
    lua_Integer n = luaL_len(L, 2);
    const char **texts = lua_newuserdatauv(L, (size_t)n * sizeof *texts + 1, 0);
    size_t *lens = lua_newuserdatauv(L, (size_t)n * sizeof *lens + 1, 0);
    for (lua_Integer i = 0; i < n; i++) {
        /* The strings stay alive: the texts table holds them. */
        if (lua_rawgeti(L, 2, i + 1) != LUA_TSTRING)
            apl_lua_error(L, F, "texts[%lld] is a %s, not a string", (long long)i + 1,
                          luaL_typename(L, -1));
        texts[i] = lua_tolstring(L, -1, &lens[i]);
        lua_pop(L, 1);
    }
    apl_tok_batch *bt = lua_newuserdatauv(L, sizeof *bt, 0);
    memset(bt, 0, sizeof *bt);
    luaL_setmetatable(L, BATCH_MT);
    apl_lua_check(L, apl_tokenizer_encode_batch(b->tok, n, texts, lens, &o, bt), F);
    int64_t shape[2] = { bt->B, bt->T };
    apl_lua_pushtensor(L, apl_t_from_data(bt->ids, shape, 2, APL_I64), F);
    apl_lua_pushtensor(L, apl_t_from_data(bt->mask, shape, 2, APL_I64), F);
    lua_createtable(L, (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        const int64_t *row = bt->ids + i * bt->T + (o.pad_left ? bt->T - bt->lens[i] : 0);
        lua_createtable(L, (int)bt->lens[i], 0);
        for (int64_t t = 0; t < bt->lens[i]; t++) {
            lua_pushinteger(L, row[t]);
            lua_rawseti(L, -2, t + 1);
        }
        lua_rawseti(L, -2, i + 1);
    }
    apl_tok_batch_free(bt);
    return 3;
}

/* ------------------------------------------------------------------------------------------ */
/* Lookups */

static int l_tokenizer_vocab_size(lua_State *L)
{
    lua_pushinteger(L, apl_tokenizer_vocab_size(check_box(L, "apl.tokenizer.vocab_size")->tok));
    return 1;
}

/* tok:id_to_token(id) -> the vocabulary's spelling ("Ġthe"), or nil */
static int l_tokenizer_id_to_token(lua_State *L)
{
    tok_box *b = check_box(L, "apl.tokenizer.id_to_token");
    lua_Integer id = luaL_checkinteger(L, 2);
    const char *s = NULL;
    if (id >= 0 && id <= INT32_MAX) s = apl_tokenizer_id_to_token(b->tok, (int32_t)id);
    if (s) lua_pushstring(L, s);
    else lua_pushnil(L);
    return 1;
}

/* tok:token_to_id(spelling) -> id, or nil */
static int l_tokenizer_token_to_id(lua_State *L)
{
    tok_box *b = check_box(L, "apl.tokenizer.token_to_id");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    int32_t id = apl_tokenizer_token_to_id(b->tok, s, len);
    if (id >= 0) lua_pushinteger(L, id);
    else lua_pushnil(L);
    return 1;
}

static void push_id_or_nil(lua_State *L, int32_t id)
{
    if (id >= 0) lua_pushinteger(L, id);
    else lua_pushnil(L);
}

/* Methods first, then the fields eos_id, pad_id, bos_id (nil when the tokenizer has none). */
static int l_tokenizer_index(lua_State *L)
{
    tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL || !b->tok || lua_type(L, 2) != LUA_TSTRING)
        return 1;
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "eos_id") == 0) push_id_or_nil(L, apl_tokenizer_eos_id(b->tok));
    else if (strcmp(k, "pad_id") == 0) push_id_or_nil(L, apl_tokenizer_pad_id(b->tok));
    else if (strcmp(k, "bos_id") == 0) push_id_or_nil(L, apl_tokenizer_bos_id(b->tok));
    else lua_pushnil(L);
    return 1;
}

static int l_tokenizer_tostring(lua_State *L)
{
    tok_box *b = luaL_checkudata(L, 1, TOKENIZER_MT);
    if (!b->tok) lua_pushliteral(L, "apl.Tokenizer (freed)");
    else
        lua_pushfstring(L, "apl.Tokenizer (vocab %d, eos %d, pad %d)",
                        (int)apl_tokenizer_vocab_size(b->tok), (int)apl_tokenizer_eos_id(b->tok),
                        (int)apl_tokenizer_pad_id(b->tok));
    return 1;
}

int luaopen_apl_core_tokenizer(lua_State *L)
{
    static const luaL_Reg methods[] = {
        { "encode", l_tokenizer_encode },
        { "decode", l_tokenizer_decode },
        { "encode_batch", l_tokenizer_encode_batch },
        { "vocab_size", l_tokenizer_vocab_size },
        { "id_to_token", l_tokenizer_id_to_token },
        { "token_to_id", l_tokenizer_token_to_id },
        { "free", l_tokenizer_free },
        { NULL, NULL },
    };
    if (luaL_newmetatable(L, TOKENIZER_MT)) {
        luaL_newlib(L, methods);
        lua_pushcclosure(L, l_tokenizer_index, 1);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_tokenizer_free);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_tokenizer_free);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_tokenizer_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, BATCH_MT)) {
        lua_pushcfunction(L, l_batch_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {
        { "load", l_tokenizer_load },
        { "from_files", l_tokenizer_from_files },
        { NULL, NULL },
    };
    luaL_newlib(L, funcs);
    return 1;
}
