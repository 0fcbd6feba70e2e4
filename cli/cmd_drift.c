/* sentinel drift: telemetry (CSV, JSON lines or the archive) -> the model's
 * own feature spec on the in-memory engine -> PSI and KS per feature against
 * the card's training profile, and with the archive the model's own scores
 * against the card's score profile -> a table, a JSON report, an HTML report
 * and an exit code a scheduler can act on. The statistics are
 * scoring/drift.c; this file is options (parse_options), input (open_input,
 * feed_events, feed_scores), statistics (run_check) and outputs
 * (write_outputs), each a function, tied together by cmd_drift(). */
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
#include "producers/source_archive.h"
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
        "usage: sentinel drift [options] [--csv FILE | --jsonl FILE | --input FILE|URL]\n\n"
        "Checks whether telemetry has drifted from what a model was trained on: computes the\n"
        "model's features (its card's feature spec, in-memory engine, events applied in input\n"
        "order as the scorer sees them) and compares each feature with the card's training\n"
        "profile: PSI over the training quantile bins and a two-sample Kolmogorov-Smirnov test\n"
        "against the reference sample (see scoring/drift.h). A feature has drifted when\n"
        "PSI >= drift.psi.threshold or KS p < drift.ks.alpha / tests (the features, plus the\n"
        "score when it is compared).\n\n"
        "model:\n"
        "  --model ALIAS|N     alias (default model.alias) or version number in registry.url\n"
        "  --card FILE         use this card.json instead of the registry\n"
        "input:\n"
        "  --csv FILE          CSV with a header line (--map, --ts-column as for train)\n"
        "  --jsonl FILE        JSON lines, one event per line\n"
        "  --input FILE        either, by extension (.csv, .jsonl or .json)\n"
        "  --input URL         the archive (file://DIR or s3://bucket[/prefix]; default:\n"
        "                      archive.url): events of --topic in event-time order per\n"
        "                      machine, and the model's scores of --scores-topic for a\n"
        "                      'score' row against the card's score profile; needs --from, --to\n"
        "  --topic NAME        archived telemetry topic (default topic.telemetry)\n"
        "  --scores-topic NAME archived score topic (default topic.scores)\n"
        "  --no-scores         do not compare the model's scores\n"
        "  --map FIELD=COLUMN  map a CSV column to a field, the key or the time field\n"
        "  --preset ai4i       the bundled AI4I data's mapping (implies --machine-id ai4i-mill)\n"
        "  --ts-column COLUMN  CSV column with the event time in epoch milliseconds\n"
        "  --machine-id ID     machine id for inputs that have none\n"
        "  --start MS          time of the first row when the input has none (default\n"
        "                      1767225600000)\n"
        "  --step MS           time between rows when the input has none (default 1000)\n"
        "  --from T, --to T    only events with from <= time < to (epoch ms, YYYY-MM-DD or\n"
        "                      YYYY-MM-DDTHH:MM:SSZ)\n"

        "output:\n"
        "  --json-out FILE     write the report as JSON\n"
        "  --html-out FILE     write a self-contained HTML report (SVG histograms)\n"
        "  -q, --quiet         no table on standard output\n"
        "on drift:\n"
        "  a JSON event goes to drift.events.topic (empty: none), keyed by model name\n"
        "  --retrain-on-drift  then run sentinel train --promote on the archive over the\n"
        "                      drift.retrain.window.ms before --to, with the same -c\n"
        "                      and -X (labels: drift.retrain.failures, or the label.field\n"
        "                      tag); the gate decides, a 'retrain' event says what it did\n"
        "\nExit codes: 0 no drift, %d drift, %d not enough data (fewer than drift.min.events),\n"
        "1 runtime failure, 2 bad usage or config.\n",
        SN_EXIT_DRIFT, SN_EXIT_DRIFT_NO_DATA);
    cli_conf_usage(out);
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

/* Everything the command line says. */
struct drift_args {
    cli_conf_args_t conf;
    sn_source_opts_t so;
    const char *map[MAP_MAX + 1];
    int nmap, quiet, preset, no_scores, retrain;
    const char *model, *card_path, *json_out, *html_out, *scores_topic;
    int64_t from_ms, to_ms;
};

/* What a run holds; released by drift_run_free(). */
struct drift_run {
    sn_conf_t *conf;
    sn_codec_t *codec;
    sn_card_t *card;
    sn_feature_spec_t *spec;
    sn_features_t *fe;
    sn_source_t *src;
    sn_drift_t *drift;
    sn_source_archive_t *scores;
    sn_drift_opts_t dopts;
    char version[SN_REGISTRY_VERSION_MAX];
};

/* Options into *a. Returns 0, 1 for --help (printed), or -1 (said why). */
static int parse_options(int argc, char **argv, struct drift_args *a) {
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
        O_TOPIC,
        O_STOPIC,
        O_NOSCORES,
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
                                             {"topic", required_argument, NULL, O_TOPIC},
                                             {"scores-topic", required_argument, NULL, O_STOPIC},
                                             {"no-scores", no_argument, NULL, O_NOSCORES},
                                             {"json-out", required_argument, NULL, O_JSON},
                                             {"html-out", required_argument, NULL, O_HTML},
                                             {"retrain-on-drift", no_argument, NULL, O_RETRAIN},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    sn_source_opts_t *so = &a->so;
    int opt, r, inputs = 0;

    so->step_ms = 1000;
    so->start_ms = 1767225600000LL; /* as sentinel train: the same rows get the same times */
    a->from_ms = a->to_ms = -1;
    optind = 1;
    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "qh", longopts, NULL)) != -1) {
        if ((r = cli_conf_opt(&a->conf, opt, optarg)) < 0) return -1;
        if (r) continue;
        switch (opt) {
        case O_CSV:
            so->kind = SN_SOURCE_CSV;
            so->path = optarg;
            inputs++;
            break;
        case O_JSONL:
            so->kind = SN_SOURCE_JSONL;
            so->path = optarg;
            inputs++;
            break;
        case O_INPUT:
            if (cli_is_archive_url(optarg))
                so->kind = SN_SOURCE_ARCHIVE;
            else if (ends_with(optarg, ".csv"))
                so->kind = SN_SOURCE_CSV;
            else if (ends_with(optarg, ".jsonl") || ends_with(optarg, ".json"))
                so->kind = SN_SOURCE_JSONL;
            else {
                fprintf(stderr,
                        "sentinel drift: --input needs a .csv, .jsonl or .json file, or an "
                        "archive URL (file://DIR, s3://bucket[/prefix]), got '%s'\n",
                        optarg);
                return -1;
            }
            so->path = optarg;
            inputs++;
            break;
        case O_PRESET:
            if (strcmp(optarg, "ai4i") != 0) {
                fprintf(stderr, "sentinel drift: unknown preset '%s' (known: ai4i)\n", optarg);
                return -1;
            }
            a->preset = 1;
            break;
        case O_MAP:
            if (a->nmap >= MAP_MAX) {
                fprintf(stderr, "sentinel drift: at most %d --map options\n", MAP_MAX);
                return -1;
            }
            a->map[a->nmap++] = optarg;
            break;
        case O_TSCOL: so->ts_column = optarg; break;
        case O_MID: so->machine_id = optarg; break;
        case O_START:
            if (cli_parse_i64("drift", "--start", optarg, &so->start_ms)) return -1;
            break;
        case O_STEP:
            if (cli_parse_i64("drift", "--step", optarg, &so->step_ms) || so->step_ms > 86400000)
                return -1;
            break;
        case O_FROM:
            if (cli_parse_time("drift", "--from", optarg, &a->from_ms)) return -1;
            break;
        case O_TO:
            if (cli_parse_time("drift", "--to", optarg, &a->to_ms)) return -1;
            break;
        case O_MODEL: a->model = optarg; break;
        case O_CARD: a->card_path = optarg; break;
        case O_TOPIC: so->topic = optarg; break;
        case O_STOPIC: a->scores_topic = optarg; break;
        case O_NOSCORES: a->no_scores = 1; break;
        case O_JSON: a->json_out = optarg; break;
        case O_HTML: a->html_out = optarg; break;
        case O_RETRAIN: a->retrain = 1; break;
        case 'q': a->quiet = 1; break;
        case 'h': usage(stdout); return 1;
        default: usage(stderr); return -1;
        }
    }
    if (inputs == 0) /* the archive at archive.url, filled in by open_input */
        so->kind = SN_SOURCE_ARCHIVE;
    if (optind < argc || inputs > 1) {
        fprintf(stderr, "sentinel drift: give at most one of --csv, --jsonl, --input\n");
        usage(stderr);
        return -1;
    }
    if (a->retrain && so->kind != SN_SOURCE_ARCHIVE) {
        fprintf(stderr, "sentinel drift: --retrain-on-drift trains on the archive: give no input "
                        "(archive.url) or --input file://... or s3://...\n");
        return -1;
    }
    if (a->model && a->card_path) {
        fprintf(stderr, "sentinel drift: --model and --card exclude each other\n");
        return -1;
    }
    if (a->from_ms >= 0 && a->to_ms >= 0 && a->to_ms <= a->from_ms) {
        fprintf(stderr, "sentinel drift: --to must be after --from\n");
        return -1;
    }
    if (so->kind == SN_SOURCE_ARCHIVE && (a->from_ms < 0 || a->to_ms < 0)) {
        fprintf(stderr, "sentinel drift: reading the archive (--input URL, or archive.url) needs "
                        "--from and --to\n");
        return -1;
    }
    if (so->kind != SN_SOURCE_ARCHIVE && (so->topic || a->scores_topic || a->no_scores)) {
        fprintf(stderr,
                "sentinel drift: --topic, --scores-topic and --no-scores go with --input URL\n");
        return -1;
    }
    if (a->preset && (a->nmap || so->kind != SN_SOURCE_CSV)) {
        fprintf(stderr, "sentinel drift: --preset ai4i is a CSV mapping and excludes --map\n");
        return -1;
    }
    if (a->preset) {
        for (size_t i = 0; i < sn_source_ai4i_nmap && a->nmap < MAP_MAX; i++)
            a->map[a->nmap++] = sn_source_ai4i_map[i];
        if (!so->machine_id) so->machine_id = "ai4i-mill";
    }
    if (a->nmap) {
        so->map = a->map;
        so->nmap = (size_t)a->nmap;
    }
    so->from_ms = a->from_ms;
    so->to_ms = a->to_ms;
    return 0;
}

/* The scorer's state is always warm; an engine started at --from would
 * report half-empty windows for the first window length (count_10m growing
 * from 1 on every machine: drift where there is none). So the source starts
 * one longest window earlier and feed_events uses those events for history
 * only. */
static void warm_up(struct drift_args *a, const sn_feature_spec_t *spec) {
    if (a->from_ms >= 0) a->so.from_ms = a->from_ms - sn_feature_spec_warmup_ms(spec);
}

/* The card, the codec, the model's feature engine, the drift handle and the
 * event source (and with the archive, the score reader). Prints why and
 * returns -1 on failure. */
static int open_input(struct drift_args *a, struct drift_run *run) {
    sn_source_schema_t view;
    char errstr[1024];

    if (!a->model) a->model = sn_conf_str(run->conf, "model.alias");
    if (!(run->card =
              load_card(run->conf, a->card_path, a->model, run->version, errstr, sizeof(errstr))) ||
        !(run->codec = sn_codec_new(run->conf, errstr, sizeof(errstr))))
        goto fail;
    view = sn_source_schema_of_codec(run->codec);
    a->so.key_field = sn_conf_str(run->conf, "schema.key.field");
    a->so.time_field = sn_conf_str(run->conf, "schema.time.field");
    if (a->so.kind == SN_SOURCE_ARCHIVE) {
        if (!a->so.path) a->so.path = sn_conf_str(run->conf, "archive.url");
        if (!a->so.topic) a->so.topic = sn_conf_str(run->conf, "topic.telemetry");
        a->so.conf = run->conf;
        a->so.codec = run->codec;
        a->so.progress = !a->quiet;
    }
    if (!(run->spec = sn_feature_spec_parse(sn_card_feature_spec(run->card),
                                            strlen(sn_card_feature_spec(run->card)), errstr,
                                            sizeof(errstr))) ||
        sn_feature_spec_bind(run->spec, sn_source_codec_field_index, run->codec, errstr,
                             sizeof(errstr)) != 0 ||
        !(run->fe = sn_features_new(run->spec, 0, errstr, sizeof(errstr))) ||
        !(run->drift = sn_drift_new(run->card, &run->dopts, errstr, sizeof(errstr))))
        goto fail;
    warm_up(a, run->spec);
    if (!(run->src = sn_source_new(&a->so, &view, errstr, sizeof(errstr)))) goto fail;
    if (sn_feature_spec_nfeatures(run->spec) != sn_card_nfeatures(run->card)) {
        fprintf(stderr, "sentinel drift: the card's spec has %zu features, its profile %zu\n",
                sn_feature_spec_nfeatures(run->spec), sn_card_nfeatures(run->card));
        return -1;
    }
    if (a->so.kind == SN_SOURCE_ARCHIVE && !a->no_scores) {
        sn_source_archive_opts_t ao = {
            a->so.path, a->scores_topic ? a->scores_topic : sn_conf_str(run->conf, "topic.scores"),
            a->from_ms, a->to_ms,
            run->conf,  run->codec,
            !a->quiet};

        int r = sn_drift_enable_score(run->drift, errstr, sizeof(errstr));

        if (r == SN_ERR_NOENT) { /* a card from before score profiles: features only */
            sn_log_warn("drift", "%s; comparing features only", errstr);
        } else if (r != 0) {
            goto fail;
        } else if (!(run->scores = sn_source_archive_new(&ao, SN_SOURCE_ARCHIVE_SCORES, errstr,
                                                         sizeof(errstr)))) {
            goto fail;
        }
    }
    return 0;
fail:
    fprintf(stderr, "sentinel drift: %s\n", errstr);
    return -1;
}

/* Events in input order (event-time order per machine from the archive), as
 * the scorer sees them, through the model's features into the check. Bad
 * rows are skipped and counted; an input that cannot be read further stops
 * the run. */
static int feed_events(struct drift_args *a, struct drift_run *run) {
    int64_t last_ts = INT64_MIN,
            warmup = a->so.from_ms < a->from_ms ? a->from_ms - a->so.from_ms : 0;
    uint64_t bad = 0, skipped = 0, out_of_order = 0, warmed = 0;
    char errstr[1024];
    float *x = malloc(sn_card_nfeatures(run->card) * sizeof(*x));
    int rc = -1, r;

    if (!x) {
        fprintf(stderr, "sentinel drift: out of memory\n");
        return -1;
    }
    for (;;) {
        sn_event_t ev;

        if (cli_stop) {
            fprintf(stderr, "sentinel drift: interrupted\n");
            goto out;
        }
        r = sn_source_next(run->src, &ev, errstr, sizeof(errstr));
        if (r == 0) break;
        if (r < 0 && r != SN_ERR_INVALID) {
            fprintf(stderr, "sentinel drift: %s\n", errstr);
            goto out;
        }
        if (r < 0) {
            if (bad++ < BAD_ROWS_LOGGED) sn_log_warn("drift", "skipping a bad row: %s", errstr);
            continue;
        }
        if ((a->from_ms >= 0 && ev.ts_ms < a->from_ms - warmup) ||
            (a->to_ms >= 0 && ev.ts_ms >= a->to_ms)) {
            skipped++;
            continue;
        }
        /* input order, as the scorer sees it; the engine folds late events
         * in within its retention, so this only counts them */
        if (ev.ts_ms < last_ts)
            out_of_order++;
        else
            last_ts = ev.ts_ms;
        if ((r = sn_features_apply(run->fe, &ev, 0, -1, x)) < 0) {
            if (bad++ < BAD_ROWS_LOGGED)
                sn_log_warn("drift", "skipping an event the feature engine refused");
            continue;
        }
        if (a->from_ms >= 0 && ev.ts_ms < a->from_ms) { /* history for the windows only */
            warmed++;
            continue;
        }
        if (sn_drift_add(run->drift, x) != 0) {
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
    if (warmed)
        sn_log_info("drift",
                    "%llu events of the %lld ms before --from fed the windows, not the check",
                    (unsigned long long)warmed, (long long)warmup);
    rc = 0;
out:
    free(x);
    return rc;
}

/* The model's scores of the window from the archive: only those of the
 * audited model (its name, and its version when it came from the registry),
 * since the scores of another version say nothing about this one's profile. */
static int feed_scores(struct drift_run *run) {
    const char *name = sn_card_get_str(run->card, "model.name");
    uint64_t other = 0;
    char errstr[1024];
    sn_score_t sc;
    int r;

    if (!run->scores) return 0;
    while ((r = sn_source_archive_next_score(run->scores, &sc, errstr, sizeof(errstr))) != 0) {
        if (cli_stop) {
            fprintf(stderr, "sentinel drift: interrupted\n");
            return -1;
        }
        if (r == SN_ERR_INVALID) continue; /* counted by the reader */
        if (r < 0) {
            fprintf(stderr, "sentinel drift: %s\n", errstr);
            return -1;
        }
        if ((name && strcmp(sc.model_name, name) != 0) ||
            (run->version[0] && strcmp(sc.model_version, run->version) != 0)) {
            other++;
            continue;
        }
        if (sn_drift_add_score(run->drift, sc.score) != 0) {
            fprintf(stderr, "sentinel drift: out of memory\n");
            return -1;
        }
    }
    if (other)
        sn_log_info("drift", "%llu scores of another model or version left out",
                    (unsigned long long)other);
    return 0;
}

/* The statistics; returns the verdict (>= 0) or -1. */
static int run_check(const struct drift_args *a, struct drift_run *run) {
    char errstr[1024];
    int r;

    if ((r = sn_drift_finish(run->drift, errstr, sizeof(errstr))) < 0) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        return -1;
    }
    sn_drift_set_context(run->drift, sn_card_get_str(run->card, "model.name"),
                         a->card_path ? NULL : run->version, a->so.path, a->from_ms, a->to_ms);
    return r;
}

/* Drift found: tell whoever listens on drift.events.topic, then, with
 * --retrain-on-drift, train on the recent archive and publish what the gate
 * decided. A gate that keeps the production model is an answer, not an
 * error; an event that cannot be published or a retrain that fails is. */
static int act_on_drift(const struct drift_args *a, const struct drift_run *run) {
    cli_drift_ctx_t ctx = {sn_card_get_str(run->card, "model.name"),
                           a->card_path ? NULL : run->version, a->so.path, a->from_ms, a->to_ms};
    cli_drift_retrain_t rt;
    char errstr[1024];

    if (cli_drift_publish(run->conf, "drift", &ctx, run->drift, NULL, errstr, sizeof(errstr)) !=
        0) {
        fprintf(stderr, "sentinel drift: %s\n", errstr);
        return -1;
    }
    if (!a->retrain) return 0;
    cli_drift_retrain(run->conf, &a->conf, a->so.path, a->so.topic, a->to_ms, &rt);
    if (cli_drift_publish(run->conf, "retrain", &ctx, NULL, &rt, errstr, sizeof(errstr)) != 0) {
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

/* The table on standard output and the JSON and HTML files. */
static int write_outputs(const struct drift_args *a, const struct drift_run *run) {
    char *json = NULL;
    int rc = 0;

    if (!a->quiet) sn_drift_print_table(run->drift, stdout);
    if (a->json_out &&
        (!(json = sn_drift_report_json(run->drift)) || write_report(a->json_out, json, NULL) != 0))
        rc = -1;
    if (rc == 0 && a->html_out && write_report(a->html_out, NULL, run->drift) != 0) rc = -1;
    free(json);
    return rc;
}

static void drift_run_free(struct drift_run *run) {
    sn_source_archive_destroy(run->scores);
    sn_source_destroy(run->src);
    sn_drift_destroy(run->drift);
    sn_features_destroy(run->fe);
    sn_feature_spec_destroy(run->spec);
    sn_codec_destroy(run->codec);
    sn_card_destroy(run->card);
    sn_conf_destroy(run->conf);
}

int cmd_drift(int argc, char **argv) {
    struct drift_args a;
    struct drift_run run;
    int rc = SN_EXIT_USAGE, r;

    memset(&a, 0, sizeof(a));
    memset(&run, 0, sizeof(run));
    if ((r = parse_options(argc, argv, &a)) != 0) return r > 0 ? SN_EXIT_OK : SN_EXIT_USAGE;
    if (!(run.conf = cli_conf_build(&a.conf))) goto out;
    sn_drift_opts_from_conf(run.conf, &run.dopts);
    rc = SN_EXIT_RUNTIME;
    if (open_input(&a, &run) != 0) goto out;
    cli_install_signals();
    if (feed_events(&a, &run) != 0 || feed_scores(&run) != 0) goto out;
    if ((r = run_check(&a, &run)) < 0 || write_outputs(&a, &run) != 0) goto out;
    if (r == SN_DRIFT_DRIFTED && act_on_drift(&a, &run) != 0) goto out;
    rc = r == SN_DRIFT_DRIFTED      ? SN_EXIT_DRIFT
         : r == SN_DRIFT_NOT_ENOUGH ? SN_EXIT_DRIFT_NO_DATA
                                    : SN_EXIT_OK;
out:
    drift_run_free(&run);
    return rc;
}
