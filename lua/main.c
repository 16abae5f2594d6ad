/* main.c — the apl program: runs Lua scripts with the engine preloaded, or opens a REPL.
 *
 *   apl script.lua a b     run a script (arg[0] = "script.lua", arg[1] = "a", ...)
 *   apl -e 'code'          run code
 *   apl -i script.lua      run, then open the REPL
 *   apl --version          apl, Lua and libtorch versions, the BLAS in use, threads, CUDA
 *   apl                    REPL
 *
 * Exit status: 0, 1 on an error, 2 on a bad command line, 130 when Ctrl-C stopped the script.
 * The REPL itself is repl.c; this file runs chunks for both (apl_docall, apl_report).
 * Ctrl-C follows lua.c: the first one makes the running chunk raise "interrupted" (Lua code
 * through a hook, C loops by polling apl_interrupted); a second one kills the process, for a C
 * call that never polls.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#include "apl_lua.h"
#include "blas.h"
#include "dist.h"
#include "launch.h"
#include "repl.h"

/* The binding modules (lua/l*.c), all linked in; apl_lua.h declares apl.tensor's. */
int luaopen_apl_core_model(lua_State *L);
int luaopen_apl_core_tokenizer(lua_State *L);
int luaopen_apl_core_compute(lua_State *L);
int luaopen_apl_core_oracle(lua_State *L);
int luaopen_apl_core_sys(lua_State *L);
int luaopen_apl_core_dist(lua_State *L);

/* ------------------------------------------------------------------------------------------ */
/* Before anything else */

/* Two variables must be in the environment before the libraries' constructors read them:
 *   OMP_WAIT_POLICY=PASSIVE  idle OpenMP threads sleep instead of spinning; under CPU contention
 *                            the spinning made training steps 10x slower.
 *   OPENBLAS_CORETYPE        kernels chosen from the CPU's features (see blas.h): 4-6x faster
 *                            sgemm where OpenBLAS does not know the CPU model.
 * GNU libgomp and OpenBLAS read them in their constructors, before main, and setenv even from
 * .preinit_array is lost (libc installs the original environment after it). So when one is
 * missing, the program re-executes itself with it, from .preinit_array: before any library's
 * constructor, so the second start costs only the dynamic linking (libtorch's start-up runs
 * once). A value the user set is kept. APL_SET_ENV lists what apl added (shown by --version). */
static int env_has(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (; *envp; envp++)
        if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=') return 1;
    return 0;
}

/* Appends "name=value" to buf (no stdio: nothing but the dynamic linker has run yet). */
static char *env_entry(char *buf, size_t cap, const char *name, const char *value)
{
    size_t a = strlen(name), b = strlen(value);
    if (a + b + 2 > cap) return NULL;
    memcpy(buf, name, a);
    buf[a] = '=';
    memcpy(buf + a + 1, value, b + 1);
    return buf;
}

static void preinit(int argc, char **argv, char **envp)
{
    (void)argc;
    static char omp[64], blas[64], marker[128];
    static char *env[4096];
    if (!envp || env_has(envp, "APL_SET_ENV")) return; /* already re-executed once */
    char *add[3];
    int n_add = 0;
    char names[96] = "";
    if (!env_has(envp, "OMP_WAIT_POLICY")) {
        add[n_add++] = env_entry(omp, sizeof omp, "OMP_WAIT_POLICY", "PASSIVE");
        strcat(names, "OMP_WAIT_POLICY");
    }
    const char *ct = apl_blas_openblas_coretype();
    if (ct && !env_has(envp, "OPENBLAS_CORETYPE")) {
        add[n_add++] = env_entry(blas, sizeof blas, "OPENBLAS_CORETYPE", ct);
        strcat(names, n_add > 1 ? ",OPENBLAS_CORETYPE" : "OPENBLAS_CORETYPE");
    }
    if (n_add == 0) return;
    add[n_add++] = env_entry(marker, sizeof marker, "APL_SET_ENV", names);
    int n = 0;
    for (; envp[n]; n++)
        if (n + n_add + 1 >= (int)(sizeof env / sizeof env[0])) return;
        else env[n] = envp[n];
    for (int i = 0; i < n_add; i++) env[n++] = add[i];
    env[n] = NULL;
    execve("/proc/self/exe", argv, env); /* returns only on failure: run without them */
}
__attribute__((section(".preinit_array"), used)) static void (*const preinit_fn)(int, char **,
                                                                                char **) = preinit;

/* ------------------------------------------------------------------------------------------ */
/* Command line */

typedef struct {
    int interactive; /* -i */
    int version, help;
    int threads;     /* --threads N; 0: APL_THREADS or the number of cores */
    int nproc;       /* --nproc N: launch N ranks (launch.c); 0: run here */
    int script;      /* argv index of the script (or "-"), 0 when none */
    int first_arg;   /* argv index where options end */
} options;

static const char *usage_text =
    "usage: apl [options] [script [args]]\n"
    "  -e code        run code (may be repeated)\n"
    "  -i             open the REPL after running the script or code\n"
    "  --threads N    libtorch CPU threads (default: APL_THREADS, else the number of cores)\n"
    "  --nproc N      run the script as N processes of one run on this machine (apl.dist):\n"
    "                 RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set as torchrun does\n"
    "  -v, --version  print versions, the BLAS libtorch calls, threads and CUDA, then exit\n"
    "  -h, --help     print this help\n"
    "  --             stop handling options\n"
    "  -              run stdin as a script\n"
    "With no script and no -e, apl opens the REPL. Scripts see the global `apl` and the\n"
    "arguments in `arg` and `...`.\n"
    "Environment: APL_THREADS; APL_QUIET=1 (no progress lines); APL_QUIET_BLAS=1 (no reference-\n"
    "BLAS warning); APL_PROGRESS_INTERVAL (seconds between progress lines off a terminal);\n"
    "OMP_WAIT_POLICY (default PASSIVE) and OPENBLAS_CORETYPE (default: from the CPU's features).\n";

static int parse_count(const char *s)
{
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || end == s || *end || n < 1 || n > 4096) return 0;
    return (int)n;
}

/* Returns 0, or 2 after printing what is wrong. */
static int parse_args(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { i++; break; }
        if (strcmp(a, "-i") == 0) o->interactive = 1;
        else if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) o->version = 1;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) o->help = 1;
        else if (strcmp(a, "-e") == 0) {
            if (++i == argc) { fprintf(stderr, "apl: -e needs an argument\n%s", usage_text); return 2; }
        } else if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : "");
            if (!(o->threads = parse_count(v))) {
                fprintf(stderr, "apl: --threads wants a count in 1..4096, got '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--nproc") == 0 || strncmp(a, "--nproc=", 8) == 0) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : "");
            if (!(o->nproc = parse_count(v))) {
                fprintf(stderr, "apl: --nproc wants a count in 1..4096, got '%s'\n", v);
                return 2;
            }
        } else {
            fprintf(stderr, "apl: unknown option '%s'\n%s", a, usage_text);
            return 2;
        }
    }
    o->first_arg = i;
    o->script = i < argc ? i : 0;
    return 0;
}

static int has_e(int argc, char **argv, const options *o)
{
    for (int i = 1; i < o->first_arg && i < argc; i++)
        if (strcmp(argv[i], "-e") == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Threads and BLAS */

/* Cores this process may run on (taskset and cpusets shrink it), not the machine's total. */
static int core_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* libtorch uses one thread unless told: --threads, then APL_THREADS, then the core count. */
static void set_threads(const options *o)
{
    int n = o->threads;
    const char *env = getenv("APL_THREADS");
    if (!n && env && *env && !(n = parse_count(env)))
        fprintf(stderr, "apl: ignoring APL_THREADS='%s' (want a count in 1..4096)\n", env);
    apl_set_num_threads(n ? n : core_count());
}

static void warn_reference_blas(void)
{
    const char *quiet = getenv("APL_QUIET_BLAS");
    if (quiet && strcmp(quiet, "1") == 0) return;
    apl_blas_info b;
    if (apl_blas_detect(&b) != APL_OK) return;
    const char *w = apl_blas_warning(&b);
    if (w) fputs(w, stderr);
}

/* ------------------------------------------------------------------------------------------ */
/* Lua state */

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

static void preload(lua_State *L, const char *name, lua_CFunction open)
{
    lua_pushcfunction(L, open);
    lua_setfield(L, -2, name);
}

static void open_engine(lua_State *L)
{
    luaL_openlibs(L);
    set_paths(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    preload(L, "apl.tensor", luaopen_apl_tensor);
    preload(L, "apl.core.model", luaopen_apl_core_model);
    preload(L, "apl.core.tokenizer", luaopen_apl_core_tokenizer);
    preload(L, "apl.core.compute", luaopen_apl_core_compute);
    preload(L, "apl.core.oracle", luaopen_apl_core_oracle);
    preload(L, "apl.core.sys", luaopen_apl_core_sys);
    preload(L, "apl.core.dist", luaopen_apl_core_dist);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Running chunks, Ctrl-C */

static lua_State *globalL;
static volatile sig_atomic_t chunk_running; /* 1 inside docall, 0 at the prompt */
static volatile sig_atomic_t sigint_seen;   /* a Ctrl-C arrived during the current docall */

static void set_sigint(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocking read at the prompt returns EINTR */
    sigaction(SIGINT, &sa, NULL);
}

/* Runs at the next Lua instruction, call or return after a Ctrl-C. When a C loop already
 * turned this Ctrl-C into its own error (apl_check_interrupt cleared the flag), raising a
 * second one here would hit whatever code handles the first, so the hook just goes away. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    if (!apl_interrupted) return;
    apl_interrupted = 0;
    luaL_where(L, 0); /* the interrupted function's line, not its caller's */
    lua_pushliteral(L, "interrupted");
    lua_concat(L, 2);
    lua_error(L);
}

static void on_sigint(int sig)
{
    if (!chunk_running) {
        apl_prompt_sigint = 1;
        return;
    }
    sigint_seen = 1;
    apl_interrupted = 1;
    set_sigint(SIG_DFL); /* a second Ctrl-C ends the process, as in lua.c */
    (void)sig;
    lua_sethook(globalL, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below the nargs arguments with a traceback handler and Ctrl-C armed. */
int apl_docall(lua_State *L, int nargs, int nres)
{
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    globalL = L;
    sigint_seen = 0;
    apl_interrupted = 0;
    chunk_running = 1;
    set_sigint(on_sigint);
    int st = lua_pcall(L, nargs, nres, base);
    chunk_running = 0;
    set_sigint(on_sigint);
    if (sigint_seen) lua_sethook(L, NULL, 0, 0); /* one that came too late to fire */
    apl_interrupted = 0;
    lua_remove(L, base);
    return st;
}

int apl_report(lua_State *L, int st)
{
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        /* one of several ranks (apl.dist) says which it is */
        const char *rank = getenv("RANK"), *world = getenv("WORLD_SIZE");
        if (rank && world && atoi(world) > 1) fprintf(stderr, "apl [rank %s]: ", rank);
        else fputs("apl: ", stderr);
        fprintf(stderr, "%s\n", msg ? msg : "(error object is not a string)");
        fflush(stderr);
        lua_pop(L, 1);
    }
    return st;
}

/* Loads `apl` as a global so scripts and the REPL can use it without a require. */
static int load_apl(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "apl");
    int st = apl_docall(L, 1, 1);
    if (st != LUA_OK) return apl_report(L, st);
    lua_setglobal(L, "apl");
    return LUA_OK;
}

/* arg[0] is the script, arg[1..] its arguments, negative indices the program and options. */
static void create_arg_table(lua_State *L, int argc, char **argv, int script)
{
    lua_createtable(L, argc - script, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int run_chunk(lua_State *L, int st)
{
    return apl_report(L, st == LUA_OK ? apl_docall(L, 0, 0) : st);
}

static int run_script(lua_State *L, int argc, char **argv, int script)
{
    const char *name = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
    int st = luaL_loadfile(L, name);
    if (st != LUA_OK) return apl_report(L, st);
    int n = argc - script - 1;
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return apl_report(L, apl_docall(L, n, 0));
}

/* Runs every -e in order; stops at the first error. */
static int run_e_options(lua_State *L, char **argv, const options *o)
{
    for (int i = 1; i < o->first_arg; i++) {
        if (strcmp(argv[i], "-e") != 0) continue;
        i++;
        int st = run_chunk(L, luaL_loadbuffer(L, argv[i], strlen(argv[i]), "=(command line)"));
        if (st != LUA_OK) return st;
    }
    return LUA_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Version */

static void print_version(lua_State *L)
{
    lua_getglobal(L, "apl");
    lua_getfield(L, -1, "version");
    printf("apl %s\n", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    lua_pop(L, 2);
    printf("%s\n", LUA_RELEASE);
    printf("libtorch %s\n", apl_torch_version());
    apl_blas_info b;
    if (apl_blas_detect(&b) != APL_OK)
        printf("BLAS: unknown (%s)\n", apl_last_error());
    else if (b.kind == APL_BLAS_NONE)
        printf("BLAS: none found in the process (libtorch may bundle its own, e.g. MKL)\n");
    else
        printf("BLAS: %s %s%s%s%s\n", apl_blas_kind_name(b.kind), b.path, b.detail[0] ? " (" : "",
               b.detail, b.detail[0] ? ")" : "");
    if (b.kind == APL_BLAS_REFERENCE) printf("BLAS: WARNING: the reference BLAS is 10-30x slower\n");
    const char *set = getenv("APL_SET_ENV");
    if (set && strstr(set, "OPENBLAS_CORETYPE"))
        printf("BLAS: OPENBLAS_CORETYPE=%s chosen by apl from the CPU's features\n",
               getenv("OPENBLAS_CORETYPE"));
    if (set && strstr(set, "OMP_WAIT_POLICY")) printf("OpenMP: OMP_WAIT_POLICY=PASSIVE set by apl\n");
    printf("threads: %d (cores available: %d)\n", apl_get_num_threads(), core_count());
    if (apl_cuda_available())
        printf("CUDA: available, %d device(s)\n", apl_cuda_device_count());
    else
        printf("CUDA: not available\n");
}

/* ------------------------------------------------------------------------------------------ */

static int run(lua_State *L, int argc, char **argv, const options *o)
{
    if (load_apl(L) != LUA_OK) return 1;
    if (o->version) {
        print_version(L);
        return 0;
    }
    create_arg_table(L, argc, argv, o->script);
    int st = run_e_options(L, argv, o);
    if (st == LUA_OK && o->script) st = run_script(L, argc, argv, o->script);
    if (st != LUA_OK) return sigint_seen ? 130 : 1;
    if (o->interactive || (!o->script && !has_e(argc, argv, o))) {
        set_sigint(on_sigint); /* at the prompt a Ctrl-C clears the line (apl_prompt_sigint) */
        apl_repl(L);
    }
    return 0;
}

/* Large tensors stay in the heap once freed. glibc serves every block over 32 MiB with its own
 * mmap and unmaps it on free, so each training step's logits and gradients (~100 MB apiece for
 * GPT-2) came back as fresh pages the kernel had to fault in and zero: about a tenth of a DPO
 * step. Without mmap blocks, and trimming only past 2 GiB of free heap, the next step reuses
 * the same memory (measured: DPO step -20%, peak RSS +5%). RSS then stays near its high-water
 * mark between phases. A user's own MALLOC_* or GLIBC_TUNABLES settings are left alone. */
static void keep_freed_memory(void)
{
    if (getenv("MALLOC_MMAP_MAX_") || getenv("MALLOC_TRIM_THRESHOLD_") || getenv("GLIBC_TUNABLES"))
        return;
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
}

/* apl --nproc N ...: the ranks run this command line without --nproc N (launch.c). */
static int launch(int argc, char **argv, const options *o)
{
    if (!o->script) {
        fprintf(stderr, "apl: --nproc needs a script to run\n%s", usage_text);
        return 2;
    }
    char **child = calloc((size_t)argc + 1, sizeof *child);
    if (!child) return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && i < o->first_arg && strcmp(argv[i], "--nproc") == 0) i++; /* and its count */
        else if (!(i > 0 && i < o->first_arg && strncmp(argv[i], "--nproc=", 8) == 0)) child[n++] = argv[i];
    }
    int rc = apl_launch(o->nproc, child);
    free(child);
    return rc;
}

int main(int argc, char **argv)
{
    keep_freed_memory();
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc;
    if (o.help) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (o.nproc) return launch(argc, argv, &o);
    set_threads(&o);
    warn_reference_blas();
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "apl: cannot create the Lua state (out of memory)\n");
        return 1;
    }
    open_engine(L);
    rc = run(L, argc, argv, &o);
    lua_close(L);
    /* one of several ranks that ended well waits for the others before leaving (dist.h) */
    if (rc == 0 && apl_dist_finish() != APL_OK) {
        fprintf(stderr, "apl: %s\n", apl_last_error());
        rc = 1;
    }
    return rc;
}
