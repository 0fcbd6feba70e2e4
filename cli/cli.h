/* cli.h: what the subcommands of the sentinel binary share. */
#ifndef SN_CLI_H
#define SN_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include "common/conf.h"

/* The -c and -X options as the subcommands' getopt strings spell them. */
#define CLI_CONF_OPTS "c:X:"

/* Collects -c FILE and -X key=value while a subcommand parses its options, then
 * builds the configuration in precedence order: defaults < file < environment <
 * -X. */
typedef struct cli_conf_args {
    const char *file;
    const char *x[128];
    int nx;
} cli_conf_args_t;

/* Handles opt when it is 'c' or 'X'; returns 1 when it was one of them, 0 when
 * not, and -1 on error (too many -X), having printed why. */
int cli_conf_opt(cli_conf_args_t *args, int opt, const char *arg);

/* Builds the configuration from every table; on error prints it and returns
 * NULL (the caller exits with SN_EXIT_USAGE). Also applies log.* keys. */
sn_conf_t *cli_conf_build(const cli_conf_args_t *args);

/* Every config table and its title, in the order of docs/CONFIG.md. */
extern const sn_conf_def_t *const cli_conf_tables[];
extern const char *const cli_conf_titles[];
extern const size_t cli_conf_ntables;

/* Prints the -c/-X lines of a subcommand's --help. */
void cli_conf_usage(FILE *out);

/* Formats an alert as one readable line into buf (caller-owned). */
struct sn_alert;
void cli_alert_line(const struct sn_alert *alert, char *buf, size_t size);

/* Parses a time as an operator types it: epoch milliseconds, YYYY-MM-DD or
 * YYYY-MM-DDTHH:MM:SSZ (UTC). On error prints "sentinel <cmd>: <opt> expects
 * ..." and returns -1. */
int cli_parse_time(const char *cmd, const char *opt, const char *s, int64_t *out);

/* Parses a non-negative decimal integer; on error prints "sentinel <cmd>:
 * <opt> expects a non-negative integer, got '<s>'" and returns -1. */
int cli_parse_i64(const char *cmd, const char *opt, const char *s, int64_t *out);

/* 1 when s names an archive (file://... or s3://...), not a local file. */
int cli_is_archive_url(const char *s);

/* Set by SIGINT/SIGTERM; long-running commands poll it. */
extern volatile int cli_stop;
void cli_install_signals(void);

/* ---- what sentinel drift does about drift (cli/drift_actions.c) ---- */
struct sn_drift;

/* What a drift event says about the run that found it; strings borrowed. */
typedef struct cli_drift_ctx {
    const char *model_name, *version, *input;
    int64_t from_ms, to_ms; /* -1: open */
} cli_drift_ctx_t;

/* The outcome of a retrain on drift. */
typedef struct cli_drift_retrain {
    int64_t from_ms, to_ms; /* the archive window trained on */
    int exit_code;          /* sentinel train's: 0 promoted, 4 not promoted, 1, 2 */
    int promoted;
    char before[64], after[64]; /* model.alias's version before and after */
} cli_drift_retrain_t;

#define CLI_DRIFT_RETRAIN_ARGS (2 * 128 + 24)

/* Publishes one event (type "drift" with d's drifted features, or "retrain"
 * with rt's outcome) as compact JSON keyed by the model name to
 * drift.events.topic, and waits for the broker's acknowledgement. 0 when
 * delivered or when the topic is empty (events off); otherwise a negative
 * sn_err with errstr naming the topic and brokers. d and rt may be NULL. */
int cli_drift_publish(const sn_conf_t *conf, const char *type, const cli_drift_ctx_t *ctx,
                      const struct sn_drift *d, const cli_drift_retrain_t *rt, char *errstr,
                      size_t errstr_size);

/* Runs `sentinel train --promote` in this process on the archive input
 * (URL, borrowed) and topic (NULL: the default) over the drift.retrain.window.ms
 * before to_ms (-1: now), with the same -c and -X as the drift run
 * (args, borrowed) and labels from drift.retrain.failures when set. Fills
 * *out and returns sentinel train's exit code. */
int cli_drift_retrain(const sn_conf_t *conf, const cli_conf_args_t *args, const char *input,
                      const char *topic, int64_t to_ms, cli_drift_retrain_t *out);

int cmd_config(int argc, char **argv);
int cmd_alerts(int argc, char **argv);
int cmd_archive(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_drift(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_registry(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
