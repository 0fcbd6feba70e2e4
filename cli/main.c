/* sentinel: one binary, one subcommand per role (like git or redis-cli). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/err.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    {"demo", cmd_demo, "run the whole pipeline locally: no Java, no cloud (start here)"},
    {"produce", cmd_produce, "publish telemetry (CSV, JSON lines or a synthetic fleet) to Kafka"},
    {"score", cmd_score, "score telemetry: features in Redis, XGBoost, alerts (consumer group)"},
    {"archive", cmd_archive,
     "archive every event to S3 or a folder as Avro object container files"},
    {"train", cmd_train,
     "train a failure model, evaluate it, register it (--promote: gate to production)"},
    {"registry", cmd_registry,
     "model versions and aliases: list, show, promote, rollback, alias, download"},
    {"drift", cmd_drift, "compare telemetry with a model's training profile: PSI, KS, reports"},
    {"alerts", cmd_alerts, "follow the alert topic, one readable line (or JSON) per alert"},
    {"config", cmd_config, "print the effective configuration, check it, or its reference"},
    {"version", cmd_version, "print the version of sentinel and of the libraries it runs with"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: sentinel <command> [options]\n       sentinel --version | --help\n\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'sentinel <command> --help' describes a command's options.\n"
                 "Exit codes: 0 done, 1 runtime failure, 2 bad usage or config,\n"
                 "3 drift: drift found, 4 train --promote: registered, not promoted,\n"
                 "4 drift: not enough data.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return SN_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sentinel: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return SN_EXIT_USAGE;
}
