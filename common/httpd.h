/* httpd.h: the metrics and health HTTP endpoint (libmicrohttpd).
 *
 * Serves, on one port, from a thread of its own:
 *   GET /metrics  200, text/plain; version=0.0.4: sn_metrics_render() of the
 *                 registry (500 when the output passes metrics.max.bytes)
 *   GET /healthz  liveness: 200 "ok" while the process is alive and its main
 *                 loop has called sn_httpd_heartbeat() within
 *                 metrics.liveness.timeout.ms (and the optional liveness
 *                 callback agrees); 503 with the reason otherwise
 *   GET /readyz   readiness: 200 "ok" once the application called
 *                 sn_httpd_set_ready(h, 1, ...); 503 with its reason otherwise
 *                 (the initial reason is "starting")
 *   anything else 404; a method other than GET or HEAD gets 405 (with Allow)
 *
 * Bounded: metrics.max.connections at once, idle connections closed after
 * metrics.connection.timeout.s, responses capped by metrics.max.bytes.
 *
 * The application's only hot-path call is sn_httpd_heartbeat(), one clock read
 * and one relaxed atomic store. Every function accepts NULL. */
#ifndef SN_HTTPD_H
#define SN_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "common/metrics.h"

typedef struct sn_httpd sn_httpd_t;

/* Everything sn_httpd_new() reads from the configuration, for callers (tests,
 * tools) that start the endpoint without one. */
typedef struct sn_httpd_opts {
    const char *bind;            /* address or host name; borrowed for the call */
    int port;                    /* 0 here means an ephemeral port (see sn_httpd_port) */
    unsigned max_connections;    /* 0: 16 */
    unsigned timeout_s;          /* idle connection timeout; 0: 10 */
    int64_t liveness_timeout_ms; /* 0: no heartbeat check */
    size_t max_bytes;            /* /metrics response cap; 0: SN_METRICS_DEFAULT_MAX_BYTES */
} sn_httpd_opts_t;

/* Application liveness check, called on the HTTP thread for each /healthz:
 * returns 1 when alive, 0 when not, with a reason written to reason (always
 * NUL-terminated by the caller's buffer size). Must be thread-safe and quick
 * and must not call sn_httpd_* functions. */
typedef int (*sn_httpd_liveness_cb)(void *opaque, char *reason, size_t reason_size);

/* Starts the endpoint on metrics.bind:metrics.port (sn_metrics_conf_defs must be
 * among conf's tables). conf is borrowed for the call; metrics is borrowed and
 * must outlive the handle (it may be NULL: /metrics then answers 404).
 *
 * metrics.port = 0 disables the endpoint: a valid, inert handle is returned,
 * on which every function works and does nothing (sn_httpd_port() is 0), so
 * the application needs no special case. Returns NULL with errstr filled when
 * the address cannot be resolved or bound, e.g.
 * "metrics endpoint: cannot listen on 0.0.0.0:9464: Address already in use". */
sn_httpd_t *sn_httpd_new(const sn_conf_t *conf, sn_metrics_t *metrics, char *errstr,
                         size_t errstr_size);

/* Same as sn_httpd_new() from explicit options; opts is borrowed for the call.
 * opts->port 0 binds an ephemeral port (read it back with sn_httpd_port()). */
sn_httpd_t *sn_httpd_new_opts(const sn_httpd_opts_t *opts, sn_metrics_t *metrics, char *errstr,
                              size_t errstr_size);

/* Stops the server (waits for the request in progress) and frees the handle.
 * NULL-safe. Destroy it before the metrics registry it serves. */
void sn_httpd_destroy(sn_httpd_t *h);

/* The bound TCP port, or 0 for an inert (disabled) handle or NULL. */
int sn_httpd_port(const sn_httpd_t *h);

/* Records that the main loop is making progress; call it once per iteration
 * (or at least every metrics.liveness.timeout.ms). Lock-free. */
void sn_httpd_heartbeat(sn_httpd_t *h);

/* Sets (or with fn NULL clears) the liveness callback; opaque is borrowed
 * until cleared or the handle is destroyed. Once this returns, the previous
 * callback is not running and will not run again. */
void sn_httpd_set_liveness(sn_httpd_t *h, sn_httpd_liveness_cb fn, void *opaque);

/* Marks the application ready (ready != 0) or not, with a reason shown by
 * /readyz ("kafka: not connected"); reason is copied (truncated to 255 bytes)
 * and may be NULL. */
void sn_httpd_set_ready(sn_httpd_t *h, int ready, const char *reason);

#endif
