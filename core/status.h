/* status.h — statuses and the thread-local last-error message shared by every core module.
 *
 *   apl_status st = apl_model_load(dir, APL_F32, APL_CPU, &m);
 *   if (st != APL_OK) fprintf(stderr, "%s\n", apl_last_error());
 *
 * A function that fails returns a status (or NULL, for tensor ops) and leaves a message that
 * names what failed: "config.json: missing \"n_layer\"". The message lives in thread-local
 * storage until the next apl_set_error on the same thread; callers copy it if they keep it.
 */
#ifndef APL_STATUS_H
#define APL_STATUS_H

#include <signal.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    APL_OK = 0,
    APL_EINVAL,   /* bad argument or input */
    APL_EIO,      /* file or socket error */
    APL_ENOMEM,
    APL_EFORMAT,  /* malformed file: safetensors, JSON, tokenizer, config */
    APL_ETORCH,   /* libtorch raised an exception */
    APL_ENOTFOUND,
    APL_EINTR,    /* interrupted by Ctrl-C */
    APL_ENET,     /* HTTP/oracle failure */
    APL_EUNSUPPORTED
} apl_status;

/* printf-style; returns `st` so that `return apl_fail(APL_EINVAL, "...")` reads naturally. */
apl_status apl_fail(apl_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void apl_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *apl_last_error(void);
void apl_clear_error(void);
const char *apl_status_name(apl_status st);

/* Set by the SIGINT handler of the apl program; long C loops poll it and return APL_EINTR. */
extern volatile sig_atomic_t apl_interrupted;
/* Returns APL_EINTR (and clears the flag, sets the message) when Ctrl-C was pressed. */
apl_status apl_check_interrupt(void);

/* Progress reporting from long C loops to whoever drives them (the Lua layer prints it). */
typedef void (*apl_progress_fn)(void *ud, const char *phase, long done, long total);

#ifdef __cplusplus
}
#endif
#endif
