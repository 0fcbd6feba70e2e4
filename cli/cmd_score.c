/* sentinel score: the scoring pipeline as a long-running consumer. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"
#include "consumers/scorer.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage: sentinel score [-c FILE] [-X KEY=VALUE]...\n\n"
            "Joins the consumer group scorer.group.id on topic.telemetry, keeps rolling\n"
            "features per machine in Redis (redis.url), scores every event with the model\n"
            "at model.alias in the registry (registry.url), sends alerts to topic.alerts,\n"
            "score records to topic.scores and bad records to topic.dlq. With\n"
            "scorer.challenger=shadow the model at model.challenger.alias also scores every\n"
            "event into topic.shadow; with canary it serves the machines whose hash is\n"
            "below scorer.canary.fraction (see README, Challenger). Serves /metrics,\n"
            "/healthz and /readyz on metrics.bind:metrics.port. SIGTERM or Ctrl-C finishes\n"
            "the batch in hand, commits and exits. With scorer.exactly.once=true each\n"
            "batch's outputs and offsets are one Kafka transaction (read them with\n"
            "isolation.level=read_committed); scorer.transactional.id names the instance.\n\n");
    cli_conf_usage(out);
}

static void heartbeat(void *opaque) { sn_httpd_heartbeat(opaque); }

int cmd_score(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    sn_metrics_t *metrics = NULL;
    sn_httpd_t *httpd = NULL;
    sn_scorer_t *scorer = NULL;
    sn_scorer_opts_t opts;
    sn_scorer_stats_t st;
    char errstr[512];
    int opt, rc = SN_EXIT_USAGE;

    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        if (opt == 'h') {
            usage(stdout);
            return SN_EXIT_OK;
        }
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (optind < argc) {
        fprintf(stderr, "sentinel score: unexpected argument '%s'\n", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    rc = SN_EXIT_RUNTIME;
    if (!(metrics = sn_metrics_new(0, errstr, sizeof(errstr))) ||
        !(httpd = sn_httpd_new(conf, metrics, errstr, sizeof(errstr)))) {
        sn_log_error("score", "%s", errstr);
        goto out;
    }
    memset(&opts, 0, sizeof(opts));
    opts.metrics = metrics;
    opts.on_heartbeat = heartbeat;
    opts.opaque = httpd;
    cli_install_signals();
    if (!(scorer = sn_scorer_new(conf, &opts, errstr, sizeof(errstr)))) {
        sn_log_error("score", "%s", errstr);
        goto out;
    }
    sn_httpd_set_ready(httpd, 1, "scoring");
    if (sn_scorer_run(scorer, &cli_stop, errstr, sizeof(errstr)) != 0) {
        sn_log_error("score", "%s", errstr);
        goto out;
    }
    rc = SN_EXIT_OK;
out:
    if (scorer) {
        sn_scorer_stats(scorer, &st);
        sn_log_info("score",
                    "consumed %llu, scored %llu, dead-lettered %llu, alerts opened %llu resolved "
                    "%llu, model %s, transactions committed %llu aborted %llu",
                    (unsigned long long)st.consumed, (unsigned long long)st.scored,
                    (unsigned long long)st.dead_lettered, (unsigned long long)st.alerts_opened,
                    (unsigned long long)st.alerts_resolved, st.model_version,
                    (unsigned long long)st.txn_committed, (unsigned long long)st.txn_aborted);
    }
    sn_httpd_destroy(httpd);
    sn_scorer_destroy(scorer);
    sn_metrics_destroy(metrics);
    sn_conf_destroy(conf);
    return rc;
}
