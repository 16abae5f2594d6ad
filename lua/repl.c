/* repl.c — the apl REPL: reads a line, runs it, prints its values (see repl.h).
 *
 * Each line is first compiled as `return <line>`, so that an expression prints its value;
 * otherwise as a statement, and a syntax error at <eof> reads continuation lines (">> ").
 * Results print through apl.show.line (lua/apl/show.lua): tables by their contents.
 * On a terminal, readline gives history and Tab completion; Ctrl-C at the prompt clears the
 * line (main.c's SIGINT handler sets apl_prompt_sigint while no chunk runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "apl_lua.h"
#include "blas.h"
#include "repl.h"

#define PROMPT "> "
#define PROMPT2 ">> "
#define HISTORY_LINES 1000

volatile sig_atomic_t apl_prompt_sigint;

static lua_State *replL; /* for readline's completion callback, which has no user data */

enum { LINE_EOF, LINE_OK, LINE_CANCELLED };

static int use_readline;
static char history_path[PATH_MAX];

/* readline's own reader retries on EINTR; this one turns a Ctrl-C at the prompt into "accept
 * the line", which the REPL then throws away: the line (and any pending continuation) clears. */
static int repl_getc(FILE *f)
{
    for (;;) {
        unsigned char c;
        ssize_t n = read(fileno(f), &c, 1);
        if (n == 1) return c;
        if (n == 0 || errno != EINTR) return EOF;
        if (apl_prompt_sigint) {
            rl_echo_signal_char(SIGINT);
            return '\n';
        }
        rl_check_signals(); /* a window resize */
    }
}

static void history_open(void)
{
    const char *home = getenv("HOME");
    if (!home || !*home) return;
    snprintf(history_path, sizeof history_path, "%s/.apl_history", home);
    using_history();
    read_history(history_path);
}

static void history_add(const char *entry)
{
    if (!use_readline || !*entry) return;
    add_history(entry);
    if (!history_path[0]) return;
    /* Appending each entry keeps the history of a session that is killed. */
    if (access(history_path, F_OK) != 0) write_history(history_path);
    else append_history(1, history_path);
}

static void history_close(void)
{
    if (use_readline && history_path[0]) history_truncate_file(history_path, HISTORY_LINES);
}

/* Pushes the next input line (without its newline). */
static int pushline(lua_State *L, int first)
{
    apl_prompt_sigint = 0;
    if (use_readline) {
        char *b = readline(first ? PROMPT : PROMPT2);
        int cancelled = apl_prompt_sigint;
        apl_prompt_sigint = 0;
        if (!b) return LINE_EOF;
        if (cancelled) {
            free(b);
            return LINE_CANCELLED;
        }
        lua_pushstring(L, b);
        free(b);
        return LINE_OK;
    }
    char *b = NULL;
    size_t cap = 0;
    ssize_t n;
    for (;;) {
        errno = 0;
        n = getline(&b, &cap, stdin);
        if (n >= 0 || errno != EINTR) break;
        clearerr(stdin);
        if (apl_prompt_sigint) {
            free(b);
            apl_prompt_sigint = 0;
            return LINE_CANCELLED;
        }
    }
    if (n < 0) {
        free(b);
        return LINE_EOF;
    }
    if (n > 0 && b[n - 1] == '\n') b[--n] = 0;
    lua_pushlstring(L, b, (size_t)n);
    free(b);
    return LINE_OK;
}

/* "return <line>" first, so that an expression prints its value. */
static int addreturn(lua_State *L)
{
    const char *line = lua_tostring(L, -1);
    const char *ret = lua_pushfstring(L, "return %s;", line);
    int st = luaL_loadbuffer(L, ret, strlen(ret), "=stdin");
    if (st == LUA_OK) {
        lua_remove(L, -2); /* the modified line */
        history_add(line);
    } else {
        lua_pop(L, 2);
    }
    return st;
}

/* A syntax error that ends at <eof> means the statement goes on in the next line. */
static int incomplete(lua_State *L, int st)
{
    if (st != LUA_ERRSYNTAX) return 0;
    size_t len;
    const char *msg = lua_tolstring(L, -1, &len);
    if (len < 5 || strcmp(msg + len - 5, "<eof>") != 0) return 0;
    lua_pop(L, 1);
    return 1;
}

/* Reads continuation lines until the chunk compiles or fails for good; -1: cancelled/EOF. */
static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *line = lua_tolstring(L, 1, &len);
        int st = luaL_loadbuffer(L, line, len, "=stdin");
        if (!incomplete(L, st)) {
            history_add(line);
            return st;
        }
        int got = pushline(L, 0);
        if (got != LINE_OK) return -1;
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Leaves a compiled chunk (or an error message) on the stack; -1 when there is nothing to run. */
static int loadline(lua_State *L, int *eof)
{
    lua_settop(L, 0);
    int got = pushline(L, 1);
    if (got != LINE_OK) {
        *eof = got == LINE_EOF;
        return -1;
    }
    int st = addreturn(L);
    if (st != LUA_OK) st = multiline(L);
    if (st == -1) {
        *eof = 0;
        lua_settop(L, 0);
        return -1;
    }
    lua_remove(L, 1);
    return st;
}

/* apl.show.line in the registry, which prints tables by their contents; LUA_NOREF when it did
 * not load, and the REPL prints with tostring. */
static int show_ref = LUA_NOREF;

static void load_show(lua_State *L)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "apl.show");
    int st = lua_pcall(L, 1, 1, 0);
    if (st == LUA_OK && lua_getfield(L, -1, "line") == LUA_TFUNCTION)
        show_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else
        fprintf(stderr, "apl: values print with tostring: apl.show did not load (%s)\n",
                st != LUA_OK && lua_isstring(L, -1) ? lua_tostring(L, -1) : "no apl.show.line");
    lua_settop(L, top);
}

/* Prints every result with tostring (so tensors use __tostring), separated by tabs. */
static int print_tostring(lua_State *L)
{
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        size_t len;
        const char *s = luaL_tolstring(L, i, &len);
        if (i > 1) fputc('\t', stdout);
        fwrite(s, 1, len, stdout);
        lua_pop(L, 1);
    }
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

/* Prints the results as apl.show.line writes them: nothing when it returns nil (a helper that
 * printed its result itself). Runs under apl_docall: a __tostring may raise. */
static int print_results(lua_State *L)
{
    if (show_ref == LUA_NOREF) return print_tostring(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, show_ref);
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!s) return 0;
    fwrite(s, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Tab completion: globals and keywords, then fields after '.' and methods after ':' (the keys of
 * a value and of its metatable's __index table). Lookups are raw, so completing never runs Lua
 * code and never loads a lazy apl submodule. */

static const char *const keywords[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while", NULL,
};

/* Appends head .. k to the table at `out` for each identifier key k of the table at `src` that
 * starts with `part`. */
static void add_matches(lua_State *L, int out, int src, const char *head, size_t headlen,
                        const char *part)
{
    size_t plen = strlen(part);
    lua_pushnil(L);
    while (lua_next(L, src)) {
        size_t klen;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &klen) : NULL;
        if (k && klen >= plen && strncmp(k, part, plen) == 0 && strspn(k, "abcdefghijklmnopqrstuvwxyz"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == klen) {
            lua_pushlstring(L, head, headlen);
            lua_pushvalue(L, -3);
            lua_concat(L, 2);
            lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
        }
        lua_pop(L, 1);
    }
}

/* The value a prefix such as "apl.tensor" names, looked up raw; nil when there is none. */
static void walk(lua_State *L, const char *path, size_t len)
{
    lua_pushglobaltable(L);
    const char *p = path, *end = path + len;
    while (p < end && !lua_isnil(L, -1)) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        lua_pushlstring(L, p, n);
        if (lua_istable(L, -2)) {
            lua_rawget(L, -2);
        } else {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
        lua_remove(L, -2);
        p += n + 1;
    }
}

/* Runs protected: light userdata `word` -> table of completions. */
static int collect_completions(lua_State *L)
{
    const char *word = lua_touserdata(L, 1);
    const char *sep = strrchr(word, '.'), *colon = strrchr(word, ':');
    if (colon > sep) sep = colon;
    lua_newtable(L);
    int out = lua_gettop(L);
    size_t headlen = sep ? (size_t)(sep - word) + 1 : 0;
    if (sep) walk(L, word, (size_t)(sep - word));
    else lua_pushglobaltable(L);
    int v = lua_gettop(L);
    const char *part = word + headlen;
    if (lua_istable(L, v)) add_matches(L, out, v, word, headlen, part);
    if (luaL_getmetafield(L, v, "__index") == LUA_TTABLE)
        add_matches(L, out, lua_gettop(L), word, headlen, part);
    if (!sep)
        for (const char *const *k = keywords; *k; k++)
            if (strncmp(*k, part, strlen(part)) == 0) {
                lua_pushstring(L, *k);
                lua_rawseti(L, out, (lua_Integer)lua_rawlen(L, out) + 1);
            }
    lua_settop(L, out);
    return 1;
}

static char **completions;
static size_t completions_next;

/* readline takes ownership of each returned string. */
static char *completion_generator(const char *text, int state)
{
    (void)text;
    if (state == 0) completions_next = 0;
    return completions && completions[completions_next] ? completions[completions_next++] : NULL;
}

static char **repl_complete(const char *text, int start, int end)
{
    (void)start, (void)end;
    rl_attempted_completion_over = 1; /* no file-name completion */
    rl_completion_append_character = '\0'; /* readline resets it to ' ' before each attempt */
    lua_State *L = replL;
    int top = lua_gettop(L);
    free(completions); /* the strings went to readline */
    completions = NULL;
    lua_pushcfunction(L, collect_completions);
    lua_pushlightuserdata(L, (void *)text);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
        size_t n = lua_rawlen(L, -1);
        completions = calloc(n + 1, sizeof *completions);
        for (size_t i = 0; completions && i < n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            completions[i] = strdup(lua_tostring(L, -1));
            lua_pop(L, 1);
            if (!completions[i]) break; /* out of memory: offer what there is */
        }
    }
    lua_settop(L, top);
    return completions ? rl_completion_matches(text, completion_generator) : NULL;
}

static void print_banner(void)
{
    apl_blas_info b;
    const char *blas = apl_blas_detect(&b) == APL_OK ? apl_blas_kind_name(b.kind) : "unknown";
    printf("apl — %s, libtorch %s, BLAS %s, %d threads, CUDA %s\n", LUA_RELEASE,
           apl_torch_version(), blas, apl_get_num_threads(),
           apl_cuda_available() ? "available" : "not available");
    printf("Expressions print their value. Ctrl-C interrupts, Ctrl-D quits.\n");
}

void apl_repl(lua_State *L)
{
    int tty = isatty(STDIN_FILENO);
    use_readline = tty;
    if (tty) {
        rl_readline_name = "apl";
        rl_catch_signals = 0; /* Ctrl-C is ours (repl_getc); readline keeps SIGWINCH */
        rl_getc_function = repl_getc;
        rl_attempted_completion_function = repl_complete;
        rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{}()[],+-*/%^~#";
        history_open();
        print_banner();
    }
    replL = L;
    load_show(L);
    for (;;) {
        int eof = 0;
        int st = loadline(L, &eof);
        if (st == -1) {
            if (eof) break;
            continue;
        }
        if (st == LUA_OK) st = apl_docall(L, 0, LUA_MULTRET);
        if (st == LUA_OK && lua_gettop(L) > 0) {
            lua_pushcfunction(L, print_results);
            lua_insert(L, 1);
            st = apl_docall(L, lua_gettop(L) - 1, 0);
        }
        apl_report(L, st);
    }
    lua_settop(L, 0);
    luaL_unref(L, LUA_REGISTRYINDEX, show_ref);
    show_ref = LUA_NOREF;
    free(completions);
    completions = NULL;
    history_close();
}
