/* bench_features: the cost of a feature update, online (Redis) against the
 * in-memory engine as the baseline, in one run.
 *
 * Build (after the library build; bench/ is not part of the CMake build):
 *   cmake -S . -B build-feat -G Ninja && cmake --build build-feat
 *   cc -std=c11 -O2 -D_GNU_SOURCE -I. bench/bench_features.c \
 *      build-feat/libsn_scoring.a build-feat/libsn_schemas.a build-feat/libsn_common.a \
 *      $(pkg-config --libs hiredis jansson) -lm -lpthread -o build-feat/bench_features
 * Run:
 *   build-feat/bench_features                      # starts its own redis-server
 *   build-feat/bench_features -u redis://host:6379 -m 1000 -r 20
 * Options: -u URL (use a running Redis: it must be otherwise idle, its CPU is
 * measured), -m machines (1000), -r rounds per measurement (20), -s spec.json
 * (default: the built-in AI4I spec), -b redis-server binary, -c N sets
 * redis.cas.machines.max (1: one script call per machine). BENCH_REDIS_ONLY=1
 * in the environment skips the in-memory baseline; BENCH_UNDO=1 keeps the undo
 * record (what the exactly-once scorer does).
 *
 * Workload: each machine sends an AI4I-like event every 10 s of event time;
 * the state is warmed to a full retention first. "batch B" means B events per
 * machine per script call (all machines of a pipeline in one round trip).
 * Reported per event: Redis server CPU (INFO used_cpu_user + used_cpu_sys
 * deltas), the script's own time (INFO commandstats evalsha usec), the
 * client's CPU (replay + vectors + protocol), and events/s (wall clock, both
 * processes on the same machine). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/log.h"
#include "scoring/feature_redis.h"
#include "scoring/feature_state.h" /* spec internals, for the header line only */
#include "scoring/features.h"
#include "scoring/scoring_conf.h"

#define EVENTS_PER_CALL_MAX 10000 /* events per apply_batch call */
#define STEP_MS 10000

static const char *const fields[] = {"air_temperature_k",    "process_temperature_k",
                                     "rotational_speed_rpm", "torque_nm",
                                     "tool_wear_min",        "product_type"};

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < 6; i++)
        if (strcmp(fields[i], name) == 0) return i;
    return -1;
}

static double now_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng = 12345;
static double unit(void) {
    uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}
static double normal(void) {
    return sqrt(-2 * log(unit() + 1e-300)) * cos(6.283185307179586 * unit());
}

/* Per-machine stream position. */
struct fleet {
    size_t machines;
    int64_t *clock, *offset;
    double *wear;
};

static void next_event(struct fleet *fl, size_t m, sn_event_t *ev, int32_t *part, int64_t *off) {
    double air = 300 + 2 * normal();

    memset(ev, 0, offsetof(sn_event_t, tags));
    snprintf(ev->machine_id, sizeof(ev->machine_id), "machine-%05zu", m);
    ev->ts_ms = fl->clock[m];
    fl->clock[m] += STEP_MS;
    ev->nvalues = 6;
    ev->values[0] = air;
    ev->values[1] = air + 10 + normal();
    ev->values[2] = 1500 + 180 * normal();
    ev->values[3] = 40 + 10 * normal();
    fl->wear[m] = fl->wear[m] > 240 ? 0 : fl->wear[m] + 3;
    ev->values[4] = fl->wear[m];
    ev->values[5] = (double)(m % 3);
    *part = (int32_t)(m % 12);
    *off = fl->offset[m]++;
}

struct backend {
    sn_features_t *mem;
    sn_feature_redis_t *redis;
};

/* Feeds rounds x batch events per machine; returns wall and client CPU
 * seconds spent inside the backend calls only. */
static int run(struct backend *be, struct fleet *fl, size_t nfeat, int rounds, int batch,
               double *wall, double *cpu, size_t *events) {
    static sn_event_t evs[EVENTS_PER_CALL_MAX];
    static int32_t parts[EVENTS_PER_CALL_MAX];
    static int64_t offs[EVENTS_PER_CALL_MAX];
    float *out = malloc((size_t)EVENTS_PER_CALL_MAX * nfeat * sizeof(float));
    size_t per_call = EVENTS_PER_CALL_MAX / (size_t)batch;
    char errstr[512];

    *wall = *cpu = 0;
    *events = 0;
    for (int r = 0; r < rounds; r++) {
        for (size_t m0 = 0; m0 < fl->machines; m0 += per_call) {
            size_t n = 0;
            double w0, c0;

            for (size_t m = m0; m < m0 + per_call && m < fl->machines; m++)
                for (int b = 0; b < batch; b++, n++)
                    next_event(fl, m, &evs[n], &parts[n], &offs[n]);
            w0 = now_s(CLOCK_MONOTONIC);
            c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
            if (be->redis) {
                int rc = sn_feature_redis_apply_batch(be->redis, evs, parts, offs, n, out, NULL,
                                                      errstr, sizeof(errstr));
                if (rc != 0) {
                    fprintf(stderr, "bench: %s\n", errstr);
                    free(out);
                    return -1;
                }
            } else {
                /* one event at a time, in the same order: what training does */
                for (size_t i = 0; i < n; i++)
                    sn_features_apply(be->mem, &evs[i], parts[i], offs[i], out);
            }
            *wall += now_s(CLOCK_MONOTONIC) - w0;
            *cpu += now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
            *events += n;
        }
    }
    free(out);
    return 0;
}

static double info_field(redisContext *c, const char *section, const char *key) {
    redisReply *r = redisCommand(c, "INFO %s", section);
    double v = NAN;
    const char *p;

    if (r && r->type == REDIS_REPLY_STRING && (p = strstr(r->str, key))) {
        p += strlen(key);
        v = strtod(p, NULL);
    }
    if (r) freeReplyObject(r);
    return v;
}

static double redis_cpu(redisContext *c) {
    return info_field(c, "cpu", "used_cpu_user:") + info_field(c, "cpu", "used_cpu_sys:");
}

static void fleet_init(struct fleet *fl, size_t machines) {
    fl->machines = machines;
    fl->clock = calloc(machines, sizeof(int64_t));
    fl->offset = calloc(machines, sizeof(int64_t));
    fl->wear = calloc(machines, sizeof(double));
    for (size_t m = 0; m < machines; m++) {
        fl->clock[m] = 1700000000000LL + (int64_t)(m * 37 % STEP_MS);
        fl->wear[m] = (double)(m % 200);
    }
}

static void fleet_free(struct fleet *fl) {
    free(fl->clock);
    free(fl->offset);
    free(fl->wear);
}

int main(int argc, char **argv) {
    static const sn_conf_def_t *const tables[] = {sn_scoring_conf_defs};
    const char *url = NULL, *spec_path = NULL, *server = "/usr/bin/redis-server", *cas_max = NULL;
    size_t machines = 1000;
    int rounds = 20, opt, warm_batch = 100;
    char dir[64] = "", sock[128], urlbuf[160], errstr[512];
    pid_t pid = 0;
    sn_feature_spec_t *spec;
    redisContext *rc;
    struct timeval tv = {5, 0};
    int status = 1;

    while ((opt = getopt(argc, argv, "u:m:r:s:b:c:")) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'm': machines = strtoul(optarg, NULL, 10); break;
        case 'r': rounds = (int)strtol(optarg, NULL, 10); break;
        case 's': spec_path = optarg; break;
        case 'b': server = optarg; break;
        case 'c': cas_max = optarg; break;
        default:
            fprintf(stderr, "usage: bench_features [-u redis-url] [-m machines] [-r rounds] [-s "
                            "spec.json] [-b redis-server] [-c redis.cas.machines.max]\n");
            return 2;
        }
    }
    if (machines == 0 || machines > 100000 || rounds <= 0) return 2;
    sn_log_set_level(SN_LOG_WARN);
    spec = spec_path ? sn_feature_spec_load(spec_path, errstr, sizeof(errstr))
                     : sn_feature_spec_parse(sn_feature_spec_default_json(),
                                             strlen(sn_feature_spec_default_json()), errstr,
                                             sizeof(errstr));
    if (!spec || sn_feature_spec_bind(spec, field_index, NULL, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "bench: %s\n", errstr);
        return 1;
    }
    if (!url) {
        snprintf(dir, sizeof(dir), "/tmp/sn_bench_XXXXXX");
        if (!mkdtemp(dir)) return 1;
        snprintf(sock, sizeof(sock), "%s/redis.sock", dir);
        if ((pid = fork()) == 0) {
            execl(server, server, "--port", "0", "--unixsocket", sock, "--dir", dir, "--save", "",
                  "--appendonly", "no", "--daemonize", "no", "--logfile", "redis.log",
                  (char *)NULL);
            _exit(127);
        }
        snprintf(urlbuf, sizeof(urlbuf), "unix://%s", sock);
        url = urlbuf;
        for (int i = 0; i < 500 && access(sock, F_OK) != 0; i++) usleep(10000);
        usleep(50000);
    }
    rc = strncmp(url, "unix://", 7) == 0 ? redisConnectUnixWithTimeout(url + 7, tv) : NULL;
    if (!rc) {
        char host[256] = "127.0.0.1";
        int port = 6379;
        if (sscanf(url, "redis://%255[^:/]:%d", host, &port) < 1) return 2;
        rc = redisConnectWithTimeout(host, port, tv);
    }
    if (!rc || rc->err) {
        fprintf(stderr, "bench: cannot connect to %s\n", url);
        goto out;
    }
    {
        redisReply *v = redisCommand(rc, "INFO server");
        const char *p =
            v && v->type == REDIS_REPLY_STRING ? strstr(v->str, "redis_version:") : NULL;
        printf("# redis %.*s, %zu machines, spec %s: %zu features, %d windowed fields, %d "
               "buckets\n",
               p ? (int)strcspn(p + 14, "\r\n") : 1, p ? p + 14 : "?", machines,
               spec_path ? spec_path : "default", sn_feature_spec_nfeatures(spec), spec->nwf,
               spec->nbuckets);
        if (v) freeReplyObject(v);
    }
    printf("%-22s %6s %9s %10s %14s %14s %16s\n", "backend", "batch", "events", "events/s",
           "client_cpu_us", "redis_cpu_us", "evalsha_usec_us");

    /* baseline: the in-memory engine, same workload */
    for (int bi = 0; bi < 2 && !getenv("BENCH_REDIS_ONLY"); bi++) {
        int batch = bi ? 100 : 1;
        struct fleet fl;
        struct backend be = {0};
        double wall, cpu;
        size_t ev;

        fleet_init(&fl, machines);
        be.mem = sn_features_new(spec, machines, errstr, sizeof(errstr));
        run(&be, &fl, spec->nfeatures, (int)(3600000 / STEP_MS / warm_batch) + 1, warm_batch, &wall,
            &cpu, &ev);
        run(&be, &fl, spec->nfeatures, batch == 1 ? rounds * 10 : rounds / 4 + 1, batch, &wall,
            &cpu, &ev);
        printf("%-22s %6d %9zu %10.0f %14.2f %14s %16s\n", "memory", batch, ev, ev / wall,
               cpu / ev * 1e6, "-", "-");
        sn_features_destroy(be.mem);
        fleet_free(&fl);
    }

    for (int ci = 0; ci < 2; ci++) {
        const char *cache = ci ? "0" : "100000";
        for (int bi = 0; bi < 2; bi++) {
            int batch = bi ? 100 : 1;
            sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));
            struct fleet fl;
            struct backend be = {0};
            double wall, cpu, c0, c1, usec;
            size_t ev;
            char name[64], prefix[32];
            redisReply *x;

            snprintf(prefix, sizeof(prefix), "bench%d%d", ci, bi);
            if (!conf || sn_conf_set(conf, "redis.url", url, "bench", errstr, sizeof(errstr)) ||
                sn_conf_set(conf, "feature.cache.machines", cache, "bench", errstr,
                            sizeof(errstr)) ||
                sn_conf_set(conf, "redis.key.prefix", prefix, "bench", errstr, sizeof(errstr)) ||
                sn_conf_set(conf, "redis.timeout.ms", "30000", "bench", errstr, sizeof(errstr)) ||
                (cas_max && sn_conf_set(conf, "redis.cas.machines.max", cas_max, "bench", errstr,
                                        sizeof(errstr))) ||
                !(be.redis = sn_feature_redis_new(conf, spec, errstr, sizeof(errstr)))) {
                fprintf(stderr, "bench: %s\n", errstr);
                goto out;
            }
            sn_feature_redis_set_undo(be.redis, getenv("BENCH_UNDO") != NULL);
            fleet_init(&fl, machines);
            if (run(&be, &fl, spec->nfeatures, (int)(3600000 / STEP_MS / warm_batch) + 1,
                    warm_batch, &wall, &cpu, &ev) != 0)
                goto out;
            x = redisCommand(rc, "CONFIG RESETSTAT");
            if (x) freeReplyObject(x);
            c0 = redis_cpu(rc);
            if (run(&be, &fl, spec->nfeatures, batch == 1 ? rounds : rounds / 4 + 1, batch, &wall,
                    &cpu, &ev) != 0)
                goto out;
            c1 = redis_cpu(rc);
            {
                redisReply *s = redisCommand(rc, "INFO commandstats");
                const char *p =
                    s && s->type == REDIS_REPLY_STRING ? strstr(s->str, "cmdstat_evalsha:") : NULL;
                usec = p && (p = strstr(p, "usec=")) ? strtod(p + 5, NULL) : NAN;
                if (s) freeReplyObject(s);
            }
            snprintf(name, sizeof(name), "redis (cache %s)", ci ? "off" : "on");
            printf("%-22s %6d %9zu %10.0f %14.2f %14.2f %16.2f\n", name, batch, ev, ev / wall,
                   cpu / ev * 1e6, (c1 - c0) / ev * 1e6, usec / ev);
            fflush(stdout);
            sn_feature_redis_destroy(be.redis);
            sn_conf_destroy(conf);
            fleet_free(&fl);
        }
    }
    status = 0;
out:
    if (rc) redisFree(rc);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    if (dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) status = 1;
    }
    sn_feature_spec_destroy(spec);
    return status;
}
