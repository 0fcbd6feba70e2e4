#include "consumers/scorer_challenger.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/log.h"
#include "scoring/feature_redis.h"
#include "scoring/model.h"

#define FRAME_MAX 4096
#define PREFIX_MAX 64
#define NO_ROW ((size_t)-1)

struct sn_scorer_challenger {
    const sn_conf_t *conf;
    sn_codec_t *codec;
    enum sn_challenger_mode mode;
    double fraction;
    const char *alias, *topic_shadow;
    char key_prefix[PREFIX_MAX];

    /* As the scorer's production version: owned by the scoring thread, the
     * next one (or a request to drop it) handed over by the loader thread. */
    sn_scorer_version_t *current;
    _Atomic(sn_scorer_version_t *) pending;
    atomic_int drop;
    char loaded[SN_MODEL_VERSION_MAX]; /* loader thread only */
    int said_unset;                    /* loader thread only */
    sn_model_ctx_t *ctx;

    /* batch scratch, for cap events: the challenger's rows, in batch order */
    size_t cap, nrows;
    size_t *row_of; /* event j's row, or NO_ROW */
    size_t *event_of;
    sn_event_t *evs; /* canary: the canary events, copied */
    int32_t *parts;
    int64_t *offs;
    float *x, *scores;
    uint8_t *flags;

    struct {
        sn_counter_t *compared, *canary, *swaps, *refusals;
        sn_counter_vec_t *decisions;
        sn_histogram_t *diff;
        sn_gauge_vec_t *info;
    } m;
};

static const char *mode_str(enum sn_challenger_mode m) {
    return m == SN_CHALLENGER_SHADOW ? "shadow" : m == SN_CHALLENGER_CANARY ? "canary" : "off";
}

/* FNV-1a because it is a few lines in any language, so the machines a canary
 * picks can be listed offline. FNV-1a alone will not do as a fraction: ids
 * that differ in their last bytes (machine-0000, machine-0001, ...) differ
 * only in low bits, so the top bits barely move and a whole fleet can land
 * below 0.3 (all 200 machines of the test fleet do). MurmurHash3's fmix64
 * finalizer spreads every bit over the word. Dividing by 2^64 is exact in
 * double, so the comparison with the fraction is the same in C and Python. */
double sn_scorer_challenger_hash(const char *machine_id) {
    uint64_t h = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)machine_id; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (double)h / 18446744073709551616.0;
}

static void register_metrics(sn_scorer_challenger_t *c, sn_metrics_t *reg) {
    static const double diff[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1};

    if (!reg) return;
    c->m.compared =
        sn_metrics_counter(reg, "sentinel_challenger_compared_total",
                           "Events scored by both production and the challenger (shadow: every "
                           "event; canary: the canary machines' events).");
    c->m.decisions = sn_metrics_counter_vec(
        reg, "sentinel_challenger_decisions_total",
        "Compared events by whether the two models' decisions (score >= the model's own "
        "threshold) agree or disagree.",
        (const char *[]){"agreement"}, 1, 2);
    c->m.diff = sn_metrics_histogram(reg, "sentinel_challenger_score_diff",
                                     "|production score - challenger score| of compared events.",
                                     diff, sizeof(diff) / sizeof(diff[0]));
    c->m.canary = sn_metrics_counter(reg, "sentinel_canary_events_total",
                                     "Events served by the challenger (canary machines).");
    c->m.swaps = sn_metrics_counter(reg, "sentinel_challenger_swaps_total",
                                    "Challenger versions swapped in.");
    c->m.refusals = sn_metrics_counter(reg, "sentinel_challenger_refusals_total",
                                       "Challenger versions refused (failed to load or check).");
    c->m.info = sn_metrics_gauge_vec(reg, "sentinel_challenger_info",
                                     "1 for the challenger version in use, by mode.",
                                     (const char *[]){"version", "mode"}, 2, 64);
}

static void set_info(sn_scorer_challenger_t *c, const char *version, double v) {
    sn_gauge_set(sn_gauge_vec_get(c->m.info, (const char *[]){version, mode_str(c->mode)}), v);
}

static int alloc_scratch(sn_scorer_challenger_t *c, size_t cap) {
    c->cap = cap;
    c->row_of = calloc(cap, sizeof(*c->row_of));
    c->event_of = calloc(cap, sizeof(*c->event_of));
    c->x = calloc(cap * SN_FEATURE_SPEC_FEATURES_MAX, sizeof(*c->x));
    c->scores = calloc(cap, sizeof(*c->scores));
    c->flags = calloc(cap, sizeof(*c->flags));
    if (c->mode == SN_CHALLENGER_CANARY) {
        c->evs = calloc(cap, sizeof(*c->evs));
        c->parts = calloc(cap, sizeof(*c->parts));
        c->offs = calloc(cap, sizeof(*c->offs));
        if (!c->evs || !c->parts || !c->offs) return SN_ERR_NOMEM;
    }
    return (c->row_of && c->event_of && c->x && c->scores && c->flags) ? 0 : SN_ERR_NOMEM;
}

/* One poll step. Returns the version prepared, or NULL when there is
 * nothing new (unchanged, unset, unreachable or refused: all logged). */
static sn_scorer_version_t *prepare(sn_scorer_challenger_t *c) {
    char resolved[SN_MODEL_VERSION_MAX], errstr[512];
    sn_scorer_version_t *v = NULL;
    int rc = sn_scorer_version_resolve_alias(c->conf, c->alias, resolved, sizeof(resolved), errstr,
                                             sizeof(errstr));

    if (rc == SN_ERR_NOENT) {
        if (!c->said_unset)
            sn_log_warn("scorer",
                        "challenger (%s): alias '%s' of model %s is not set; scoring without a "
                        "challenger until it is",
                        mode_str(c->mode), c->alias, sn_conf_str(c->conf, "model.name"));
        c->said_unset = 1;
        if (c->loaded[0]) {
            sn_scorer_version_destroy(atomic_exchange(&c->pending, NULL));
            atomic_store(&c->drop, 1);
        }
        c->loaded[0] = '\0';
        return NULL;
    }
    if (rc != 0) {
        sn_log_warn("scorer", "challenger: model registry: %s", errstr);
        return NULL;
    }
    c->said_unset = 0;
    if (strcmp(resolved, c->loaded) == 0) return NULL;
    sn_log_info("scorer", "challenger alias '%s' now points at version %s; loading", c->alias,
                resolved);
    snprintf(c->loaded, sizeof(c->loaded), "%s", resolved); /* a refused one is not retried */
    v = sn_scorer_version_load_prefix(c->conf, c->codec, resolved, c->key_prefix, errstr,
                                      sizeof(errstr));
    if (!v) {
        sn_log_error("scorer", "challenger version %s refused: %s", resolved, errstr);
        sn_counter_inc(c->m.refusals);
    }
    return v;
}

sn_scorer_challenger_t *sn_scorer_challenger_new(const sn_conf_t *conf, sn_codec_t *codec,
                                                 sn_metrics_t *metrics, size_t cap, char *errstr,
                                                 size_t errstr_size) {
    sn_scorer_challenger_t *c = calloc(1, sizeof(*c));
    const char *mode = sn_conf_str(conf, "scorer.challenger");
    int n;

    if (!c) goto nomem;
    c->conf = conf;
    c->codec = codec;
    c->mode = strcmp(mode, "shadow") == 0   ? SN_CHALLENGER_SHADOW
              : strcmp(mode, "canary") == 0 ? SN_CHALLENGER_CANARY
                                            : SN_CHALLENGER_OFF;
    c->fraction = sn_conf_double(conf, "scorer.canary.fraction");
    c->alias = sn_conf_str(conf, "model.challenger.alias");
    c->topic_shadow = sn_conf_str(conf, "topic.shadow");
    if (c->mode == SN_CHALLENGER_OFF) return c;
    if (!c->alias[0]) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "scorer.challenger=%s needs a challenger: model.challenger.alias is empty",
                   mode);
        goto fail;
    }
    if (c->mode == SN_CHALLENGER_SHADOW && !c->topic_shadow[0]) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "scorer.challenger=shadow: topic.shadow is empty");
        goto fail;
    }
    n = snprintf(c->key_prefix, sizeof(c->key_prefix), "%s:challenger",
                 sn_conf_str(conf, "redis.key.prefix"));
    if (n < 0 || (size_t)n >= sizeof(c->key_prefix)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "redis.key.prefix: at most %zu bytes with a challenger (its state lives under "
                   "<prefix>:challenger)",
                   sizeof(c->key_prefix) - 1 - strlen(":challenger"));
        goto fail;
    }
    if (alloc_scratch(c, cap) != 0) goto nomem;
    if (!(c->ctx = sn_model_ctx_new(errstr, errstr_size))) goto fail;
    register_metrics(c, metrics);
    c->current = prepare(c);
    if (c->current) {
        set_info(c, c->current->version, 1);
        sn_log_info("scorer", "challenger (%s): model %s version %s (threshold %.4f), %zu features",
                    mode_str(c->mode), c->current->name, c->current->version, c->current->threshold,
                    sn_feature_spec_nfeatures(c->current->spec));
        if (c->mode == SN_CHALLENGER_CANARY)
            sn_log_info("scorer", "canary: machines whose hash is below %.4f go to version %s",
                        c->fraction, c->current->version);
    }
    return c;
nomem:
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
fail:
    sn_scorer_challenger_destroy(c);
    return NULL;
}

void sn_scorer_challenger_poll(sn_scorer_challenger_t *c) {
    sn_scorer_version_t *v;

    if (!c || c->mode == SN_CHALLENGER_OFF) return;
    if ((v = prepare(c)) != NULL) {
        atomic_store(&c->drop, 0);
        sn_scorer_version_destroy(atomic_exchange(&c->pending, v)); /* superseded, never taken */
    }
}

void sn_scorer_challenger_swap(sn_scorer_challenger_t *c) {
    sn_scorer_version_t *v;

    if (!c || c->mode == SN_CHALLENGER_OFF) return;
    if (atomic_exchange(&c->drop, 0) && c->current) {
        sn_log_info("scorer", "challenger version %s dropped (alias unset)", c->current->version);
        set_info(c, c->current->version, 0);
        sn_scorer_version_destroy(c->current);
        c->current = NULL;
    }
    if (!(v = atomic_exchange(&c->pending, NULL))) return;
    sn_log_info("scorer", "challenger (%s): version %s replaces %s", mode_str(c->mode), v->version,
                c->current ? c->current->version : "none");
    if (c->current) set_info(c, c->current->version, 0);
    set_info(c, v->version, 1);
    sn_scorer_version_destroy(c->current);
    c->current = v;
    sn_counter_inc(c->m.swaps);
}

/* Picks the challenger's rows: every event in shadow (production's arrays are
 * used as they are), the canary machines' in canary (copied, as the feature
 * backend wants them contiguous). */
static void select_rows(sn_scorer_challenger_t *c, const sn_event_t *evs, size_t n) {
    c->nrows = 0;
    for (size_t j = 0; j < n; j++) {
        if (c->mode == SN_CHALLENGER_CANARY &&
            !(sn_scorer_challenger_hash(evs[j].machine_id) < c->fraction)) {
            c->row_of[j] = NO_ROW;
            continue;
        }
        c->row_of[j] = c->nrows;
        c->event_of[c->nrows++] = j;
    }
}

/* Agreement of the two decisions, each model against its own threshold: the
 * question a promotion asks is whether alerts would change, not whether the
 * raw scores are close (the histogram says that). */
static void compare(sn_scorer_challenger_t *c, const sn_scorer_version_t *production,
                    const float *scores) {
    for (size_t i = 0; i < c->nrows; i++) {
        double p = scores[c->event_of[i]], q = c->scores[i];
        int agree = (p >= production->threshold) == (q >= c->current->threshold);

        sn_counter_inc(c->m.compared);
        sn_counter_inc(
            sn_counter_vec_get(c->m.decisions, (const char *[]){agree ? "agree" : "disagree"}));
        sn_histogram_observe(c->m.diff, fabs(p - q));
    }
}

int sn_scorer_challenger_score(sn_scorer_challenger_t *c, const sn_scorer_version_t *production,
                               const sn_event_t *evs, const int32_t *partitions,
                               const int64_t *offsets, size_t n, float *scores, char *errstr,
                               size_t errstr_size) {
    const sn_event_t *cevs = evs;
    const int32_t *cparts = partitions;
    const int64_t *coffs = offsets;
    int rc;

    if (!c || !c->current) {
        if (c) c->nrows = 0;
        return 0;
    }
    select_rows(c, evs, n);
    if (c->nrows == 0) return 0;
    if (c->mode == SN_CHALLENGER_CANARY) {
        for (size_t i = 0; i < c->nrows; i++) {
            c->evs[i] = evs[c->event_of[i]];
            c->parts[i] = partitions[c->event_of[i]];
            c->offs[i] = offsets[c->event_of[i]];
        }
        cevs = c->evs;
        cparts = c->parts;
        coffs = c->offs;
    }
    if ((rc = sn_feature_redis_apply_batch(c->current->features, cevs, cparts, coffs, c->nrows,
                                           c->x, c->flags, errstr, errstr_size)) != 0) {
        char why[512];

        snprintf(why, sizeof(why), "%s", errstr);
        return sn_err_set(errstr, errstr_size, rc, "challenger features: %s", why);
    }
    if ((rc = sn_model_predict(c->current->model, c->ctx, c->x, c->nrows, c->scores, errstr,
                               errstr_size)) != 0)
        return rc;
    compare(c, production, scores);
    if (c->mode == SN_CHALLENGER_CANARY) {
        for (size_t i = 0; i < c->nrows; i++) scores[c->event_of[i]] = c->scores[i];
        sn_counter_add(c->m.canary, c->nrows);
    }
    return 0;
}

const sn_scorer_version_t *sn_scorer_challenger_serves(const sn_scorer_challenger_t *c, size_t j,
                                                       const float **row) {
    size_t i;

    if (!c || c->mode != SN_CHALLENGER_CANARY || !c->current || c->nrows == 0 ||
        (i = c->row_of[j]) == NO_ROW)
        return NULL;
    if (row) *row = &c->x[i * sn_feature_spec_nfeatures(c->current->spec)];
    return c->current;
}

int sn_scorer_challenger_sinks(sn_scorer_challenger_t *c, sn_producer_t *producer,
                               const sn_batch_t *batch, const sn_event_t *evs, const size_t *rec_of,
                               size_t n, char *errstr, size_t errstr_size) {
    unsigned char frame[FRAME_MAX];
    size_t len;
    int rc;

    if (!c || c->mode != SN_CHALLENGER_SHADOW || !c->current) return 0;
    for (size_t i = 0; i < c->nrows && i < n; i++) {
        const sn_event_t *ev = &evs[c->event_of[i]];
        const sn_record_t *r = &batch->records[rec_of[c->event_of[i]]];
        sn_score_t sc = {.ts_ms = ev->ts_ms,
                         .score = c->scores[i],
                         .source_partition = r->partition,
                         .source_offset = r->offset};

        snprintf(sc.machine_id, sizeof(sc.machine_id), "%s", ev->machine_id);
        snprintf(sc.model_name, sizeof(sc.model_name), "%s", c->current->name);
        snprintf(sc.model_version, sizeof(sc.model_version), "%s", c->current->version);
        if ((rc = sn_codec_encode_score(c->codec, &sc, frame, sizeof(frame), &len, errstr,
                                        errstr_size)) != 0 ||
            (rc = sn_producer_send(producer, c->topic_shadow, -1, ev->machine_id,
                                   strlen(ev->machine_id), frame, len, NULL, 0, 30000, errstr,
                                   errstr_size)) != 0)
            return rc;
    }
    return 0;
}

void sn_scorer_challenger_version(const sn_scorer_challenger_t *c, char *buf, size_t size) {
    snprintf(buf, size, "%s", c && c->current ? c->current->version : "");
}

void sn_scorer_challenger_destroy(sn_scorer_challenger_t *c) {
    if (!c) return;
    sn_scorer_version_destroy(atomic_exchange(&c->pending, NULL));
    sn_scorer_version_destroy(c->current);
    sn_model_ctx_destroy(c->ctx);
    free(c->row_of);
    free(c->event_of);
    free(c->evs);
    free(c->parts);
    free(c->offs);
    free(c->x);
    free(c->scores);
    free(c->flags);
    free(c);
}
