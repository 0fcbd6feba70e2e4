#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *sn_err_str(int err) {
    switch (err) {
    case SN_OK: return "ok";
    case SN_ERR_INVALID: return "invalid";
    case SN_ERR_NOMEM: return "out of memory";
    case SN_ERR_TRANSIENT: return "transient";
    case SN_ERR_FATAL: return "fatal";
    case SN_ERR_NOENT: return "not found";
    case SN_ERR_IO: return "i/o error";
    case SN_ERR_UNSUPPORTED: return "unsupported";
    default: return "unknown error";
    }
}

int sn_err_set(char *errstr, size_t errstr_size, int err, const char *fmt, ...) {
    va_list ap;

    if (errstr && errstr_size > 0) {
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
    }
    return err;
}
