/* loracle.c — apl.core.oracle: the C half of apl.oracle (lua/apl/oracle.lua drives it).
 *
 *   local core = require "apl.core.oracle"
 *   local h <close> = core.http_new{url=, headers = {"Name: value", ...}, api_key_env=,
 *                                   key_header = "x-api-key: ", ca_file=, timeout=,
 *                                   max_in_flight=, rpm=, tpm=, max_tries=, backoff=,
 *                                   backoff_max=, seed=}
 *   h:submit(id, json_body, est_tokens)
 *   for _, r in ipairs(h:wait(0.25)) do ... r.id, r.status, r.body, r.error, r.tries end
 *   h:outstanding(); h:stats() -> {requests, retries, in_flight, queued}
 *   core.key(s1, s2, ...) -> 16 hex digits;  core.now() -> seconds;  core.sleep(s)
 *
 * The transport knows no protocol: the judge backends (lua/apl/judges/<name>.lua) build the bodies,
 * name the headers and read the replies. The API key is read here with getenv and handed
 * straight to the C transport, after key_header (the backend's header line); it never becomes a
 * Lua value, and h:wait() replaces it with "[redacted]" wherever a server sent it back
 * (a 401 body that echoes the Authorization header would otherwise reach the ledger).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apl_lua.h"
#include "ledger.h"
#include "oracle_http.h"

#define HTTP_MT "apl.OracleHTTP"

typedef struct {
    apl_http *h;
    char *key_env; /* the variable holding the key (never the key): to redact it from replies */
} http_box;

/* ------------------------------------------------------------------------------------------ */
/* Transport */

static apl_http *check_http(lua_State *L)
{
    http_box *b = luaL_checkudata(L, 1, HTTP_MT);
    if (!b->h) luaL_argerror(L, 1, "oracle transport was freed");
    return b->h;
}

#define MAX_HEADERS 32

/* The strings of opts.headers (a list) into lines; the options table keeps them alive until
 * apl_http_new has copied them. */
static size_t header_lines(lua_State *L, const char *fname, const char **lines)
{
    if (lua_getfield(L, 1, "headers") == LUA_TNIL) return 0;
    if (!lua_istable(L, -1)) apl_lua_error(L, fname, "option 'headers' must be a list of strings");
    size_t n = (size_t)luaL_len(L, -1);
    if (n > MAX_HEADERS) apl_lua_error(L, fname, "option 'headers' has %zu lines, at most %d", n, MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        lua_geti(L, -1, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) apl_lua_error(L, fname, "headers[%zu] must be a string", i + 1);
        lines[i] = lua_tostring(L, -1);
        lua_pop(L, 1); /* the table keeps the string alive */
    }
    return n;
}

static int l_oracle_http_new(lua_State *L)
{
    const char *fname = "apl.core.oracle.http_new";
    luaL_checktype(L, 1, LUA_TTABLE);
    apl_http_opts o = apl_http_defaults();
    const char *lines[MAX_HEADERS];
    o.headers = lines;
    o.n_headers = header_lines(L, fname, lines);
    o.url = apl_lua_opt_str(L, 1, "url", NULL, fname);
    o.key_header = apl_lua_opt_str(L, 1, "key_header", NULL, fname);
    o.ca_file = apl_lua_opt_str(L, 1, "ca_file", NULL, fname);
    o.timeout_s = apl_lua_opt_num(L, 1, "timeout", o.timeout_s, fname);
    o.max_in_flight = (int)apl_lua_opt_int(L, 1, "max_in_flight", o.max_in_flight, fname);
    o.rpm = apl_lua_opt_num(L, 1, "rpm", 0, fname);
    o.tpm = apl_lua_opt_num(L, 1, "tpm", 0, fname);
    o.max_tries = (int)apl_lua_opt_int(L, 1, "max_tries", o.max_tries, fname);
    o.backoff_s = apl_lua_opt_num(L, 1, "backoff", o.backoff_s, fname);
    o.backoff_max_s = apl_lua_opt_num(L, 1, "backoff_max", o.backoff_max_s, fname);
    o.seed = (uint64_t)apl_lua_opt_int(L, 1, "seed", 0, fname);
    const char *env = apl_lua_opt_str(L, 1, "api_key_env", NULL, fname);
    if (env) {
        o.api_key = getenv(env);
        if (!o.api_key || !*o.api_key)
            return apl_lua_error(L, fname, "environment variable %s (api_key_env) is not set", env);
    }
    http_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->h = NULL;
    b->key_env = NULL;
    luaL_setmetatable(L, HTTP_MT);
    apl_lua_check(L, apl_http_new(&o, &b->h), fname);
    if (env && !(b->key_env = strdup(env))) return apl_lua_error(L, fname, "out of memory");
    return 1;
}

static int l_oracle_http_submit(lua_State *L)
{
    apl_http *h = check_http(L);
    lua_Integer id = luaL_checkinteger(L, 2);
    const char *body = luaL_checkstring(L, 3);
    lua_Integer est = luaL_optinteger(L, 4, 1);
    apl_lua_check(L, apl_http_submit(h, (long)id, body, (long)est), "apl.oracle.label");
    return 0;
}

/* Pushes s with every occurrence of key replaced by "[redacted]"; keys under 8 bytes are too
 * short to tell from ordinary text and are left alone. */
static void push_redacted(lua_State *L, const char *s, const char *key)
{
    size_t kl = key ? strlen(key) : 0;
    if (kl < 8 || !strstr(s, key)) {
        lua_pushstring(L, s);
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (const char *p; (p = strstr(s, key)) != NULL; s = p + kl) {
        luaL_addlstring(&b, s, (size_t)(p - s));
        luaL_addstring(&b, "[redacted]");
    }
    luaL_addstring(&b, s);
    luaL_pushresult(&b);
}

static int l_oracle_http_wait(lua_State *L)
{
    apl_http *h = check_http(L);
    http_box *box = lua_touserdata(L, 1);
    const char *key = box->key_env ? getenv(box->key_env) : NULL;
    double max_wait = luaL_optnumber(L, 2, 0.25);
    const apl_http_result *r;
    size_t n;
    apl_lua_check(L, apl_http_wait(h, max_wait, &r, &n), "apl.oracle.label");
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, r[i].id);
        lua_setfield(L, -2, "id");
        lua_pushinteger(L, r[i].status);
        lua_setfield(L, -2, "status");
        push_redacted(L, r[i].body, key);
        lua_setfield(L, -2, "body");
        lua_pushinteger(L, r[i].tries);
        lua_setfield(L, -2, "tries");
        if (r[i].error) {
            push_redacted(L, r[i].error, key);
            lua_setfield(L, -2, "error");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_oracle_http_outstanding(lua_State *L)
{
    lua_pushinteger(L, apl_http_outstanding(check_http(L)));
    return 1;
}

static int l_oracle_http_stats(lua_State *L)
{
    apl_http_stats s = apl_http_get_stats(check_http(L));
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, s.requests);
    lua_setfield(L, -2, "requests");
    lua_pushinteger(L, s.retries);
    lua_setfield(L, -2, "retries");
    lua_pushinteger(L, s.in_flight);
    lua_setfield(L, -2, "in_flight");
    lua_pushinteger(L, s.queued);
    lua_setfield(L, -2, "queued");
    return 1;
}

/* __gc, __close and :free(): cancels transfers still in flight; safe twice. */
static int l_oracle_http_free(lua_State *L)
{
    http_box *b = luaL_checkudata(L, 1, HTTP_MT);
    apl_http_free(b->h);
    b->h = NULL;
    free(b->key_env);
    b->key_env = NULL;
    return 0;
}

static int l_oracle_http_tostring(lua_State *L)
{
    http_box *b = luaL_checkudata(L, 1, HTTP_MT);
    lua_pushfstring(L, HTTP_MT " (%s)", b->h ? "open" : "freed");
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Small utilities */

static int l_oracle_key(lua_State *L)
{
    int n = lua_gettop(L);
    const char *parts[16];
    size_t lens[16];
    if (n < 1 || n > 16) return apl_lua_error(L, "apl.oracle.key", "takes 1 to 16 strings, got %d", n);
    for (int i = 0; i < n; i++) parts[i] = luaL_checklstring(L, i + 1, &lens[i]);
    char key[APL_LEDGER_KEY_LEN + 1];
    apl_ledger_key(parts, lens, (size_t)n, key);
    lua_pushstring(L, key);
    return 1;
}

static int l_oracle_now(lua_State *L)
{
    lua_pushnumber(L, apl_http_now());
    return 1;
}

static int l_oracle_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s > 0) {
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int luaopen_apl_core_oracle(lua_State *L)
{
    static const luaL_Reg http_methods[] = {
        {"submit", l_oracle_http_submit}, {"wait", l_oracle_http_wait},
        {"outstanding", l_oracle_http_outstanding}, {"stats", l_oracle_http_stats},
        {"free", l_oracle_http_free}, {NULL, NULL}};
    static const luaL_Reg funcs[] = {
        {"http_new", l_oracle_http_new},
        {"key", l_oracle_key}, {"now", l_oracle_now}, {"sleep", l_oracle_sleep}, {NULL, NULL}};

    luaL_newmetatable(L, HTTP_MT);
    luaL_newlib(L, http_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_oracle_http_free);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_oracle_http_free);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, l_oracle_http_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, funcs);
    return 1;
}
