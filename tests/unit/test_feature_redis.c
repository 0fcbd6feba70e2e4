/* The Redis feature backend against a real redis-server (started here on a
 * unix socket in a temporary directory, stopped at the end of each test):
 * bit-for-bit parity with the in-memory engine (interleaved machines, several
 * partitions, late, out-of-order and too-late events, absent values, a
 * redelivered stretch of offsets that leaves Redis byte-identical), with and
 * without the state cache; NOSCRIPT recovery; TTLs and hash tags; a killed,
 * stopped or restarted Redis; script errors. REDIS_SERVER overrides the
 * server binary (default /usr/bin/redis-server). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/err.h"
#include "common/log.h"
#include "scoring/feature_redis.h"
#include "scoring/feature_state.h"
#include "scoring/features.h"
#include "scoring/scoring_conf.h"

#define SN_ALERT_TEXT 192 /* consumers/alerting.h SN_ALERT_RECORD_MAX */

/* ---- a private redis-server ---- */

struct server {
    char dir[64];
    char sock[128];
    pid_t pid;
};

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static redisContext *connect_sock(const char *sock) {
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectUnixWithTimeout(sock, tv);

    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* Starts redis-server in srv->dir (created on the first start, reused on a
 * restart so the append-only file brings the data back) and waits until it
 * answers PING with PONG (not LOADING). */
static void server_start(struct server *srv) {
    const char *bin = getenv("REDIS_SERVER") ? getenv("REDIS_SERVER") : "/usr/bin/redis-server";
    char logfile[160];

    if (!srv->dir[0]) {
        snprintf(srv->dir, sizeof(srv->dir), "/tmp/sn_fredis_XXXXXX");
        cr_assert_not_null(mkdtemp(srv->dir));
        snprintf(srv->sock, sizeof(srv->sock), "%s/redis.sock", srv->dir);
    }
    snprintf(logfile, sizeof(logfile), "%s/redis.log", srv->dir);
    srv->pid = fork();
    cr_assert_geq(srv->pid, 0);
    if (srv->pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        /* not the test's pipes: a server left behind must not hold them open */
        if (fd >= 0) dup2(fd, 0), dup2(fd, 1), dup2(fd, 2);
        execl(bin, bin, "--port", "0", "--unixsocket", srv->sock, "--unixsocketperm", "700",
              "--dir", srv->dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
              "--daemonize", "no", "--logfile", logfile, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        redisContext *c = connect_sock(srv->sock);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            if (r) freeReplyObject(r);
            redisFree(c);
            if (ok) return;
        }
        sleep_ms(10);
    }
    cr_assert_fail("redis-server did not start (see %s)", logfile);
}

static void server_kill(struct server *srv, int sig) {
    if (srv->pid > 0) {
        kill(srv->pid, sig);
        waitpid(srv->pid, NULL, 0);
        srv->pid = 0;
    }
}

/* Stops the server and removes its directory. */
static void server_stop(struct server *srv) {
    char cmd[160];

    server_kill(srv, SIGTERM);
    if (srv->dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", srv->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", srv->dir);
        srv->dir[0] = '\0';
    }
}

/* One server per test (each test runs in its own process); the suite's fini
 * stops it even when an assertion ended the test early. */
static struct server the_server;

static void teardown(void) { server_stop(&the_server); }

TestSuite(feature_redis, .fini = teardown);

static redisReply *cmd(struct server *srv, const char *fmt, const char *arg) {
    redisContext *c = connect_sock(srv->sock);
    redisReply *r;

    cr_assert_not_null(c);
    r = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
    redisFree(c);
    cr_assert_not_null(r);
    return r;
}

/* Every key with its hash contents, sorted by key: byte-comparable. */
static char *dump(struct server *srv, size_t *len) {
    redisContext *c = connect_sock(srv->sock);
    redisReply *keys;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);

    cr_assert_not_null(c);
    keys = redisCommand(c, "KEYS *");
    cr_assert(keys && keys->type == REDIS_REPLY_ARRAY);
    /* KEYS order is arbitrary: sort */
    for (size_t i = 1; i < keys->elements; i++)
        for (size_t j = i; j > 0 && strcmp(keys->element[j - 1]->str, keys->element[j]->str) > 0;
             j--) {
            redisReply *t = keys->element[j];
            keys->element[j] = keys->element[j - 1];
            keys->element[j - 1] = t;
        }
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *h = redisCommand(c, "HGETALL %b", keys->element[i]->str, keys->element[i]->len);
        cr_assert(h && h->type == REDIS_REPLY_ARRAY);
        for (size_t k = 0; k <= h->elements; k++) {
            const char *s = k == 0 ? keys->element[i]->str : h->element[k - 1]->str;
            size_t l = k == 0 ? keys->element[i]->len : h->element[k - 1]->len;
            while (n + l + 1 > cap) buf = realloc(buf, cap *= 2);
            memcpy(buf + n, s, l);
            buf[n + l] = '\n';
            n += l + 1;
        }
        freeReplyObject(h);
    }
    freeReplyObject(keys);
    redisFree(c);
    *len = n;
    return buf;
}

/* ---- specs, config, events ---- */

static const char *const schema_fields[] = {"air_temperature_k",
                                            "process_temperature_k",
                                            "rotational_speed_rpm",
                                            "torque_nm",
                                            "tool_wear_min",
                                            "product_type",
                                            "a",
                                            "b",
                                            "c"};
#define SCHEMA_N 9

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < SCHEMA_N; i++)
        if (strcmp(schema_fields[i], name) == 0) return i;
    return -1;
}

/* 1 s buckets, 20 s retention: late events and pruning happen all the time. */
static const char test_spec[] =
    "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":20000,"
    "\"inputs\":[\"a\",\"b\",\"c\"],"
    "\"derived\":[{\"name\":\"d\",\"op\":\"difference\",\"a\":\"a\",\"b\":\"b\"},"
    "{\"name\":\"p\",\"op\":\"product\",\"a\":\"a\",\"b\":\"c\",\"scale\":0.5},"
    "{\"name\":\"r\",\"op\":\"ratio\",\"a\":\"a\",\"b\":\"c\"}],"
    "\"current\":[\"a\",\"b\",\"c\",\"d\",\"p\",\"r\"],"
    "\"windows\":["
    "{\"name\":\"3s\",\"ms\":3000,\"fields\":[\"a\",\"d\",\"p\"],"
    "\"aggregates\":[\"mean\",\"std\",\"min\",\"max\",\"count\",\"last\",\"slope\"]},"
    "{\"name\":\"10s\",\"ms\":10000,\"fields\":[\"b\",\"a\"],"
    "\"aggregates\":[\"slope\",\"last\",\"count\",\"max\",\"min\",\"std\",\"mean\"]},"
    "{\"name\":\"20s\",\"ms\":20000,\"fields\":[\"p\",\"r\",\"a\"],"
    "\"aggregates\":[\"count\",\"mean\",\"slope\",\"last\",\"std\"]}]}";

static sn_feature_spec_t *spec_new(const char *json) {
    char errstr[512];
    sn_feature_spec_t *spec = sn_feature_spec_parse(json, strlen(json), errstr, sizeof(errstr));

    cr_assert_not_null(spec, "%s", errstr);
    cr_assert_eq(sn_feature_spec_bind(spec, field_index, NULL, errstr, sizeof(errstr)), 0);
    return spec;
}

static sn_conf_t *conf_new(const struct server *srv, const char *cache, const char *timeout_ms) {
    static const sn_conf_def_t *const tables[] = {sn_scoring_conf_defs};
    char errstr[256], url[160];
    sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    snprintf(url, sizeof(url), "unix://%s", srv ? srv->sock : "/nonexistent.sock");
    cr_assert_eq(sn_conf_set(conf, "redis.url", url, "test", errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    cr_assert_eq(sn_conf_set(conf, "feature.cache.machines", cache, "test", errstr, sizeof(errstr)),
                 0);
    cr_assert_eq(sn_conf_set(conf, "redis.timeout.ms", timeout_ms, "test", errstr, sizeof(errstr)),
                 0);
    cr_assert_eq(sn_conf_set(conf, "feature.state.ttl.s", "3600", "test", errstr, sizeof(errstr)),
                 0);
    return conf;
}

static uint64_t rng_state;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }
static double rng_normal(void) {
    double u = rng_unit() + 1e-300, v = rng_unit();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

#define MACHINES 6
#define PARTITIONS 3
#define PER_PARTITION 400

/* A Kafka-like stream: each partition's offsets 0..PER_PARTITION-1; each
 * machine keyed to a partition (one moves partition half way, as after a
 * repartition); event times jitter, go back (some beyond the retention) and
 * jump ahead; some values are absent. step_ms scales time for a spec;
 * back_ms is how far an event may go back (beyond the retention: too late). */
struct stream {
    sn_event_t ev[PARTITIONS * PER_PARTITION];
    int32_t part[PARTITIONS * PER_PARTITION];
    int64_t off[PARTITIONS * PER_PARTITION];
    size_t n;
};

static const char *const machine_ids[MACHINES] = {"m0", "m1", "pump}7%x", "m3", "{m4}", "m5"};

static void make_stream(struct stream *s, int64_t step_ms, int64_t back_ms, uint64_t seed) {
    int64_t clock[MACHINES], next_off[PARTITIONS] = {0};
    int idx_a = field_index(NULL, "a"), idx_t = field_index(NULL, "torque_nm");

    rng_state = seed;
    for (int m = 0; m < MACHINES; m++) clock[m] = 1700000000000LL + m * 77;
    s->n = 0;
    while (s->n < PARTITIONS * PER_PARTITION) {
        int m = (int)(rng_next() % MACHINES);
        int p = m % PARTITIONS;
        sn_event_t *ev = &s->ev[s->n];
        double u = rng_unit();

        if (m == 5 && clock[m] > 1700000000000LL + 200 * step_ms) p = (p + 1) % PARTITIONS;
        if (next_off[p] >= PER_PARTITION) continue;
        memset(ev, 0, sizeof(*ev));
        snprintf(ev->machine_id, sizeof(ev->machine_id), "%s", machine_ids[m]);
        if (u < 0.02)
            clock[m] += 20 * step_ms;
        else
            clock[m] += (int64_t)(rng_next() % (uint64_t)(3 * step_ms / 2));
        ev->ts_ms = clock[m];
        if (rng_unit() < 0.15) ev->ts_ms -= (int64_t)(rng_next() % (uint64_t)back_ms);
        ev->nvalues = SCHEMA_N;
        for (int k = 0; k < SCHEMA_N; k++) ev->values[k] = rng_unit() < 0.08 ? NAN : 0;
        ev->values[idx_a] += 300 + 2 * rng_normal();
        ev->values[idx_a + 1] += 310 + 2 * rng_normal();
        ev->values[idx_a + 2] += rng_unit() < 0.05 ? 0 : 40 + 10 * rng_normal();
        ev->values[0] += 300 + 2 * rng_normal();
        ev->values[1] += 310 + rng_normal();
        ev->values[2] += 1500 + 100 * rng_normal();
        ev->values[idx_t] += 40 + 10 * rng_normal();
        ev->values[4] += (double)(s->n % 240);
        ev->values[5] += (double)(m % 3);
        s->part[s->n] = p;
        s->off[s->n] = next_off[p]++;
        s->n++;
    }
}

/* Feeds stream events [from, to) whose offset lies in [olo, ohi) to both
 * backends, Redis in batches of random size, and requires identical flags
 * and bit-identical vectors. Returns the events fed. */
static size_t feed(sn_feature_redis_t *r, sn_features_t *mem, const sn_feature_spec_t *spec,
                   const struct stream *s, size_t from, size_t to, int64_t olo, int64_t ohi,
                   int want_flags) {
    size_t nf = sn_feature_spec_nfeatures(spec), fed = 0;
    sn_event_t *batch = malloc(64 * sizeof(sn_event_t));
    int32_t parts[64];
    int64_t offs[64];
    float *out = malloc(64 * nf * sizeof(float)), *ref = malloc(nf * sizeof(float));
    uint8_t flags[64];
    char errstr[512];
    size_t i = from;

    while (i < to) {
        size_t want = 1 + rng_next() % 64, n = 0;
        for (; i < to && n < want; i++) {
            if (s->off[i] < olo || s->off[i] >= ohi) continue;
            batch[n] = s->ev[i];
            parts[n] = s->part[i];
            offs[n] = s->off[i];
            n++;
        }
        cr_assert_eq(sn_feature_redis_apply_batch(r, batch, parts, offs, n, out, flags, errstr,
                                                  sizeof(errstr)),
                     0, "%s", errstr);
        for (size_t k = 0; k < n; k++) {
            int fl = sn_features_apply(mem, &batch[k], parts[k], offs[k], ref);
            cr_assert_eq(flags[k], fl, "flags differ for %s@%lld", batch[k].machine_id,
                         (long long)batch[k].ts_ms);
            if (want_flags) cr_assert_eq(fl, want_flags);
            for (size_t j = 0; j < nf; j++)
                cr_assert(memcmp(&out[k * nf + j], &ref[j], sizeof(float)) == 0,
                          "%s@%lld offset %lld: %s redis %.9g memory %.9g", batch[k].machine_id,
                          (long long)batch[k].ts_ms, (long long)offs[k],
                          sn_feature_spec_name(spec, j), out[k * nf + j], ref[j]);
        }
        fed += n;
    }
    free(batch);
    free(out);
    free(ref);
    return fed;
}

/* The parity scenario on one spec and cache size. */
static void parity(const char *spec_json, int64_t step_ms, int64_t back_ms, const char *cache,
                   const char *cas_max) {
    sn_feature_spec_t *spec = spec_new(spec_json);
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    sn_features_t *mem;
    struct stream *s = malloc(sizeof(*s));
    char errstr[512], *d1, *d2;
    size_t l1, l2, n;
    sn_feature_redis_stats_t st;
    sn_features_stats_t ms;

    server_start(&the_server);
    conf = conf_new(&the_server, cache, "2000");
    cr_assert_eq(
        sn_conf_set(conf, "redis.cas.machines.max", cas_max, "test", errstr, sizeof(errstr)), 0);
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    make_stream(s, step_ms, back_ms, 1234);

    /* offsets 0..299 of every partition */
    n = feed(r, mem, spec, s, 0, s->n, 0, 300, 0);
    cr_assert_eq(n, 900);
    d1 = dump(&the_server, &l1);
    /* 100..199 again: redelivered, Redis untouched byte for byte */
    n = feed(r, mem, spec, s, 0, s->n, 100, 200, SN_FEATURES_REDELIVERED);
    cr_assert_eq(n, 300);
    d2 = dump(&the_server, &l2);
    cr_assert_eq(l1, l2, "dump sizes differ after redelivery");
    cr_assert(memcmp(d1, d2, l1) == 0, "Redis changed on redelivery");
    /* the rest */
    feed(r, mem, spec, s, 0, s->n, 300, PER_PARTITION, 0);

    sn_feature_redis_stats(r, &st);
    sn_features_stats(mem, &ms);
    cr_expect_eq(st.redelivered, 300);
    cr_expect_eq(st.redelivered, ms.redelivered);
    cr_expect_eq(st.dropped_late, ms.dropped_late);
    cr_expect_eq(st.applied, ms.applied);
    cr_expect_gt(ms.dropped_late, 10, "too-late events exercised (%llu)",
                 (unsigned long long)ms.dropped_late);
    if (strcmp(cache, "10000") == 0)
        cr_expect_gt(st.cache_hits, st.cache_misses, "hits %llu misses %llu",
                     (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses);
    /* the compare-and-sets went many machines to a call, or one each */
    if (strcmp(cache, "10000") == 0 && strcmp(cas_max, "1") != 0) cr_expect_gt(st.multi_calls, 0);
    if (strcmp(cas_max, "1") == 0) cr_expect_eq(st.multi_calls, 0);
    cr_expect_eq(st.cas_moved, 0, "a single writer never finds its version moved");
    cr_log_info("parity (cache %s): %llu calls, %llu round trips, %llu hits, %llu misses, %llu "
                "applied, %llu late",
                cache, (unsigned long long)st.calls, (unsigned long long)st.round_trips,
                (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
                (unsigned long long)st.applied, (unsigned long long)st.dropped_late);
    free(d1);
    free(d2);
    free(s);
    sn_features_destroy(mem);
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, parity_small_buckets_with_cache) {
    parity(test_spec, 1000, 25000, "10000", "500");
}
Test(feature_redis, parity_small_buckets_with_cache_one_call_per_machine) {
    parity(test_spec, 1000, 25000, "10000", "1");
}
Test(feature_redis, parity_small_buckets_with_cache_two_machines_per_call) {
    parity(test_spec, 1000, 25000, "10000", "2");
}
Test(feature_redis, parity_small_buckets_without_cache) {
    parity(test_spec, 1000, 25000, "0", "500");
}
Test(feature_redis, parity_small_buckets_tiny_cache) { parity(test_spec, 1000, 25000, "2", "500"); }
Test(feature_redis, parity_default_spec) {
    parity(sn_feature_spec_default_json(), 60000, 78 * 60000, "10000", "500");
}

/* Two writers of the same machines, as two scorers around a rebalance: each
 * finds, in turn, that the other moved the stored versions, so its
 * multi-machine compare-and-sets are refused ('x') for those machines and it
 * falls back to plain calls; the vectors stay bit-identical to one in-memory
 * engine fed the whole stream in order, and redeliveries are still caught
 * whichever writer applied the event first. */
Test(feature_redis, two_writers_fall_back_from_multi_machine_calls) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *conf;
    sn_feature_redis_t *w[2];
    sn_features_t *mem;
    struct stream *s = malloc(sizeof(*s));
    char errstr[512];
    sn_feature_redis_stats_t st[2];

    server_start(&the_server);
    conf = conf_new(&the_server, "10000", "2000");
    w[0] = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    w[1] = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert(w[0] && w[1], "%s", errstr);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    make_stream(s, 1000, 25000, 99);
    rng_state = 9;
    for (int64_t lo = 0, k = 0; lo < PER_PARTITION; lo += 50, k++)
        feed(w[k % 2], mem, spec, s, 0, s->n, lo, lo + 50, 0);
    /* a batch both already applied: redelivered for either writer */
    feed(w[0], mem, spec, s, 0, s->n, 120, 130, SN_FEATURES_REDELIVERED);
    feed(w[1], mem, spec, s, 0, s->n, 70, 80, SN_FEATURES_REDELIVERED);
    sn_feature_redis_stats(w[0], &st[0]);
    sn_feature_redis_stats(w[1], &st[1]);
    for (int i = 0; i < 2; i++) {
        cr_expect_gt(st[i].cas_moved, 0, "writer %d found moved versions", i);
        cr_expect_gt(st[i].multi_calls, 0, "writer %d sent multi-machine calls", i);
    }
    free(s);
    sn_features_destroy(mem);
    sn_feature_redis_destroy(w[0]);
    sn_feature_redis_destroy(w[1]);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

/* The sorted fields of a hash except the version token and the undo record
 * (the last call's, which depends on how the stream was cut into batches), as
 * one string. */
static char *hash_sorted(struct server *srv, const char *key, size_t *len) {
    redisReply *h = cmd(srv, "HGETALL %s", key);
    size_t n = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    size_t *idx = malloc((h->elements / 2 + 1) * sizeof(size_t)), m = 0;

    for (size_t i = 0; i + 1 < h->elements; i += 2)
        if (strcmp(h->element[i]->str, "v") != 0 && strcmp(h->element[i]->str, "u") != 0)
            idx[m++] = i;
    for (size_t i = 1; i < m; i++)
        for (size_t j = i;
             j > 0 && strcmp(h->element[idx[j - 1]]->str, h->element[idx[j]]->str) > 0; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (size_t k = 0; k < m; k++)
        for (size_t e = 0; e < 2; e++) {
            redisReply *x = h->element[idx[k] + e];
            while (n + x->len + 1 > cap) buf = realloc(buf, cap *= 2);
            memcpy(buf + n, x->str, x->len);
            buf[n + x->len] = '\n';
            n += x->len + 1;
        }
    free(idx);
    freeReplyObject(h);
    *len = n;
    return buf;
}

/* The script's arithmetic against C's, on what is stored: one handle stores
 * results computed in C (compare-and-set, cache on), the other has the
 * script compute them (cache off); the hashes must be equal byte for byte,
 * buckets, last values and offsets, except the version token. */
Test(feature_redis, stored_state_same_from_lua_and_c) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *cc, *cl;
    sn_feature_redis_t *rc_, *rl;
    sn_features_t *mem;
    struct stream *s = malloc(sizeof(*s));
    char errstr[512], kc[512], kl[512];
    sn_feature_redis_stats_t stc, stl;

    server_start(&the_server);
    cc = conf_new(&the_server, "10000", "2000");
    cl = conf_new(&the_server, "0", "2000");
    cr_assert_eq(sn_conf_set(cl, "redis.key.prefix", "lua", "test", errstr, sizeof(errstr)), 0);
    rc_ = sn_feature_redis_new(cc, spec, errstr, sizeof(errstr));
    rl = sn_feature_redis_new(cl, spec, errstr, sizeof(errstr));
    cr_assert(rc_ && rl, "%s", errstr);
    make_stream(s, 1000, 25000, 77);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    rng_state = 5;
    feed(rc_, mem, spec, s, 0, s->n, 0, PER_PARTITION, 0);
    sn_features_destroy(mem);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    rng_state = 6;
    feed(rl, mem, spec, s, 0, s->n, 0, PER_PARTITION, 0);
    sn_feature_redis_stats(rc_, &stc);
    sn_feature_redis_stats(rl, &stl);
    cr_expect_gt(stc.cache_hits, 150, "C computed most results (%llu)",
                 (unsigned long long)stc.cache_hits);
    cr_expect_eq(stl.cache_hits + stl.cache_misses, 0, "the script computed all of them");
    cr_expect_gt(stc.multi_calls, 0, "C's results went many machines to a call");
    for (int m = 0; m < MACHINES; m++) {
        size_t lc, ll;
        char *a, *b;

        sn_feature_redis_key(rc_, machine_ids[m], kc, sizeof(kc));
        sn_feature_redis_key(rl, machine_ids[m], kl, sizeof(kl));
        a = hash_sorted(&the_server, kc, &lc);
        b = hash_sorted(&the_server, kl, &ll);
        cr_expect_gt(lc, 100);
        cr_expect(lc == ll && memcmp(a, b, lc) == 0, "machine %s: stored states differ",
                  machine_ids[m]);
        free(a);
        free(b);
    }
    free(s);
    sn_features_destroy(mem);
    sn_feature_redis_destroy(rc_);
    sn_feature_redis_destroy(rl);
    sn_conf_destroy(cc);
    sn_conf_destroy(cl);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, noscript_recovery_ttl_and_key_names) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    sn_features_t *mem;
    struct stream *s = malloc(sizeof(*s));
    char errstr[512], key[512], want[512];
    sn_feature_redis_stats_t st;
    redisReply *rep;

    server_start(&the_server);
    conf = conf_new(&the_server, "10000", "2000");
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    make_stream(s, 1000, 25000, 99);
    feed(r, mem, spec, s, 0, 300, 0, PER_PARTITION, 0);
    rep = cmd(&the_server, "SCRIPT FLUSH", NULL);
    freeReplyObject(rep);
    feed(r, mem, spec, s, 300, 600, 0, PER_PARTITION, 0);
    sn_feature_redis_stats(r, &st);
    cr_expect_eq(st.script_loads, 2, "loaded once, reloaded after the flush");
    cr_expect_eq(st.reconnects, 0);

    /* key: the escaped machine id is the hash tag, then the layout id */
    cr_assert_gt(sn_feature_redis_key(r, "pump}7%x", key, sizeof(key)), 0);
    snprintf(want, sizeof(want), "sn:{pump%%7D7%%25x}:%08x",
             (unsigned)sn_feature_spec_layout_id(spec));
    cr_expect_str_eq(key, want);
    cr_expect_eq(sn_feature_redis_key(r, "", key, sizeof(key)), SN_ERR_INVALID);
    cr_expect_eq(sn_feature_redis_key(r, "x", key, 8), SN_ERR_NOMEM);
    rep = cmd(&the_server, "DBSIZE", NULL);
    cr_expect_eq(rep->integer, MACHINES, "one key per machine");
    cr_expect_geq(st.cache_hits, 1);
    freeReplyObject(rep);
    for (int m = 0; m < MACHINES; m++) {
        sn_feature_redis_key(r, machine_ids[m], key, sizeof(key));
        rep = cmd(&the_server, "TTL %s", key);
        cr_expect_eq(rep->type, REDIS_REPLY_INTEGER);
        cr_expect(rep->integer > 3500 && rep->integer <= 3600, "TTL of %s is %lld", key,
                  rep->integer);
        freeReplyObject(rep);
    }
    free(s);
    sn_features_destroy(mem);
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, killed_stopped_and_restarted_redis) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    sn_features_t *mem;
    struct stream *s = malloc(sizeof(*s));
    char errstr[512];
    float *out = malloc(sizeof(float) * SN_FEATURE_SPEC_FEATURES_MAX);
    sn_feature_redis_stats_t st;
    int rc = 0;
    struct timespec t0, t1;

    sn_log_set_level(SN_LOG_ERROR);
    server_start(&the_server);
    conf = conf_new(&the_server, "10000", "300");
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    mem = sn_features_new(spec, 0, errstr, sizeof(errstr));
    make_stream(s, 1000, 25000, 5);
    feed(r, mem, spec, s, 0, 300, 0, PER_PARTITION, 0);

    /* killed: transient, every time, until it is back */
    server_kill(&the_server, SIGKILL);
    for (int i = 0; i < 2; i++) {
        rc = sn_feature_redis_apply_batch(r, &s->ev[300], &s->part[300], &s->off[300], 1, out, NULL,
                                          errstr, sizeof(errstr));
        cr_expect_eq(rc, SN_ERR_TRANSIENT, "%d: %s", rc, errstr);
    }
    /* restarted from its append-only file: same state, scripts gone */
    server_start(&the_server);
    feed(r, mem, spec, s, 300, 600, 0, PER_PARTITION, 0);
    sn_feature_redis_stats(r, &st);
    cr_expect_geq(st.reconnects, 1);

    /* stopped (not dead): the timeout turns it into a transient error */
    kill(the_server.pid, SIGSTOP);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = sn_feature_redis_apply_batch(r, &s->ev[600], &s->part[600], &s->off[600], 1, out, NULL,
                                      errstr, sizeof(errstr));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    kill(the_server.pid, SIGCONT);
    cr_expect_eq(rc, SN_ERR_TRANSIENT, "%d: %s", rc, errstr);
    cr_expect_lt((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000, 2000,
                 "gave up within the timeout");
    /* the stalled call may or may not have run on the server: the retry is
     * safe either way, and parity holds from the event after it */
    rc = sn_feature_redis_apply_batch(r, &s->ev[600], &s->part[600], &s->off[600], 1, out, NULL,
                                      errstr, sizeof(errstr));
    cr_expect_eq(rc, 0, "%s", errstr);
    sn_features_apply(mem, &s->ev[600], s->part[600], s->off[600], out);
    feed(r, mem, spec, s, 601, s->n, 0, PER_PARTITION, 0);
    free(out);
    free(s);
    sn_features_destroy(mem);
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, script_error_is_fatal) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    char errstr[512], bkey[512];
    float out[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_event_t ev;
    redisReply *rep;
    int rc;

    sn_log_set_level(SN_LOG_ERROR);
    server_start(&the_server);
    conf = conf_new(&the_server, "0", "2000");
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "broken");
    ev.ts_ms = 100000;
    ev.nvalues = SCHEMA_N;
    cr_assert_eq(
        sn_feature_redis_apply_batch(r, &ev, NULL, NULL, 1, out, NULL, errstr, sizeof(errstr)), 0,
        "%s", errstr);
    /* a record of the wrong length in the machine's current bucket */
    sn_feature_redis_key(r, "broken", bkey, sizeof(bkey));
    rep = cmd(&the_server, "HSET %s 100 garbage", bkey);
    freeReplyObject(rep);
    ev.ts_ms = 100500;
    rc = sn_feature_redis_apply_batch(r, &ev, NULL, NULL, 1, out, NULL, errstr, sizeof(errstr));
    cr_expect_eq(rc, SN_ERR_FATAL, "%d: %s", rc, errstr);
    cr_expect(strstr(errstr, "broken") != NULL, "names the machine: %s", errstr);
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, config_errors) {
    static const sn_conf_def_t *const tables[] = {sn_scoring_conf_defs};
    static const struct {
        const char *key, *value, *want;
    } bad[] = {
        {"redis.url", "http://x", "expected redis://"},
        {"redis.url", "redis://:secret@host", "credentials"},
        {"redis.url", "redis://host:99999", "bad port"},
        {"redis.url", "redis://host/x", "database"},
        {"redis.url", "rediss://host", "TLS"},
        {"redis.url", "unix://relative.sock", "absolute"},
        {"redis.key.prefix", "a{b", "braces"},
        {"feature.state.ttl.s", "60", "shorter than"},
    };
    sn_feature_spec_t *spec = spec_new(sn_feature_spec_default_json()); /* 1 h retention */
    char errstr[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));
        sn_feature_redis_t *r;

        cr_assert_eq(sn_conf_set(conf, bad[i].key, bad[i].value, "test", errstr, sizeof(errstr)), 0,
                     "%s", errstr);
        errstr[0] = '\0';
        r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
        cr_expect_null(r, "%s=%s accepted", bad[i].key, bad[i].value);
        if (strcmp(bad[i].want, "braces") == 0)
            cr_expect(strstr(errstr, "'{'") != NULL, "%s", errstr);
        else
            cr_expect(strstr(errstr, bad[i].want) != NULL, "%s=%s: %s", bad[i].key, bad[i].value,
                      errstr);
        sn_feature_redis_destroy(r);
        sn_conf_destroy(conf);
    }
    /* valid forms; nothing listens, so the first batch is a transient error */
    {
        sn_conf_t *conf = conf_new(NULL, "0", "100");
        sn_feature_redis_t *r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
        float out[SN_FEATURE_SPEC_FEATURES_MAX];
        sn_event_t ev;

        sn_log_set_level(SN_LOG_ERROR);
        cr_assert_not_null(r, "%s", errstr);
        memset(&ev, 0, sizeof(ev));
        snprintf(ev.machine_id, sizeof(ev.machine_id), "m");
        ev.nvalues = SCHEMA_N;
        cr_expect_eq(
            sn_feature_redis_apply_batch(r, &ev, NULL, NULL, 1, out, NULL, errstr, sizeof(errstr)),
            SN_ERR_TRANSIENT, "%s", errstr);
        ev.machine_id[0] = '\0';
        cr_expect_eq(
            sn_feature_redis_apply_batch(r, &ev, NULL, NULL, 1, out, NULL, errstr, sizeof(errstr)),
            SN_ERR_INVALID);
        sn_feature_redis_destroy(r);
        sn_conf_destroy(conf);
    }
    sn_feature_spec_destroy(spec);
}

/* Applies events [from, to) of s in one batch; vectors into out, flags into
 * flags (both caller-owned, sized for the batch). */
static void apply_range(sn_feature_redis_t *r, const struct stream *s, size_t from, size_t to,
                        float *out, uint8_t *flags) {
    char errstr[512];

    cr_assert_eq(sn_feature_redis_apply_batch(r, &s->ev[from], &s->part[from], &s->off[from],
                                              to - from, out, flags, errstr, sizeof(errstr)),
                 0, "%s", errstr);
}

/* The batch of an aborted Kafka transaction comes again (the redo, or a
 * restart from the committed offsets): Redis already holds it, yet with the
 * undo record on (undo 1) every event must get the vector it had, so that the
 * redo scores and alerts the same; an older stretch stays a plain
 * redelivery: flagged, state untouched. undo 0: the record off, a plain
 * redelivery. undo 2: the last batch was written without a record, so the
 * record left by the batch before it is void. */
static void redo_last_batch(const char *cache, int undo) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    size_t nf = sn_feature_spec_nfeatures(spec), B = 60, cut = 600;
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    struct stream *s = malloc(sizeof(*s));
    float *first = malloc(B * nf * sizeof(float)), *again = malloc(B * nf * sizeof(float));
    float *older = malloc(B * nf * sizeof(float));
    uint8_t f1[60], f2[60], f3[60];
    char errstr[512], key[512], *h1[MACHINES], *h2;
    size_t l1[MACHINES], l2;
    int applied = 0;

    server_start(&the_server);
    conf = conf_new(&the_server, cache, "2000");
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    sn_feature_redis_set_undo(r, undo != 0);
    make_stream(s, 1000, 25000, 99);
    for (size_t i = 0; i < cut; i += B) apply_range(r, s, i, i + B, again, f2);
    /* undo 2: the last batch written without a record, so the record of the
     * batch before it must not be used */
    sn_feature_redis_set_undo(r, undo == 1);
    apply_range(r, s, cut, cut + B, first, f1);
    for (int m = 0; m < MACHINES; m++) {
        sn_feature_redis_key(r, machine_ids[m], key, sizeof(key));
        h1[m] = hash_sorted(&the_server, key, &l1[m]);
    }
    if (undo != 1) { /* a plain redelivery: flagged, state untouched */
        size_t from = undo == 2 ? cut - B : cut;

        apply_range(r, s, from, from + B, again, f2);
        for (size_t i = 0; i < B; i++)
            cr_expect(f2[i] & SN_FEATURES_REDELIVERED, "event %zu: flags %d", i, f2[i]);
        for (int m = 0; m < MACHINES; m++) {
            sn_feature_redis_key(r, machine_ids[m], key, sizeof(key));
            h2 = hash_sorted(&the_server, key, &l2);
            cr_expect(l2 == l1[m] && memcmp(h1[m], h2, l2) == 0, "machine %s: state changed",
                      machine_ids[m]);
            free(h2);
        }
        if (undo == 0)
            cr_expect(memcmp(first, again, B * nf * sizeof(float)) != 0,
                      "redelivered vectors differ from the first ones (else this proves nothing)");
        goto out;
    }
    /* the same batch again: the same vectors and decisions, the same state */
    apply_range(r, s, cut, cut + B, again, f2);
    for (size_t i = 0; i < B; i++) {
        cr_expect_eq(f2[i], f1[i], "event %zu: flags %d, first time %d", i, f2[i], f1[i]);
        applied += (f1[i] & SN_FEATURES_APPLIED) != 0;
        for (size_t j = 0; j < nf; j++) {
            float a = first[i * nf + j], b = again[i * nf + j];

            cr_expect(memcmp(&a, &b, sizeof(a)) == 0, "event %zu feature %zu: %.9g, first %.9g", i,
                      j, (double)b, (double)a);
        }
    }
    cr_expect_gt(applied, 40, "the batch mostly applies (%d)", applied);
    for (int m = 0; m < MACHINES; m++) {
        sn_feature_redis_key(r, machine_ids[m], key, sizeof(key));
        h2 = hash_sorted(&the_server, key, &l2);
        cr_expect(l2 == l1[m] && memcmp(h1[m], h2, l2) == 0, "machine %s: state changed",
                  machine_ids[m]);
        free(h2);
    }
    /* an older batch: redelivered, nothing changes */
    apply_range(r, s, cut - B, cut, older, f3);
    for (size_t i = 0; i < B; i++)
        cr_expect(f3[i] & SN_FEATURES_REDELIVERED, "older event %zu: flags %d", i, f3[i]);
    for (int m = 0; m < MACHINES; m++) {
        sn_feature_redis_key(r, machine_ids[m], key, sizeof(key));
        h2 = hash_sorted(&the_server, key, &l2);
        cr_expect(l2 == l1[m] && memcmp(h1[m], h2, l2) == 0,
                  "machine %s: older redelivery changed it", machine_ids[m]);
        free(h2);
    }
out:
    for (int m = 0; m < MACHINES; m++) free(h1[m]);
    free(s);
    free(first);
    free(again);
    free(older);
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}

Test(feature_redis, redo_of_the_last_batch_with_cache) { redo_last_batch("10000", 1); }
Test(feature_redis, redo_of_the_last_batch_without_cache) { redo_last_batch("0", 1); }
Test(feature_redis, redo_without_undo_is_a_redelivery) { redo_last_batch("10000", 0); }
Test(feature_redis, stale_undo_record_is_not_used) { redo_last_batch("0", 2); }

/* Loads the alert state of m1, m2 and partition 0's decided offset. */
static void alert_load(sn_feature_redis_t *r, char vals[2][SN_ALERT_TEXT], int64_t *decided) {
    const char *machines[] = {"m1", "m2"};
    char errstr[256];

    cr_assert_eq(sn_feature_redis_alert_load(r, machines, 2, &vals[0][0], SN_ALERT_TEXT,
                                             "telemetry", (int32_t[]){0}, decided, 1, errstr,
                                             sizeof(errstr)),
                 0, "%s", errstr);
}

static void alert_store(sn_feature_redis_t *r, const char *text, int64_t decided) {
    const char *machines[] = {"m1"}, *texts[] = {text};
    char errstr[256];

    cr_assert_eq(sn_feature_redis_alert_store(r, machines, texts, text ? 1 : 0, "telemetry",
                                              (int32_t[]){0}, &decided, 1, errstr, sizeof(errstr)),
                 0, "%s", errstr);
}

/* The scorer's alert state: records and decided offsets round-trip, a late
 * write of an older batch is refused, a redo of the same batch and another
 * partition's overwrite, the decided offset only grows, keys expire with the
 * feature state, and a dead Redis is transient. */
Test(feature_redis, alert_state_records) {
    sn_feature_spec_t *spec = spec_new(test_spec);
    sn_conf_t *conf;
    sn_feature_redis_t *r;
    char errstr[512], vals[2][SN_ALERT_TEXT];
    int64_t decided = 7;
    redisReply *rep;

    server_start(&the_server);
    conf = conf_new(&the_server, "10000", "2000");
    r = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr));
    cr_assert_not_null(r, "%s", errstr);
    alert_load(r, vals, &decided);
    cr_expect_str_eq(vals[0], "");
    cr_expect_str_eq(vals[1], "");
    cr_expect_eq(decided, -1, "nothing stored");

    alert_store(r, "a1 0 100 120 0 0 0 1 5 0", 130);
    alert_load(r, vals, &decided);
    cr_expect_str_eq(vals[0], "a1 0 100 120 0 0 0 1 5 0");
    cr_expect_str_eq(vals[1], "");
    cr_expect_eq(decided, 130);
    alert_store(r, "a1 0 50 60 0 0 0 1 1 0", 120); /* a late write of older batches */
    alert_load(r, vals, &decided);
    cr_expect_str_eq(vals[0], "a1 0 100 120 0 0 0 1 5 0", "an older batch's record is refused");
    cr_expect_eq(decided, 130, "the decided offset only grows");
    alert_store(r, "a1 0 100 110 0 0 0 1 6 0", 140); /* the same batch, redone shorter */
    alert_load(r, vals, &decided);
    cr_expect_str_eq(vals[0], "a1 0 100 110 0 0 0 1 6 0");
    cr_expect_eq(decided, 140);
    alert_store(r, "a1 3 10 10 0 0 0 1 7 0", 140); /* the machine in another partition */
    alert_load(r, vals, &decided);
    cr_expect_str_eq(vals[0], "a1 3 10 10 0 0 0 1 7 0");

    rep = cmd(&the_server, "TTL %s", "sn:{m1}:alert");
    cr_expect(rep->type == REDIS_REPLY_INTEGER && rep->integer > 3500 && rep->integer <= 3600);
    freeReplyObject(rep);
    rep = cmd(&the_server, "GET %s", "sn:alert-decided:telemetry:0");
    cr_expect(rep->type == REDIS_REPLY_STRING && strcmp(rep->str, "140") == 0);
    freeReplyObject(rep);
    rep = cmd(&the_server, "SET %s 12x", "sn:alert-decided:telemetry:0");
    freeReplyObject(rep);
    cr_expect_eq(sn_feature_redis_alert_load(r, (const char *[]){"m1"}, 1, &vals[0][0],
                                             SN_ALERT_TEXT, "telemetry", (int32_t[]){0}, &decided,
                                             1, errstr, sizeof(errstr)),
                 SN_ERR_FATAL, "not an offset");
    cr_expect(strstr(errstr, "decided offset") != NULL, "%s", errstr);
    cr_expect_eq(sn_feature_redis_alert_store(r, (const char *[]){""},
                                              (const char *[]){"a1 0 1 1 0 0 0 0 0 0"}, 1,
                                              "telemetry", NULL, NULL, 0, errstr, sizeof(errstr)),
                 SN_ERR_INVALID, "an empty machine id");

    server_kill(&the_server, SIGKILL);
    cr_expect_eq(sn_feature_redis_alert_load(r, (const char *[]){"m1"}, 1, &vals[0][0],
                                             SN_ALERT_TEXT, "telemetry", NULL, NULL, 0, errstr,
                                             sizeof(errstr)),
                 SN_ERR_TRANSIENT, "Redis down: %s", errstr);
    server_start(&the_server); /* the append-only file brings the records back */
    cr_expect_eq(sn_feature_redis_alert_load(r, (const char *[]){"m1"}, 1, &vals[0][0],
                                             SN_ALERT_TEXT, "telemetry", NULL, NULL, 0, errstr,
                                             sizeof(errstr)),
                 0, "%s", errstr);
    cr_expect_str_eq(vals[0], "a1 3 10 10 0 0 0 1 7 0");
    sn_feature_redis_destroy(r);
    sn_conf_destroy(conf);
    sn_feature_spec_destroy(spec);
    server_stop(&the_server);
}
