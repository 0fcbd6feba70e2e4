/* sentinel drift: telemetry (CSV or JSON lines) -> the model's own feature
 * spec on the in-memory engine -> PSI and KS per feature against the card's
 * training profile -> a table, a JSON report, an HTML report and an exit
 * code a scheduler can act on. The statistics are scoring/drift.c; this file
 * is options, input and output. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "producers/source.h"
#include "schemas/codec.h"
#include "scoring/card.h"
#include "scoring/drift.h"
#include "scoring/drift_conf.h"
#include "scoring/features.h"
#include "scoring/registry.h"
#include "scoring/trainer.h"

#define MAP_MAX 64
#define BAD_ROWS_LOGGED 10 /* bad rows named in the log; the rest are only counted */

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: sentinel drift [options] (--csv FILE | --jsonl FILE | --input FILE)\n\n"
        "Checks whether telemetry has drifted from what a model was trained on: computes the\n"
        "model's features (its card's feature spec, in-memory engine, events applied in input\n"
        "order as the scorer sees them) and compares each feature with the card's training\n"
        "profile: PSI over the training quantile bins and a two-sample Kolmogorov-Smirnov test\n"
        "against the reference sample (see scoring/drift.h). A feature has drifted when\n"
        "PSI >= drift.psi.threshold or KS p < drift.ks.alpha / features.\n\n"
        "model:\n"
        "  --model ALIAS|N     alias (default model.alias) or version number in registry.url\n"
        "  --card FILE         use this card.json instead of the registry\n"
        "input:\n"
        "  --csv FILE          CSV with a header line (--map, --ts-column as for train)\n"
        "  --jsonl FILE        JSON lines, one event per line\n"
        "  --input FILE        either, by extension (.csv, .jsonl or .json)\n"
        "  --map FIELD=COLUMN  map a CSV column to a field, the key or the time field\n"
        "  --preset ai4i       the bundled AI4I data's mapping (implies --machine-id ai4i-mill)\n"
        "  --ts-column COLUMN  CSV column with the event time in epoch milliseconds\n"
        "  --machine-id ID     machine id for inputs that have none\n"
        "  --start MS          time of the first row when the input has none (default\n"
        "                      1767225600000)\n"
        "  --step MS           time between rows when the input has none (default 1000)\n"
        "  --from T, --to T    only events with from <= time < to (epoch ms, YYYY-MM-DD or\n"
        "                      YYYY-MM-DDTHH:MM:SSZ)\n"
        "  --archive URL       read the archive (file://DIR): not implemented yet\n"
        "output:\n"
        "  --json-out FILE     write the report as JSON\n"
        "  --html-out FILE     write a self-contained HTML report (SVG histograms)\n"
        "on drift:\n"
        "  a JSON event goes to drift.events.topic (empty: none); with\n"
        "  --retrain-on-drift   run sentinel train --promote on the archive input over the\n"
        "                      drift.retrain.window.h hours before --to (or now), with the\n"
        "                      same -c/-X; the gate decides, a 'retrain' event says how\n"
        "  -q, --quiet         no table on standard output\n"
        "\nExit codes: 0 no drift, %d drift, %d not enough data (fewer than drift.min.events),\n"
        "1 runtime failure, 2 bad usage or config.\n",
        SN_EXIT_DRIFT, SN_EXIT_DRIFT_NO_DATA);
    cli_conf_usage(out);
}

static int parse_i64(const char *opt, const char *s, int64_t *out) {
    char *end;
    long long v;

    v = strtoll(s, &end, 10);
    if (end == s || *end || v < 0) {
        fprintf(stderr, "sentinel drift: %s expects a non-negative integer, got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Epoch milliseconds, or a UTC date / date-time: what an operator types. */
static int parse_time(const char *opt, const char *s, int64_t *out) {
    struct tm tm;
    const char *end;
    int all_digits = *s != '\0';

    for (const char *p = s; *p; p++) all_digits &= isdigit((unsigned char)*p) != 0;
    if (all_digits) return parse_i64(opt, s, out);
    memset(&tm, 0, sizeof(tm));
    if (!(end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
    }
    if (!end || (*end && strcmp(end, "Z") != 0)) {
        fprintf(
            stderr,
            "sentinel drift: %s expects epoch ms, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got '%s'\n",
            opt, s);
        return -1;
    }
    *out = (int64_t)timegm(&tm) * 1000;
    return 0;
}

static int view_field_index(void *opaque, const char *name) {
    return sn_codec_field_index(opaque, name);
}

static int view_parse(void *opaque, int index, const char *text, double *out) {
    return sn_codec_parse_value(opaque, index, text, out, NULL, 0);
}

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Whether the binary's config tables include the drift keys (cli/cli.c);
 * until they do, drift.* keys are read from -X only, on a table of their
 * own, so that the command works before and after that line is added. */
static int drift_table_registered(void) {
    for (size_t i = 0; i < cli_conf_ntables; i++)
        if (cli_conf_tables[i] == sn_drift_conf_defs) return 1;
    return 0;
}

static sn_conf_t *drift_conf_fallback(cli_conf_args_t *args) {
    const sn_conf_def_t *tables[] = {sn_drift_conf_defs};
    char errstr[512];
    sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));
    int keep = 0;

    if (!conf) goto fail;
    for (int i = 0; i < args->nx; i++) {
        const char *kv = args->x[i], *eq = strchr(kv, '=');
        char key[256];

        if (strncmp(kv, "drift.", 6) != 0 || !eq || (size_t)(eq - kv) >= sizeof(key)) {
            args->x[keep++] = kv;
            continue;
        }
        memcpy(key, kv, (size_t)(eq - kv));
        key[eq - kv] = '\0';
        if (sn_conf_set(conf, key, eq + 1, "-X", errstr, sizeof(errstr)) != 0) goto fail;
    }
    args->nx = keep;
    return conf;
fail:
    fprintf(stderr, "sentinel drift: %s\n", errstr);
    sn_conf_destroy(conf);
    return NULL;
}

/* Reads the card: a file, or the registry's version for an alias/number. */
static sn_card_t *load_card(const sn_conf_t *conf, const char *card_path, const char *model,
                            char *version, char *errstr, size_t errstr_size) {
    sn_registry_t *reg = NULL;
    sn_card_t *card = NULL;
    char *text = NULL;
    size_t len = 0;

    if (card_path) return sn_card_load_file(card_path, errstr, errstr_size);
    if (!(reg = sn_registry_from_conf(conf, errstr, errstr_size))) goto out;
    if (all_digits(model))
        snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", model);
    else if (sn_registry_get_alias(reg, model, version, errstr, errstr_size) != 0)
        goto out;
    if (sn_registry_fetch(reg, version, NULL, NULL, &text, &len, errstr, errstr_size) != 0)
        goto out;
    card = sn_card_parse(text, len, errstr, errstr_size);
out:
    free(text);
    sn_registry_destroy(reg);
    return card;
}

/* Writes text, or the HTML report of d, to path; says why on failure. */
static int write_report(const char *path, const char *text, const sn_drift_t *d) {
    FILE *f = fopen(path, "w");
    int bad;

    if (!f) {
        fprintf(stderr, "sentinel drift: cannot write %s\n", path);
        return -1;
    }
    bad = text ? (fputs(text, f) < 0 || fputc('\n', f) == EOF) : sn_drift_write_html(d, f) != 0;
    bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "sentinel drift: cannot write %s\n", path);
    return bad ? -1 : 0;
}

/* Drift found: tell whoever listens on drift.events.topic, then, with
 * --retrain-on-drift, train on the recent archive and publish what the gate
 * decided. A gate that keeps the production model is an answer, not an
 * error; an event that cannot be published or a retrain that fails is. */
static int act_on_drift(const sn_conf_t *conf, const cli_conf_args_t *args, const sn_drift_t *d,
                        int retrain, const char *model_name, const char *version, const char *input,
                        const char *topic, int64_t from_ms, int64_t to_ms) {
    cli_drift_ctx_t ctx = {model_name, version, input, from_ms, to_ms};
    cli_drift_retrain_t rt;
    char errstr[1024];

    if (cli_drift_publish(conf, "drift", &ctx, d, NULL, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        return -1;
    }
    if (!retrain) return 0;
    cli_drift_retrain(conf, args, input, topic, to_ms, &rt);
    if (cli_drift_publish(conf, "retrain", &ctx, NULL, &rt, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        return -1;
    }
    if (rt.exit_code != SN_EXIT_OK && rt.exit_code != SN_EXIT_NOT_PROMOTED) {
        fprintf(stderr, "sentinel drift: the retrain failed (sentinel train exited %d)\n",
                rt.exit_code);
        return -1;
    }
    return 0;
}

int cmd_drift(int argc, char **argv) {
    enum {
        O_CSV = 256,
        O_JSONL,
        O_INPUT,
        O_PRESET,
        O_MAP,
        O_TSCOL,
        O_MID,
        O_START,
        O_STEP,
        O_FROM,
        O_TO,
        O_MODEL,
        O_CARD,
        O_ARCHIVE,
        O_JSON,
        O_HTML,
        O_RETRAIN
    };
    static const struct option longopts[] = {{"csv", required_argument, NULL, O_CSV},
                                             {"jsonl", required_argument, NULL, O_JSONL},
                                             {"input", required_argument, NULL, O_INPUT},
                                             {"preset", required_argument, NULL, O_PRESET},
                                             {"map", required_argument, NULL, O_MAP},
                                             {"ts-column", required_argument, NULL, O_TSCOL},
                                             {"machine-id", required_argument, NULL, O_MID},
                                             {"start", required_argument, NULL, O_START},
                                             {"step", required_argument, NULL, O_STEP},
                                             {"from", required_argument, NULL, O_FROM},
                                             {"to", required_argument, NULL, O_TO},
                                             {"model", required_argument, NULL, O_MODEL},
                                             {"card", required_argument, NULL, O_CARD},
                                             {"archive", required_argument, NULL, O_ARCHIVE},
                                             {"json-out", required_argument, NULL, O_JSON},
                                             {"html-out", required_argument, NULL, O_HTML},
                                             {"retrain-on-drift", no_argument, NULL, O_RETRAIN},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL, *dconf = NULL;
    sn_codec_t *codec = NULL;
    sn_card_t *card = NULL;
    sn_feature_spec_t *spec = NULL;
    sn_features_t *fe = NULL;
    sn_source_t *src = NULL;
    sn_drift_t *drift = NULL;
    float *x = NULL;
    char *json = NULL;
    sn_source_opts_t so;
    sn_source_schema_t view;
    sn_drift_opts_t dopts;
    const char *map[MAP_MAX + 1], *model = NULL, *card_path = NULL, *json_out = NULL,
                                  *html_out = NULL;
    const char *archive = NULL;
    char errstr[1024], version[SN_REGISTRY_VERSION_MAX] = "";
    int64_t from_ms = -1, to_ms = -1, last_ts = INT64_MIN;
    uint64_t bad = 0, skipped = 0, out_of_order = 0;
    int opt, nmap = 0, quiet = 0, inputs = 0, preset = 0, retrain = 0, rc = SN_EXIT_USAGE, r;

    memset(&so, 0, sizeof(so));
    so.step_ms = 1000;
    so.start_ms = 1767225600000LL; /* as sentinel train: the same rows get the same times */
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "qh", longopts, NULL)) != -1) {
        if ((r = cli_conf_opt(&args, opt, optarg)) < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case O_CSV:
            so.kind = SN_SOURCE_CSV;
            so.path = optarg;
            inputs++;
            break;
        case O_JSONL:
            so.kind = SN_SOURCE_JSONL;
            so.path = optarg;
            inputs++;
            break;
        case O_INPUT:
            if (ends_with(optarg, ".csv"))
                so.kind = SN_SOURCE_CSV;
            else if (ends_with(optarg, ".jsonl") || ends_with(optarg, ".json"))
                so.kind = SN_SOURCE_JSONL;
            else {
                fprintf(stderr,
                        "sentinel drift: --input needs a .csv, .jsonl or .json file, got '%s'\n",
                        optarg);
                return SN_EXIT_USAGE;
            }
            so.path = optarg;
            inputs++;
            break;
        case O_PRESET:
            if (strcmp(optarg, "ai4i") != 0) {
                fprintf(stderr, "sentinel drift: unknown preset '%s' (known: ai4i)\n", optarg);
                return SN_EXIT_USAGE;
            }
            preset = 1;
            break;
        case O_MAP:
            if (nmap >= MAP_MAX) {
                fprintf(stderr, "sentinel drift: at most %d --map options\n", MAP_MAX);
                return SN_EXIT_USAGE;
            }
            map[nmap++] = optarg;
            break;
        case O_TSCOL: so.ts_column = optarg; break;
        case O_MID: so.machine_id = optarg; break;
        case O_START:
            if (parse_i64("--start", optarg, &so.start_ms)) return SN_EXIT_USAGE;
            break;
        case O_STEP:
            if (parse_i64("--step", optarg, &so.step_ms) || so.step_ms > 86400000)
                return SN_EXIT_USAGE;
            break;
        case O_FROM:
            if (parse_time("--from", optarg, &from_ms)) return SN_EXIT_USAGE;
            break;
        case O_TO:
            if (parse_time("--to", optarg, &to_ms)) return SN_EXIT_USAGE;
            break;
        case O_MODEL: model = optarg; break;
        case O_CARD: card_path = optarg; break;
        case O_ARCHIVE:
            archive = optarg;
            inputs++;
            break;
        case O_JSON: json_out = optarg; break;
        case O_HTML: html_out = optarg; break;
        case O_RETRAIN: retrain = 1; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    if (optind < argc || inputs != 1) {
        fprintf(stderr, "sentinel drift: give exactly one of --csv, --jsonl, --input, --archive\n");
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    if (archive) {
        fprintf(stderr, "sentinel drift: --archive is not implemented yet; export the events and "
                        "use --jsonl\n");
        return SN_EXIT_USAGE;
    }
    if (retrain && (!so.path || !strstr(so.path, "://"))) {
        fprintf(stderr, "sentinel drift: --retrain-on-drift trains on the archive: give the input "
                        "as --input file://... or s3://...\n");
        return SN_EXIT_USAGE;
    }
    if (model && card_path) {
        fprintf(stderr, "sentinel drift: --model and --card exclude each other\n");
        return SN_EXIT_USAGE;
    }
    if (from_ms >= 0 && to_ms >= 0 && to_ms <= from_ms) {
        fprintf(stderr, "sentinel drift: --to must be after --from\n");
        return SN_EXIT_USAGE;
    }
    if (preset && (nmap || so.kind != SN_SOURCE_CSV)) {
        fprintf(stderr, "sentinel drift: --preset ai4i is a CSV mapping and excludes --map\n");
        return SN_EXIT_USAGE;
    }
    if (preset) {
        for (size_t i = 0; i < sn_source_ai4i_nmap && nmap < MAP_MAX; i++)
            map[nmap++] = sn_source_ai4i_map[i];
        if (!so.machine_id) so.machine_id = "ai4i-mill";
    }
    if (nmap) {
        so.map = map;
        so.nmap = (size_t)nmap;
    }
    if (!drift_table_registered() && !(dconf = drift_conf_fallback(&args))) goto out;
    if (!(conf = cli_conf_build(&args))) goto out;
    sn_drift_opts_from_conf(dconf ? dconf : conf, &dopts);
    if (!model) model = sn_conf_str(conf, "model.alias");
    rc = SN_EXIT_RUNTIME;
    if (!(card = load_card(conf, card_path, model, version, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        goto out;
    }
    if (!(codec = sn_codec_new(conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        goto out;
    }
    view = (sn_source_schema_t){(uint32_t)sn_codec_nfields(codec), view_field_index, view_parse,
                                codec};
    so.key_field = sn_conf_str(conf, "schema.key.field");
    so.time_field = sn_conf_str(conf, "schema.time.field");
    if (!(spec =
              sn_feature_spec_parse(sn_card_feature_spec(card), strlen(sn_card_feature_spec(card)),
                                    errstr, sizeof(errstr))) ||
        sn_feature_spec_bind(spec, view_field_index, codec, errstr, sizeof(errstr)) != 0 ||
        !(fe = sn_features_new(spec, 0, errstr, sizeof(errstr))) ||
        !(drift = sn_drift_new(card, &dopts, errstr, sizeof(errstr))) ||
        !(src = sn_source_new(&so, &view, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        goto out;
    }
    if (sn_feature_spec_nfeatures(spec) != sn_card_nfeatures(card)) {
        fprintf(stderr, "sentinel drift: the card's spec has %zu features, its profile %zu\n",
                sn_feature_spec_nfeatures(spec), sn_card_nfeatures(card));
        goto out;
    }
    if (!(x = malloc(sn_card_nfeatures(card) * sizeof(*x)))) {
        fprintf(stderr, "sentinel drift: out of memory\n");
        goto out;
    }
    cli_install_signals();
    for (;;) {
        sn_event_t ev;

        if (cli_stop) {
            fprintf(stderr, "sentinel drift: interrupted\n");
            goto out;
        }
        r = sn_source_next(src, &ev, errstr, sizeof(errstr));
        if (r == 0) break;
        if (r < 0) {
            if (bad++ < BAD_ROWS_LOGGED) sn_log_warn("drift", "skipping a bad row: %s", errstr);
            continue;
        }
        if ((from_ms >= 0 && ev.ts_ms < from_ms) || (to_ms >= 0 && ev.ts_ms >= to_ms)) {
            skipped++;
            continue;
        }
        /* input order, as the scorer sees it; the engine folds late events
         * in within its retention, so this only counts them */
        if (ev.ts_ms < last_ts)
            out_of_order++;
        else
            last_ts = ev.ts_ms;
        if ((r = sn_features_apply(fe, &ev, 0, -1, x)) < 0) {
            if (bad++ < BAD_ROWS_LOGGED)
                sn_log_warn("drift", "skipping an event the feature engine refused");
            continue;
        }
        if (sn_drift_add(drift, x) != 0) {
            fprintf(stderr, "sentinel drift: out of memory\n");
            goto out;
        }
    }
    if (bad) sn_log_warn("drift", "%llu bad rows skipped", (unsigned long long)bad);
    if (out_of_order)
        sn_log_info("drift", "%llu events older than an earlier one",
                    (unsigned long long)out_of_order);
    if (skipped)
        sn_log_info("drift", "%llu events outside --from/--to", (unsigned long long)skipped);
    if ((r = sn_drift_finish(drift, errstr, sizeof(errstr))) < 0) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        goto out;
    }
    sn_drift_set_context(drift, sn_card_get_str(card, "model.name"), card_path ? NULL : version,
                         so.path, from_ms, to_ms);
    if (!quiet) sn_drift_print_table(drift, stdout);
    if (json_out &&
        (!(json = sn_drift_report_json(drift)) || write_report(json_out, json, NULL) != 0))
        goto out;
    if (html_out && write_report(html_out, NULL, drift) != 0) goto out;
    if (r == SN_DRIFT_DRIFTED &&
        act_on_drift(conf, &args, drift, retrain, sn_card_get_str(card, "model.name"),
                     card_path ? NULL : version, so.path, NULL, from_ms, to_ms) != 0)
        goto out;
    rc = r == SN_DRIFT_DRIFTED      ? SN_EXIT_DRIFT
         : r == SN_DRIFT_NOT_ENOUGH ? SN_EXIT_DRIFT_NO_DATA
                                    : SN_EXIT_OK;
out:
    free(json);
    free(x);
    sn_source_destroy(src);
    sn_drift_destroy(drift);
    sn_features_destroy(fe);
    sn_feature_spec_destroy(spec);
    sn_codec_destroy(codec);
    sn_card_destroy(card);
    sn_conf_destroy(dconf);
    sn_conf_destroy(conf);
    return rc;
}
