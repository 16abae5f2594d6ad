/* lsys.c — apl.core.sys: the process and library state a script may look at or change.
 *
 *   local sys = require "apl.core.sys"
 *   sys.set_num_threads(4); sys.manual_seed(1)
 *   local prev = sys.set_grad_enabled(false)
 *   local t0 = sys.time() ... print(sys.time() - t0, sys.rss_mb(), sys.peak_rss_mb())
 *   for k, v in pairs(sys.version_info()) do print(k, v) end
 *
 * apl/init.lua wraps these as apl.manual_seed, apl.no_grad, apl.clock, ...
 *
 * Files and folders, without a shell (a name holding quotes, spaces or $(...) is only a name):
 *   sys.isdir(path) -> bool;  sys.listdir(dir) -> sorted names (no . or ..) | nil, msg
 *   sys.mkdir_p(path)                 -- raises naming the path
 *   sys.rmtree(path, within)          -- path must lie strictly inside the folder `within`
 *   sys.read(path) -> string | nil, msg
 *   sys.write(path, s)                -- atomic: path.tmp.<pid>, fsync, rename, fsync the folder
 *   sys.run(argv [, {stdout = path, stderr = path}]) -> exit code (128 + n for signal n);
 *                                     execvp, no shell
 *
 * Crash-safe JSONL (core/journal.h: one JSON object a line, fsynced before append returns; a torn
 * last line is skipped and named in the warning, any other bad line raises naming path:line):
 *   local j, lines, warning = sys.journal_open(path [, {lock =, lenient =, noun =}])
 *   j:append(line)  or  j:append({line1, line2})      -- one write, one fsync; j:close()
 *   local lines, warning = sys.journal_read(path [, {lenient =, noun =}])  -- missing: {}; no change
 *   lock: an exclusive flock (the label ledger); lenient: corrupt lines are skipped and counted in
 *   the warning instead of raising (caches); noun: what a line is called in messages.
 *
 * Hashes (core/hash.h; Lua integers are the 64-bit words, wrapping):
 *   sys.mix64(z) -> splitmix64's finaliser of z   (apl.rng's streams)
 *   sys.fnv1a(s [, h]) -> FNV-1a 64 of the bytes of s, from h (default: the offset basis)
 *   sys.fnv1a_ids(ids [, h]) -> FNV-1a 64 over a list of integers, one whole word each
 */
#define _GNU_SOURCE /* nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apl_lua.h"
#include "blas.h"
#include "fileio.h"
#include "hash.h"
#include "journal.h"

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
    /* The one home of the thread and seed settings: apl.tensor's names are these functions. */
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1 || n > 4096)
        apl_lua_error(L, "apl.set_num_threads", "thread count must be in 1..4096, got %lld", (long long)n);
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

/* ------------------------------------------------------------------------------------------ */
/* Files and folders: the library's only way to touch the file system beyond io.open, so no
 * path ever reaches a shell. Failures raise "apl.sys.<fn>: <path>: <strerror>". */

static int sys_error(lua_State *L, const char *fn, const char *path, int err)
{
    return luaL_error(L, "apl.sys.%s: %s: %s", fn, path, strerror(err));
}

static int l_sys_isdir(lua_State *L)
{
    struct stat st;
    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0 && S_ISDIR(st.st_mode));
    return 1;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted bytewise (LC_ALL=C sort's order), so listings do not depend on the locale. */
static int l_sys_listdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct dirent **list;
    int n = scandir(path, &list, NULL, NULL);
    if (n < 0) return luaL_fileresult(L, 0, path);
    char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *d = list[i]->d_name;
        if (names && strcmp(d, ".") != 0 && strcmp(d, "..") != 0) names[k++] = list[i]->d_name;
    }
    if (names) qsort(names, (size_t)k, sizeof *names, cmp_names);
    lua_createtable(L, k, 0);
    for (int i = 0; i < k; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
    if (!names) return luaL_error(L, "apl.sys.listdir: out of memory");
    free(names);
    return 1;
}

static int l_sys_mkdir_p(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len);
    if (len == 0 || len >= PATH_MAX) return luaL_error(L, "apl.sys.mkdir_p: bad path '%s'", path);
    char buf[PATH_MAX];
    memcpy(buf, path, len + 1);
    /* Each prefix ending before a '/', then the whole path; existing folders are fine. */
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != 0) continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(buf, 0777) != 0 && !(errno == EEXIST && stat(buf, &st) == 0 && S_ISDIR(st.st_mode)))
            return sys_error(L, "mkdir_p", buf, errno == EEXIST ? ENOTDIR : errno);
        *p = c;
        if (c == 0) break;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int has_dotdot(const char *path)
{
    for (const char *p = path; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == path || p[-1] == '/') && (p[2] == 0 || p[2] == '/')) return 1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : errno;
}

/* Deletes path and everything under it, like rm -rf, but only strictly inside `within` (both
 * resolved, so neither a symlink nor ".." can lead outside), never "/" and never a path with a
 * ".." component. Symbolic links are removed, not followed. A missing path is not an error. */
static int l_sys_rmtree(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    const char *within = luaL_checkstring(L, 2);
    if (has_dotdot(path)) return luaL_error(L, "apl.sys.rmtree: refusing %s: it has a '..' component", path);
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return lua_pushboolean(L, 1), 1;
        return sys_error(L, "rmtree", path, errno);
    }
    char root[PATH_MAX], parent[PATH_MAX], dir[PATH_MAX];
    if (!realpath(within, root)) return sys_error(L, "rmtree", within, errno);
    /* The parent is resolved, the last component is not: a link named path goes, not its target. */
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    if (n >= PATH_MAX) return luaL_error(L, "apl.sys.rmtree: path too long");
    memcpy(dir, path, n);
    dir[n] = 0;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (slash == dir) strcpy(dir, "/");
    else if (slash) *slash = 0;
    else strcpy(dir, ".");
    if (!*base || strcmp(base, ".") == 0 || !realpath(dir, parent))
        return luaL_error(L, "apl.sys.rmtree: refusing %s", path);
    size_t rl = strlen(root);
    int inside = strcmp(root, "/") != 0 && strncmp(parent, root, rl) == 0 && (parent[rl] == 0 || parent[rl] == '/');
    if (!inside) return luaL_error(L, "apl.sys.rmtree: refusing %s: it is not inside %s", path, within);
    int err = S_ISDIR(st.st_mode) ? nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) : (unlink(path) ? errno : 0);
    if (err) return sys_error(L, "rmtree", path, err > 0 ? err : errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_sys_read(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    char *text;
    size_t len;
    if (apl_read_text(path, APL_READ_ANY, &text, &len) != APL_OK) {
        lua_pushnil(L);
        lua_pushstring(L, apl_last_error());
        return 2;
    }
    lua_pushlstring(L, text, len);
    free(text);
    return 1;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Readers see the old file or the new one, never a part: a temporary beside it, fsynced, renamed
 * over it, and the folder fsynced so the rename survives a power cut. */
static int l_sys_write(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return luaL_error(L, "apl.sys.write: path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) return sys_error(L, "write", path, errno);
    if (write_all(fd, s, n) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return sys_error(L, "write", path, e);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return sys_error(L, "write", path, e);
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Opens the file named by field k of the options table at idx for the child's output; -1 when
 * absent. */
static int open_output(lua_State *L, int idx, const char *k)
{
    const char *path = apl_lua_opt_str(L, idx, k, NULL, "apl.sys.run");
    if (!path) return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) sys_error(L, "run", path, errno);
    return fd;
}

/* Runs argv[1] with the arguments argv[2..] through execvp: no shell ever parses them. opts:
 * stdout, stderr (file paths; the same path for both writes one log). Like system(), the caller
 * ignores Ctrl-C while the child runs: the child gets it and decides. */
static int l_sys_run(lua_State *L)
{
    lua_settop(L, 2); /* the options stay at 2 (nil when absent) under what is pushed below */
    luaL_checktype(L, 1, LUA_TTABLE);
    int n = (int)luaL_len(L, 1);
    if (n < 1 || n > 4096) return luaL_error(L, "apl.sys.run: argv must hold 1 to 4096 strings");
    const char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 1, i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) return luaL_error(L, "apl.sys.run: argv[%d] must be a string", i + 1);
        argv[i] = lua_tostring(L, -1); /* the argv table keeps the string alive */
        lua_pop(L, 1);
    }
    argv[n] = NULL;
    const char *out_path = apl_lua_opt_str(L, 2, "stdout", NULL, "apl.sys.run");
    const char *err_path = apl_lua_opt_str(L, 2, "stderr", NULL, "apl.sys.run");
    int out = open_output(L, 2, "stdout");
    int err = err_path && out_path && strcmp(err_path, out_path) == 0 ? dup(out) : open_output(L, 2, "stderr");
    struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        if ((out >= 0 && dup2(out, 1) < 0) || (err >= 0 && dup2(err, 2) < 0)) _exit(127);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int e = errno, status = 0;
    if (out >= 0) close(out);
    if (err >= 0) close(err);
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    if (pid < 0) return sys_error(L, "run", argv[0], e);
    lua_pushinteger(L, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Journals */

#define JOURNAL_MT "apl.Journal"

typedef struct { apl_journal *j; } journal_box;

/* The options table at idx (or none): flags and the noun; unknown keys raise. */
static unsigned journal_opts(lua_State *L, int idx, int may_lock, const char **noun,
                             const char *fname)
{
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
            if (strcmp(k, "lenient") && strcmp(k, "noun") && !(may_lock && !strcmp(k, "lock")))
                apl_lua_error(L, fname, "unknown option '%s'", k);
            lua_pop(L, 1);
        }
    }
    unsigned flags = 0;
    if (may_lock && apl_lua_opt_bool(L, idx, "lock", 0, fname)) flags |= APL_JOURNAL_LOCK;
    if (apl_lua_opt_bool(L, idx, "lenient", 0, fname)) flags |= APL_JOURNAL_LENIENT;
    *noun = apl_lua_opt_str(L, idx, "noun", NULL, fname);
    return flags;
}

/* Pushes the journal's lines as a list, then its warning or nil. */
static void push_lines(lua_State *L, const apl_journal *j)
{
    size_t n = apl_journal_count(j);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, apl_journal_line(j, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    if (apl_journal_warning(j)) lua_pushstring(L, apl_journal_warning(j));
    else lua_pushnil(L);
}

static int l_sys_journal_open(lua_State *L)
{
    const char *fname = "apl.sys.journal_open", *noun;
    const char *path = luaL_checkstring(L, 1);
    unsigned flags = journal_opts(L, 2, 1, &noun, fname) | APL_JOURNAL_APPEND;
    journal_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->j = NULL;
    luaL_setmetatable(L, JOURNAL_MT);
    apl_lua_check(L, apl_journal_open(path, flags, noun, &b->j), fname);
    push_lines(L, b->j);
    return 3;
}

static int l_sys_journal_read(lua_State *L)
{
    const char *fname = "apl.sys.journal_read", *noun;
    const char *path = luaL_checkstring(L, 1);
    unsigned flags = journal_opts(L, 2, 0, &noun, fname);
    apl_journal *j;
    apl_lua_check(L, apl_journal_open(path, flags, noun, &j), fname);
    push_lines(L, j); /* lua_pushstring could raise only on memory, leaking j: accepted */
    apl_journal_free(j);
    return 2;
}

static int l_journal_append(lua_State *L)
{
    const char *fname = "apl.sys.journal:append";
    journal_box *b = luaL_checkudata(L, 1, JOURNAL_MT);
    if (!b->j) return apl_lua_error(L, fname, "journal is closed");
    if (lua_type(L, 2) == LUA_TSTRING) {
        const char *line = lua_tostring(L, 2);
        apl_lua_check(L, apl_journal_append(b->j, &line, 1), fname);
        return 0;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2);
    if (n == 0) return 0;
    const char **lines = lua_newuserdatauv(L, (size_t)n * sizeof *lines, 0); /* collected */
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, 2, i) != LUA_TSTRING)
            return apl_lua_error(L, fname, "lines[%lld] is not a string", (long long)i);
        lines[i - 1] = lua_tostring(L, -1); /* kept alive by the table at 2 */
        lua_pop(L, 1);
    }
    apl_lua_check(L, apl_journal_append(b->j, lines, (size_t)n), fname);
    return 0;
}

/* __gc, __close and :close(): closes the file (and drops its lock); safe twice. */
static int l_journal_close(lua_State *L)
{
    journal_box *b = luaL_checkudata(L, 1, JOURNAL_MT);
    apl_journal_free(b->j);
    b->j = NULL;
    return 0;
}

static int l_journal_tostring(lua_State *L)
{
    journal_box *b = luaL_checkudata(L, 1, JOURNAL_MT);
    if (b->j) lua_pushfstring(L, "apl.Journal(%s)", apl_journal_path(b->j));
    else lua_pushliteral(L, "apl.Journal(closed)");
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Hashes */

static uint64_t opt_hash(lua_State *L, int idx)
{
    return (uint64_t)luaL_optinteger(L, idx, (lua_Integer)APL_FNV_OFFSET);
}

static int l_sys_mix64(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)apl_mix64((uint64_t)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_sys_fnv1a(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushinteger(L, (lua_Integer)apl_fnv1a(opt_hash(L, 2), s, n));
    return 1;
}

static int l_sys_fnv1a_ids(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    uint64_t h = opt_hash(L, 2);
    lua_Integer n = luaL_len(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
        int isint;
        lua_geti(L, 1, i);
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (!isint)
            return apl_lua_error(L, "apl.sys.fnv1a_ids", "ids[%lld] is not an integer",
                                 (long long)i);
        lua_pop(L, 1);
        h = apl_fnv1a_word(h, (uint64_t)v);
    }
    lua_pushinteger(L, (lua_Integer)h);
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
        { "isdir", l_sys_isdir },
        { "listdir", l_sys_listdir },
        { "mkdir_p", l_sys_mkdir_p },
        { "rmtree", l_sys_rmtree },
        { "read", l_sys_read },
        { "write", l_sys_write },
        { "run", l_sys_run },
        { "mix64", l_sys_mix64 },
        { "fnv1a", l_sys_fnv1a },
        { "fnv1a_ids", l_sys_fnv1a_ids },
        { "journal_open", l_sys_journal_open },
        { "journal_read", l_sys_journal_read },
        { NULL, NULL },
    };
    static const luaL_Reg journal_methods[] = {
        { "append", l_journal_append },
        { "close", l_journal_close },
        { NULL, NULL },
    };
    if (luaL_newmetatable(L, JOURNAL_MT)) {
        luaL_newlib(L, journal_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_journal_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_journal_close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_journal_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_newlib(L, fns);
    return 1;
}
