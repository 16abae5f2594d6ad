/* repl.h — the apl REPL (repl.c) and the two things it takes from the program around it
 * (main.c): running a chunk with Ctrl-C armed, and reporting its error.
 *
 *   apl_repl(L);   // reads, runs and prints lines from stdin until EOF; returns with L's stack empty
 *
 * Ctrl-C is main.c's: one SIGINT handler interrupts a running chunk, and while no chunk runs it
 * only sets apl_prompt_sigint, which the REPL reads to clear the line being typed.
 */
#ifndef APL_REPL_H
#define APL_REPL_H

#include <signal.h>

#include <lua.h>

/* repl.c. On a terminal: readline with history (~/.apl_history) and Tab completion, and a
 * banner; otherwise plain lines without prompts. */
void apl_repl(lua_State *L);

/* Set by main.c's SIGINT handler when a Ctrl-C arrives while no chunk runs (at the prompt). */
extern volatile sig_atomic_t apl_prompt_sigint;

/* main.c. Calls the function below the nargs arguments with a traceback handler and Ctrl-C
 * armed; returns lua_pcall's status, the error message (with its traceback) on top. */
int apl_docall(lua_State *L, int nargs, int nres);
/* When st is not LUA_OK, prints the message on top of the stack to stderr and pops it. Returns st. */
int apl_report(lua_State *L, int st);

#endif
