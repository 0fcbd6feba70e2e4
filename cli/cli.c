#include "cli/cli.h"

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "common/common_conf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics_conf.h"
#include "common/s3_conf.h"
#include "consumers/archiver_conf.h"
#include "consumers/scorer_conf.h"
#include "producers/source_archive_conf.h"
#include "schemas/schemas_conf.h"
#include "scoring/drift_conf.h"
#include "scoring/model_conf.h"
#include "scoring/scoring_conf.h"

extern char **environ;

const sn_conf_def_t *const cli_conf_tables[] = {
    sn_common_conf_defs, sn_metrics_conf_defs, sn_schemas_conf_defs,  sn_scoring_conf_defs,
    sn_model_conf_defs,  sn_scorer_conf_defs,  sn_archiver_conf_defs, sn_source_archive_conf_defs,
    sn_s3_conf_defs,     sn_drift_conf_defs,
};
const char *const cli_conf_titles[] = {
    "General",
    "Metrics and health endpoint",
    "Schemas and the codec",
    "Features and Redis",
    "Models, registry and training",
    "Scorer and alerts",
    "Archiver",
    "Archive reader (train and drift --input URL)",
    "S3 client",
    "Drift",
};
const size_t cli_conf_ntables = sizeof(cli_conf_tables) / sizeof(cli_conf_tables[0]);

volatile int cli_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    cli_stop = 1;
}

void cli_install_signals(void) {
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int cli_conf_opt(cli_conf_args_t *args, int opt, const char *arg) {
    if (opt == 'c') {
        args->file = arg;
        return 1;
    }
    if (opt != 'X') return 0;
    if (args->nx >= (int)(sizeof(args->x) / sizeof(args->x[0]))) {
        fprintf(stderr, "sentinel: too many -X options\n");
        return -1;
    }
    args->x[args->nx++] = arg;
    return 1;
}

void cli_conf_usage(FILE *out) {
    fprintf(out, "  -c FILE          read configuration (key=value lines) from FILE\n"
                 "  -X KEY=VALUE     set a configuration key (overrides file and environment);\n"
                 "                   kafka.* keys pass through to librdkafka\n");
}

sn_conf_t *cli_conf_build(const cli_conf_args_t *args) {
    char errstr[512];
    sn_conf_t *conf = sn_conf_new(cli_conf_tables, cli_conf_ntables, errstr, sizeof(errstr));

    if (!conf) goto fail;
    if (args->file && sn_conf_load_file(conf, args->file, errstr, sizeof(errstr)) != 0) goto fail;
    if (sn_conf_load_env(conf, environ, errstr, sizeof(errstr)) != 0) goto fail;
    for (int i = 0; i < args->nx; i++) {
        char key[256];
        const char *eq = strchr(args->x[i], '=');

        if (!eq || eq == args->x[i] || (size_t)(eq - args->x[i]) >= sizeof(key)) {
            snprintf(errstr, sizeof(errstr), "-X: expected key=value, got \"%s\"", args->x[i]);
            goto fail;
        }
        memcpy(key, args->x[i], (size_t)(eq - args->x[i]));
        key[eq - args->x[i]] = '\0';
        if (sn_conf_set(conf, key, eq + 1, "-X", errstr, sizeof(errstr)) != 0) goto fail;
    }
    sn_log_set_level((enum sn_log_level)sn_log_level_parse(sn_conf_str(conf, "log.level")));
    {
        const char *fmt = sn_conf_str(conf, "log.format");

        sn_log_set_format(strcmp(fmt, "json") == 0   ? SN_LOG_FORMAT_JSON
                          : strcmp(fmt, "text") == 0 ? SN_LOG_FORMAT_TEXT
                                                     : SN_LOG_FORMAT_AUTO);
    }
    return conf;
fail:
    fprintf(stderr, "sentinel: %s\n", errstr);
    sn_conf_destroy(conf);
    return NULL;
}

/* Shared by train and drift (and their --start/--step). */
int cli_parse_i64(const char *cmd, const char *opt, const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);

    if (end == s || *end || v < 0) {
        fprintf(stderr, "sentinel %s: %s expects a non-negative integer, got '%s'\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Shared by train and drift, which both take a time range. */
int cli_parse_time(const char *cmd, const char *opt, const char *s, int64_t *out) {
    struct tm tm;
    const char *end;
    int all_digits = *s != '\0';

    for (const char *p = s; *p; p++) all_digits &= isdigit((unsigned char)*p) != 0;
    if (all_digits) {
        char *e;
        long long v = strtoll(s, &e, 10);

        if (*e == '\0' && v >= 0) {
            *out = v;
            return 0;
        }
    }
    memset(&tm, 0, sizeof(tm));
    if (!(end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (all_digits || !end || (*end && strcmp(end, "Z") != 0)) {
        fprintf(stderr,
                "sentinel %s: %s expects epoch ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got '%s'\n",
                cmd, opt, s);
        return -1;
    }
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

int cli_is_archive_url(const char *s) {
    return strncmp(s, "file://", 7) == 0 || strncmp(s, "s3://", 5) == 0;
}
