/* err.h: the error codes every Sentinel function returns.
 *
 * Functions return 0 on success or a negative enum sn_err. The class tells the
 * caller what to do next: INVALID means the input or usage is wrong and retrying
 * will not help; TRANSIENT means retry later (a dependency is down); FATAL means
 * exit and let the supervisor restart. Details go in an errstr buffer that the
 * caller passes in, librdkafka style. */
#ifndef SN_ERR_H
#define SN_ERR_H

#include <stddef.h>

enum sn_err {
    SN_OK = 0,
    SN_ERR_INVALID = -1,     /* bad input, usage or config */
    SN_ERR_NOMEM = -2,       /* allocation failed or a size cap was hit */
    SN_ERR_TRANSIENT = -3,   /* dependency unavailable: retry with backoff */
    SN_ERR_FATAL = -4,       /* unrecoverable: exit */
    SN_ERR_NOENT = -5,       /* a named thing does not exist */
    SN_ERR_IO = -6,          /* file or socket I/O failed */
    SN_ERR_UNSUPPORTED = -7, /* valid but not implemented here */
};

/* Exit codes shared by every subcommand. */
enum sn_exit {
    SN_EXIT_OK = 0,
    SN_EXIT_RUNTIME = 1,
    SN_EXIT_USAGE = 2,
};

/* Short lower-case name of an error code ("invalid", "transient", ...). */
const char *sn_err_str(int err);

/* Formats into errstr (always NUL-terminated when errstr_size > 0) and returns
 * err, so that a failure can be reported in one statement:
 *     return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "bad %s", key); */
int sn_err_set(char *errstr, size_t errstr_size, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
