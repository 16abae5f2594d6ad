/* ldist.c — apl.core.dist: dist.h for lua/apl/dist.lua, which reads the environment and joins
 * on first use; scripts use apl.dist.
 *
 *   core.init{rank=, world_size=, local_rank=, master_addr=, master_port=, timeout=, backend=}
 *   core.all_reduce(t, "sum"|"avg"|"max"|"min")   core.broadcast(t, root)   core.barrier()
 *   core.all_gather_bytes(s) -> {s0, s1, ...}     core.broadcast_bytes(s or nil, root) -> s
 *   core.all_reduce_numbers({...}, op) -> {...}   core.stats()   core.backend()
 *   core.has_gloo, core.has_nccl                  what this build can join
 *   core.free_port(addr) -> port                  a port free now (what apl --nproc picks)
 */
#include <stdlib.h>
#include <string.h>

#include "apl_lua.h"
#include "dist.h"
#include "launch.h"

static const char *const OPS[] = {"sum", "avg", "max", "min", NULL};
static const char *const BACKENDS[] = {"gloo", "nccl", NULL};

/* backend: "gloo", "nccl", or nil for NCCL when CUDA is there (and built in), else Gloo. */
static int l_init(lua_State *L)
{
    const char *fname = "apl.dist";
    luaL_checktype(L, 1, LUA_TTABLE);
    apl_dist_opts o = {0};
    o.rank = (int)apl_lua_opt_int(L, 1, "rank", 0, fname);
    o.world_size = (int)apl_lua_opt_int(L, 1, "world_size", 1, fname);
    o.local_rank = (int)apl_lua_opt_int(L, 1, "local_rank", 0, fname);
    o.master_addr = apl_lua_opt_str(L, 1, "master_addr", NULL, fname);
    o.master_port = (int)apl_lua_opt_int(L, 1, "master_port", 0, fname);
    o.timeout_s = apl_lua_opt_num(L, 1, "timeout", 300, fname);
    int def = apl_dist_has_nccl() && apl_cuda_available() ? APL_DIST_NCCL : APL_DIST_GLOO;
    o.backend = (apl_dist_backend)apl_lua_opt_enum(L, 1, "backend", BACKENDS, def, fname);
    apl_lua_check(L, apl_dist_init(&o), NULL);
    return 0;
}

static int l_backend(lua_State *L)
{
    lua_pushstring(L, apl_dist_joined() ? BACKENDS[apl_dist_backend_of()] : "none");
    return 1;
}

static int l_barrier(lua_State *L)
{
    apl_lua_check(L, apl_dist_barrier(), NULL);
    return 0;
}

static int l_all_reduce(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    int op = luaL_checkoption(L, 2, "sum", OPS);
    apl_lua_check(L, apl_dist_all_reduce(t, (apl_dist_op)op), NULL);
    lua_settop(L, 1);
    return 1;
}

static int l_broadcast(lua_State *L)
{
    apl_tensor *t = apl_lua_checktensor(L, 1);
    apl_lua_check(L, apl_dist_broadcast(t, (int)luaL_optinteger(L, 2, 0)), NULL);
    lua_settop(L, 1);
    return 1;
}

/* Pushes the world's byte strings (back to back in buf, lens[r] each) as a list; frees buf. */
static void push_parts(lua_State *L, char *buf, const size_t *lens, int world)
{
    lua_createtable(L, world, 0);
    size_t at = 0;
    for (int r = 0; r < world; r++) {
        lua_pushlstring(L, buf + at, lens[r]);
        lua_rawseti(L, -2, r + 1);
        at += lens[r];
    }
    free(buf);
}

static int l_all_gather_bytes(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int world = apl_dist_world_size();
    size_t *lens = lua_newuserdatauv(L, sizeof(size_t) * (size_t)world, 0); /* collected with L */
    char *buf = NULL;
    apl_lua_check(L, apl_dist_all_gather_bytes(s, n, &buf, lens), NULL);
    push_parts(L, buf, lens, world);
    return 1;
}

static int l_broadcast_bytes(lua_State *L)
{
    size_t n = 0;
    const char *s = lua_isnoneornil(L, 1) ? NULL : luaL_checklstring(L, 1, &n);
    int root = (int)luaL_optinteger(L, 2, 0);
    if (apl_dist_rank() == root && !s) return apl_lua_error(L, "apl.dist", "broadcast: the root has nothing to send");
    char *buf = NULL;
    size_t got = 0;
    apl_lua_check(L, apl_dist_broadcast_bytes(s, n, root, &buf, &got), NULL);
    lua_pushlstring(L, buf, got);
    free(buf);
    return 1;
}

/* A list of numbers reduced over the ranks in f64 (exact for sums of counts). */
static int l_all_reduce_numbers(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int op = luaL_checkoption(L, 2, "sum", OPS);
    int64_t n = (int64_t)luaL_len(L, 1);
    double *v = lua_newuserdatauv(L, sizeof(double) * (size_t)(n ? n : 1), 0);
    for (int64_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        int ok;
        v[i] = lua_tonumberx(L, -1, &ok);
        if (!ok) return apl_lua_error(L, "apl.dist", "all_reduce_numbers: item %lld is not a number", (long long)i + 1);
        lua_pop(L, 1);
    }
    apl_tensor *t = apl_t_from_data(v, &n, 1, APL_F64);
    apl_status st = t ? apl_dist_all_reduce(t, (apl_dist_op)op) : APL_ETORCH;
    if (st == APL_OK) st = apl_t_read(t, APL_F64, v, sizeof(double) * (size_t)n);
    apl_t_free(t);
    apl_lua_check(L, st, "apl.dist");
    lua_createtable(L, (int)n, 0);
    for (int64_t i = 0; i < n; i++) {
        lua_pushnumber(L, v[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_stats(lua_State *L)
{
    apl_dist_stats s = apl_dist_get_stats();
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, s.collectives);
    lua_setfield(L, -2, "collectives");
    lua_pushnumber(L, s.bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushnumber(L, s.seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushnumber(L, s.grad_bytes);
    lua_setfield(L, -2, "grad_bytes");
    lua_pushnumber(L, s.grad_seconds);
    lua_setfield(L, -2, "grad_seconds");
    return 1;
}

static int l_free_port(lua_State *L)
{
    int port = apl_free_port(luaL_optstring(L, 1, "127.0.0.1"));
    if (!port) return apl_lua_error(L, "apl.dist", "free_port: the kernel gave no free port");
    lua_pushinteger(L, port);
    return 1;
}

int luaopen_apl_core_dist(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"init", l_init}, {"backend", l_backend}, {"barrier", l_barrier},
        {"all_reduce", l_all_reduce}, {"broadcast", l_broadcast},
        {"all_gather_bytes", l_all_gather_bytes}, {"broadcast_bytes", l_broadcast_bytes},
        {"all_reduce_numbers", l_all_reduce_numbers}, {"stats", l_stats}, {"free_port", l_free_port},
        {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    lua_pushboolean(L, apl_dist_has_gloo());
    lua_setfield(L, -2, "has_gloo");
    lua_pushboolean(L, apl_dist_has_nccl());
    lua_setfield(L, -2, "has_nccl");
    return 1;
}
