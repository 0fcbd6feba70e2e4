/* test_schema_registry.c: the codec's Schema Registry client against a
 * PROTOCOL FIXTURE (tests/data/codec/fake_registry.py, a few lines of Python
 * speaking the Confluent REST endpoints), not a real registry: it pins paths,
 * headers, basic auth, caching, timeouts and the error classes. The real
 * registry is exercised by tests/integration/test_schema_registry.sh. */
#include <criterion/criterion.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common_conf.h"
#include "common/err.h"
#include "schemas/codec.h"
#include "schemas/schemas_conf.h"

#ifndef SN_SOURCE_DIR
#define SN_SOURCE_DIR "."
#endif
#define DATA SN_SOURCE_DIR "/tests/data/codec"

extern char **environ;

static pid_t server_pid = -1;
static int server_port;
static char url[128];
static char errstr[512];

/* Starts the fixture (optionally requiring basic auth) and reads its port. */
static void start_registry(const char *user, const char *password) {
    int fds[2];
    posix_spawn_file_actions_t fa;
    char *argv[10] = {"python3", DATA "/fake_registry.py", "--dir", DATA, NULL};
    FILE *out;

    if (user) {
        argv[4] = "--user";
        argv[5] = (char *)user;
        argv[6] = "--password";
        argv[7] = (char *)password;
        argv[8] = NULL;
    }
    cr_assert_eq(pipe(fds), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    cr_assert_eq(posix_spawnp(&server_pid, "python3", &fa, NULL, argv, environ), 0,
                 "python3 is needed for the registry protocol fixture");
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    out = fdopen(fds[0], "r");
    cr_assert_eq(fscanf(out, "%d", &server_port), 1, "fixture did not print its port");
    fclose(out);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", server_port);
}

static void stop_registry(void) {
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
        server_pid = -1;
    }
}

static void setup(void) { start_registry(NULL, NULL); }

static sn_codec_t *mk(const char *const *kv) {
    const sn_conf_def_t *const tables[] = {sn_common_conf_defs, sn_schemas_conf_defs};
    sn_conf_t *conf = sn_conf_new(tables, 2, errstr, sizeof(errstr));
    sn_codec_t *c;

    cr_assert_not_null(conf);
    cr_assert_eq(sn_conf_set(conf, "schema.dir", DATA, "t", errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_conf_set(conf, "schema.reader", SN_SOURCE_DIR "/schemas/telemetry.avsc", "t",
                             errstr, sizeof(errstr)),
                 0);
    for (size_t i = 0; kv && kv[i]; i += 2)
        cr_assert_eq(sn_conf_set(conf, kv[i], kv[i + 1], "t", errstr, sizeof(errstr)), 0, "%s",
                     errstr);
    c = sn_codec_new(conf, errstr, sizeof(errstr));
    sn_conf_destroy(conf);
    cr_assert_not_null(c, "%s", errstr);
    return c;
}

#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})

static sn_event_t event(void) {
    sn_event_t ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "press-017");
    ev.ts_ms = 1700000000123;
    ev.nvalues = 6;
    for (int i = 0; i < 5; i++) ev.values[i] = 10 + i;
    ev.values[5] = 2;
    return ev;
}

/* A frame carrying writer id `id` with a v1 body (made by a local codec). */
static size_t frame(uint8_t *buf, size_t size, uint32_t id) {
    sn_codec_t *local = mk(NULL);
    sn_event_t ev = event();
    size_t len = 0;

    cr_assert_eq(sn_codec_encode(local, &ev, buf, size, &len, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    sn_codec_destroy(local);
    buf[1] = (uint8_t)(id >> 24);
    buf[2] = (uint8_t)(id >> 16);
    buf[3] = (uint8_t)(id >> 8);
    buf[4] = (uint8_t)id;
    return len;
}

/* How often the fixture saw path, from its /stats. */
static int hits(const char *path) {
    char cmd[512], line[4096];
    FILE *p;
    const char *at;
    char key[256];
    int n = 0;

    snprintf(cmd, sizeof(cmd), "curl -s %s/stats", url);
    p = popen(cmd, "r");
    cr_assert_not_null(p);
    line[0] = '\0';
    if (!fgets(line, sizeof(line), p)) line[0] = '\0';
    pclose(p);
    snprintf(key, sizeof(key), "\"%s\": ", path);
    if ((at = strstr(line, key))) n = (int)strtol(at + strlen(key), NULL, 10);
    return n;
}

static int decode(sn_codec_t *c, const uint8_t *buf, size_t len, enum sn_codec_error_class *cls) {
    sn_event_t ev;

    return sn_codec_decode(c, buf, len, &ev, cls, NULL, errstr, sizeof(errstr));
}

TestSuite(registry, .init = setup, .fini = stop_registry, .timeout = 60);

Test(registry, fetches_once_per_id) {
    sn_codec_t *c = mk(KV("schema.registry.url", url));
    uint8_t buf[512];
    size_t len = frame(buf, sizeof(buf), 1);
    enum sn_codec_error_class cls;

    for (int i = 0; i < 5; i++) {
        cr_assert_eq(decode(c, buf, len, &cls), 0, "%s", errstr);
        cr_assert_eq(cls, SN_CODEC_OK);
    }
    cr_assert_eq(hits("/schemas/ids/1"), 1, "ids are immutable: fetched once");
    sn_codec_destroy(c);
}

Test(registry, unknown_id_is_a_bad_record_and_remembered) {
    sn_codec_t *c = mk(KV("schema.registry.url", url));
    sn_codec_t *forget =
        mk(KV("schema.registry.url", url, "schema.registry.unknown.retry.ms", "0"));
    uint8_t buf[512];
    size_t len = frame(buf, sizeof(buf), 99);
    enum sn_codec_error_class cls;

    for (int i = 0; i < 3; i++) {
        cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_INVALID);
        cr_assert_eq(cls, SN_CODEC_UNKNOWN_SCHEMA, "%s", errstr);
    }
    cr_assert_eq(hits("/schemas/ids/99"), 1);
    for (int i = 0; i < 2; i++) cr_assert_eq(decode(forget, buf, len, &cls), SN_ERR_INVALID);
    cr_assert_eq(hits("/schemas/ids/99"), 3);
    sn_codec_destroy(c);
    sn_codec_destroy(forget);
}

Test(registry, outages_are_transient_not_bad_records) {
    sn_codec_t *c = mk(KV("schema.registry.url", url, "schema.registry.timeout.ms", "300"));
    uint8_t buf[512];
    size_t len = frame(buf, sizeof(buf), 503);
    enum sn_codec_error_class cls;
    struct timespec t0, t1;

    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_TRANSIENT, "%s", errstr);
    cr_assert_eq(cls, SN_CODEC_SCHEMA_UNAVAILABLE);
    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_TRANSIENT, "not cached: asked again");
    cr_assert_eq(hits("/schemas/ids/503"), 2);

    len = frame(buf, sizeof(buf), 77); /* answers after 3 s */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_TRANSIENT, "%s", errstr);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 2, "the timeout bounds the request");
    cr_assert_eq(cls, SN_CODEC_SCHEMA_UNAVAILABLE);
    sn_codec_destroy(c);

    stop_registry(); /* nothing listens any more */
    c = mk(KV("schema.registry.url", url));
    len = frame(buf, sizeof(buf), 1);
    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_TRANSIENT, "%s", errstr);
    cr_assert_eq(cls, SN_CODEC_SCHEMA_UNAVAILABLE);
    cr_assert_not_null(strstr(errstr, "unreachable"), "%s", errstr);
    sn_codec_destroy(c);
}

Test(registry, not_avro_is_incompatible) {
    sn_codec_t *c = mk(KV("schema.registry.url", url));
    uint8_t buf[512];
    size_t len = frame(buf, sizeof(buf), 600);
    enum sn_codec_error_class cls;

    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_INVALID);
    cr_assert_eq(cls, SN_CODEC_INCOMPATIBLE_SCHEMA, "%s", errstr);
    cr_assert_not_null(strstr(errstr, "PROTOBUF"), "%s", errstr);
    len = frame(buf, sizeof(buf), 7); /* registered text that is not JSON */
    cr_assert_eq(decode(c, buf, len, &cls), SN_ERR_INVALID);
    cr_assert_eq(cls, SN_CODEC_INCOMPATIBLE_SCHEMA, "%s", errstr);
    sn_codec_destroy(c);
}

Test(registry, basic_auth) {
    sn_codec_t *anon, *authed;
    uint8_t buf[512];
    size_t len;
    enum sn_codec_error_class cls;

    stop_registry();
    start_registry("sentinel", "s3cr3t:with:colons");
    anon = mk(KV("schema.registry.url", url));
    authed = mk(KV("schema.registry.url", url, "schema.registry.username", "sentinel",
                   "schema.registry.password", "s3cr3t:with:colons"));
    len = frame(buf, sizeof(buf), 1);
    cr_assert_eq(decode(anon, buf, len, &cls), SN_ERR_FATAL, "%s", errstr);
    cr_assert_eq(cls, SN_CODEC_SCHEMA_UNAVAILABLE);
    cr_assert_null(strstr(errstr, "s3cr3t"), "no password in messages");
    cr_assert_eq(decode(authed, buf, len, &cls), 0, "%s", errstr);
    sn_codec_destroy(anon);
    sn_codec_destroy(authed);
}

Test(registry, producer_ids) {
    sn_codec_t *none = mk(KV("schema.registry.url", url));
    sn_codec_t *wrong = mk(KV("schema.registry.url", url, "schema.id", "4"));
    sn_codec_t *lookup = mk(KV("schema.registry.url", url, "schema.registry.mode", "lookup"));
    sn_codec_t *reg = mk(KV("schema.registry.url", url, "schema.registry.mode", "register",
                            "topic.telemetry", "plant.telemetry"));
    sn_event_t ev = event();
    uint8_t buf[512];
    size_t len = 0;
    enum sn_codec_error_class cls;
    int32_t id = 0;

    /* mode none: schema.id is checked against what the registry has under it */
    cr_assert_eq(sn_codec_encode(none, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_eq(buf[4], 1);
    cr_assert_eq(sn_codec_encode(wrong, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    /* lookup before anyone registered the subject */
    cr_assert_eq(sn_codec_encode(lookup, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert_not_null(strstr(errstr, "telemetry-value"), "%s", errstr);
    /* register under <topic>-value: the registry finds the same schema as id 1 */
    cr_assert_eq(sn_codec_encode(reg, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    cr_assert_eq(hits("/subjects/plant.telemetry-value/versions"), 1);
    cr_assert_eq(
        sn_codec_decode(none, buf, len, &(sn_event_t){0}, &cls, &id, errstr, sizeof(errstr)), 0,
        "%s", errstr);
    cr_assert_eq(id, 1);
    cr_assert_eq(sn_codec_encode(reg, &ev, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0);
    cr_assert_eq(hits("/subjects/plant.telemetry-value/versions"), 1, "resolved once");
    sn_codec_destroy(none);
    sn_codec_destroy(wrong);
    sn_codec_destroy(lookup);
    sn_codec_destroy(reg);
}

/* ---------------------------------------------------------------- a real registry
 * Runs only when SN_TEST_SCHEMA_REGISTRY_URL names a Confluent-compatible
 * registry (tests/integration/test_schema_registry.sh sets it); optional
 * SN_TEST_SCHEMA_REGISTRY_USER / _PASSWORD. Registers the telemetry schema
 * under a subject unique to this run, then produces and consumes through it. */
static void real_setup(void) {
    const char *u = getenv("SN_TEST_SCHEMA_REGISTRY_URL");

    if (u && *u) snprintf(url, sizeof(url), "%s", u);
}

TestSuite(real_registry, .init = real_setup, .timeout = 120);

Test(real_registry, register_produce_consume) {
    const char *u = getenv("SN_TEST_SCHEMA_REGISTRY_URL");
    const char *user = getenv("SN_TEST_SCHEMA_REGISTRY_USER");
    const char *pass = getenv("SN_TEST_SCHEMA_REGISTRY_PASSWORD");
    char topic[64];
    sn_codec_t *producer, *consumer;
    sn_event_t in = event(), out;
    uint8_t buf[512];
    size_t len = 0;
    int32_t id = 0;
    enum sn_codec_error_class cls;

    if (!u || !*u) cr_skip_test("SN_TEST_SCHEMA_REGISTRY_URL not set");
    snprintf(topic, sizeof(topic), "sentinel-codec-test-%ld", (long)getpid());
    producer = mk(KV("schema.registry.url", url, "schema.registry.mode", "register",
                     "topic.telemetry", topic, "schema.registry.username", user ? user : "",
                     "schema.registry.password", pass ? pass : ""));
    consumer = mk(KV("schema.registry.url", url, "schema.registry.username", user ? user : "",
                     "schema.registry.password", pass ? pass : ""));
    cr_assert_eq(sn_codec_encode(producer, &in, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_eq(sn_codec_decode(consumer, buf, len, &out, &cls, &id, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_gt(id, 0);
    cr_assert_str_eq(out.machine_id, in.machine_id);
    cr_assert_eq(out.values[5], in.values[5]);
    sn_codec_destroy(producer);
    producer = mk(KV("schema.registry.url", url, "schema.registry.mode", "lookup",
                     "topic.telemetry", topic, "schema.registry.username", user ? user : "",
                     "schema.registry.password", pass ? pass : ""));
    cr_assert_eq(sn_codec_encode(producer, &in, buf, sizeof(buf), &len, errstr, sizeof(errstr)), 0,
                 "lookup after register: %s", errstr);
    buf[1] = 0x7f; /* an id no registry has handed out */
    buf[2] = buf[3] = buf[4] = 0xf0;
    cr_assert_eq(sn_codec_decode(consumer, buf, len, &out, &cls, &id, errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert_eq(cls, SN_CODEC_UNKNOWN_SCHEMA, "%s", errstr);
    sn_codec_destroy(producer);
    sn_codec_destroy(consumer);
}
