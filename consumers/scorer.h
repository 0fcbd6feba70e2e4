/* scorer.h: the scoring pipeline (`sentinel score`, and the demo's scorer).
 *
 * Consumes telemetry in the sentinel-scorer group and, per micro-batch, top to
 * bottom: decode (bad records to the dead-letter topic with the reason),
 * features (Redis, one atomic script per machine, idempotent per offset),
 * score (XGBoost on the whole batch), sinks (a score record per event, alerts
 * from the per-machine state machine), then waits for the broker to
 * acknowledge the batch's outputs and only then stores its offsets. The
 * production model is polled from the registry and swapped in between batches
 * without dropping an event. */
#ifndef SN_SCORER_H
#define SN_SCORER_H

#include <stdint.h>

#include "common/conf.h"
#include "common/metrics.h"
#include "schemas/codec.h"

typedef struct sn_scorer sn_scorer_t;

typedef struct sn_scorer_opts {
    const char *bootstrap; /* overrides kafka.bootstrap.servers (the embedded mock cluster) */
    sn_metrics_t *metrics; /* borrowed; where to register the scorer's metrics, or NULL */
    /* Called for every alert after the broker acknowledged it (the demo prints
     * them); alert is borrowed for the call. May be NULL. */
    void (*on_alert)(void *opaque, const sn_alert_t *alert);
    /* Called for every scored event (the demo's precision and recall); ev is
     * borrowed for the call. May be NULL. */
    void (*on_scored)(void *opaque, const sn_event_t *ev, double score, double threshold);
    /* Called once per loop turn, batch or not (liveness). May be NULL. */
    void (*on_heartbeat)(void *opaque);
    void *opaque;
    /* Stop once this many records were processed (0: run until *stop). */
    uint64_t max_records;
    /* Stop after this many ms without a record once something was processed
     * (0: never); the demo uses it to end when the replay is done. */
    int idle_exit_ms;
} sn_scorer_opts_t;

typedef struct sn_scorer_stats {
    uint64_t consumed, decoded, dead_lettered, scored, batches;
    uint64_t alerts_opened, alerts_renotified, alerts_resolved;
    uint64_t model_swaps, model_refusals, retries;
    uint64_t txn_committed, txn_aborted; /* scorer.exactly.once */
    char model_version[64];
} sn_scorer_stats_t;

/* Loads the production model (model.name at model.alias) from the registry,
 * connects nothing yet. conf is borrowed and must outlive the scorer. NULL
 * with errstr when the configuration is bad or no model can be loaded. */
sn_scorer_t *sn_scorer_new(const sn_conf_t *conf, const sn_scorer_opts_t *opts, char *errstr,
                           size_t errstr_size);

/* Runs until *stop (borrowed) becomes non-zero, max_records or idle_exit_ms
 * is reached, or a fatal error. On stop: finishes the batch in hand, flushes,
 * commits and leaves the group. 0, or a negative sn_err with errstr set. */
int sn_scorer_run(sn_scorer_t *s, volatile int *stop, char *errstr, size_t errstr_size);

void sn_scorer_stats(const sn_scorer_t *s, sn_scorer_stats_t *out);

/* NULL-safe. */
void sn_scorer_destroy(sn_scorer_t *s);

#endif
