#include "status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error[2048];
volatile sig_atomic_t apl_interrupted = 0;

static void set_error_v(const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
}

void apl_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(fmt, ap);
    va_end(ap);
}

apl_status apl_fail(apl_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_error_v(fmt, ap);
    va_end(ap);
    return st;
}

const char *apl_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

void apl_clear_error(void) { last_error[0] = 0; }

const char *apl_status_name(apl_status st)
{
    switch (st) {
    case APL_OK: return "ok";
    case APL_EINVAL: return "invalid argument";
    case APL_EIO: return "I/O error";
    case APL_ENOMEM: return "out of memory";
    case APL_EFORMAT: return "malformed input";
    case APL_ETORCH: return "libtorch error";
    case APL_ENOTFOUND: return "not found";
    case APL_EINTR: return "interrupted";
    case APL_ENET: return "network error";
    case APL_EUNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

apl_status apl_check_interrupt(void)
{
    if (!apl_interrupted) return APL_OK;
    apl_interrupted = 0;
    return apl_fail(APL_EINTR, "interrupted");
}
