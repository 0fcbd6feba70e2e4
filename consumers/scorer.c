#include "consumers/scorer.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "consumers/alerting.h"
#include "consumers/consumer.h"
#include "consumers/scorer_challenger.h"
#include "consumers/scorer_model.h"
#include "producers/dlq.h"
#include "producers/producer.h"
#include "scoring/feature_redis.h"
#include "scoring/features.h"
#include "scoring/model.h"

#define FRAME_MAX 4096
#define TOP_FEATURES 3

struct sn_scorer {
    const sn_conf_t *conf;
    sn_scorer_opts_t opts;
    sn_codec_t *codec;
    sn_consumer_t *consumer;
    sn_producer_t *producer;
    sn_alerter_t *alerter;
    sn_model_ctx_t *ctx;
    sn_scorer_challenger_t *challenger; /* shadow or canary (scorer.challenger) */

    /* The model in use, owned by the scoring thread, and the next one, handed
     * over by the loader thread between batches: one atomic exchange per batch
     * and no lock on the hot path. */
    sn_scorer_version_t *current;
    _Atomic(sn_scorer_version_t *) pending;
    atomic_uint_fast64_t refusals; /* counted by the loader thread */
    pthread_t loader;
    int loader_started;
    atomic_int loader_stop;

    const char *topic_in, *topic_dlq, *topic_alerts, *topic_scores;
    int scores_enabled;
    int eos;           /* scorer.exactly.once: a transaction per batch */
    int in_txn;        /* a transaction is open */
    int aborts_in_row; /* backoff after repeated aborts */
    int revoked;       /* partitions went since the last batch: forget the alert state */
    int64_t backoff_max_ms;

    /* batch scratch, sized for batch_max_records */
    size_t cap;
    sn_event_t *evs;
    int32_t *parts;
    int64_t *offs;
    size_t *rec_of; /* event j came from batch record rec_of[j] */
    float *x, *scores;
    uint8_t *flags;
    size_t *alert_row;      /* alert i is event alert_row[i] */
    sn_model_reason_t *why; /* TOP_FEATURES per alert */
    const char **names;     /* alert state: machines loaded or stored, */
    const char **texts;     /* their records' text, */
    char *text_buf;         /* SN_ALERT_RECORD_MAX bytes per machine, */
    sn_alert_record_t *recs;
    const sn_alert_record_t **restored; /* and the parsed ones (NULL: none); */
    int32_t *dparts;                    /* partitions and their decided offsets */
    int64_t *decided;

    sn_scorer_stats_t stats;
    struct {
        sn_counter_t *consumed, *decoded, *scored, *retries, *swaps, *refusals, *redis_errors;
        sn_counter_t *txn_committed, *txn_aborted;
        sn_counter_vec_t *dlq, *alerts;
        sn_histogram_t *batch_latency, *e2e_latency;
        sn_gauge_vec_t *model_info;
    } m;
};

static int64_t mono_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls the registry alias every model.poll.interval.s and prepares a new
 * version off the hot path: load, check against the schema, warm up. A
 * version that fails any step is refused and the current one keeps serving. */
static void *loader_main(void *arg) {
    sn_scorer_t *s = arg;
    int64_t interval_ms = sn_conf_int(s->conf, "scorer.poll.interval.s") * 1000;
    int64_t next = mono_ms() + interval_ms;
    char loaded[SN_MODEL_VERSION_MAX];

    snprintf(loaded, sizeof(loaded), "%s", s->current->version);
    while (!atomic_load(&s->loader_stop)) {
        sn_scorer_version_t *v = NULL, *old;
        char errstr[512];
        char resolved[SN_MODEL_VERSION_MAX];
        int rc;

        if (mono_ms() < next) {
            usleep(100 * 1000);
            continue;
        }
        next = mono_ms() + interval_ms;
        sn_scorer_challenger_poll(s->challenger);
        rc = sn_scorer_version_resolve(s->conf, resolved, sizeof(resolved), errstr, sizeof(errstr));
        if (rc != 0) {
            sn_log_warn("scorer", "model registry: %s (keeping version %s)", errstr, loaded);
            continue;
        }
        if (strcmp(resolved, loaded) == 0) continue;
        sn_log_info("scorer", "model alias now points at version %s; loading", resolved);
        v = sn_scorer_version_load(s->conf, s->codec, resolved, errstr, sizeof(errstr));
        snprintf(loaded, sizeof(loaded), "%s", resolved); /* do not retry a refused one forever */
        if (!v) {
            sn_log_error("scorer", "model version %s refused, version %s keeps serving: %s",
                         resolved, s->current->version, errstr);
            sn_counter_inc(s->m.refusals);
            atomic_fetch_add(&s->refusals, 1);
            continue;
        }
        old = atomic_exchange(&s->pending, v);
        sn_scorer_version_destroy(old); /* never taken: superseded */
    }
    return NULL;
}

/* ---- the pipeline: one batch, top to bottom ---- */

/* Waits before retrying a batch after a transient failure: exponential with
 * jitter, capped, while the consumer keeps serving the group (paused, so it
 * fetches nothing and memory stays bounded). */
static void backoff(sn_scorer_t *s, int attempt, volatile int *stop) {
    int64_t base = 100LL << (attempt < 10 ? attempt : 10);
    int64_t wait = base < s->backoff_max_ms ? base : s->backoff_max_ms;
    int64_t until;

    wait = wait / 2 + (int64_t)(rand() % (int)(wait / 2 + 1));
    until = mono_ms() + wait;
    sn_consumer_pause(s->consumer, 1);
    while (mono_ms() < until && !*stop) sn_consumer_serve(s->consumer, NULL, 100);
    s->stats.retries++;
    sn_counter_inc(s->m.retries);
}

/* Decodes every record; bad ones are dead-lettered with the reason. Returns
 * the number of events, or a negative sn_err (TRANSIENT: the schema registry
 * is down, retry the batch). */
static int stage_decode(sn_scorer_t *s, const sn_batch_t *b, char *errstr, size_t errstr_size) {
    size_t k = 0;

    for (size_t i = 0; i < b->n; i++) {
        const sn_record_t *r = &b->records[i];
        enum sn_codec_error_class cls = SN_CODEC_OK;
        int32_t schema_id = -1;
        char why[512];
        int rc = r->value
                     ? sn_codec_decode(s->codec, r->value, r->len, &s->evs[k], &cls, &schema_id,
                                       why, sizeof(why))
                     : (cls = SN_CODEC_TRUNCATED,
                        snprintf(why, sizeof(why), "empty record (null value)"), SN_ERR_INVALID);

        if (rc == 0) {
            s->parts[k] = r->partition;
            s->offs[k] = r->offset;
            s->rec_of[k++] = i;
            continue;
        }
        if (rc != SN_ERR_INVALID) return sn_err_set(errstr, errstr_size, rc, "decode: %s", why);
        {
            sn_dlq_record_t d = {r->topic,  r->partition, r->offset, r->key,
                                 r->keylen, r->value,     r->len,    sn_codec_error_class_str(cls),
                                 why,       schema_id};

            if ((rc = sn_dlq_send(s->producer, s->topic_dlq, &d, errstr, errstr_size)) != 0)
                return rc;
        }
        sn_log_debug("scorer", "dead-lettered %s/%d/%lld: %s", r->topic, (int)r->partition,
                     (long long)r->offset, why);
        sn_counter_inc(
            sn_counter_vec_get(s->m.dlq, (const char *[]){sn_codec_error_class_str(cls)}));
        s->stats.dead_lettered++;
    }
    return (int)k;
}

/* The version that serves event j: the challenger for a canary machine, else
 * production; row (may be NULL) gets the event's features in its spec. */
static const sn_scorer_version_t *serving(const sn_scorer_t *s, size_t j, const float **row) {
    const sn_scorer_version_t *v = sn_scorer_challenger_serves(s->challenger, j, row);

    if (v) return v;
    if (row) *row = &s->x[j * sn_feature_spec_nfeatures(s->current->spec)];
    return s->current;
}

/* Fills an alert for event j; its features come from explain_alerts. */
static void make_alert(sn_scorer_t *s, const sn_batch_t *b, size_t j, enum sn_alerting_action act,
                       sn_alert_t *a) {
    const sn_scorer_version_t *v = serving(s, j, NULL);
    const sn_record_t *r = &b->records[s->rec_of[j]];

    memset(a, 0, sizeof(*a));
    sn_alert_make_id(a->id, sizeof(a->id), r->topic, r->partition, r->offset);
    snprintf(a->machine_id, sizeof(a->machine_id), "%s", s->evs[j].machine_id);
    a->ts_ms = s->evs[j].ts_ms;
    a->score = s->scores[j];
    a->threshold = v->threshold;
    snprintf(a->model_name, sizeof(a->model_name), "%s", v->name);
    snprintf(a->model_version, sizeof(a->model_version), "%s", v->version);
    a->state = act == SN_ALERTING_OPEN       ? SN_ALERT_OPEN
               : act == SN_ALERTING_RENOTIFY ? SN_ALERT_RENOTIFY
                                             : SN_ALERT_RESOLVED;
}

/* Copies nr reasons (why, borrowed) into alert a, named in v's spec. A
 * missing value (NaN: an empty window) can push the score through XGBoost's
 * default branch, but the alert schema's value is a plain double that the
 * codec keeps finite: such a reason is left out rather than failing the
 * alert, which would stop the scorer on every redelivery. */
static void set_reasons(sn_alert_t *a, const sn_scorer_version_t *v, const sn_model_reason_t *why,
                        size_t nr) {
    for (size_t i = 0; i < nr; i++) {
        sn_alert_feature_t *f = &a->features[a->nfeatures];

        if (!isfinite(why[i].value) || !isfinite(why[i].contribution)) continue;
        snprintf(f->name, sizeof(f->name), "%s", sn_feature_spec_name(v->spec, why[i].feature));
        f->value = why[i].value;
        f->contribution = why[i].contribution;
        a->nfeatures++;
    }
}

/* Adds to each of the n alerts the features that pushed its score up (SHAP)
 * (s->alert_row[i] is alert i's event). Production's alerts take one XGBoost
 * call for the whole batch: a call per alert paid XGBoost's set-up of a
 * matrix each time. A batch with canary alerts (another model, other feature
 * rows) is explained alert by alert. */
static void explain_alerts(sn_scorer_t *s, sn_alert_t *alerts, size_t n) {
    size_t nr = 0;
    char errstr[256];
    int mixed = 0;

    if (n == 0) return;
    for (size_t a = 0; a < n && !mixed; a++)
        mixed = serving(s, s->alert_row[a], NULL) != s->current;
    if (!mixed) {
        if (sn_model_explain_rows(s->current->model, s->x, s->alert_row, n, TOP_FEATURES, s->why,
                                  &nr, errstr, sizeof(errstr)) != 0) {
            sn_log_warn("scorer", "explaining %zu alerts: %s", n, errstr);
            nr = 0;
        }
        for (size_t a = 0; a < n; a++)
            set_reasons(&alerts[a], s->current, &s->why[a * TOP_FEATURES], nr);
        return;
    }
    for (size_t a = 0; a < n; a++) {
        const float *row;
        const sn_scorer_version_t *v = serving(s, s->alert_row[a], &row);

        if (sn_model_explain(v->model, row, TOP_FEATURES, &s->why[a * TOP_FEATURES], &nr, errstr,
                             sizeof(errstr)) != 0) {
            sn_log_warn("scorer", "explaining alert %s: %s", alerts[a].id, errstr);
            nr = 0;
        }
        set_reasons(&alerts[a], v, &s->why[a * TOP_FEATURES], nr);
    }
}

/* snprintf(dst, size, "%s", src) without printf's machinery, which cost
 * more than the rest of building a score record (three per event). */
static void copy_text(char *dst, size_t size, const char *src) {
    size_t n = strnlen(src, size - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Sends the score records and the alerts of n scored events. */
static int stage_sinks(sn_scorer_t *s, const sn_batch_t *b, size_t n, sn_alert_t *alerts,
                       size_t *nalerts, char *errstr, size_t errstr_size) {
    unsigned char frame[FRAME_MAX];
    size_t len;
    int rc;

    *nalerts = 0;
    for (size_t j = 0; j < n; j++) {
        const sn_event_t *ev = &s->evs[j];
        const sn_record_t *r = &b->records[s->rec_of[j]];
        const sn_scorer_version_t *v = serving(s, j, NULL);
        enum sn_alerting_action act;

        if (s->scores_enabled) {
            sn_score_t sc = {.ts_ms = ev->ts_ms,
                             .score = s->scores[j],
                             .source_partition = r->partition,
                             .source_offset = r->offset};

            copy_text(sc.machine_id, sizeof(sc.machine_id), ev->machine_id);
            copy_text(sc.model_name, sizeof(sc.model_name), v->name);
            copy_text(sc.model_version, sizeof(sc.model_version), v->version);
            if ((rc = sn_codec_encode_score(s->codec, &sc, frame, sizeof(frame), &len, errstr,
                                            errstr_size)) != 0 ||
                (rc = sn_producer_send(s->producer, s->topic_scores, -1, ev->machine_id,
                                       strlen(ev->machine_id), frame, len, NULL, 0, 30000, errstr,
                                       errstr_size)) != 0)
                return rc;
        }
        act = sn_alerter_observe_at(s->alerter, ev->machine_id, r->partition, r->offset, ev->ts_ms,
                                    s->scores[j], v->threshold);
        if (act == SN_ALERTING_NONE) continue;
        make_alert(s, b, j, act, &alerts[*nalerts]);
        s->alert_row[(*nalerts)++] = j;
    }
    explain_alerts(s, alerts, *nalerts);
    for (size_t i = 0; i < *nalerts; i++) {
        const char *machine = alerts[i].machine_id;

        if ((rc = sn_codec_encode_alert(s->codec, &alerts[i], frame, sizeof(frame), &len, errstr,
                                        errstr_size)) != 0 ||
            (rc = sn_producer_send(s->producer, s->topic_alerts, -1, machine, strlen(machine),
                                   frame, len, NULL, 0, 30000, errstr, errstr_size)) != 0)
            return rc;
    }
    return 0;
}

/* Reads the alert state of the batch's machines that the alerter does not
 * know (first sight, or partitions moved since) from Redis in one round trip,
 * retried like the features; a record that does not parse is logged and the
 * machine starts without an incident rather than stopping the scorer on every
 * restart. */
static int stage_alert_load(sn_scorer_t *s, const sn_batch_t *b, size_t n, volatile int *stop,
                            char *errstr, size_t errstr_size) {
    size_t m, np;
    int attempt = 0, rc = 0;

    for (size_t j = 0; j < n; j++) {
        const sn_record_t *r = &b->records[s->rec_of[j]];

        if (sn_alerter_want(s->alerter, s->evs[j].machine_id, r->partition, r->offset) < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    }
    m = sn_alerter_nwanted(s->alerter);
    np = sn_alerter_nwanted_partitions(s->alerter);
    if (m + np == 0) return 0;
    for (size_t i = 0; i < m; i++) s->names[i] = sn_alerter_wanted(s->alerter, i);
    for (size_t i = 0; i < np; i++) s->dparts[i] = sn_alerter_wanted_partition(s->alerter, i);
    while ((rc = sn_feature_redis_alert_load(
                s->current->features, s->names, m, s->text_buf, SN_ALERT_RECORD_MAX, s->topic_in,
                s->dparts, s->decided, np, errstr, errstr_size)) == SN_ERR_TRANSIENT &&
           !*stop) {
        if (attempt == 0) sn_log_warn("scorer", "alert state: %s; pausing and retrying", errstr);
        sn_counter_inc(s->m.redis_errors);
        backoff(s, attempt++, stop);
    }
    if (rc != 0) return rc;
    if (attempt) {
        sn_log_info("scorer", "alert state: Redis is back after %d retries", attempt);
        sn_consumer_pause(s->consumer, 0);
    }
    for (size_t i = 0; i < m; i++) {
        const char *text = &s->text_buf[i * SN_ALERT_RECORD_MAX];
        char why[256];

        s->restored[i] = NULL;
        if (!*text) continue;
        if (sn_alert_record_parse(text, &s->recs[i], why, sizeof(why)) != 0) {
            sn_log_error("scorer", "machine %s: %s; starting it without an incident", s->names[i],
                         why);
            continue;
        }
        s->restored[i] = &s->recs[i];
    }
    return sn_alerter_restore(s->alerter, s->restored, s->decided) == 0
               ? 0
               : sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
}

/* Persists the state of the machines whose alert state the batch changed,
 * with the batch's offsets, and at-least-once the batch's last offset per
 * partition as decided, in one round trip retried like the features: before
 * the offsets can count, so that a restart from them finds it. Returns 0, 1
 * when stopping before it was stored, or an error. */
static int store_alert_state(sn_scorer_t *s, const sn_batch_t *b, volatile int *stop, char *errstr,
                             size_t errstr_size) {
    int m = sn_alerter_nchanged(s->alerter), attempt = 0, rc;
    size_t np = 0;

    for (size_t i = 0; i < b->n && !s->eos; i++) {
        size_t p = 0;

        while (p < np && s->dparts[p] != b->records[i].partition) p++;
        if (p == np) s->dparts[np++] = b->records[i].partition, s->decided[p] = -1;
        if (b->records[i].offset > s->decided[p]) s->decided[p] = b->records[i].offset;
    }
    if (m < 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                          "out of memory listing the alert state to persist");
    for (int i = 0; i < m; i++) {
        sn_alert_record_t rec;
        char *text = &s->text_buf[(size_t)i * SN_ALERT_RECORD_MAX];

        sn_alerter_changed(s->alerter, (size_t)i, &s->names[i], &rec);
        (void)sn_alert_record_format(&rec, text, SN_ALERT_RECORD_MAX); /* always fits */
        s->texts[i] = text;
    }
    while ((rc = sn_feature_redis_alert_store(s->current->features, s->names, s->texts, (size_t)m,
                                              s->topic_in, s->dparts, s->decided, np, errstr,
                                              errstr_size)) == SN_ERR_TRANSIENT &&
           !*stop) {
        if (attempt == 0) sn_log_warn("scorer", "alert state: %s; pausing and retrying", errstr);
        sn_counter_inc(s->m.redis_errors);
        backoff(s, attempt++, stop);
    }
    if (attempt && rc == 0)
        sn_log_info("scorer", "alert state: Redis is back after %d retries", attempt);
    if (attempt) sn_consumer_pause(s->consumer, 0);
    return rc == SN_ERR_TRANSIENT ? 1 : rc;
}

/* Starts a batch of the alert state machine (after a rebalance, from what
 * Redis holds). Exactly-once: opens the batch's transaction and marks the
 * alert state to go back to if it aborts. */
static int batch_begin(sn_scorer_t *s, char *errstr, size_t errstr_size) {
    int rc;

    if (s->revoked) sn_alerter_forget(s->alerter);
    s->revoked = 0;
    sn_alerter_batch_begin(s->alerter);
    if (!s->eos) return 0;
    if ((rc = sn_producer_txn_begin(s->producer, errstr, errstr_size)) != 0) return rc;
    s->in_txn = 1;
    sn_alerter_checkpoint(s->alerter);
    return 0;
}

/* Exactly-once, a stage failed for a reason worth retrying: the outputs sent so
 * far go with an aborted transaction, and a new one starts for the retry. */
static int batch_restart(sn_scorer_t *s, char *errstr, size_t errstr_size) {
    int rc;

    if (!s->eos) return 0;
    s->in_txn = 0;
    if ((rc = sn_producer_txn_abort(s->producer, errstr, errstr_size)) != 0) return rc;
    return batch_begin(s, errstr, errstr_size);
}

/* Makes the batch's outputs count. At-least-once: waits until the broker
 * acknowledged all of them, then stores the offsets. Exactly-once: commits the
 * outputs and the offsets in the batch's transaction. Returns 0; 1 when
 * stopping with outputs in flight (nothing stored); SN_ERR_TRANSIENT when the
 * transaction was aborted (redo the batch); or an error. */
static int stage_commit(sn_scorer_t *s, sn_batch_t *b, volatile int *stop, char *errstr,
                        size_t errstr_size) {
    sn_producer_stats_t ps;
    sn_kafka_offsets_t *offs = NULL;
    int attempt = 0, rc;

    if (s->eos) {
        /* the alert state first: a commit that fails after it is redone from
         * the state before the batch (sn_alerter_restore) */
        if ((rc = store_alert_state(s, b, stop, errstr, errstr_size)) != 0) return rc;
        /* a revoked partition: abort (batch_redo), its new owner redoes it */
        if ((rc = sn_consumer_batch_offsets(s->consumer, b, &offs, errstr, errstr_size)) == 0 &&
            (rc = sn_producer_txn_commit(s->producer, offs, errstr, errstr_size)) != SN_ERR_FATAL)
            s->in_txn = 0; /* committed, or aborted by sn_producer_txn_commit */
        sn_consumer_offsets_destroy(offs);
        if (rc == 0) {
            s->stats.txn_committed++;
            sn_counter_inc(s->m.txn_committed);
            s->aborts_in_row = 0;
            sn_consumer_release_batch(b);
        }
        return rc;
    }
    while (sn_producer_flush(s->producer, 1000) != 0 && !*stop) {
        if (attempt++ == 0) sn_log_warn("scorer", "waiting for the broker to acknowledge outputs");
        sn_consumer_serve(s->consumer, NULL, 0);
    }
    sn_producer_stats(s->producer, &ps);
    if (ps.failed)
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                          "%llu outputs could not be delivered (%s): exiting without "
                          "committing, the batch will be redelivered",
                          (unsigned long long)ps.failed, sn_producer_last_error(s->producer));
    if (ps.delivered != ps.enqueued) return 1; /* stopping while outputs are in flight */
    /* the alert state after the alerts were acknowledged, before the offsets */
    if ((rc = store_alert_state(s, b, stop, errstr, errstr_size)) != 0) return rc;
    /* fails only for a revoked partition: its records go to the new owner */
    (void)sn_consumer_commit_batch(s->consumer, b, errstr, errstr_size);
    return 0;
}

/* Exactly-once, after an aborted transaction: none of the batch's outputs or
 * offsets will ever be seen, so the alert state goes back to before the batch
 * and the consumer back to the batch's first records, which the next polls
 * deliver again. Redis keeps the batch's updates, and the undo record of each
 * machine's last update (on in this mode) gives the redo the same vectors. */
static int batch_redo(sn_scorer_t *s, sn_batch_t *b, const char *why, volatile int *stop,
                      char *errstr, size_t errstr_size) {
    int rc;

    sn_log_warn("scorer", "transaction aborted, redoing the batch of %zu records: %s", b->n, why);
    if (s->in_txn && (rc = sn_producer_txn_abort(s->producer, errstr, errstr_size)) != 0) return rc;
    s->in_txn = 0;
    s->stats.txn_aborted++;
    sn_counter_inc(s->m.txn_aborted);
    if ((rc = sn_alerter_rollback(s->alerter)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL,
                          "out of memory restoring the alert state of an aborted batch");
    sn_consumer_rewind(s->consumer, b);
    backoff(s, s->aborts_in_row++, stop);
    sn_consumer_pause(s->consumer, 0);
    return 0;
}

/* Takes a version the loader prepared, between batches. */
static void maybe_swap(sn_scorer_t *s) {
    sn_scorer_version_t *v = atomic_exchange(&s->pending, NULL);

    if (!v) return;
    sn_log_info("scorer", "model %s: version %s replaces %s", v->name, v->version,
                s->current->version);
    sn_gauge_set(sn_gauge_vec_get(s->m.model_info, (const char *[]){s->current->version}), 0);
    sn_gauge_set(sn_gauge_vec_get(s->m.model_info, (const char *[]){v->version}), 1);
    sn_scorer_version_destroy(s->current);
    s->current = v;
    s->stats.model_swaps++;
    sn_counter_inc(s->m.swaps);
}

int sn_scorer_run(sn_scorer_t *s, volatile int *stop, char *errstr, size_t errstr_size) {
    sn_batch_t batch = {0};
    sn_alert_t *alerts = calloc(s->cap, sizeof(*alerts));
    int64_t last_record = mono_ms();
    int rc = 0;

    if (!alerts) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    while (!*stop) {
        int64_t t0;
        size_t nalerts = 0;
        int n, k, attempt = 0;

        if (s->opts.max_records && s->stats.consumed >= s->opts.max_records) break;
        maybe_swap(s);
        sn_scorer_challenger_swap(s->challenger);
        n = sn_consumer_poll_batch(s->consumer, &batch, 200);
        if (s->opts.on_heartbeat) s->opts.on_heartbeat(s->opts.opaque);
        if (n < 0) {
            rc = sn_err_set(errstr, errstr_size, n, "consumer failed");
            break;
        }
        if (n == 0) {
            if (s->opts.idle_exit_ms && s->stats.consumed &&
                mono_ms() - last_record >= s->opts.idle_exit_ms)
                break;
            continue;
        }
        t0 = mono_ms();
        last_record = t0;
        s->stats.consumed += (uint64_t)n;
        sn_counter_add(s->m.consumed, (uint64_t)n);
        if ((rc = batch_begin(s, errstr, errstr_size)) != 0) break;

        /* decode: a registry outage is retried, a bad record dead-lettered */
        while ((k = stage_decode(s, &batch, errstr, errstr_size)) == SN_ERR_TRANSIENT && !*stop) {
            sn_log_warn("scorer", "%s; retrying", errstr);
            backoff(s, attempt++, stop);
            if ((k = batch_restart(s, errstr, errstr_size)) != 0) break;
        }
        if (k < 0) {
            rc = k;
            break;
        }
        s->stats.decoded += (uint64_t)k;
        sn_counter_add(s->m.decoded, (uint64_t)k);

        /* features: the script is idempotent per offset, so a retry after a
         * partial failure is safe */
        attempt = 0;
        while (k > 0 &&
               (rc = sn_feature_redis_apply_batch(s->current->features, s->evs, s->parts, s->offs,
                                                  (size_t)k, s->x, s->flags, errstr,
                                                  errstr_size)) == SN_ERR_TRANSIENT &&
               !*stop) {
            if (attempt == 0) sn_log_warn("scorer", "features: %s; pausing and retrying", errstr);
            sn_counter_inc(s->m.redis_errors);
            backoff(s, attempt++, stop);
        }
        if (rc != 0) break;
        if (attempt) sn_log_info("scorer", "features: Redis is back after %d retries", attempt);
        sn_consumer_pause(s->consumer, 0);

        /* score */
        if (k > 0 && (rc = sn_model_predict(s->current->model, s->ctx, s->x, (size_t)k, s->scores,
                                            errstr, errstr_size)) != 0)
            break;

        /* the challenger's share (shadow: every event, canary: its machines),
         * on its own features; the same retry as production's features */
        attempt = 0;
        while (k > 0 &&
               (rc = sn_scorer_challenger_score(s->challenger, s->current, s->evs, s->parts,
                                                s->offs, (size_t)k, s->scores, errstr,
                                                errstr_size)) == SN_ERR_TRANSIENT &&
               !*stop) {
            sn_counter_inc(s->m.redis_errors);
            backoff(s, attempt++, stop);
        }
        if (rc != 0) break;
        if (attempt) sn_consumer_pause(s->consumer, 0);

        /* sinks, then commit: the outputs acknowledged before the offsets
         * are stored, or both in the batch's transaction; the alert state
         * read first, stored before the offsets */
        if ((rc = stage_alert_load(s, &batch, (size_t)k, stop, errstr, errstr_size)) != 0) break;
        if ((rc = stage_sinks(s, &batch, (size_t)k, alerts, &nalerts, errstr, errstr_size)) == 0 &&
            (rc = sn_scorer_challenger_sinks(s->challenger, s->producer, &batch, s->evs, s->rec_of,
                                             (size_t)k, errstr, errstr_size)) == 0)
            rc = stage_commit(s, &batch, stop, errstr, errstr_size);
        if (rc == SN_ERR_TRANSIENT && s->eos) {
            if ((rc = batch_redo(s, &batch, errstr, stop, errstr, errstr_size)) != 0) break;
            continue;
        }
        if (rc != 0) {
            if (rc > 0) rc = 0;
            break;
        }
        if (s->opts.on_scored)
            for (int j = 0; j < k; j++)
                s->opts.on_scored(s->opts.opaque, &s->evs[j], s->scores[j],
                                  serving(s, (size_t)j, NULL)->threshold);
        for (size_t i = 0; i < nalerts; i++) {
            sn_counter_inc(sn_counter_vec_get(
                s->m.alerts,
                (const char *[]){alerts[i].state == SN_ALERT_OPEN       ? "open"
                                 : alerts[i].state == SN_ALERT_RENOTIFY ? "renotify"
                                                                        : "resolved"}));
            /* Replayed or synthetic event times can be ahead of the clock:
             * such an alert has no meaningful latency. */
            if (wall_ms() >= alerts[i].ts_ms)
                sn_histogram_observe(s->m.e2e_latency,
                                     (double)(wall_ms() - alerts[i].ts_ms) / 1000.0);
            if (s->opts.on_alert) s->opts.on_alert(s->opts.opaque, &alerts[i]);
        }
        s->stats.scored += (uint64_t)k;
        s->stats.batches++;
        sn_counter_add(s->m.scored, (uint64_t)k);
        sn_histogram_observe(s->m.batch_latency, (double)(mono_ms() - t0) / 1000.0);
    }
    /* Whatever is in hand and not committed is redelivered after a restart. */
    if (s->in_txn && sn_producer_txn_abort(s->producer, NULL, 0) == 0) s->in_txn = 0;
    sn_consumer_release_batch(&batch);
    sn_batch_free(&batch);
    sn_producer_flush(s->producer, 5000);
    sn_consumer_commit_sync(s->consumer);
    free(alerts);
    if (*stop && rc == SN_ERR_TRANSIENT) rc = 0; /* stopped while waiting for a dependency */
    return rc;
}

static int alloc_scratch(sn_scorer_t *s, size_t cap) {
    size_t nf = SN_FEATURE_SPEC_FEATURES_MAX;

    s->cap = cap;
    s->evs = calloc(cap, sizeof(*s->evs));
    s->parts = calloc(cap, sizeof(*s->parts));
    s->offs = calloc(cap, sizeof(*s->offs));
    s->rec_of = calloc(cap, sizeof(*s->rec_of));
    s->x = calloc(cap * nf, sizeof(*s->x));
    s->scores = calloc(cap, sizeof(*s->scores));
    s->flags = calloc(cap, sizeof(*s->flags));
    s->alert_row = calloc(cap, sizeof(*s->alert_row));
    s->why = calloc(cap * TOP_FEATURES, sizeof(*s->why));
    s->names = calloc(cap, sizeof(*s->names));
    s->texts = calloc(cap, sizeof(*s->texts));
    s->text_buf = calloc(cap, SN_ALERT_RECORD_MAX);
    s->recs = calloc(cap, sizeof(*s->recs));
    s->restored = calloc(cap, sizeof(*s->restored));
    s->dparts = calloc(cap, sizeof(*s->dparts));
    s->decided = calloc(cap, sizeof(*s->decided));
    return (s->evs && s->parts && s->offs && s->rec_of && s->x && s->scores && s->flags &&
            s->alert_row && s->why && s->names && s->texts && s->text_buf && s->recs &&
            s->restored && s->dparts && s->decided)
               ? 0
               : SN_ERR_NOMEM;
}

static void register_metrics(sn_scorer_t *s, sn_metrics_t *reg) {
    static const double lat[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10};

    if (!reg) return;
    s->m.consumed = sn_metrics_counter(reg, "sentinel_records_consumed_total",
                                       "Records consumed from the telemetry topic.");
    s->m.decoded = sn_metrics_counter(reg, "sentinel_records_decoded_total", "Records decoded.");
    s->m.scored = sn_metrics_counter(reg, "sentinel_records_scored_total", "Events scored.");
    s->m.retries = sn_metrics_counter(reg, "sentinel_scorer_retries_total",
                                      "Batch retries after a transient failure.");
    s->m.redis_errors = sn_metrics_counter(reg, "sentinel_redis_errors_total",
                                           "Failed Redis feature updates (retried).");
    s->m.swaps =
        sn_metrics_counter(reg, "sentinel_model_swaps_total", "Model versions swapped in.");
    s->m.txn_committed = sn_metrics_counter(reg, "sentinel_scorer_transactions_committed_total",
                                            "Batch transactions committed (scorer.exactly.once).");
    s->m.txn_aborted = sn_metrics_counter(
        reg, "sentinel_scorer_transactions_aborted_total",
        "Batch transactions aborted and their batch redone (scorer.exactly.once).");
    s->m.refusals = sn_metrics_counter(reg, "sentinel_model_refusals_total",
                                       "Model versions refused (failed to load or check).");
    s->m.dlq = sn_metrics_counter_vec(reg, "sentinel_dlq_records_total",
                                      "Records dead-lettered, by error class.",
                                      (const char *[]){"class"}, 1, 32);
    s->m.alerts = sn_metrics_counter_vec(reg, "sentinel_alerts_total", "Alerts sent, by state.",
                                         (const char *[]){"state"}, 1, 3);
    s->m.batch_latency = sn_metrics_histogram(reg, "sentinel_batch_latency_seconds",
                                              "Time from a batch's poll to its commit.", lat, 13);
    s->m.e2e_latency =
        sn_metrics_histogram(reg, "sentinel_e2e_latency_seconds",
                             "Event time to alert acknowledged by the broker.", lat, 13);
    s->m.model_info =
        sn_metrics_gauge_vec(reg, "sentinel_model_info", "1 for the model version in use.",
                             (const char *[]){"version"}, 1, 64);
}

/* Partitions going to another scorer: it may change their machines' alert
 * state, so this one reads it again from Redis if they come back. */
static void on_revoke(void *opaque, const char *topic, int32_t partition) {
    (void)topic;
    (void)partition;
    ((sn_scorer_t *)opaque)->revoked = 1;
}

/* At-least-once: the idempotent producer. Exactly-once: a transactional one,
 * whose id defaults to one per host (a pod name in Kubernetes). */
static sn_producer_t *make_producer(sn_scorer_t *s, char *errstr, size_t errstr_size) {
    const char *id = sn_conf_str(s->conf, "scorer.transactional.id");
    char host[256], deflt[300];

    if (!s->eos) return sn_producer_new(s->conf, s->opts.bootstrap, errstr, errstr_size);
    if (!*id) {
        if (gethostname(host, sizeof(host)) != 0 || !*host) {
            sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                       "scorer.exactly.once: no host name to derive scorer.transactional.id "
                       "from; set it");
            return NULL;
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(deflt, sizeof(deflt), "sentinel-scorer-%s", host);
        id = deflt;
    }
    sn_log_info("scorer", "exactly-once: transactional id %s", id);
    return sn_producer_new_transactional(s->conf, s->opts.bootstrap, id, 60000, errstr,
                                         errstr_size);
}

sn_scorer_t *sn_scorer_new(const sn_conf_t *conf, const sn_scorer_opts_t *opts, char *errstr,
                           size_t errstr_size) {
    sn_scorer_t *s = calloc(1, sizeof(*s));
    const char *topics[1];
    sn_consumer_opts_t copts;
    sn_alerter_opts_t aopts;
    char resolved[SN_MODEL_VERSION_MAX];

    if (!s) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->conf = conf;
    s->opts = *opts;
    s->topic_in = sn_conf_str(conf, "topic.telemetry");
    s->topic_dlq = sn_conf_str(conf, "topic.dlq");
    s->topic_alerts = sn_conf_str(conf, "topic.alerts");
    s->topic_scores = sn_conf_str(conf, "topic.scores");
    s->scores_enabled = sn_conf_bool(conf, "scorer.scores.enabled");
    s->eos = sn_conf_bool(conf, "scorer.exactly.once");
    s->backoff_max_ms = sn_conf_int(conf, "scorer.retry.backoff.max.ms");
    if (alloc_scratch(s, (size_t)sn_conf_int(conf, "scorer.batch.max.records")) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(s->codec = sn_codec_new(conf, errstr, errstr_size))) goto fail;
    if (sn_scorer_version_resolve(conf, resolved, sizeof(resolved), errstr, errstr_size) != 0 ||
        !(s->current = sn_scorer_version_load(conf, s->codec, resolved, errstr, errstr_size)))
        goto fail;
    if (!(s->ctx = sn_model_ctx_new(errstr, errstr_size))) goto fail;
    aopts.cooldown_ms = sn_conf_int(conf, "alert.cooldown.ms");
    aopts.resolve_after = (uint32_t)sn_conf_int(conf, "alert.resolve.after");
    aopts.max_open = (size_t)sn_conf_int(conf, "alert.max.open");
    aopts.max_known = (size_t)sn_conf_int(conf, "alert.known.max");
    aopts.redo_uncommitted = s->eos;
    if (!(s->alerter = sn_alerter_new(&aopts))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!(s->producer = make_producer(s, errstr, errstr_size))) goto fail;
    topics[0] = s->topic_in;
    memset(&copts, 0, sizeof(copts));
    copts.group_id = sn_conf_str(conf, "scorer.group.id");
    copts.topics = topics;
    copts.ntopics = 1;
    copts.bootstrap = opts->bootstrap;
    copts.batch_max_records = s->cap;
    copts.batch_max_ms = (int)sn_conf_int(conf, "scorer.batch.max.ms");
    copts.transactional = s->eos;
    copts.on_revoke = on_revoke;
    copts.opaque = s;
    if (!(s->consumer = sn_consumer_new(conf, &copts, errstr, errstr_size))) goto fail;
    register_metrics(s, opts->metrics);
    if (!(s->challenger =
              sn_scorer_challenger_new(conf, s->codec, opts->metrics, s->cap, errstr, errstr_size)))
        goto fail;
    sn_gauge_set(sn_gauge_vec_get(s->m.model_info, (const char *[]){s->current->version}), 1);
    if (pthread_create(&s->loader, NULL, loader_main, s) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "cannot start the model loader thread");
        goto fail;
    }
    s->loader_started = 1;
    sn_log_info("scorer", "model %s version %s (threshold %.4f), %zu features; group %s on %s",
                s->current->name, s->current->version, s->current->threshold,
                sn_feature_spec_nfeatures(s->current->spec), copts.group_id, s->topic_in);
    return s;
fail:
    sn_scorer_destroy(s);
    return NULL;
}

void sn_scorer_stats(const sn_scorer_t *s, sn_scorer_stats_t *out) {
    sn_alerter_stats_t as;

    *out = s->stats;
    out->model_refusals = atomic_load(&((sn_scorer_t *)s)->refusals);
    sn_alerter_stats(s->alerter, &as);
    out->alerts_opened = as.opened;
    out->alerts_renotified = as.renotified;
    out->alerts_resolved = as.resolved;
    snprintf(out->model_version, sizeof(out->model_version), "%s", s->current->version);
}

void sn_scorer_destroy(sn_scorer_t *s) {
    if (!s) return;
    if (s->loader_started) {
        atomic_store(&s->loader_stop, 1);
        pthread_join(s->loader, NULL);
    }
    sn_scorer_version_destroy(atomic_exchange(&s->pending, NULL));
    sn_scorer_challenger_destroy(s->challenger);
    sn_consumer_destroy(s->consumer);
    sn_producer_destroy(s->producer, 5000);
    sn_alerter_destroy(s->alerter);
    sn_model_ctx_destroy(s->ctx);
    sn_scorer_version_destroy(s->current);
    sn_codec_destroy(s->codec);
    free(s->evs);
    free(s->parts);
    free(s->offs);
    free(s->rec_of);
    free(s->x);
    free(s->scores);
    free(s->flags);
    free(s->alert_row);
    free(s->why);
    free(s->names);
    free(s->texts);
    free(s->text_buf);
    free(s->recs);
    free(s->restored);
    free(s->dparts);
    free(s->decided);
    free(s);
}
