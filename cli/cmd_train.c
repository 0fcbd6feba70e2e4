/* sentinel train: labelled telemetry (CSV, JSON lines or the archive) -> the feature
 * engine -> XGBoost -> holdout evaluation -> a registered model version, and
 * with --promote the champion/challenger gate on the production alias. The
 * work is scoring/trainer.c; this file is options, progress and the exit
 * code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "schemas/codec.h"
#include "scoring/registry.h"
#include "scoring/trainer.h"

#define MAP_MAX 64
/* 2026-01-01T00:00:00Z: fixed, so a rerun is identical. */
#define DEFAULT_START_MS 1767225600000LL

static void usage(FILE *out) {
    fprintf(out,
            "usage: sentinel train [options] (--csv FILE | --jsonl FILE |\n"
            "                                 --input URL --from T --to T)\n\n"
            "Trains a failure model: reads labelled telemetry, computes the features of the\n"
            "feature spec in event-time order per machine (what the scorer computes), splits\n"
            "by time into train / validation / holdout, trains XGBoost with early stopping,\n"
            "chooses the alert threshold on validation, reports on holdout, and registers\n"
            "model.ubj + card.json as a new version in registry.url.\n\n"
            "input:\n"
            "  --csv FILE          CSV with a header line\n"
            "  --preset ai4i       the bundled AI4I data's mapping (data/ai4i2020.csv), with\n"
            "                      its 'Machine failure' column as the label; implies\n"
            "                      --machine-id ai4i-mill and, unless --spec or\n"
            "                      train.feature.spec says otherwise, the AI4I feature spec\n"
            "  --map FIELD=COLUMN  map a CSV column to a field, the key or time field, or\n"
            "                      tag.NAME (repeatable); the label: tag.<label.field>=COLUMN\n"
            "  --ts-column COLUMN  CSV column with the event time in epoch milliseconds\n"
            "  --jsonl FILE        JSON lines, one event per line; the label as a tag\n"
            "  --input URL         the archive written by sentinel archive: file://DIR or\n"
            "                      s3://bucket[/prefix] (s3.* keys), events in event-time\n"
            "                      order per machine (archive.read.* keys); needs --from, --to\n"
            "  --topic NAME        the archived topic to read (default topic.telemetry)\n"
            "  --from T, --to T    events with from <= time < to (epoch ms, YYYY-MM-DD or\n"
            "                      YYYY-MM-DDTHH:MM:SSZ); the archive's labels come from\n"
            "                      --failures or the label.field tag\n"
            "  --machine-id ID     machine id for inputs that have none\n"
            "  --start MS          time of the first row when the input has none\n"
            "                      (default 1767225600000, 2026-01-01)\n"
            "  --step MS           time between rows when the input has none (default 1000,\n"
            "                      as sentinel produce)\n"
            "labels (default: the 0/1 tag named by label.field):\n"
            "  --failures FILE     failure events, machine_id,ts_ms[,mode] lines (as written\n"
            "                      by sentinel produce --failures-out): an event is positive\n"
            "                      when its machine fails within label.horizon.ms after it\n"
            "model:\n"
            "  --spec FILE         feature spec JSON (overrides train.feature.spec)\n"
            "  --out DIR           also write model.ubj and card.json into DIR\n"
            "  --no-register       do not register (use with --out)\n"
            "  --promote           promote the new version to model.alias when its holdout\n"
            "                      PR-AUC beats the current one's on the same holdout by\n"
            "                      gate.min.improvement (or when there is none)\n"
            "  -q, --quiet         no per-round progress line\n"
            "\nExit codes: 0 trained and registered (and promoted, with --promote), %d registered\n"
            "but not promoted (the gate kept the production model), 1 runtime failure, 2 bad\n"
            "usage or config.\n",
            SN_EXIT_NOT_PROMOTED);
    cli_conf_usage(out);
}

int cmd_train(int argc, char **argv) {
    enum {
        O_CSV = 256,
        O_JSONL,
        O_PRESET,
        O_MAP,
        O_TSCOL,
        O_MID,
        O_START,
        O_STEP,
        O_FAIL,
        O_SPEC,
        O_OUT,
        O_NOREG,
        O_PROMOTE,
        O_INPUT,
        O_TOPIC,
        O_FROM,
        O_TO
    };
    static const struct option longopts[] = {{"csv", required_argument, NULL, O_CSV},
                                             {"jsonl", required_argument, NULL, O_JSONL},
                                             {"preset", required_argument, NULL, O_PRESET},
                                             {"map", required_argument, NULL, O_MAP},
                                             {"ts-column", required_argument, NULL, O_TSCOL},
                                             {"machine-id", required_argument, NULL, O_MID},
                                             {"start", required_argument, NULL, O_START},
                                             {"step", required_argument, NULL, O_STEP},
                                             {"failures", required_argument, NULL, O_FAIL},
                                             {"spec", required_argument, NULL, O_SPEC},
                                             {"out", required_argument, NULL, O_OUT},
                                             {"no-register", no_argument, NULL, O_NOREG},
                                             {"promote", no_argument, NULL, O_PROMOTE},
                                             {"input", required_argument, NULL, O_INPUT},
                                             {"topic", required_argument, NULL, O_TOPIC},
                                             {"from", required_argument, NULL, O_FROM},
                                             {"to", required_argument, NULL, O_TO},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    sn_codec_t *codec = NULL;
    sn_trainer_t *t = NULL;
    sn_registry_t *reg = NULL;
    sn_trainer_opts_t o;
    sn_source_schema_t view;
    sn_gate_opts_t gate = {0};
    sn_gate_result_t gres;
    const char *map[MAP_MAX + 1], *out_dir = NULL, *spec = NULL;
    char errstr[1024], label_map[128];
    int opt, nmap = 0, quiet = 0, inputs = 0, preset = 0, no_register = 0, rc = SN_EXIT_USAGE;

    memset(&o, 0, sizeof(o));
    o.source.step_ms = 1000;
    o.source.start_ms = DEFAULT_START_MS;
    o.source.from_ms = o.source.to_ms = -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "qh", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case O_CSV:
            o.source.kind = SN_SOURCE_CSV;
            o.source.path = optarg;
            inputs++;
            break;
        case O_JSONL:
            o.source.kind = SN_SOURCE_JSONL;
            o.source.path = optarg;
            inputs++;
            break;
        case O_PRESET:
            if (strcmp(optarg, "ai4i") != 0) {
                fprintf(stderr, "sentinel train: unknown preset '%s' (known: ai4i)\n", optarg);
                return SN_EXIT_USAGE;
            }
            preset = 1;
            break;
        case O_MAP:
            if (nmap >= MAP_MAX) {
                fprintf(stderr, "sentinel train: at most %d --map options\n", MAP_MAX);
                return SN_EXIT_USAGE;
            }
            map[nmap++] = optarg;
            break;
        case O_TSCOL: o.source.ts_column = optarg; break;
        case O_MID: o.source.machine_id = optarg; break;
        case O_START:
            if (cli_parse_i64("train", "--start", optarg, &o.source.start_ms)) return SN_EXIT_USAGE;
            break;
        case O_STEP:
            if (cli_parse_i64("train", "--step", optarg, &o.source.step_ms) ||
                o.source.step_ms > 86400000)
                return SN_EXIT_USAGE;
            break;
        case O_FAIL: o.failures_path = optarg; break;
        case O_SPEC: spec = optarg; break;
        case O_OUT: out_dir = optarg; break;
        case O_NOREG: no_register = 1; break;
        case O_PROMOTE: gate.promote = 1; break;
        case O_INPUT:
            if (!cli_is_archive_url(optarg)) {
                fprintf(stderr,
                        "sentinel train: --input expects file://DIR or s3://bucket[/prefix], "
                        "got '%s' (use --csv or --jsonl for a file)\n",
                        optarg);
                return SN_EXIT_USAGE;
            }
            o.source.kind = SN_SOURCE_ARCHIVE;
            o.source.path = optarg;
            inputs++;
            break;
        case O_TOPIC: o.source.topic = optarg; break;
        case O_FROM:
            if (cli_parse_time("train", "--from", optarg, &o.source.from_ms)) return SN_EXIT_USAGE;
            break;
        case O_TO:
            if (cli_parse_time("train", "--to", optarg, &o.source.to_ms)) return SN_EXIT_USAGE;
            break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc || inputs != 1) {
        fprintf(stderr, "sentinel train: give exactly one of --csv, --jsonl, --input\n");
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (o.source.kind == SN_SOURCE_ARCHIVE &&
        (o.source.from_ms < 0 || o.source.to_ms < 0 || o.source.to_ms <= o.source.from_ms)) {
        fprintf(stderr, "sentinel train: --input URL needs --from and --to, --to after --from\n");
        return SN_EXIT_USAGE;
    }
    if (o.source.kind != SN_SOURCE_ARCHIVE &&
        (o.source.from_ms >= 0 || o.source.to_ms >= 0 || o.source.topic)) {
        fprintf(stderr, "sentinel train: --from, --to and --topic go with --input URL\n");
        return SN_EXIT_USAGE;
    }
    if (no_register && (gate.promote || !out_dir)) {
        fprintf(stderr, "sentinel train: --no-register needs --out DIR and excludes --promote\n");
        return SN_EXIT_USAGE;
    }
    if (preset && (nmap || o.source.kind != SN_SOURCE_CSV)) {
        fprintf(stderr, "sentinel train: --preset ai4i is a CSV mapping and excludes --map\n");
        return SN_EXIT_USAGE;
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    sn_trainer_opts_from_conf(conf, &o);
    if (preset) {
        /* the preset's columns, plus the label column as the label tag */
        for (size_t i = 0; i < sn_source_ai4i_nmap && nmap < MAP_MAX; i++)
            map[nmap++] = sn_source_ai4i_map[i];
        if (!o.failures_path) {
            snprintf(label_map, sizeof(label_map), "tag.%s=Machine failure", o.label_tag);
            map[nmap++] = label_map;
        }
        if (!o.source.machine_id) o.source.machine_id = "ai4i-mill";
    }
    if (nmap) {
        o.source.map = map;
        o.source.nmap = (size_t)nmap;
    }
    if (spec) o.spec_path = spec;
    if (preset && (!o.spec_path || !*o.spec_path)) o.spec_json = sn_trainer_ai4i_spec_json();
    if (!(codec = sn_codec_new(conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel train: %s\n", errstr);
        goto out;
    }
    view = sn_source_schema_of_codec(codec);
    o.source.key_field = sn_conf_str(conf, "schema.key.field");
    o.source.time_field = sn_conf_str(conf, "schema.time.field");
    if (o.source.kind == SN_SOURCE_ARCHIVE) {
        if (!o.source.topic) o.source.topic = sn_conf_str(conf, "topic.telemetry");
        o.source.conf = conf;
        o.source.codec = codec;
        o.source.progress = !quiet;
    }
    o.schema = &view;
    o.progress = !quiet && isatty(STDERR_FILENO);
    rc = SN_EXIT_RUNTIME;
    if (!no_register && !(reg = sn_registry_from_conf(conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel train: %s\n", errstr);
        rc = SN_EXIT_USAGE;
        goto out;
    }
    if (!(t = sn_trainer_new(&o, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel train: %s\n", errstr);
        goto out;
    }
    if (sn_trainer_run(t, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "sentinel train: %s\n", errstr);
        goto out;
    }
    sn_trainer_print_summary(t, stdout);
    if (out_dir) {
        if (sn_trainer_write(t, out_dir, errstr, sizeof(errstr)) != 0) {
            fprintf(stderr, "sentinel train: %s\n", errstr);
            goto out;
        }
        printf("wrote %s/model.ubj and %s/card.json\n", out_dir, out_dir);
    }
    if (no_register) {
        rc = SN_EXIT_OK;
        goto out;
    }
    gate.alias = sn_conf_str(conf, "model.alias");
    gate.challenger_alias = sn_conf_str(conf, "model.challenger.alias");
    gate.min_improvement = sn_conf_double(conf, "gate.min.improvement");
    if (sn_trainer_publish(t, reg, &gate, &gres, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "sentinel train: %s\n", errstr);
        goto out;
    }
    printf("%s version %s: %s\n", sn_conf_str(conf, "model.name"), gres.version, gres.message);
    rc = gate.promote && !gres.promoted ? SN_EXIT_NOT_PROMOTED : SN_EXIT_OK;
out:
    sn_trainer_destroy(t);
    sn_registry_destroy(reg);
    sn_codec_destroy(codec);
    sn_conf_destroy(conf);
    return rc;
}
