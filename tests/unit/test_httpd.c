/* Metrics and health endpoint: a real server on an ephemeral 127.0.0.1 port,
 * talked to with libcurl: /metrics, /healthz (heartbeat and callback),
 * /readyz before and after sn_httpd_set_ready, 404, 405, HEAD, the response
 * cap, the config path (disabled and enabled), and the port-in-use error. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/common_conf.h"
#include "common/conf.h"
#include "common/err.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/metrics_conf.h"

static void setup(void) {
    sn_log_set_level(SN_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void) { curl_global_cleanup(); }

TestSuite(httpd, .init = setup, .fini = teardown);

struct resp {
    long status;
    char body[65536];
    size_t len;
    char ctype[128];
    char allow[64];
};

static size_t on_body(char *p, size_t size, size_t nmemb, void *opaque) {
    struct resp *r = opaque;
    size_t n = size * nmemb, room = sizeof(r->body) - 1 - r->len;

    memcpy(r->body + r->len, p, n < room ? n : room);
    r->len += n < room ? n : room;
    r->body[r->len] = '\0';
    return n;
}

/* Keeps the Allow header, which curl does not expose directly. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *opaque) {
    struct resp *r = opaque;
    size_t n = size * nmemb;

    if (n > 7 && strncasecmp(p, "Allow: ", 7) == 0) {
        size_t len = n - 7;

        while (len && (p[7 + len - 1] == '\r' || p[7 + len - 1] == '\n')) len--;
        if (len >= sizeof(r->allow)) len = sizeof(r->allow) - 1;
        memcpy(r->allow, p + 7, len);
        r->allow[len] = '\0';
    }
    return n;
}

/* One request; method is "GET", "HEAD" or anything else (sent as is). */
static void request(int port, const char *method, const char *path, struct resp *r) {
    char url[128];
    char *ctype = NULL;
    CURL *c = curl_easy_init();
    CURLcode rc;

    cr_assert_not_null(c);
    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ctype);
    if (ctype) snprintf(r->ctype, sizeof(r->ctype), "%s", ctype);
    curl_easy_cleanup(c);
}

static sn_httpd_t *start(sn_metrics_t *reg, int64_t liveness_ms, size_t max_bytes) {
    sn_httpd_opts_t opts = {.bind = "127.0.0.1",
                            .port = 0,
                            .max_connections = 4,
                            .timeout_s = 5,
                            .liveness_timeout_ms = liveness_ms,
                            .max_bytes = max_bytes};
    char errstr[256] = "";
    sn_httpd_t *h = sn_httpd_new_opts(&opts, reg, errstr, sizeof(errstr));

    cr_assert_not_null(h, "%s", errstr);
    cr_assert_gt(sn_httpd_port(h), 0);
    return h;
}

static sn_metrics_t *new_reg(void) {
    char errstr[128];
    sn_metrics_t *reg = sn_metrics_new(0, errstr, sizeof(errstr));

    cr_assert_not_null(reg, "%s", errstr);
    return reg;
}

/* A socket listening on 127.0.0.1 on a kernel-chosen port, to occupy it. */
static int hold_port(int *port) {
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, 1), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

Test(httpd, metrics_endpoint_serves_the_registry) {
    sn_metrics_t *reg = new_reg();
    sn_httpd_t *h;
    struct resp r;

    sn_counter_add(sn_metrics_counter(reg, "sentinel_events_total", "Events."), 7);
    h = start(reg, 0, 0);
    request(sn_httpd_port(h), "GET", "/metrics", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_not_null(strstr(r.body, "# TYPE sentinel_events_total counter\n"
                                      "sentinel_events_total 7\n"),
                       "%s", r.body);
    /* Values are live: the next scrape sees the next value. */
    sn_counter_inc(sn_metrics_counter(reg, "sentinel_events_total", "Events."));
    request(sn_httpd_port(h), "GET", "/metrics?x=1", &r);
    cr_assert_not_null(strstr(r.body, "sentinel_events_total 8\n"), "%s", r.body);
    /* HEAD: same status and headers, no body. */
    request(sn_httpd_port(h), "HEAD", "/metrics", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    sn_httpd_destroy(h);
    sn_metrics_destroy(reg);
}

Test(httpd, unknown_paths_and_methods) {
    sn_metrics_t *reg = new_reg();
    sn_httpd_t *h = start(reg, 0, 0);
    struct resp r;

    request(sn_httpd_port(h), "GET", "/nope", &r);
    cr_assert_eq(r.status, 404);
    request(sn_httpd_port(h), "GET", "/metrics/", &r);
    cr_assert_eq(r.status, 404);
    request(sn_httpd_port(h), "GET", "/", &r);
    cr_assert_eq(r.status, 404);
    request(sn_httpd_port(h), "POST", "/metrics", &r);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(r.allow, "GET, HEAD");
    request(sn_httpd_port(h), "DELETE", "/readyz", &r);
    cr_assert_eq(r.status, 405);
    request(sn_httpd_port(h), "PUT", "/nope", &r);
    cr_assert_eq(r.status, 404);
    sn_httpd_destroy(h);
    sn_metrics_destroy(reg);
}

Test(httpd, readyz_follows_set_ready) {
    sn_httpd_t *h = start(NULL, 0, 0);
    struct resp r;

    request(sn_httpd_port(h), "GET", "/readyz", &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "not ready: starting\n");
    sn_httpd_set_ready(h, 0, "kafka: not connected");
    request(sn_httpd_port(h), "GET", "/readyz", &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "not ready: kafka: not connected\n");
    cr_assert_str_eq(r.ctype, "text/plain; charset=utf-8");
    sn_httpd_set_ready(h, 1, NULL);
    request(sn_httpd_port(h), "GET", "/readyz", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    sn_httpd_set_ready(h, 0, "model: not loaded");
    request(sn_httpd_port(h), "GET", "/readyz", &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "not ready: model: not loaded\n");
    /* No registry: /metrics does not exist. */
    request(sn_httpd_port(h), "GET", "/metrics", &r);
    cr_assert_eq(r.status, 404);
    sn_httpd_destroy(h);
}

Test(httpd, healthz_needs_a_recent_heartbeat) {
    /* Generous limit so that a slow run (valgrind) does not flake. */
    sn_httpd_t *h = start(NULL, 1000, 0);
    struct resp r;

    sn_httpd_heartbeat(h);
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "ok\n");
    sleep_ms(1600);
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 503);
    cr_assert_not_null(strstr(r.body, "unhealthy: main loop last ticked"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "(limit 1.0 s)"), "%s", r.body);
    sn_httpd_heartbeat(h);
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 200);
    sn_httpd_destroy(h);
}

static int stuck(void *opaque, char *reason, size_t reason_size) {
    int *alive = opaque;

    if (*alive) return 1;
    snprintf(reason, reason_size, "redis: call stuck for 60 s");
    return 0;
}

Test(httpd, healthz_asks_the_liveness_callback) {
    sn_httpd_t *h = start(NULL, 0, 0);
    int alive = 0;
    struct resp r;

    sn_httpd_set_liveness(h, stuck, &alive);
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 503);
    cr_assert_str_eq(r.body, "unhealthy: redis: call stuck for 60 s\n");
    alive = 1;
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 200);
    alive = 0;
    sn_httpd_set_liveness(h, NULL, NULL);
    request(sn_httpd_port(h), "GET", "/healthz", &r);
    cr_assert_eq(r.status, 200);
    sn_httpd_destroy(h);
}

Test(httpd, oversized_metrics_are_a_500) {
    sn_metrics_t *reg = new_reg();
    sn_httpd_t *h;
    struct resp r;

    for (int i = 0; i < 100; i++) {
        char name[64];

        snprintf(name, sizeof(name), "sentinel_pad_%d_total", i);
        sn_counter_inc(sn_metrics_counter(reg, name, "Padding to pass the cap."));
    }
    h = start(reg, 0, 4096);
    request(sn_httpd_port(h), "GET", "/metrics", &r);
    cr_assert_eq(r.status, 500);
    cr_assert_not_null(strstr(r.body, "metrics.max.bytes"), "%s", r.body);
    request(sn_httpd_port(h), "GET", "/healthz", &r); /* the server lives on */
    cr_assert_eq(r.status, 200);
    sn_httpd_destroy(h);
    sn_metrics_destroy(reg);
}

Test(httpd, port_in_use_names_the_address) {
    char errstr[256] = "", want[64];
    int port, fd = hold_port(&port);
    sn_httpd_opts_t opts = {.bind = "127.0.0.1", .port = port};

    cr_assert_null(sn_httpd_new_opts(&opts, NULL, errstr, sizeof(errstr)));
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    cr_assert_not_null(strstr(errstr, want), "%s", errstr);
    cr_assert_not_null(strstr(errstr, "Address already in use"), "%s", errstr);
    close(fd);
}

Test(httpd, bad_bind_address_is_an_error) {
    char errstr[256] = "";
    sn_httpd_opts_t opts = {.bind = "no-such-host.invalid", .port = 0};

    cr_assert_null(sn_httpd_new_opts(&opts, NULL, errstr, sizeof(errstr)));
    cr_assert_not_null(strstr(errstr, "no-such-host.invalid"), "%s", errstr);
    opts.bind = "127.0.0.1";
    opts.port = 70000;
    cr_assert_null(sn_httpd_new_opts(&opts, NULL, errstr, sizeof(errstr)));
    cr_assert_null(sn_httpd_new_opts(NULL, NULL, errstr, sizeof(errstr)));
}

static sn_conf_t *new_conf(void) {
    char errstr[256];
    sn_conf_t *conf =
        sn_conf_new((const sn_conf_def_t *const[]){sn_common_conf_defs, sn_metrics_conf_defs}, 2,
                    errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    return conf;
}

Test(httpd, config_defaults_and_disabled_port) {
    sn_conf_t *conf = new_conf();
    char errstr[256] = "";
    sn_httpd_t *h;

    cr_assert_eq(sn_conf_int(conf, "metrics.port"), 9464);
    cr_assert_str_eq(sn_conf_str(conf, "metrics.bind"), "0.0.0.0");
    cr_assert_eq(sn_conf_set(conf, "metrics.port", "70000", "-X", errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert_eq(sn_conf_set(conf, "metrics.port", "0", "-X", errstr, sizeof(errstr)), 0);
    h = sn_httpd_new(conf, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(h, "%s", errstr);
    cr_assert_eq(sn_httpd_port(h), 0);
    /* The inert handle takes every call. */
    sn_httpd_heartbeat(h);
    sn_httpd_set_ready(h, 1, "x");
    sn_httpd_set_liveness(h, stuck, NULL);
    sn_httpd_destroy(h);
    sn_conf_destroy(conf);
}

Test(httpd, config_port_and_bind) {
    sn_conf_t *conf = new_conf();
    char errstr[256] = "", port_s[16], want[64];
    int port, fd = hold_port(&port);
    sn_httpd_t *h;
    struct resp r;

    snprintf(port_s, sizeof(port_s), "%d", port);
    cr_assert_eq(sn_conf_set(conf, "metrics.bind", "127.0.0.1", "-X", errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_conf_set(conf, "metrics.port", port_s, "-X", errstr, sizeof(errstr)), 0);
    /* Held by us: the error names the configured address. */
    cr_assert_null(sn_httpd_new(conf, NULL, errstr, sizeof(errstr)));
    snprintf(want, sizeof(want), "127.0.0.1:%d", port);
    cr_assert_not_null(strstr(errstr, want), "%s", errstr);
    /* Released: now it binds there. */
    close(fd);
    h = sn_httpd_new(conf, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(h, "%s", errstr);
    cr_assert_eq(sn_httpd_port(h), port);
    request(port, "GET", "/healthz", &r);
    cr_assert_eq(r.status, 200);
    sn_httpd_destroy(h);
    sn_conf_destroy(conf);
}

Test(httpd, null_handle_is_safe) {
    sn_httpd_destroy(NULL);
    sn_httpd_heartbeat(NULL);
    sn_httpd_set_ready(NULL, 1, "x");
    sn_httpd_set_liveness(NULL, NULL, NULL);
    cr_assert_eq(sn_httpd_port(NULL), 0);
}
