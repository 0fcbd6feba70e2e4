/* offline_score: what the scorer should have said, computed without Kafka or
 * Redis, for the integration tests and the benchmark.
 *
 * Reads an event stream with the producer's own sources (producers/source.h:
 * a synthetic fleet, JSON lines or CSV, so the events are the ones `sentinel
 * produce` sends for the same options), fetches a model version and its card
 * from the registry (registry.url, model.name, model.alias or --version),
 * computes every event's feature vector with the in-memory feature engine
 * (bit-identical to the Redis backend the scorer uses) in stream order, scores
 * the vectors with the model, and prints one line per event:
 *
 *     machine_id,ts_ms,score
 *
 * score is the model's float output widened to double, as the scorer's score
 * record carries it, printed with 17 significant digits (exact). A summary
 * goes to stderr. Per machine the stream order is the order a scorer sees (one
 * machine is one Kafka key, so one partition), which is all the feature state
 * depends on.
 *
 * With --jsonl-out FILE it instead writes the stream as JSON lines (the
 * trainer's --jsonl input) and needs no model; --failures-out FILE writes the
 * fleet's failures as `sentinel produce --failures-out` does. --explain-out
 * FILE writes, for every event, machine_id,ts_ms and its three top SHAP
 * features as name:contribution|... (one sn_model_explain call per row: the
 * reference the scorer's batched explanations are checked against).
 *
 * Build: tools/CMakeLists.txt (target offline_score). Usage: offline_score
 * --help. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common_conf.h"
#include "common/conf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/metrics_conf.h"
#include "common/s3_conf.h"
#include "consumers/archiver_conf.h"
#include "consumers/scorer_conf.h"
#include "producers/source.h"
#include "schemas/codec.h"
#include "schemas/schemas_conf.h"
#include "scoring/card.h"
#include "scoring/features.h"
#include "scoring/model.h"
#include "scoring/model_conf.h"
#include "scoring/registry.h"
#include "scoring/scoring_conf.h"

#define CHUNK 4096 /* events scored per XGBoost call */
#define MAP_MAX 64
#define X_MAX 128
#define MACHINES_MAX (1u << 20)

extern char **environ;

/* Every table the sentinel binary knows (cli/cli.c), so that any of its
 * options is accepted here too. */
static const sn_conf_def_t *const conf_tables[] = {
    sn_common_conf_defs, sn_metrics_conf_defs, sn_schemas_conf_defs,  sn_scoring_conf_defs,
    sn_model_conf_defs,  sn_scorer_conf_defs,  sn_archiver_conf_defs, sn_s3_conf_defs};

static void usage(FILE *out) {
    fprintf(out,
            "usage: offline_score (--fleet N --events M [--seed S] | --jsonl FILE | --csv FILE)\n"
            "                     [--start MS] [--step MS] [--preset ai4i] [--map F=C]...\n"
            "                     [--version V] [--jsonl-out FILE] [--failures-out FILE]\n"
            "                     [--explain-out FILE]\n"
            "                     [-c FILE] [-X KEY=VALUE]...\n\n"
            "Prints machine_id,ts_ms,score for every event of the stream: the in-memory\n"
            "features of the model card's spec, scored by the model at model.alias (or\n"
            "--version) of registry.url. With --jsonl-out, writes the stream as JSON lines\n"
            "instead (no model needed). The sentinel configuration keys apply (-c, -X,\n"
            "SENTINEL_* environment), so the scorer's -X options can be passed as they are.\n");
}

static int parse_i64(const char *opt, const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);

    if (end == s || *end || v < 0) {
        fprintf(stderr, "offline_score: %s expects a non-negative integer, got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Builds the configuration like the sentinel binary does: defaults < -c file
 * < SENTINEL_* environment < -X. */
static sn_conf_t *conf_build(const char *file, const char *const *x, int nx) {
    char errstr[512];
    sn_conf_t *conf = sn_conf_new(conf_tables, sizeof(conf_tables) / sizeof(conf_tables[0]), errstr,
                                  sizeof(errstr));

    if (!conf) goto fail;
    if (file && sn_conf_load_file(conf, file, errstr, sizeof(errstr)) != 0) goto fail;
    if (sn_conf_load_env(conf, environ, errstr, sizeof(errstr)) != 0) goto fail;
    for (int i = 0; i < nx; i++) {
        char key[256];
        const char *eq = strchr(x[i], '=');

        if (!eq || eq == x[i] || (size_t)(eq - x[i]) >= sizeof(key)) {
            snprintf(errstr, sizeof(errstr), "-X: expected key=value, got \"%s\"", x[i]);
            goto fail;
        }
        memcpy(key, x[i], (size_t)(eq - x[i]));
        key[eq - x[i]] = '\0';
        if (sn_conf_set(conf, key, eq + 1, "-X", errstr, sizeof(errstr)) != 0) goto fail;
    }
    sn_log_set_level((enum sn_log_level)sn_log_level_parse(sn_conf_str(conf, "log.level")));
    return conf;
fail:
    fprintf(stderr, "offline_score: %s\n", errstr);
    sn_conf_destroy(conf);
    return NULL;
}

/* One event as a JSON object in the trainer's --jsonl format: the key and
 * time fields, every numeric field that is present, and the tags. */
static int write_jsonl(FILE *out, const sn_conf_t *conf, const sn_codec_t *codec,
                       const sn_event_t *ev) {
    json_t *o = json_object(), *tags = NULL;
    char *text = NULL;
    int rc = -1;

    if (!o) return -1;
    json_object_set_new(o, sn_conf_str(conf, "schema.key.field"), json_string(ev->machine_id));
    json_object_set_new(o, sn_conf_str(conf, "schema.time.field"), json_integer(ev->ts_ms));
    for (uint32_t i = 0; i < ev->nvalues; i++) {
        double v = ev->values[i];

        if (isnan(v)) continue;
        /* whole numbers as integers, so that enum indexes parse back */
        json_object_set_new(o, sn_codec_field_name(codec, i),
                            v == floor(v) && fabs(v) < 9e15 ? json_integer((json_int_t)v)
                                                            : json_real(v));
    }
    if (ev->ntags) {
        if (!(tags = json_object())) goto out;
        for (uint32_t i = 0; i < ev->ntags; i++)
            json_object_set_new(tags, ev->tags[i].key, json_string(ev->tags[i].value));
        json_object_set_new(o, "tags", tags);
    }
    if (!(text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17)))) goto out;
    rc = fprintf(out, "%s\n", text) < 0 ? -1 : 0;
out:
    free(text);
    json_decref(o);
    return rc;
}

/* The model version the scorer would load: the alias's target (or the given
 * version), the card checked against the model bytes, the spec bound to the
 * schema. */
static int load_model(const sn_conf_t *conf, sn_codec_t *codec, const char *want, char *version,
                      sn_model_t **model, sn_feature_spec_t **spec, double *threshold, char *errstr,
                      size_t errstr_size) {
    sn_registry_t *reg = NULL;
    sn_card_t *card = NULL;
    uint8_t *bytes = NULL;
    char *card_json = NULL;
    size_t len = 0, card_len = 0;
    int rc;

    if (!(reg = sn_registry_from_conf(conf, errstr, errstr_size))) return SN_ERR_INVALID;
    if (want)
        snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", want);
    else if ((rc = sn_registry_get_alias(reg, sn_conf_str(conf, "model.alias"), version, errstr,
                                         errstr_size)) != 0)
        goto out;
    if ((rc = sn_registry_fetch(reg, version, &bytes, &len, &card_json, &card_len, errstr,
                                errstr_size)) != 0)
        goto out;
    rc = SN_ERR_INVALID;
    if (!(card = sn_card_parse(card_json, card_len, errstr, errstr_size)) ||
        sn_card_verify_model(card, bytes, len, errstr, errstr_size) != 0 ||
        !(*spec = sn_feature_spec_parse(sn_card_feature_spec(card),
                                        strlen(sn_card_feature_spec(card)), errstr, errstr_size)) ||
        sn_feature_spec_bind(*spec, sn_source_codec_field_index, codec, errstr, errstr_size) != 0 ||
        !(*model = sn_model_load(bytes, len, sn_feature_spec_nfeatures(*spec),
                                 (int)sn_conf_int(conf, "model.nthread"), errstr, errstr_size)))
        goto out;
    *threshold = sn_card_threshold(card);
    rc = 0;
out:
    sn_card_destroy(card);
    free(bytes);
    free(card_json);
    sn_registry_destroy(reg);
    return rc;
}

/* Scores the n vectors in x and prints them with their events. */
/* Scores a chunk, and explains each row on its own when eout is set. */
static int flush_chunk(sn_model_t *model, sn_model_ctx_t *ctx, const float *x, float *scores,
                       char (*ids)[SN_EVENT_ID_MAX], const int64_t *ts, size_t n, FILE *eout,
                       const sn_feature_spec_t *spec, char *errstr, size_t errstr_size) {
    size_t nf = sn_model_nfeatures(model);
    int rc;

    if (n == 0) return 0;
    if ((rc = sn_model_predict(model, ctx, x, n, scores, errstr, errstr_size)) != 0) return rc;
    for (size_t i = 0; i < n; i++) {
        sn_model_reason_t why[3];
        size_t nr = 0;

        printf("%s,%" PRId64 ",%.17g\n", ids[i], ts[i], (double)scores[i]);
        if (!eout) continue;
        if ((rc = sn_model_explain(model, x + i * nf, 3, why, &nr, errstr, errstr_size)) != 0)
            return rc;
        fprintf(eout, "%s,%" PRId64 ",", ids[i], ts[i]);
        for (size_t k = 0; k < nr; k++)
            fprintf(eout, "%s%s:%.9g", k ? "|" : "", sn_feature_spec_name(spec, why[k].feature),
                    (double)why[k].contribution);
        fputc('\n', eout);
    }
    return 0;
}

int main(int argc, char **argv) {
    enum {
        O_CSV = 256,
        O_JSONL,
        O_FLEET,
        O_EVENTS,
        O_SEED,
        O_START,
        O_STEP,
        O_PRESET,
        O_MAP,
        O_VERSION,
        O_JOUT,
        O_FOUT,
        O_EOUT
    };
    static const struct option longopts[] = {{"csv", required_argument, NULL, O_CSV},
                                             {"jsonl", required_argument, NULL, O_JSONL},
                                             {"fleet", required_argument, NULL, O_FLEET},
                                             {"events", required_argument, NULL, O_EVENTS},
                                             {"seed", required_argument, NULL, O_SEED},
                                             {"start", required_argument, NULL, O_START},
                                             {"step", required_argument, NULL, O_STEP},
                                             {"preset", required_argument, NULL, O_PRESET},
                                             {"map", required_argument, NULL, O_MAP},
                                             {"version", required_argument, NULL, O_VERSION},
                                             {"jsonl-out", required_argument, NULL, O_JOUT},
                                             {"failures-out", required_argument, NULL, O_FOUT},
                                             {"explain-out", required_argument, NULL, O_EOUT},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    sn_source_opts_t so;
    sn_source_schema_t view;
    sn_conf_t *conf = NULL;
    sn_codec_t *codec = NULL;
    sn_source_t *src = NULL;
    sn_model_t *model = NULL;
    sn_model_ctx_t *ctx = NULL;
    sn_feature_spec_t *spec = NULL;
    sn_features_t *feat = NULL;
    sn_event_t *ev = NULL;
    FILE *jout = NULL, *fout = NULL, *eout = NULL;
    float *x = NULL, *scores = NULL;
    char(*ids)[SN_EVENT_ID_MAX] = NULL;
    int64_t *ts = NULL, v64;
    const char *x_args[X_MAX], *map[MAP_MAX], *conf_file = NULL, *want = NULL, *jout_path = NULL,
                                              *fout_path = NULL, *eout_path = NULL;
    char errstr[1024], version[SN_REGISTRY_VERSION_MAX] = "";
    double threshold = NAN;
    size_t nf = 0, n = 0;
    uint64_t events = 0, bad = 0;
    int opt, nx = 0, nmap = 0, inputs = 0, rc = SN_EXIT_USAGE, r;

    memset(&so, 0, sizeof(so));
    so.step_ms = 1000;
    so.seed = 1;
    so.start_ms = 1767225600000LL;
    while ((opt = getopt_long(argc, argv, "c:X:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf_file = optarg; break;
        case 'X':
            if (nx >= X_MAX) goto bad_usage;
            x_args[nx++] = optarg;
            break;
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
        case O_FLEET:
            if (parse_i64("--fleet", optarg, &v64) || v64 < 1 || v64 > 1000000) goto bad_usage;
            so.kind = SN_SOURCE_FLEET;
            so.machines = (uint32_t)v64;
            inputs++;
            break;
        case O_EVENTS:
            if (parse_i64("--events", optarg, &v64)) goto bad_usage;
            so.limit = (uint64_t)v64;
            break;
        case O_SEED:
            if (parse_i64("--seed", optarg, &v64)) goto bad_usage;
            so.seed = (uint64_t)v64;
            break;
        case O_START:
            if (parse_i64("--start", optarg, &so.start_ms)) goto bad_usage;
            break;
        case O_STEP:
            if (parse_i64("--step", optarg, &so.step_ms)) goto bad_usage;
            break;
        case O_PRESET:
            if (strcmp(optarg, "ai4i") != 0) goto bad_usage;
            so.map = sn_source_ai4i_map;
            so.nmap = sn_source_ai4i_nmap;
            if (!so.machine_id) so.machine_id = "ai4i-mill";
            break;
        case O_MAP:
            if (nmap >= MAP_MAX) goto bad_usage;
            map[nmap++] = optarg;
            break;
        case O_VERSION: want = optarg; break;
        case O_JOUT: jout_path = optarg; break;
        case O_FOUT: fout_path = optarg; break;
        case O_EOUT: eout_path = optarg; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: goto bad_usage;
        }
    }
    if (optind < argc || inputs != 1 || (so.kind == SN_SOURCE_FLEET && !so.limit)) goto bad_usage;
    if (nmap) {
        so.map = map;
        so.nmap = (size_t)nmap;
    }
    if (!(conf = conf_build(conf_file, x_args, nx))) goto out;
    rc = SN_EXIT_RUNTIME;
    if (!(codec = sn_codec_new(conf, errstr, sizeof(errstr)))) goto fail;
    view = sn_source_schema_of_codec(codec);
    so.key_field = sn_conf_str(conf, "schema.key.field");
    so.time_field = sn_conf_str(conf, "schema.time.field");
    if (fout_path && !(fout = fopen(fout_path, "w"))) {
        snprintf(errstr, sizeof(errstr), "cannot write %s", fout_path);
        goto fail;
    }
    so.failures_out = fout;
    if (eout_path && !(eout = fopen(eout_path, "w"))) {
        snprintf(errstr, sizeof(errstr), "cannot write %s", eout_path);
        goto fail;
    }
    if (!(src = sn_source_new(&so, &view, errstr, sizeof(errstr)))) goto fail;
    if (!(ev = calloc(1, sizeof(*ev)))) goto nomem;

    if (jout_path) {
        if (!(jout = fopen(jout_path, "w"))) {
            snprintf(errstr, sizeof(errstr), "cannot write %s", jout_path);
            goto fail;
        }
        while ((r = sn_source_next(src, ev, errstr, sizeof(errstr))) != 0) {
            if (r < 0) goto fail;
            if (write_jsonl(jout, conf, codec, ev) != 0) {
                snprintf(errstr, sizeof(errstr), "writing %s failed", jout_path);
                goto fail;
            }
            events++;
        }
        if (fclose(jout) != 0) {
            jout = NULL;
            snprintf(errstr, sizeof(errstr), "writing %s failed", jout_path);
            goto fail;
        }
        jout = NULL;
        fprintf(stderr, "offline_score: wrote %" PRIu64 " events to %s\n", events, jout_path);
        rc = SN_EXIT_OK;
        goto out;
    }

    if (load_model(conf, codec, want, version, &model, &spec, &threshold, errstr, sizeof(errstr)) !=
            0 ||
        !(ctx = sn_model_ctx_new(errstr, sizeof(errstr))) ||
        !(feat = sn_features_new(spec, MACHINES_MAX, errstr, sizeof(errstr))))
        goto fail;
    nf = sn_feature_spec_nfeatures(spec);
    if (!(x = malloc(CHUNK * nf * sizeof(*x))) || !(scores = malloc(CHUNK * sizeof(*scores))) ||
        !(ids = malloc(CHUNK * sizeof(*ids))) || !(ts = malloc(CHUNK * sizeof(*ts))))
        goto nomem;
    while ((r = sn_source_next(src, ev, errstr, sizeof(errstr))) != 0) {
        int bits;

        if (r < 0) { /* what sentinel produce would skip, with the same message */
            fprintf(stderr, "offline_score: skipped: %s\n", errstr);
            bad++;
            continue;
        }
        if ((bits = sn_features_apply(feat, ev, 0, -1, &x[n * nf])) < 0) {
            snprintf(errstr, sizeof(errstr), "features of %s at %" PRId64 ": %s", ev->machine_id,
                     ev->ts_ms, sn_err_str(bits));
            goto fail;
        }
        memcpy(ids[n], ev->machine_id, sizeof(ids[n]));
        ts[n++] = ev->ts_ms;
        events++;
        if (n == CHUNK) {
            if (flush_chunk(model, ctx, x, scores, ids, ts, n, eout, spec, errstr,
                            sizeof(errstr)) != 0)
                goto fail;
            n = 0;
        }
    }
    if (flush_chunk(model, ctx, x, scores, ids, ts, n, eout, spec, errstr, sizeof(errstr)) != 0)
        goto fail;
    if (fflush(stdout) != 0) {
        snprintf(errstr, sizeof(errstr), "writing the scores failed");
        goto fail;
    }
    fprintf(stderr,
            "offline_score: model %s version %s, threshold %.17g, %zu features; %" PRIu64
            " events scored, %" PRIu64 " bad rows skipped\n",
            sn_conf_str(conf, "model.name"), version, threshold, nf, events, bad);
    rc = SN_EXIT_OK;
    goto out;
nomem:
    snprintf(errstr, sizeof(errstr), "out of memory");
fail:
    fprintf(stderr, "offline_score: %s\n", errstr);
    rc = SN_EXIT_RUNTIME;
    goto out;
bad_usage:
    usage(stderr);
    rc = SN_EXIT_USAGE;
out:
    if (jout) fclose(jout);
    if (fout) fclose(fout);
    if (eout && fclose(eout) != 0 && rc == SN_EXIT_OK) {
        fprintf(stderr, "offline_score: writing %s failed\n", eout_path);
        rc = SN_EXIT_RUNTIME;
    }
    free(ts);
    free(ids);
    free(scores);
    free(x);
    free(ev);
    sn_features_destroy(feat);
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(model);
    sn_feature_spec_destroy(spec);
    sn_source_destroy(src);
    sn_codec_destroy(codec);
    sn_conf_destroy(conf);
    return rc;
}
