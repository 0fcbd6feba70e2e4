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

/* 1 when s names an archive (file://... or s3://...), not a local file. */
int cli_is_archive_url(const char *s);

/* Set by SIGINT/SIGTERM; long-running commands poll it. */
extern volatile int cli_stop;
void cli_install_signals(void);

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
