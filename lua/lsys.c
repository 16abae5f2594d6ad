/* lsys.c — apl.core.sys: the process and library state a script may look at or change.
 *
 *   local sys = require "apl.core.sys"
 *   sys.set_num_threads(4); sys.manual_seed(1)
 *   local prev = sys.set_grad_enabled(false)
 *   local t0 = sys.time() ... print(sys.time() - t0, sys.rss_mb(), sys.peak_rss_mb())
 *   for k, v in pairs(sys.version_info()) do print(k, v) end
 *
 * apl/init.lua wraps these as apl.manual_seed, apl.no_grad, apl.clock, ...
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apl_lua.h"
#include "blas.h"

static int l_sys_version_info(lua_State *L)
{
    apl_blas_info b;
    apl_status st = apl_blas_detect(&b);
    lua_createtable(L, 0, 9);
    lua_pushstring(L, apl_torch_version());
    lua_setfield(L, -2, "torch");
    lua_pushstring(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
    lua_pushstring(L, st == APL_OK ? apl_blas_kind_name(b.kind) : "unknown");
    lua_setfield(L, -2, "blas");
    lua_pushstring(L, st == APL_OK ? b.path : "");
    lua_setfield(L, -2, "blas_path");
    lua_pushstring(L, st == APL_OK ? b.detail : apl_last_error());
    lua_setfield(L, -2, "blas_detail");
    lua_pushinteger(L, apl_get_num_threads());
    lua_setfield(L, -2, "threads");
    lua_pushboolean(L, apl_cuda_available());
    lua_setfield(L, -2, "cuda");
    lua_pushinteger(L, apl_cuda_device_count());
    lua_setfield(L, -2, "cuda_devices");
    return 1;
}

static int l_sys_set_num_threads(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 4096, 1, "thread count must be in 1..4096");
    apl_set_num_threads((int)n);
    return 0;
}

static int l_sys_get_num_threads(lua_State *L)
{
    lua_pushinteger(L, apl_get_num_threads());
    return 1;
}

/* fast_kernels() -> on; fast_kernels(on) -> the previous setting (see apl_set_fast_kernels). */
static int l_sys_fast_kernels(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) lua_pushboolean(L, apl_fast_kernels());
    else lua_pushboolean(L, apl_set_fast_kernels(lua_toboolean(L, 1)));
    return 1;
}

static int l_sys_manual_seed(lua_State *L)
{
    apl_manual_seed((uint64_t)luaL_checkinteger(L, 1));
    return 0;
}

/* Returns the previous mode, so callers can restore it. */
static int l_sys_set_grad_enabled(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, apl_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int l_sys_grad_enabled(lua_State *L)
{
    lua_pushboolean(L, apl_grad_enabled());
    return 1;
}

/* true once per Ctrl-C: the flag is cleared so the next check waits for a new one. */
static int l_sys_interrupted(lua_State *L)
{
    lua_pushboolean(L, apl_check_interrupt() == APL_EINTR);
    apl_clear_error();
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Memory and time */

/* Reads a "Key:   1234 kB" line of /proc/self/status, in MiB; nil, msg when unreadable. */
static int push_status_mb(lua_State *L, const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return luaL_fileresult(L, 0, "/proc/self/status");
    char line[256];
    size_t klen = strlen(key);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' && sscanf(line + klen + 1, "%ld", &kb) == 1) break;
    fclose(f);
    if (kb < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "/proc/self/status: no %s line", key);
        return 2;
    }
    lua_pushnumber(L, (lua_Number)kb / 1024.0);
    return 1;
}

static int l_sys_rss_mb(lua_State *L) { return push_status_mb(L, "VmRSS"); }
static int l_sys_peak_rss_mb(lua_State *L) { return push_status_mb(L, "VmHWM"); }

/* Seconds on the monotonic clock (nanosecond resolution): for durations, rates and ETAs. */
static int l_sys_time(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* isatty(fd): the progress printer redraws one line on a terminal, prints lines elsewhere. */
static int l_sys_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

int luaopen_apl_core_sys(lua_State *L)
{
    static const luaL_Reg fns[] = {
        { "version_info", l_sys_version_info },
        { "set_num_threads", l_sys_set_num_threads },
        { "get_num_threads", l_sys_get_num_threads },
        { "manual_seed", l_sys_manual_seed },
        { "fast_kernels", l_sys_fast_kernels },
        { "set_grad_enabled", l_sys_set_grad_enabled },
        { "grad_enabled", l_sys_grad_enabled },
        { "interrupted", l_sys_interrupted },
        { "rss_mb", l_sys_rss_mb },
        { "peak_rss_mb", l_sys_peak_rss_mb },
        { "time", l_sys_time },
        { "isatty", l_sys_isatty },
        { NULL, NULL },
    };
    luaL_newlib(L, fns);
    return 1;
}
