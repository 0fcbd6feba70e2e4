/* sentinel config: show, check or document the configuration. */
#include <stdio.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/kafka.h"

static void usage(FILE *out) {
    fprintf(out, "usage: sentinel config [-c FILE] [-X KEY=VALUE]... [--check | --markdown]\n\n"
                 "Prints the effective configuration, one 'key = value  # source' line per key,\n"
                 "with secrets masked.\n\n"
                 "  --check          only validate (including kafka.* keys against librdkafka);\n"
                 "                   exit 0 when valid, 2 when not\n"
                 "  --markdown       print the configuration reference (docs/CONFIG.md)\n");
    cli_conf_usage(out);
}

int cmd_config(int argc, char **argv) {
    static const struct option longopts[] = {{"check", no_argument, NULL, 'k'},
                                             {"markdown", no_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    rd_kafka_conf_t *rk_conf = NULL;
    sn_conf_t *conf = NULL;
    char errstr[512];
    int check = 0, markdown = 0, opt, rc = SN_EXIT_USAGE;

    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case 'k': check = 1; break;
        case 'm': markdown = 1; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sentinel config: unexpected argument '%s'\n", argv[optind]);
        return SN_EXIT_USAGE;
    }
    if (markdown) {
        sn_conf_write_markdown(cli_conf_tables, cli_conf_titles, cli_conf_ntables, stdout);
        return SN_EXIT_OK;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    if (!(rk_conf = sn_kafka_conf_new(conf, NULL, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel: %s\n", errstr);
        goto out;
    }
    if (check)
        printf("configuration is valid\n");
    else
        sn_conf_dump(conf, stdout);
    rc = SN_EXIT_OK;
out:
    if (rk_conf) rd_kafka_conf_destroy(rk_conf);
    sn_conf_destroy(conf);
    return rc;
}
