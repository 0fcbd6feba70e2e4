/* httpd.c: /metrics, /healthz and /readyz on libmicrohttpd.
 *
 * The listening socket is created here rather than by libmicrohttpd so that a
 * failure names the address and carries the real errno ("Address already in
 * use"), and so that an ephemeral port can be read back with getsockname().
 * libmicrohttpd then runs its own polling thread over that socket; every
 * request is answered in one call of on_request(), so there is no per-request
 * state. The only state shared with the application is the heartbeat (an
 * atomic) and the readiness and liveness fields under h->lock. */
#include "common/httpd.h"

#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"

#define REASON_MAX 256
#define LISTEN_BACKLOG 64
#define DEFAULT_MAX_CONNECTIONS 16
#define DEFAULT_TIMEOUT_S 10

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct sn_httpd {
    struct MHD_Daemon *daemon; /* NULL for an inert (disabled) handle */
    sn_metrics_t *metrics;     /* borrowed, may be NULL */
    int port;
    size_t max_bytes;
    int64_t liveness_timeout_ms;
    _Atomic int64_t last_beat_ms;
    pthread_mutex_t lock; /* guards the fields below */
    int ready;
    char reason[REASON_MAX];
    sn_httpd_liveness_cb live_fn;
    void *live_opaque;
};

/* The coarse monotonic clock is a vDSO read of a few ns: cheap enough for a
 * heartbeat on every loop iteration, and its few-ms resolution is plenty for a
 * timeout counted in seconds. */
static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Routes libmicrohttpd's own diagnostics into our log instead of its default
 * of writing to stderr in its own format. */
static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char buf[512];
    size_t len;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    len = strlen(buf);
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = '\0';
    sn_log_warn("httpd", "libmicrohttpd: %s", buf);
}

/* Queues one complete response. body is copied unless take_body is set, in
 * which case libmicrohttpd frees it with free() once sent. */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             char *body, size_t len, int take_body) {
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(
        len, body, take_body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (take_body) free(body);
        return MHD_NO; /* closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt,
                                  ...) __attribute__((format(printf, 3, 4)));

static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *fmt,
                                  ...) {
    char body[REASON_MAX + 128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(body)) n = (int)sizeof(body) - 1;
    return reply(conn, status, CT_TEXT, body, (size_t)n, 0);
}

/* Renders on the HTTP thread; the registry's mutex serialises concurrent
 * scrapes. A cap overflow is a 500 rather than a truncated body, because
 * Prometheus would otherwise silently ingest half the metrics. */
static enum MHD_Result serve_metrics(sn_httpd_t *h, struct MHD_Connection *conn) {
    char *body = NULL;
    size_t len = 0;
    int err = sn_metrics_render(h->metrics, &body, &len, h->max_bytes);

    if (err) {
        const char *why = err == SN_ERR_NOMEM ? "the output exceeds metrics.max.bytes or memory "
                                                "ran out"
                                              : sn_err_str(err);

        sn_log_error("httpd", "/metrics: rendering failed: %s (metrics.max.bytes is %zu)", why,
                     h->max_bytes);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                          "rendering metrics failed: %s (metrics.max.bytes is %zu)\n", why,
                          h->max_bytes);
    }
    return reply(conn, MHD_HTTP_OK, CT_METRICS, body, len, 1);
}

/* Liveness: the heartbeat must be fresh and the optional callback must agree.
 * A stuck main loop (deadlock, a dependency call that never returns) keeps the
 * HTTP thread answering, which is why a heartbeat is needed at all. */
static enum MHD_Result serve_health(sn_httpd_t *h, struct MHD_Connection *conn) {
    char reason[REASON_MAX] = "";
    int alive = 1;
    int64_t age = now_ms() - atomic_load_explicit(&h->last_beat_ms, memory_order_relaxed);

    if (h->liveness_timeout_ms > 0 && age > h->liveness_timeout_ms)
        return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                          "unhealthy: main loop last ticked %.1f s ago (limit %.1f s)\n",
                          (double)age / 1000.0, (double)h->liveness_timeout_ms / 1000.0);
    pthread_mutex_lock(&h->lock);
    if (h->live_fn) alive = h->live_fn(h->live_opaque, reason, sizeof(reason));
    pthread_mutex_unlock(&h->lock);
    reason[sizeof(reason) - 1] = '\0';
    if (!alive)
        return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy: %s\n",
                          reason[0] ? reason : "liveness check failed");
    return reply_text(conn, MHD_HTTP_OK, "ok\n");
}

static enum MHD_Result serve_ready(sn_httpd_t *h, struct MHD_Connection *conn) {
    char reason[REASON_MAX];
    int ready;

    pthread_mutex_lock(&h->lock);
    ready = h->ready;
    memcpy(reason, h->reason, sizeof(reason));
    pthread_mutex_unlock(&h->lock);
    if (ready) return reply_text(conn, MHD_HTTP_OK, "ok\n");
    return reply_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n",
                      reason[0] ? reason : "not marked ready");
}

/* The whole router. Every response is queued on the first call for a request,
 * which is allowed for any method; a request body (which no endpoint takes) is
 * then discarded by libmicrohttpd. Unknown paths are 404 whatever the method;
 * known paths accept GET and HEAD only (libmicrohttpd drops the body of a HEAD
 * response itself). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    sn_httpd_t *h = cls;
    int known;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    known = (strcmp(url, "/metrics") == 0 && h->metrics) || strcmp(url, "/healthz") == 0 ||
            strcmp(url, "/readyz") == 0;
    if (!known) return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (url[1] == 'm') return serve_metrics(h, conn);
    if (url[1] == 'h') return serve_health(h, conn);
    return serve_ready(h, conn);
}

/* Formats bind:port the way a user would type it, brackets around IPv6. */
static void fmt_addr(char *buf, size_t size, const char *host, int port) {
    if (strchr(host, ':'))
        snprintf(buf, size, "[%s]:%d", host, port);
    else
        snprintf(buf, size, "%s:%d", host, port);
}

/* Resolves host and returns a listening, non-blocking socket for the first
 * address that binds. SO_REUSEADDR lets a restarted process rebind while old
 * connections sit in TIME_WAIT; it does not let two processes listen on one
 * port, so a port in use is still reported. */
static int listen_on(const char *host, int port, int *fd_out, int *port_out, char *errstr,
                     size_t errstr_size) {
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char portstr[16], addr[300], ebuf[128];
    int fd = -1, rc, err = 0, one = 1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%d", port);
    fmt_addr(addr, sizeof(addr), host, port);
    rc = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
    if (rc != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "metrics endpoint: cannot resolve %s (metrics.bind): %s", addr,
                          gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, LISTEN_BACKLOG) == 0) break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return sn_err_set(errstr, errstr_size, err == EADDRINUSE ? SN_ERR_TRANSIENT : SN_ERR_IO,
                          "metrics endpoint: cannot listen on %s: %s%s", addr,
                          strerror_r(err, ebuf, sizeof(ebuf)),
                          err == EADDRINUSE
                              ? " (another process holds the port; set metrics.port or "
                                "metrics.bind)"
                              : "");
    if (getsockname(fd, (struct sockaddr *)&ss, &sslen) != 0) {
        err = errno;
        close(fd);
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "metrics endpoint: getsockname %s: %s",
                          addr, strerror_r(err, ebuf, sizeof(ebuf)));
    }
    if (ss.ss_family == AF_INET6)
        *port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return 0;
}

/* Allocates a handle with no server: used as is for a disabled endpoint. */
static sn_httpd_t *handle_new(sn_metrics_t *metrics) {
    sn_httpd_t *h = calloc(1, sizeof(*h));

    if (!h) return NULL;
    h->metrics = metrics;
    h->max_bytes = SN_METRICS_DEFAULT_MAX_BYTES;
    atomic_init(&h->last_beat_ms, now_ms());
    pthread_mutex_init(&h->lock, NULL);
    snprintf(h->reason, sizeof(h->reason), "starting");
    return h;
}

sn_httpd_t *sn_httpd_new_opts(const sn_httpd_opts_t *opts, sn_metrics_t *metrics, char *errstr,
                              size_t errstr_size) {
    sn_httpd_t *h = NULL;
    const char *host;
    char addr[300];
    int fd = -1;

    if (!opts || opts->port < 0 || opts->port > 65535 || opts->liveness_timeout_ms < 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "metrics endpoint: invalid options");
        return NULL;
    }
    host = opts->bind ? opts->bind : "0.0.0.0";
    h = handle_new(metrics);
    if (!h) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "metrics endpoint: out of memory");
        return NULL;
    }
    h->max_bytes = opts->max_bytes ? opts->max_bytes : SN_METRICS_DEFAULT_MAX_BYTES;
    h->liveness_timeout_ms = opts->liveness_timeout_ms;
    if (listen_on(host, opts->port, &fd, &h->port, errstr, errstr_size) != 0) goto fail;
    /* On failure libmicrohttpd closes the socket it was given (checked with
     * 0.9.75), so fd is not closed again here. */
    h->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG, 0,
                         NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                         MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_CONNECTION_LIMIT,
                         opts->max_connections ? opts->max_connections : DEFAULT_MAX_CONNECTIONS,
                         MHD_OPTION_CONNECTION_TIMEOUT,
                         opts->timeout_s ? opts->timeout_s : DEFAULT_TIMEOUT_S, MHD_OPTION_END);
    if (!h->daemon) {
        fmt_addr(addr, sizeof(addr), host, h->port);
        sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                   "metrics endpoint: libmicrohttpd failed to start on %s", addr);
        goto fail;
    }
    fmt_addr(addr, sizeof(addr), host, h->port);
    sn_log_info("httpd", "serving /metrics /healthz /readyz on http://%s", addr);
    return h;
fail:
    sn_httpd_destroy(h);
    return NULL;
}

sn_httpd_t *sn_httpd_new(const sn_conf_t *conf, sn_metrics_t *metrics, char *errstr,
                         size_t errstr_size) {
    sn_httpd_opts_t opts;
    sn_httpd_t *h;

    if (!conf) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "metrics endpoint: no configuration");
        return NULL;
    }
    memset(&opts, 0, sizeof(opts));
    opts.port = (int)sn_conf_int(conf, "metrics.port");
    if (opts.port == 0) {
        h = handle_new(metrics);
        if (!h)
            sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "metrics endpoint: out of memory");
        else
            sn_log_info("httpd", "metrics endpoint disabled (metrics.port=0)");
        return h;
    }
    opts.bind = sn_conf_str(conf, "metrics.bind");
    opts.max_connections = (unsigned)sn_conf_int(conf, "metrics.max.connections");
    opts.timeout_s = (unsigned)sn_conf_int(conf, "metrics.connection.timeout.s");
    opts.max_bytes = (size_t)sn_conf_int(conf, "metrics.max.bytes");
    opts.liveness_timeout_ms = sn_conf_int(conf, "metrics.liveness.timeout.ms");
    return sn_httpd_new_opts(&opts, metrics, errstr, errstr_size);
}

void sn_httpd_destroy(sn_httpd_t *h) {
    if (!h) return;
    if (h->daemon) MHD_stop_daemon(h->daemon); /* joins its thread, closes the socket */
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int sn_httpd_port(const sn_httpd_t *h) { return h && h->daemon ? h->port : 0; }

void sn_httpd_heartbeat(sn_httpd_t *h) {
    if (h) atomic_store_explicit(&h->last_beat_ms, now_ms(), memory_order_relaxed);
}

void sn_httpd_set_liveness(sn_httpd_t *h, sn_httpd_liveness_cb fn, void *opaque) {
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->live_fn = fn;
    h->live_opaque = fn ? opaque : NULL;
    pthread_mutex_unlock(&h->lock);
}

void sn_httpd_set_ready(sn_httpd_t *h, int ready, const char *reason) {
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    h->ready = ready != 0;
    snprintf(h->reason, sizeof(h->reason), "%s", reason ? reason : "");
    pthread_mutex_unlock(&h->lock);
}
