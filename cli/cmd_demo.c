/* sentinel demo: the whole pipeline on one machine with nothing but this binary
 * and redis-server. An in-process Kafka (librdkafka's mock cluster), a
 * redis-server on a private socket, a model trained on the first 80 % of the
 * bundled AI4I rows and promoted in a local registry, then the last 20 % (rows
 * the model never saw) replayed through produce, score, alerts and the
 * archiver, with alerts printed as they happen and a summary at the end. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/kafka.h"
#include "common/log.h"
#include "consumers/archiver.h"
#include "consumers/scorer.h"
#include "producers/produce.h"

#define DEMO_ROWS 10000
#define DEMO_TRAIN_ROWS 8000
#define DEMO_START_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

struct demo {
    char dir[256];
    const char *data;
    int64_t step_ms;
    double rate;
    pid_t redis_pid;
    sn_kafka_mock_t *mock;
    sn_conf_t *conf;
    uint8_t labels[DEMO_ROWS + 1]; /* by UDI */
    /* results */
    uint64_t scored, positives, tp, fp;
    volatile int produce_done;
    sn_produce_result_t produced;
    int produce_rc;
    char produce_err[512];
    sn_archiver_t *archiver;
    volatile int archive_stop;
    int archive_rc;
};

static void usage(FILE *out) {
    fprintf(out,
            "usage: sentinel demo [--rate R] [--keep] [--data FILE] [-c FILE] [-X KEY=VALUE]...\n\n"
            "Runs the whole pipeline locally with no Java and no cloud: an in-process Kafka,\n"
            "a redis-server on a private socket, a model trained on the first 80 %% of the\n"
            "AI4I data and promoted in a local registry, and a replay of the last 20 %%\n"
            "through produce, score, alerts and the archiver. Needs redis-server on PATH.\n\n"
            "  --rate R      replay at R events per second (default 2000)\n"
            "  --step MS     event time between rows (default 60000: one row a minute)\n"
            "  --data FILE   the AI4I CSV (default data/ai4i2020.csv)\n"
            "  --keep        keep the working folder (registry, archive, logs)\n");
    cli_conf_usage(out);
}

/* Reads the label column so the summary can say how the alerts did. */
static int load_labels(struct demo *d) {
    FILE *fp = fopen(d->data, "r");
    char line[512];
    int n = 0;

    if (!fp) return -1;
    if (!fgets(line, sizeof(line), fp)) goto out;
    while (fgets(line, sizeof(line), fp) && n < DEMO_ROWS) {
        char *last = strrchr(line, ',');
        long udi = strtol(line, NULL, 10);

        if (last && udi >= 1 && udi <= DEMO_ROWS) d->labels[udi] = last[1] == '1';
        n++;
    }
out:
    fclose(fp);
    return n == DEMO_ROWS ? 0 : -1;
}

static int udi_of(const sn_event_t *ev) {
    for (uint32_t i = 0; i < ev->ntags; i++)
        if (strcmp(ev->tags[i].key, "udi") == 0) return (int)strtol(ev->tags[i].value, NULL, 10);
    return 0;
}

static void on_scored(void *opaque, const sn_event_t *ev, double score, double threshold) {
    struct demo *d = opaque;
    int udi = udi_of(ev), label = udi > 0 && udi <= DEMO_ROWS ? d->labels[udi] : 0;
    int alarm = score >= threshold;

    d->scored++;
    d->positives += label;
    d->tp += alarm && label;
    d->fp += alarm && !label;
}

static void on_alert(void *opaque, const sn_alert_t *a) {
    char line[1024];

    (void)opaque;
    cli_alert_line(a, line, sizeof(line));
    printf("alert %s\n", line);
    fflush(stdout);
}

static void *produce_main(void *arg) {
    struct demo *d = arg;
    sn_produce_opts_t o;

    memset(&o, 0, sizeof(o));
    o.source.kind = SN_SOURCE_CSV;
    o.source.path = d->data;
    o.source.map = sn_source_ai4i_map;
    o.source.nmap = sn_source_ai4i_nmap;
    o.source.machine_id = "ai4i-mill";
    o.source.start_ms = DEMO_START_MS;
    o.source.step_ms = d->step_ms;
    o.skip = DEMO_TRAIN_ROWS;
    o.rate = d->rate;
    o.bootstrap = sn_kafka_mock_bootstraps(d->mock);
    o.stop = &cli_stop;
    d->produce_rc =
        sn_produce_run(d->conf, &o, &d->produced, d->produce_err, sizeof(d->produce_err));
    d->produce_done = 1;
    return NULL;
}

static void *archive_main(void *arg) {
    struct demo *d = arg;

    d->archive_rc = sn_archiver_run(d->archiver, &d->archive_stop);
    return NULL;
}

/* Starts redis-server on a unix socket in the demo folder: no port, no
 * persistence, gone with the folder. */
static int start_redis(struct demo *d) {
    char sock[300], log[300];
    int i;

    snprintf(sock, sizeof(sock), "%s/redis.sock", d->dir);
    snprintf(log, sizeof(log), "%s/redis.log", d->dir);
    d->redis_pid = fork();
    if (d->redis_pid < 0) return -1;
    if (d->redis_pid == 0) {
        FILE *out = freopen(log, "w", stdout);

        (void)out;
        dup2(STDOUT_FILENO, STDERR_FILENO);
        setpgid(0, 0); /* Ctrl-C goes to us; we stop redis ourselves */
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--dir", d->dir, "--save", "", "--appendonly", "no",
               (char *)NULL);
        fprintf(stderr, "exec redis-server: %s\n", strerror(errno));
        _exit(127);
    }
    for (i = 0; i < 100; i++) {
        struct stat st;
        int status;

        if (stat(sock, &st) == 0) return 0;
        if (waitpid(d->redis_pid, &status, WNOHANG) == d->redis_pid) {
            d->redis_pid = 0;
            return -1;
        }
        usleep(50 * 1000);
    }
    return -1;
}

static void stop_redis(struct demo *d) {
    if (d->redis_pid <= 0) return;
    kill(d->redis_pid, SIGTERM);
    waitpid(d->redis_pid, NULL, 0);
    d->redis_pid = 0;
}

/* Trains and promotes with the real `sentinel train`, as an operator would. */
static int train(struct demo *d) {
    char exe[4096], registry[300], step[32], start[32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    pid_t pid;
    int status;

    if (n <= 0) return -1;
    exe[n] = '\0';
    snprintf(registry, sizeof(registry), "registry.url=file://%s/registry", d->dir);
    snprintf(step, sizeof(step), "%lld", (long long)d->step_ms);
    snprintf(start, sizeof(start), "%lld", (long long)DEMO_START_MS);
    fflush(stdout);
    if ((pid = fork()) < 0) return -1;
    if (pid == 0) {
        /* The trainer holds the last 20 % out as its holdout: the rows replayed
         * below are never trained on. */
        execl(exe, exe, "train", "--csv", d->data, "--preset", "ai4i", "--start", start, "--step",
              step, "--promote", "-q", "-X", registry, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
    return WEXITSTATUS(status);
}

static int rm_rf(const char *dir) {
    char cmd[400];

    /* The folder is ours (mkdtemp); a fixed rm -rf is simpler than nftw here. */
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", dir);
    return system(cmd);
}

/* Applies the demo's own settings on top of the user's configuration. */
static int demo_conf(struct demo *d) {
    char v[4][320];
    const char *kv[][2] = {
        {"redis.url", v[0]},
        {"registry.url", v[1]},
        {"archive.url", v[2]},
        {"archive.spool.dir", v[3]},
        {"metrics.port", "0"},
        {"alert.cooldown.ms", "3600000"},
        {"archive.file.max.age.ms", "2000"},
    };
    char errstr[512];

    snprintf(v[0], sizeof(v[0]), "unix://%s/redis.sock", d->dir);
    snprintf(v[1], sizeof(v[1]), "file://%s/registry", d->dir);
    snprintf(v[2], sizeof(v[2]), "file://%s/archive", d->dir);
    snprintf(v[3], sizeof(v[3]), "%s/spool", d->dir);
    for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++) {
        if (sn_conf_set(d->conf, kv[i][0], kv[i][1], "demo", errstr, sizeof(errstr)) != 0) {
            fprintf(stderr, "sentinel demo: %s\n", errstr);
            return -1;
        }
    }
    return 0;
}

static double now_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cmd_demo(int argc, char **argv) {
    enum { O_RATE = 256, O_STEP, O_DATA, O_KEEP };
    static const struct option longopts[] = {
        {"rate", required_argument, NULL, O_RATE}, {"step", required_argument, NULL, O_STEP},
        {"data", required_argument, NULL, O_DATA}, {"keep", no_argument, NULL, O_KEEP},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    static const char *topics[][2] = {{"telemetry", "4"},
                                      {"telemetry.scores", "4"},
                                      {"telemetry.dlq", "1"},
                                      {"machine-failures", "1"}};
    struct demo *d = calloc(1, sizeof(*d));
    cli_conf_args_t args = {0};
    sn_scorer_t *scorer = NULL;
    sn_scorer_opts_t sopts;
    sn_scorer_stats_t st;
    sn_archiver_opts_t aopts;
    sn_archiver_stats_t ast;
    pthread_t producer_thread, archiver_thread;
    int producer_started = 0, archiver_started = 0, keep = 0, opt, rc = SN_EXIT_USAGE;
    char errstr[512], *end;
    double t0, elapsed;

    if (!d) return SN_EXIT_RUNTIME;
    d->data = "data/ai4i2020.csv";
    d->step_ms = 60000;
    d->rate = 2000;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) goto out;
        if (r) continue;
        switch (opt) {
        case O_RATE:
            d->rate = strtod(optarg, &end);
            if (end == optarg || *end || !(d->rate >= 0)) goto bad_usage;
            break;
        case O_STEP:
            d->step_ms = strtoll(optarg, &end, 10);
            if (end == optarg || *end || d->step_ms < 1) goto bad_usage;
            break;
        case O_DATA: d->data = optarg; break;
        case O_KEEP: keep = 1; break;
        case 'h':
            usage(stdout);
            rc = SN_EXIT_OK;
            goto out;
        default: goto bad_usage;
        }
    }
    if (optind < argc) goto bad_usage;
    if (!(d->conf = cli_conf_build(&args))) goto out;
    rc = SN_EXIT_RUNTIME;
    if (load_labels(d) != 0) {
        fprintf(stderr,
                "sentinel demo: cannot read %d rows from %s (run from the repository root, "
                "or give --data)\n",
                DEMO_ROWS, d->data);
        goto out;
    }
    snprintf(d->dir, sizeof(d->dir), "/tmp/sentinel-demo-XXXXXX");
    if (!mkdtemp(d->dir) || demo_conf(d) != 0) goto out;
    cli_install_signals();
    printf("sentinel demo: working folder %s\n", d->dir);

    printf("[1/4] starting redis-server on %s/redis.sock and an in-process Kafka\n", d->dir);
    if (start_redis(d) != 0) {
        fprintf(stderr,
                "sentinel demo: redis-server did not start (is it installed? scripts/setup "
                "installs it; log: %s/redis.log)\n",
                d->dir);
        goto out;
    }
    if (!(d->mock = sn_kafka_mock_new(1, errstr, sizeof(errstr)))) goto fail;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
        if (sn_kafka_mock_topic(d->mock, topics[i][0], (int)strtol(topics[i][1], NULL, 10), errstr,
                                sizeof(errstr)) != 0)
            goto fail;

    printf("[2/4] training on the first %d AI4I rows and promoting the model\n", DEMO_TRAIN_ROWS);
    if (train(d) != 0) {
        fprintf(stderr, "sentinel demo: training failed (see above)\n");
        goto out;
    }
    if (cli_stop) goto out;

    printf("[3/4] replaying the last %d rows (never seen in training) at %.0f events/s\n",
           DEMO_ROWS - DEMO_TRAIN_ROWS, d->rate);
    memset(&sopts, 0, sizeof(sopts));
    sopts.bootstrap = sn_kafka_mock_bootstraps(d->mock);
    sopts.on_alert = on_alert;
    sopts.on_scored = on_scored;
    sopts.opaque = d;
    sopts.max_records = DEMO_ROWS - DEMO_TRAIN_ROWS;
    sopts.idle_exit_ms = 10000;
    if (!(scorer = sn_scorer_new(d->conf, &sopts, errstr, sizeof(errstr)))) goto fail;
    memset(&aopts, 0, sizeof(aopts));
    aopts.bootstrap = sopts.bootstrap;
    if (!(d->archiver = sn_archiver_new(d->conf, &aopts, errstr, sizeof(errstr)))) goto fail;
    t0 = now_s();
    if (pthread_create(&producer_thread, NULL, produce_main, d) != 0) goto out;
    producer_started = 1;
    if (pthread_create(&archiver_thread, NULL, archive_main, d) != 0) goto out;
    archiver_started = 1;
    if (sn_scorer_run(scorer, &cli_stop, errstr, sizeof(errstr)) != 0) goto fail;
    elapsed = now_s() - t0;
    pthread_join(producer_thread, NULL);
    producer_started = 0;
    printf("[4/4] waiting for the archiver to upload the last files\n");
    sn_scorer_stats(scorer, &st);
    /* Every event and every score record archived, or 60 s, or Ctrl-C. */
    for (int i = 0; i < 600 && !cli_stop; i++) {
        sn_archiver_stats(d->archiver, &ast);
        if (ast.records >= d->produced.delivered + st.scored) break;
        usleep(100 * 1000);
    }
    d->archive_stop = 1;
    pthread_join(archiver_thread, NULL);
    archiver_started = 0;

    sn_scorer_stats(scorer, &st);
    sn_archiver_stats(d->archiver, &ast);
    printf("\nsummary\n"
           "  events produced      %llu (%llu delivered)\n"
           "  events scored        %llu in %.1f s (%.0f events/s, group joins included)\n"
           "  dead-lettered        %llu\n"
           "  alerts               %llu opened, %llu re-notified, %llu resolved\n",
           (unsigned long long)d->produced.sent, (unsigned long long)d->produced.delivered,
           (unsigned long long)st.scored, elapsed, elapsed > 0 ? (double)st.scored / elapsed : 0.0,
           (unsigned long long)st.dead_lettered, (unsigned long long)st.alerts_opened,
           (unsigned long long)st.alerts_renotified, (unsigned long long)st.alerts_resolved);
    printf("  at the threshold     precision %.2f, recall %.2f (%llu of %llu failures flagged, "
           "%llu false alarms)\n",
           d->tp + d->fp ? (double)d->tp / (double)(d->tp + d->fp) : 0.0,
           d->positives ? (double)d->tp / (double)d->positives : 0.0, (unsigned long long)d->tp,
           (unsigned long long)d->positives, (unsigned long long)d->fp);
    printf("  model                %s/registry (version %s)\n", d->dir, st.model_version);
    printf("  archive              %s: %llu objects, %llu records (events and scores)\n",
           sn_archiver_location(d->archiver), (unsigned long long)ast.objects,
           (unsigned long long)ast.records);
    if (!keep) printf("  (the working folder is removed; --keep keeps it)\n");
    rc = (d->produce_rc == 0 && st.scored == d->produced.delivered && d->archive_rc == 0 &&
          ast.records == d->produced.delivered + st.scored)
             ? SN_EXIT_OK
             : SN_EXIT_RUNTIME;
    if (rc != SN_EXIT_OK)
        fprintf(stderr, "sentinel demo: %s\n",
                d->produce_err[0] ? d->produce_err : "not every event was scored and archived");
    if (keep) printf("  kept %s\n", d->dir);
    goto out;
bad_usage:
    usage(stderr);
    rc = SN_EXIT_USAGE;
    goto out;
fail:
    fprintf(stderr, "sentinel demo: %s\n", errstr);
    rc = SN_EXIT_RUNTIME;
out:
    if (producer_started || archiver_started) cli_stop = d->archive_stop = 1;
    if (producer_started) pthread_join(producer_thread, NULL);
    if (archiver_started) pthread_join(archiver_thread, NULL);
    sn_archiver_destroy(d->archiver);
    sn_scorer_destroy(scorer);
    sn_kafka_mock_destroy(d->mock);
    stop_redis(d);
    if (d->dir[0] && !keep && strncmp(d->dir, "/tmp/sentinel-demo-", 19) == 0) rm_rf(d->dir);
    sn_conf_destroy(d->conf);
    free(d);
    return rc;
}
