/* The model registry: round trips (register, fetch, alias, history,
 * rollback, list) on the file backend, and the same suite on a real MLflow
 * tracking server when SN_MLFLOW_URL names one (tests/integration/
 * test_mlflow.sh starts it and sets the variable) and on a real S3 server
 * when SN_S3_REGISTRY_URL and SN_S3_ENDPOINT name one (tests/integration/
 * test_registry_s3.sh sets them); without them those tests are skipped.
 * Also the S3 URL parsing and the model card's validation. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/err.h"
#include "common/s3_conf.h"
#include "scoring/card.h"
#include "scoring/registry.h"
#include "scoring/registry_int.h"

#define V SN_REGISTRY_VERSION_MAX

static char dir[64], url[600];
static const sn_conf_t *reg_conf; /* the s3.* keys of S3 registries; NULL elsewhere */

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = 0;
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* A minimal valid card for a model of the given bytes. */
static char *make_card(const uint8_t *model, size_t len, double pr_auc) {
    char sha[65], *card = malloc(2048);

    sn_card_sha256_hex(model, len, sha);
    snprintf(
        card, 2048,
        "{\"card_version\": 1, \"created\": \"2026-01-01T00:00:00Z\", \"parent_version\": null,"
        " \"model\": {\"name\": \"t\", \"format\": \"ubj\", \"sha256\": \"%s\", \"bytes\": %zu, "
        "\"nfeatures\": 2,"
        " \"rounds\": 1},"
        " \"feature_spec\": {\"version\": 1}, \"feature_names\": [\"a\", \"b\"],"
        " \"label\": {\"kind\": \"field\", \"field\": \"label\"},"
        " \"threshold\": {\"value\": 0.25, \"policy\": \"max-f1\"},"
        " \"metrics\": {\"holdout\": {\"pr_auc\": %.6f, \"roc_auc\": 0.9}},"
        " \"data\": {\"sha256\": \"%s\"}}",
        sha, len, pr_auc, sha);
    return card;
}

static sn_registry_t *open_reg(const char *u, const char *name) {
    char err[512];
    sn_registry_opts_t o = {.url = u, .model_name = name, .timeout_ms = 20000, .conf = reg_conf};
    sn_registry_t *reg = sn_registry_new(&o, err, sizeof(err));

    cr_assert_not_null(reg, "%s", err);
    return reg;
}

/* The whole life of a model name: the same assertions for every backend. */
static void round_trip(const char *u, const char *name) {
    sn_registry_t *reg = open_reg(u, name);
    char err[512], v1[V], v2[V], v3[V], got[V], hist[8][V];
    uint8_t m1[] = "model one bytes", m2[] = "model two, different", m3[] = "three", *bm = NULL;
    char *c1 = make_card(m1, sizeof(m1), 0.7), *c2 = make_card(m2, sizeof(m2), 0.8),
         *c3 = make_card(m3, sizeof(m3), 0.6);
    char *bc = NULL;
    size_t lm = 0, lc = 0, n = 0;
    sn_registry_entry_t *list = NULL;

    cr_assert_eq(sn_registry_get_alias(reg, "production", got, err, sizeof(err)), SN_ERR_NOENT,
                 "%s", err);
    cr_assert_eq(sn_registry_register(reg, m1, sizeof(m1), c1, strlen(c1), v1, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(sn_registry_register(reg, m2, sizeof(m2), c2, strlen(c2), v2, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(sn_registry_register(reg, m3, sizeof(m3), c3, strlen(c3), v3, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(strtol(v2, NULL, 10), strtol(v1, NULL, 10) + 1);
    cr_assert_eq(strtol(v3, NULL, 10), strtol(v2, NULL, 10) + 1);

    /* download: the bytes that went in */
    cr_assert_eq(sn_registry_fetch(reg, v2, &bm, &lm, &bc, &lc, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(lm, sizeof(m2));
    cr_assert_eq(memcmp(bm, m2, lm), 0);
    cr_assert_eq(lc, strlen(c2));
    cr_assert_str_eq(bc, c2);
    free(bm);
    free(bc);
    cr_assert_eq(sn_registry_fetch(reg, "999", &bm, &lm, NULL, NULL, err, sizeof(err)),
                 SN_ERR_NOENT, "%s", err);
    cr_assert_eq(sn_registry_fetch(reg, "../1", &bm, &lm, NULL, NULL, err, sizeof(err)),
                 SN_ERR_INVALID);

    /* aliases and their history */
    cr_assert_eq(sn_registry_set_alias(reg, "production", v1, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_set_alias(reg, "production", v2, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_set_alias(reg, "production", v2, err, sizeof(err)), 0, "%s",
                 err); /* no-op */
    cr_assert_eq(sn_registry_set_alias(reg, "production", v3, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_set_alias(reg, "challenger", v1, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_get_alias(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v3);
    cr_assert_eq(sn_registry_alias_history(reg, "production", hist, 8, &n, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(hist[0], v2);
    cr_assert_str_eq(hist[1], v1);
    cr_assert_eq(sn_registry_set_alias(reg, "production", "999", err, sizeof(err)), SN_ERR_NOENT,
                 "%s", err);
    cr_assert_eq(sn_registry_set_alias(reg, "latest", v1, err, sizeof(err)), SN_ERR_INVALID);
    cr_assert_eq(sn_registry_set_alias(reg, "v2", v1, err, sizeof(err)), SN_ERR_INVALID);
    cr_assert_eq(sn_registry_set_alias(reg, "a/b", v1, err, sizeof(err)), SN_ERR_INVALID);

    /* listing shows every version and who points at it */
    cr_assert_eq(sn_registry_list(reg, 0, &list, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(list[0].version, v1);
    cr_assert_str_eq(list[0].aliases, "challenger");
    cr_assert_str_eq(list[1].aliases, "");
    cr_assert_str_eq(list[2].version, v3);
    cr_assert_str_eq(list[2].aliases, "production");
    cr_assert_gt(list[2].created_ms, 0);
    free(list);
    cr_assert_eq(sn_registry_list(reg, 2, &list, &n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(list[0].version, v2);
    free(list);

    /* rollback walks the history back, then has nowhere to go */
    cr_assert_eq(sn_registry_rollback(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v2);
    cr_assert_eq(sn_registry_get_alias(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v2);
    cr_assert_eq(sn_registry_rollback(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v1);
    cr_assert_eq(sn_registry_rollback(reg, "production", got, err, sizeof(err)), SN_ERR_NOENT, "%s",
                 err);
    cr_assert_eq(sn_registry_get_alias(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v1);
    cr_assert_eq(sn_registry_rollback(reg, "challenger", got, err, sizeof(err)), SN_ERR_NOENT);

    /* a promotion after a rollback is rolled back to where it came from */
    cr_assert_eq(sn_registry_set_alias(reg, "production", v3, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_rollback(reg, "production", got, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(got, v1);
    free(c1);
    free(c2);
    free(c3);
    sn_registry_destroy(reg);
}

/* Removes a test's temporary tree. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void file_setup(void) {
    snprintf(dir, sizeof(dir), "/tmp/sn_reg_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "file://%s", dir);
}

static void file_teardown(void) { rm_tree(dir); }

TestSuite(registry_file, .init = file_setup, .fini = file_teardown);

Test(registry_file, round_trip) {
    char path[256];
    FILE *fp;

    round_trip(url, "sentinel");
    /* the layout is the documented one, readable with cat */
    snprintf(path, sizeof(path), "%s/sentinel/versions/2/model.ubj", dir);
    cr_assert_eq(access(path, R_OK), 0);
    snprintf(path, sizeof(path), "%s/sentinel/aliases/production", dir);
    fp = fopen(path, "r");
    cr_assert_not_null(fp);
    cr_assert_eq(fgetc(fp), '1');
    fclose(fp);
}

Test(registry_file, names_are_separate) {
    char err[512], v[V];
    sn_registry_t *a = open_reg(url, "alpha"), *b = open_reg(url, "beta");
    uint8_t m[] = "m";
    char *c = make_card(m, sizeof(m), 0.5);

    cr_assert_eq(sn_registry_register(a, m, sizeof(m), c, strlen(c), v, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(sn_registry_set_alias(a, "production", v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_get_alias(b, "production", v, err, sizeof(err)), SN_ERR_NOENT);
    free(c);
    sn_registry_destroy(a);
    sn_registry_destroy(b);
}

/* kids processes register per_kid versions each at once, each writing the
 * numbers it got to a pipe; returns the listing and checks that every
 * registration got its own number and that the listing holds them all. */
static void race(const char *u, const char *name, int kids, int per_kid, sn_registry_entry_t **list,
                 size_t *n) {
    pid_t pids[16];
    int fds[2], seen[1024] = {0}, got = 0;
    char err[512], buf[16];
    sn_registry_t *reg;
    FILE *in;

    cr_assert(kids <= 16 && kids * per_kid < 512);
    cr_assert_eq(pipe(fds), 0);
    for (int k = 0; k < kids; k++) {
        if ((pids[k] = fork()) == 0) {
            sn_registry_t *r = open_reg(u, name);
            uint8_t m[] = "race model";
            char *c = make_card(m, sizeof(m), 0.5), v[V], e[512];

            close(fds[0]);
            for (int i = 0; i < per_kid; i++) {
                if (sn_registry_register(r, m, sizeof(m), c, strlen(c), v, e, sizeof(e)) != 0) {
                    fprintf(stderr, "register: %s\n", e);
                    _exit(1);
                }
                dprintf(fds[1], "%s\n", v);
            }
            _exit(0);
        }
    }
    close(fds[1]);
    in = fdopen(fds[0], "r");
    while (fgets(buf, sizeof(buf), in)) {
        long v = strtol(buf, NULL, 10);

        cr_assert(v > 0 && v < 1024, "version %ld", v);
        cr_assert_eq(seen[v], 0, "version %ld handed out twice", v);
        seen[v] = 1;
        got++;
    }
    fclose(in);
    for (int k = 0; k < kids; k++) {
        int st;

        waitpid(pids[k], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    cr_assert_eq(got, kids * per_kid);
    reg = open_reg(u, name);
    cr_assert_eq(sn_registry_list(reg, 0, list, n, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(*n, (size_t)got);
    for (size_t i = 0; i < *n; i++) cr_assert(seen[strtol((*list)[i].version, NULL, 10)]);
    sn_registry_destroy(reg);
}

/* Two processes registering at once get distinct version numbers (the
 * version folder is published with rename, which refuses a taken number). */
Test(registry_file, concurrent_registrations_get_distinct_versions) {
    sn_registry_entry_t *list = NULL;
    size_t n = 0;

    race(url, "race", 4, 10, &list, &n);
    for (size_t i = 0; i < n; i++) cr_assert_eq(strtol(list[i].version, NULL, 10), (long)i + 1);
    free(list);
}

Test(registry_file, refuses_bad_urls_and_names) {
    char err[512];
    sn_registry_opts_t o = {.url = "s3://bucket", .model_name = "m"};

    o.url = "ftp://bucket";
    cr_assert_null(sn_registry_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "neither"), "%s", err);
    o.url = url;
    o.model_name = "../escape";
    cr_assert_null(sn_registry_new(&o, err, sizeof(err)));
    o.model_name = "";
    cr_assert_null(sn_registry_new(&o, err, sizeof(err)));
}

/* ---- MLflow, against the server test_mlflow.sh starts ---- */

static const char *mlflow_url(void) {
    const char *u = getenv("SN_MLFLOW_URL");

    if (!u || !*u)
        cr_skip_test("SN_MLFLOW_URL is not set (tests/integration/test_mlflow.sh sets it)");
    return u;
}

Test(registry_mlflow, round_trip, .timeout = 120) {
    const char *u = mlflow_url();
    char name[64];

    /* a fresh model name per run: the server may have seen earlier runs */
    snprintf(name, sizeof(name), "sentinel-test-%ld-%d", (long)time(NULL), (int)getpid());
    round_trip(u, name);
}

Test(registry_mlflow, real_model_round_trip_and_unreachable_server, .timeout = 120) {
    const char *u = mlflow_url();
    char name[64], err[512], v[V];
    size_t len, lm = 0;
    uint8_t *model = read_all(SN_SOURCE_DIR "/tests/data/model/fixture.ubj", &len), *back = NULL;
    char *card = make_card(model, len, 0.77);
    sn_registry_t *reg, *down;

    snprintf(name, sizeof(name), "sentinel-real-%ld-%d", (long)time(NULL), (int)getpid());
    reg = open_reg(u, name);
    cr_assert_eq(sn_registry_register(reg, model, len, card, strlen(card), v, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_str_eq(v, "1");
    cr_assert_eq(sn_registry_fetch(reg, v, &back, &lm, NULL, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(lm, len);
    cr_assert_eq(memcmp(back, model, len), 0,
                 "binary model bytes changed on the way through MLflow");
    free(back);
    sn_registry_destroy(reg);
    /* nothing listens on port 1: transient, retry later */
    down = open_reg("mlflow+http://127.0.0.1:1", name);
    cr_assert_eq(sn_registry_get_alias(down, "production", v, err, sizeof(err)), SN_ERR_TRANSIENT,
                 "%s", err);
    sn_registry_destroy(down);
    free(card);
    free(model);
}

/* ---- S3: the URL, then against the server test_registry_s3.sh names ---- */

Test(registry_s3, parses_urls) {
    char b[64], p[600], err[512];

    cr_assert_eq(
        sn_registry_s3_parse_url("s3://sentinel", b, sizeof(b), p, sizeof(p), err, sizeof(err)), 0,
        "%s", err);
    cr_assert_str_eq(b, "sentinel");
    cr_assert_str_eq(p, "");
    cr_assert_eq(sn_registry_s3_parse_url("s3://my.bucket-1/models/prod/", b, sizeof(b), p,
                                          sizeof(p), err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(b, "my.bucket-1");
    cr_assert_str_eq(p, "models/prod", "a trailing slash is dropped");
    cr_assert_eq(sn_registry_s3_parse_url("s3://b1/", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
                 SN_ERR_INVALID, "a 2-letter bucket");
    cr_assert(strstr(err, "s3://b1/") && strstr(err, "bucket"), "%s", err);
    cr_assert_eq(
        sn_registry_s3_parse_url("s3://Upper/x", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
        SN_ERR_INVALID);
    cr_assert_eq(sn_registry_s3_parse_url("s3://", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
                 SN_ERR_INVALID);
    cr_assert_eq(sn_registry_s3_parse_url("s3://bucket/a/../b", b, sizeof(b), p, sizeof(p), err,
                                          sizeof(err)),
                 SN_ERR_INVALID);
    cr_assert(strstr(err, "prefix"), "%s", err);
    cr_assert_eq(
        sn_registry_s3_parse_url("s3://bucket/a//b", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
        SN_ERR_INVALID);
    cr_assert_eq(
        sn_registry_s3_parse_url("s3://bucket/a b", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
        SN_ERR_INVALID);
    cr_assert_eq(
        sn_registry_s3_parse_url("s3://bucket/./x", b, sizeof(b), p, sizeof(p), err, sizeof(err)),
        SN_ERR_INVALID);
    cr_assert_eq(sn_registry_s3_parse_url("s3://bucket/..x/y.z", b, sizeof(b), p, sizeof(p), err,
                                          sizeof(err)),
                 0, "dots inside a segment are fine: %s", err);
}

Test(registry_s3, parses_last_modified) {
    cr_assert_eq(sn_registry_s3_parse_time("1970-01-01T00:00:01.000Z"), 1000);
    cr_assert_eq(sn_registry_s3_parse_time("2026-01-02T03:04:05.678Z"), 1767323045678LL);
    cr_assert_eq(sn_registry_s3_parse_time("2026-01-02T03:04:05Z"), 1767323045000LL);
    cr_assert_eq(sn_registry_s3_parse_time("2026-01-02T03:04:05.6Z"), 1767323045600LL);
    cr_assert_eq(sn_registry_s3_parse_time("Fri, 02 Jan 2026"), 0);
    cr_assert_eq(sn_registry_s3_parse_time(NULL), 0);
}

Test(registry_s3, new_refuses_bad_urls_without_contacting_s3) {
    char err[512];
    sn_registry_opts_t o = {.url = "s3://x", .model_name = "m"};
    sn_registry_t *reg;

    cr_assert_null(sn_registry_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "s3://x"), "%s", err);
    o.url = "s3://bucket/p";
    reg = sn_registry_new(&o, err, sizeof(err));
    cr_assert_not_null(reg, "%s", err);
    cr_assert_str_eq(sn_registry_kind(reg), "s3");
    sn_registry_destroy(reg);
}

static sn_conf_t *s3_conf;
static char s3_url[600];

/* The registry URL is a fresh prefix of the run; the endpoint and
 * credentials come from the stack's environment (AWS_* variables). */
static void s3_setup(void) {
    const sn_conf_def_t *tables[] = {sn_s3_conf_defs};
    const char *u = getenv("SN_S3_REGISTRY_URL"), *ep = getenv("SN_S3_ENDPOINT");
    char err[512];

    if (!u || !*u || !ep || !*ep)
        cr_skip_test("SN_S3_REGISTRY_URL/SN_S3_ENDPOINT are not set "
                     "(tests/integration/test_registry_s3.sh sets them)");
    s3_conf = sn_conf_new(tables, 1, err, sizeof(err));
    cr_assert_not_null(s3_conf, "%s", err);
    cr_assert_eq(sn_conf_set(s3_conf, "s3.endpoint", ep, "test", err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_conf_set(s3_conf, "s3.max.retries", "1", "test", err, sizeof(err)), 0);
    cr_assert_eq(sn_conf_set(s3_conf, "s3.retry.backoff.ms", "10", "test", err, sizeof(err)), 0);
    reg_conf = s3_conf;
    /* a fresh sub-prefix per test: the tests of a run must not see each other */
    snprintf(s3_url, sizeof(s3_url), "%s/%ld-%d", u, (long)time(NULL), (int)getpid());
}

static void s3_teardown(void) {
    reg_conf = NULL;
    sn_conf_destroy(s3_conf);
    s3_conf = NULL;
}

TestSuite(registry_s3_live, .init = s3_setup, .fini = s3_teardown, .timeout = 180);

Test(registry_s3_live, round_trip) { round_trip(s3_url, "sentinel"); }

Test(registry_s3_live, names_are_separate_and_layout_is_documented) {
    char err[512], v[V];
    sn_registry_t *a = open_reg(s3_url, "alpha"), *b = open_reg(s3_url, "beta");
    uint8_t m[] = "m";
    char *c = make_card(m, sizeof(m), 0.5);

    cr_assert_eq(sn_registry_register(a, m, sizeof(m), c, strlen(c), v, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_str_eq(v, "1");
    cr_assert_eq(sn_registry_set_alias(a, "production", v, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_registry_get_alias(b, "production", v, err, sizeof(err)), SN_ERR_NOENT);
    cr_assert(strstr(err, "s3://") && strstr(err, "not set"), "%s", err);
    free(c);
    sn_registry_destroy(a);
    sn_registry_destroy(b);
}

Test(registry_s3_live, real_model_round_trip) {
    char err[512], v[V];
    size_t len, lm = 0;
    uint8_t *model = read_all(SN_SOURCE_DIR "/tests/data/model/fixture.ubj", &len), *back = NULL;
    char *card = make_card(model, len, 0.77);
    sn_registry_t *reg = open_reg(s3_url, "real");
    sn_card_t *c;

    cr_assert_eq(sn_registry_register(reg, model, len, card, strlen(card), v, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(sn_registry_fetch(reg, v, &back, &lm, NULL, NULL, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(lm, len);
    cr_assert_eq(memcmp(back, model, len), 0, "binary model bytes changed on the way through S3");
    c = sn_card_parse(card, strlen(card), err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(sn_card_verify_model(c, back, lm, err, sizeof(err)), 0, "%s", err);
    sn_card_destroy(c);
    free(back);
    free(card);
    free(model);
    sn_registry_destroy(reg);
}

/* Four processes registering ten versions each at once never share a number
 * (the claims of registry_s3.c; the server's If-None-Match alone does not
 * guarantee it). Numbers may be skipped under contention. */
Test(registry_s3_live, concurrent_registrations_get_distinct_versions) {
    sn_registry_entry_t *list = NULL;
    size_t n = 0;
    long last;

    race(s3_url, "race", 4, 10, &list, &n);
    last = strtol(list[n - 1].version, NULL, 10);
    cr_assert_geq(last, 40);
    printf("registry_s3 race: 40 registrations by 4 processes, highest version %ld (%ld skipped)\n",
           last, last - 40);
    free(list);
}

Test(registry_s3_live, errors_name_the_url) {
    const sn_conf_def_t *tables[] = {sn_s3_conf_defs};
    char err[512], v[V], bad_url[700];
    sn_conf_t *c = sn_conf_new(tables, 1, err, sizeof(err));
    sn_registry_t *reg;

    /* a wrong secret: fatal, not retried, named */
    cr_assert_eq(sn_conf_set(c, "s3.endpoint", getenv("SN_S3_ENDPOINT"), "t", err, sizeof(err)), 0);
    cr_assert_eq(sn_conf_set(c, "s3.access.key.id", "sentinel", "t", err, sizeof(err)), 0);
    cr_assert_eq(sn_conf_set(c, "s3.secret.access.key", "wrong", "t", err, sizeof(err)), 0);
    reg_conf = c;
    reg = open_reg(s3_url, "sentinel");
    cr_assert_eq(sn_registry_get_alias(reg, "production", v, err, sizeof(err)), SN_ERR_FATAL, "%s",
                 err);
    cr_assert(strstr(err, s3_url) && strstr(err, "access denied") && strstr(err, "403"), "%s", err);
    cr_assert_null(strstr(err, "wrong"), "the secret is not shown: %s", err);
    sn_registry_destroy(reg);
    /* a bucket that does not exist: a configuration error, named */
    reg_conf = s3_conf;
    snprintf(bad_url, sizeof(bad_url), "s3://no-such-bucket-%d/x", (int)getpid());
    reg = open_reg(bad_url, "sentinel");
    cr_assert_eq(sn_registry_get_alias(reg, "production", v, err, sizeof(err)), SN_ERR_INVALID,
                 "%s", err);
    cr_assert(strstr(err, "no such bucket") && strstr(err, bad_url), "%s", err);
    sn_registry_list(reg, 0, &(sn_registry_entry_t *){NULL}, &(size_t){0}, err, sizeof(err));
    cr_assert(strstr(err, "no such bucket"), "%s", err);
    sn_registry_destroy(reg);
    /* nothing listens: transient, retry later */
    cr_assert_eq(sn_conf_set(c, "s3.endpoint", "http://127.0.0.1:1", "t", err, sizeof(err)), 0);
    cr_assert_eq(sn_conf_set(c, "s3.max.retries", "0", "t", err, sizeof(err)), 0);
    reg_conf = c;
    reg = open_reg(s3_url, "sentinel");
    cr_assert_eq(sn_registry_get_alias(reg, "production", v, err, sizeof(err)), SN_ERR_TRANSIENT,
                 "%s", err);
    cr_assert(strstr(err, s3_url) && strstr(err, "retry later"), "%s", err);
    sn_registry_destroy(reg);
    reg_conf = s3_conf;
    sn_conf_destroy(c);
}

/* ---- the card ---- */

Test(card, validation) {
    uint8_t m[] = "bytes";
    char *good = make_card(m, sizeof(m), 0.8), err[512], *bad;
    sn_card_t *c = sn_card_parse(good, strlen(good), err, sizeof(err));
    char *dump;

    cr_assert_not_null(c, "%s", err);
    cr_assert_eq(sn_card_nfeatures(c), 2);
    cr_assert_float_eq(sn_card_threshold(c), 0.25, 0);
    cr_assert_float_eq(sn_card_metric(c, "holdout", "pr_auc"), 0.8, 1e-12);
    cr_assert(isnan(sn_card_metric(c, "holdout", "nope")));
    cr_assert_eq(sn_card_verify_model(c, m, sizeof(m), err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_card_verify_model(c, "other", 5, err, sizeof(err)), SN_ERR_INVALID);
    cr_assert_eq(sn_card_profile(c, 0, &(sn_card_profile_t){0}), SN_ERR_NOENT);
    cr_assert_eq(sn_card_set_parent_version(c, "4"), 0);
    dump = sn_card_dump(c);
    sn_card_destroy(c);
    c = sn_card_parse(dump, strlen(dump), err, sizeof(err));
    cr_assert_not_null(c, "%s", err);
    cr_assert_str_eq(sn_card_parent_version(c), "4");
    sn_card_destroy(c);
    free(dump);

    /* every required part is checked */
    bad = strdup(good);
    memcpy(strstr(bad, "\"nfeatures\": 2"), "\"nfeatures\": 3", 14);
    cr_assert_null(sn_card_parse(bad, strlen(bad), err, sizeof(err)));
    cr_assert(strstr(err, "feature names"), "%s", err);
    free(bad);
    bad = strdup(good);
    memcpy(strstr(bad, "\"value\": 0.25"), "\"value\": 1.25", 13);
    cr_assert_null(sn_card_parse(bad, strlen(bad), err, sizeof(err)));
    cr_assert(strstr(err, "threshold"), "%s", err);
    free(bad);
    cr_assert_null(sn_card_parse("[1]", 3, err, sizeof(err)));
    cr_assert_null(sn_card_parse("{\"card_version\": 1}", 19, err, sizeof(err)));
    cr_assert(strstr(err, "created"), "%s", err);
    free(good);
}

Test(card, profile_bins) {
    double edges[] = {0, 1, 2, 3, 4};
    sn_card_profile_t p = {.bins = 4, .edges = edges};

    cr_assert_eq(sn_card_profile_bin(&p, -5), 0);
    cr_assert_eq(sn_card_profile_bin(&p, 0.5), 0);
    cr_assert_eq(sn_card_profile_bin(&p, 1), 1); /* an edge opens its bin */
    cr_assert_eq(sn_card_profile_bin(&p, 2.5), 2);
    cr_assert_eq(sn_card_profile_bin(&p, 3), 3);
    cr_assert_eq(sn_card_profile_bin(&p, 99), 3);
}
