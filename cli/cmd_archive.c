/* sentinel archive: every event of the archived topics to S3 or a folder, as
 * Avro object container files (consumers/archiver.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "consumers/archiver.h"

#define TOPICS_MAX 64

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: sentinel archive [-c FILE] [-X KEY=VALUE]... [--url URL] [--topics T1,T2]\n"
        "                        [--exit-when-idle MS]\n"
        "       sentinel archive [-c FILE] [-X KEY=VALUE]... [--url URL] --put-bench N,BYTES\n\n"
        "Consumes the archived topics (archive.topics) in the consumer group archive.group.id\n"
        "and writes every record to Avro object container files (snappy), one per topic and\n"
        "partition, closed on size, age, rebalance and shutdown, uploaded to\n"
        "  <prefix>/<topic>/dt=YYYY-MM-DD/hour=HH/partition=P/<first>-<last>.avro\n"
        "of archive.url (s3://bucket/prefix or file://DIR). Offsets are committed only after\n"
        "the upload; SIGINT/SIGTERM closes, uploads and commits before exiting.\n\n"
        "  --url URL            overrides archive.url\n"
        "  --topics T1,T2       overrides archive.topics\n"
        "  --exit-when-idle MS  exit (after uploading and committing) once no record arrived\n"
        "                       for MS milliseconds\n"
        "  --put-bench N,BYTES  measure raw PUT throughput to the sink instead: N objects of\n"
        "                       BYTES random bytes, then print MB/s and exit\n");
    cli_conf_usage(out);
}

/* strtoll with the whole string and a range checked (atoi is banned). */
static int parse_long(const char *s, long long min, long long max, long long *out) {
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    return (errno || end == s || *end || *out < min || *out > max) ? -1 : 0;
}

/* --put-bench N,BYTES: raw PutObject throughput of the sink, through the same
 * S3 client, for bench/bench_archive.sh to compare the archiver against. */
static int put_bench(const sn_conf_t *conf, const char *url, const char *spec) {
    long long count, size;
    char copy[64], *comma, errstr[512];
    double secs = 0;

    snprintf(copy, sizeof(copy), "%s", spec);
    if ((comma = strchr(copy, ','))) *comma = '\0';
    if (!comma || parse_long(copy, 1, 100000, &count) != 0 ||
        parse_long(comma + 1, 1, 1024LL << 20, &size) != 0) {
        fprintf(stderr, "sentinel archive: --put-bench expects N,BYTES, got \"%s\"\n", spec);
        return SN_EXIT_USAGE;
    }
    if (sn_archiver_put_bench(conf, url, (int)count, (size_t)size, &secs, errstr, sizeof(errstr)) !=
        0) {
        fprintf(stderr, "sentinel archive: %s\n", errstr);
        return SN_EXIT_RUNTIME;
    }
    printf("put-bench: %lld objects of %lld bytes in %.3f s: %.1f MB/s, %.1f objects/s\n", count,
           size, secs, secs > 0 ? (double)count * (double)size / 1e6 / secs : 0.0,
           secs > 0 ? (double)count / secs : 0.0);
    return SN_EXIT_OK;
}

/* Builds the configuration, the metrics endpoint and the archiver, runs it
 * until a signal (or idle with --exit-when-idle), then prints a summary line
 * that scripts read (bench/bench_archive.sh, tests/integration). */
int cmd_archive(int argc, char **argv) {
    static const struct option longopts[] = {{"url", required_argument, NULL, 'u'},
                                             {"topics", required_argument, NULL, 't'},
                                             {"exit-when-idle", required_argument, NULL, 'i'},
                                             {"put-bench", required_argument, NULL, 'b'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    sn_metrics_t *metrics = NULL;
    sn_httpd_t *httpd = NULL;
    sn_archiver_t *a = NULL;
    sn_archiver_opts_t opts;
    sn_archiver_stats_t st;
    const char *topics[TOPICS_MAX], *bench = NULL;
    char topic_buf[4096], errstr[512];
    long long idle = 0;
    int opt, rc = SN_EXIT_USAGE;

    memset(&opts, 0, sizeof(opts));
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case 'u': opts.url = optarg; break;
        case 't': {
            char *p, *save = NULL;

            snprintf(topic_buf, sizeof(topic_buf), "%s", optarg);
            opts.ntopics = 0;
            for (p = strtok_r(topic_buf, ",", &save); p && opts.ntopics < TOPICS_MAX;
                 p = strtok_r(NULL, ",", &save))
                topics[opts.ntopics++] = p;
            opts.topics = topics;
            break;
        }
        case 'i':
            if (parse_long(optarg, 1, 86400000LL, &idle) != 0) {
                fprintf(stderr, "sentinel archive: --exit-when-idle expects milliseconds\n");
                return SN_EXIT_USAGE;
            }
            opts.idle_exit_ms = idle;
            break;
        case 'b': bench = optarg; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sentinel archive: unexpected argument '%s'\n", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    if (bench) {
        rc = put_bench(conf, opts.url, bench);
        goto out;
    }
    cli_install_signals();
    rc = SN_EXIT_RUNTIME;
    if (!(metrics = sn_metrics_new(0, errstr, sizeof(errstr))) ||
        !(httpd = sn_httpd_new(conf, metrics, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel archive: %s\n", errstr);
        goto out;
    }
    opts.metrics = metrics;
    opts.httpd = httpd;
    if (!(a = sn_archiver_new(conf, &opts, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel archive: %s\n", errstr);
        goto out;
    }
    if (sn_archiver_run(a, &cli_stop) != 0) {
        fprintf(stderr, "sentinel archive: stopped on a fatal error (see the log)\n");
        goto summary;
    }
    rc = SN_EXIT_OK;
summary:
    sn_archiver_stats(a, &st);
    printf("archived %" PRIu64 " records (%" PRIu64 " raw, %" PRIu64
           " found already archived) in %" PRIu64 " objects, %" PRIu64 " bytes (from %" PRIu64
           " bytes of values), busy %.3f s, to %s\n",
           st.records, st.invalid, st.skipped, st.objects, st.bytes, st.in_bytes, st.busy_s,
           sn_archiver_location(a));
out:
    sn_archiver_destroy(a);
    sn_httpd_destroy(httpd);
    sn_metrics_destroy(metrics);
    sn_conf_destroy(conf);
    return rc;
}
