/* sentinel alerts: follow the alert topic, one readable line per alert. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/json.h"
#include "common/log.h"
#include "consumers/consumer.h"
#include "schemas/codec.h"

static const char *state_name(enum sn_alert_state s) {
    return s == SN_ALERT_OPEN ? "OPEN" : s == SN_ALERT_RENOTIFY ? "RENOTIFY" : "RESOLVED";
}

void cli_alert_line(const sn_alert_t *a, char *buf, size_t size) {
    char when[32], why[512] = "";
    time_t t = (time_t)(a->ts_ms / 1000);
    struct tm tm;
    size_t n = 0;

    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    for (uint32_t i = 0; i < a->nfeatures && n < sizeof(why); i++)
        n += (size_t)snprintf(why + n, sizeof(why) - n, "%s%s=%.4g (%+.2f)", i ? ", " : "",
                              a->features[i].name, a->features[i].value,
                              a->features[i].contribution);
    snprintf(buf, size, "%s %-8s %s score %.3f (threshold %.3f, %s v%s)%s%s", when,
             state_name(a->state), a->machine_id, a->score, a->threshold, a->model_name,
             a->model_version, n ? ": " : "", why);
}

/* One JSON object per alert, for a pager or a script. */
static void json_line(const sn_alert_t *a, FILE *out) {
    char id[SN_ALERT_ID_MAX * 2], mid[SN_EVENT_ID_MAX * 2], mv[SN_MODEL_VERSION_MAX * 2],
        mn[SN_MODEL_NAME_MAX * 2];

    sn_json_escape(id, sizeof(id), a->id);
    sn_json_escape(mid, sizeof(mid), a->machine_id);
    sn_json_escape(mn, sizeof(mn), a->model_name);
    sn_json_escape(mv, sizeof(mv), a->model_version);
    fprintf(out,
            "{\"id\":\"%s\",\"machine_id\":\"%s\",\"ts\":%lld,\"state\":\"%s\",\"score\":%.17g,"
            "\"threshold\":%.17g,\"model_name\":\"%s\",\"model_version\":\"%s\",\"top_features\":[",
            id, mid, (long long)a->ts_ms, state_name(a->state), a->score, a->threshold, mn, mv);
    for (uint32_t i = 0; i < a->nfeatures; i++) {
        char name[SN_FEATURE_NAME_MAX * 2];

        sn_json_escape(name, sizeof(name), a->features[i].name);
        fprintf(out, "%s{\"name\":\"%s\",\"value\":%.17g,\"contribution\":%.17g}", i ? "," : "",
                name, a->features[i].value, a->features[i].contribution);
    }
    fprintf(out, "]}\n");
}

static void usage(FILE *out) {
    fprintf(out, "usage: sentinel alerts [--from-beginning] [--json] [--count N] [-c FILE] [-X "
                 "KEY=VALUE]...\n\n"
                 "Follows topic.alerts and prints one line per alert: time, state, machine,\n"
                 "score, threshold, model version and the features that pushed the score up.\n"
                 "Reads without joining the scorers' group and commits nothing.\n\n"
                 "  --from-beginning  start at the oldest alert (default: only new ones)\n"
                 "  --json            JSON lines instead of text\n"
                 "  --count N         exit after N alerts\n");
    cli_conf_usage(out);
}

int cmd_alerts(int argc, char **argv) {
    enum { O_BEGIN = 256, O_JSON, O_COUNT };
    static const struct option longopts[] = {{"from-beginning", no_argument, NULL, O_BEGIN},
                                             {"json", no_argument, NULL, O_JSON},
                                             {"count", required_argument, NULL, O_COUNT},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    sn_codec_t *codec = NULL;
    sn_consumer_t *consumer = NULL;
    sn_consumer_opts_t copts;
    sn_batch_t batch = {0};
    const char *topics[1];
    char group[64], errstr[512], *end;
    int opt, json = 0, from_beginning = 0, rc = SN_EXIT_USAGE;
    long long count = 0, seen = 0;

    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case O_BEGIN: from_beginning = 1; break;
        case O_JSON: json = 1; break;
        case O_COUNT:
            count = strtoll(optarg, &end, 10);
            if (end == optarg || *end || count < 1) {
                fprintf(stderr, "sentinel alerts: --count expects a positive number\n");
                return SN_EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    rc = SN_EXIT_RUNTIME;
    /* A private, throw-away group: we only read, and must not move the offsets
     * of anyone else. */
    if (sn_conf_set(conf, "kafka.auto.offset.reset", from_beginning ? "earliest" : "latest",
                    "sentinel alerts", errstr, sizeof(errstr)) != 0 ||
        sn_conf_set(conf, "kafka.enable.auto.commit", "false", "sentinel alerts", errstr,
                    sizeof(errstr)) != 0)
        goto fail;
    if (!(codec = sn_codec_new(conf, errstr, sizeof(errstr)))) goto fail;
    snprintf(group, sizeof(group), "sentinel-alerts-%d-%ld", (int)getpid(), (long)time(NULL));
    topics[0] = sn_conf_str(conf, "topic.alerts");
    memset(&copts, 0, sizeof(copts));
    copts.group_id = group;
    copts.topics = topics;
    copts.ntopics = 1;
    copts.batch_max_records = 100;
    copts.batch_max_ms = 100;
    if (!(consumer = sn_consumer_new(conf, &copts, errstr, sizeof(errstr)))) goto fail;
    cli_install_signals();
    while (!cli_stop && (!count || seen < count)) {
        int n = sn_consumer_poll_batch(consumer, &batch, 500);

        if (n < 0) {
            snprintf(errstr, sizeof(errstr), "consumer failed");
            goto fail;
        }
        for (int i = 0; i < n && (!count || seen < count); i++) {
            const sn_record_t *r = &batch.records[i];
            enum sn_codec_error_class cls;
            sn_alert_t a;
            char line[1024];

            if (sn_codec_decode_alert(codec, r->value, r->len, &a, &cls, errstr, sizeof(errstr)) !=
                0) {
                sn_log_warn("alerts", "%s/%d/%lld is not an alert (%s): %s", r->topic,
                            (int)r->partition, (long long)r->offset, sn_codec_error_class_str(cls),
                            errstr);
                continue;
            }
            if (json) {
                json_line(&a, stdout);
            } else {
                cli_alert_line(&a, line, sizeof(line));
                puts(line);
            }
            seen++;
        }
        fflush(stdout);
        sn_consumer_release_batch(&batch);
    }
    rc = SN_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "sentinel alerts: %s\n", errstr);
out:
    sn_batch_free(&batch);
    sn_consumer_destroy(consumer);
    sn_codec_destroy(codec);
    sn_conf_destroy(conf);
    return rc;
}
