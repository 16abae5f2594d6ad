/* main.c — the apl program: runs Lua scripts with the engine preloaded, or opens a REPL.
 *
 *   apl script.lua a b     run a script (arg[0] = "script.lua", arg[1] = "a", ...)
 *   apl -e 'code'          run code
 *   apl -i script.lua      run, then open the REPL
 *   apl                    REPL
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "apl_lua.h"

/* Binding modules are linked in when their files exist; weak references let the program build
 * while a module is still being written. */
extern int luaopen_apl_core_model(lua_State *L) __attribute__((weak));
extern int luaopen_apl_core_tokenizer(lua_State *L) __attribute__((weak));
extern int luaopen_apl_core_compute(lua_State *L) __attribute__((weak));
extern int luaopen_apl_core_oracle(lua_State *L) __attribute__((weak));
extern int luaopen_apl_core_sys(lua_State *L) __attribute__((weak));

static const struct { const char *name; lua_CFunction open; } *preloads(void)
{
    static struct { const char *name; lua_CFunction open; } mods[8];
    int n = 0;
#define ADD(nm, fn) if (fn) { mods[n].name = nm; mods[n].open = fn; n++; }
    ADD("apl.tensor", luaopen_apl_tensor);
    ADD("apl.core.model", luaopen_apl_core_model);
    ADD("apl.core.tokenizer", luaopen_apl_core_tokenizer);
    ADD("apl.core.compute", luaopen_apl_core_compute);
    ADD("apl.core.oracle", luaopen_apl_core_oracle);
    ADD("apl.core.sys", luaopen_apl_core_sys);
#undef ADD
    mods[n].name = NULL;
    return (void *)mods;
}

/* The project root is the folder of the real binary: the build tree, or PREFIX/share/apl when
 * installed (bin/apl is a symlink to it). */
static void set_paths(lua_State *L)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    const char *root = dirname(exe);
    lua_getglobal(L, "package");
    lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/?.lua;%s/?/init.lua;", root, root, root, root);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, root);
    lua_setfield(L, -2, "apl_root");
    lua_pop(L, 1);
}

static void open_engine(lua_State *L)
{
    luaL_openlibs(L);
    set_paths(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    const struct { const char *name; lua_CFunction open; } *m = (void *)preloads();
    for (; m->name; m++) {
        lua_pushcfunction(L, m->open);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int report(lua_State *L, int st)
{
    if (st != LUA_OK) {
        fprintf(stderr, "apl: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return st;
}

static int docall(lua_State *L, int nargs)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int st = lua_pcall(L, nargs, 0, base);
    lua_remove(L, base);
    return st;
}

/* Loads `apl` as a global so scripts and the REPL can use it without a require. */
static int load_apl(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "apl");
    int st = docall(L, 1);
    if (st != LUA_OK) return report(L, st);
    lua_getglobal(L, "require");
    lua_pushstring(L, "apl");
    lua_call(L, 1, 1);
    lua_setglobal(L, "apl");
    return LUA_OK;
}

static int run_script(lua_State *L, char **argv, int argc, int script)
{
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
    int st = luaL_loadfile(L, argv[script]);
    if (st != LUA_OK) return report(L, st);
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return report(L, docall(L, argc - script - 1));
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (!L) return 1;
    open_engine(L);
    if (load_apl(L) != LUA_OK) return 1;
    int st = LUA_OK;
    if (argc >= 3 && strcmp(argv[1], "-e") == 0) {
        st = luaL_loadstring(L, argv[2]);
        st = st == LUA_OK ? report(L, docall(L, 0)) : report(L, st);
    } else if (argc >= 2) {
        st = run_script(L, argv, argc, 1);
    }
    lua_close(L);
    return st == LUA_OK ? 0 : 1;
}
