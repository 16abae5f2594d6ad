/* lprogress.c — lets long C loops report progress through the Lua printer (apl/progress.lua),
 * so a C generation loop and a Lua training loop print the same kind of line.
 *
 * A binding creates the reporter before allocating any C temporaries (creating it can raise),
 * hands the callback and the reporter to the core loop, and frees it before raising:
 *
 *   apl_lua_progress *pr = apl_lua_progress_new(L, "generate", n_rows);
 *   o.progress = apl_lua_progress_cb, o.progress_ud = pr;   // apl_generate_opts o
 *   apl_status st = apl_generate(m, prompts, n, &o, &r);
 *   apl_lua_progress_free(pr);                               // prints the final line
 *   apl_lua_check(L, st, "apl.generate");
 *
 * The callback must be called from the thread that runs Lua, while the binding that made the
 * reporter is still running (its lua_State is in use by that very call). It never raises: an
 * error in the printer is reported once on stderr and further updates are dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apl_lua.h"

struct apl_lua_progress {
    lua_State *L;
    int ref;    /* registry reference to the Lua progress object */
    int broken; /* the printer raised once: stay silent from then on */
};

apl_lua_progress *apl_lua_progress_new(lua_State *L, const char *phase, long total)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "apl.progress");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_pushstring(L, phase);
    if (total > 0) lua_pushinteger(L, total);
    else lua_pushnil(L);
    lua_call(L, 2, 1);
    apl_lua_progress *p = malloc(sizeof *p);
    if (!p) luaL_error(L, "apl.progress: out of memory");
    p->L = L;
    p->broken = 0;
    p->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1); /* the module */
    return p;
}

/* Runs protected: obj, method name, done, phase (light userdata or nil), total. Setting fields
 * and making strings can raise (out of memory), so it all happens inside the pcall. */
static int call_body(lua_State *L)
{
    if (lua_islightuserdata(L, 4)) {
        lua_pushstring(L, lua_touserdata(L, 4));
        lua_setfield(L, 1, "phase");
    }
    if (lua_tointeger(L, 5) > 0) {
        lua_pushvalue(L, 5);
        lua_setfield(L, 1, "total");
    }
    lua_getfield(L, 1, (const char *)lua_touserdata(L, 2));
    lua_pushvalue(L, 1);
    if (lua_tointeger(L, 3) >= 0) {
        lua_pushvalue(L, 3);
        lua_call(L, 2, 0);
    } else {
        lua_call(L, 1, 0);
    }
    return 0;
}

/* Calls obj:method(done) (done < 0: no argument) without ever raising. The interrupt hook can
 * fire inside the printer; its error is swallowed here, so the flag is raised again for the C
 * loop, which then stops with APL_EINTR. */
static void call_method(apl_lua_progress *p, const char *method, const char *phase, long done,
                        long total)
{
    lua_State *L = p->L;
    if (!lua_checkstack(L, 10)) return;
    int top = lua_gettop(L);
    lua_pushcfunction(L, call_body);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
    lua_pushlightuserdata(L, (void *)method); /* made a string inside the pcall */
    lua_pushinteger(L, done);
    if (phase) lua_pushlightuserdata(L, (void *)phase);
    else lua_pushnil(L);
    lua_pushinteger(L, total);
    if (lua_pcall(L, 5, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (msg && strstr(msg, "interrupted")) {
            apl_interrupted = 1;
        } else {
            fprintf(stderr, "apl.progress: %s\n", msg ? msg : "(non-string error)");
            p->broken = 1;
        }
    }
    lua_settop(L, top);
}

void apl_lua_progress_cb(void *ud, const char *phase, long done, long total)
{
    apl_lua_progress *p = ud;
    if (!p || p->broken || apl_interrupted) return;
    call_method(p, "update", phase, done < 0 ? 0 : done, total);
}

void apl_lua_progress_free(apl_lua_progress *p)
{
    if (!p) return;
    if (!p->broken) call_method(p, "done", NULL, -1, 0);
    luaL_unref(p->L, LUA_REGISTRYINDEX, p->ref);
    free(p);
}
