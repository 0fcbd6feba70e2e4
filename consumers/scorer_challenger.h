/* scorer_challenger.h: the challenger model beside production, in shadow or
 * canary (scorer.challenger).
 *
 * The challenger is the version at model.challenger.alias of model.name, the
 * alias the promotion gate gives a trained version it did not promote. It is
 * polled, loaded, checked and warmed up on the scorer's loader thread and
 * handed to the scoring thread between batches with one atomic exchange, as
 * the production version is. Its feature state lives under
 * <redis.key.prefix>:challenger, apart from production's even when both specs
 * have the same layout.
 *
 * shadow: every event is also scored by the challenger; its score records go
 * to topic.shadow, never to alerts; agreement metrics compare its decisions
 * with production's (each against its own threshold).
 * canary: the machines whose sn_scorer_challenger_hash() falls below
 * scorer.canary.fraction are served by the challenger (score records and
 * alerts naming its version); production still keeps every machine's
 * features, so the canary can shrink or stop without a cold start.
 *
 * Not thread-safe except where a function says so: the scoring thread owns
 * the handle, the loader thread only calls sn_scorer_challenger_poll. */
#ifndef SN_SCORER_CHALLENGER_H
#define SN_SCORER_CHALLENGER_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "common/metrics.h"
#include "consumers/consumer.h"
#include "consumers/scorer_model.h"
#include "producers/producer.h"
#include "schemas/codec.h"

typedef struct sn_scorer_challenger sn_scorer_challenger_t;

enum sn_challenger_mode {
    SN_CHALLENGER_OFF,
    SN_CHALLENGER_SHADOW,
    SN_CHALLENGER_CANARY,
};

/* The canary's hash of a machine id, in [0, 1): FNV-1a 64 over the id's
 * bytes (no NUL; offset basis 14695981039346656037, prime 1099511628211),
 * then MurmurHash3's fmix64 (h ^= h >> 33; h *= 0xff51afd7ed558ccd;
 * h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33), divided by 2^64. A
 * machine is a canary when this is below scorer.canary.fraction; an offline
 * tool reproduces it in a few lines (tests/integration/challenger_tool.py
 * does). machine_id is borrowed. */
double sn_scorer_challenger_hash(const char *machine_id);

/* Reads scorer.challenger, scorer.canary.fraction, topic.shadow and
 * model.challenger.alias from conf (borrowed, must outlive the handle) and,
 * unless the mode is off, loads the challenger at the alias now. A challenger
 * that is not there (alias unset) or refused is not an error: the scorer
 * starts without one, says so and keeps polling. codec (borrowed, must
 * outlive the handle) looks up field positions and encodes shadow records;
 * metrics (borrowed, may be NULL) receives the challenger's metrics; cap is
 * the largest batch. NULL with errstr for a bad configuration (a mode other
 * than off with an empty model.challenger.alias) or out of memory. */
sn_scorer_challenger_t *sn_scorer_challenger_new(const sn_conf_t *conf, sn_codec_t *codec,
                                                 sn_metrics_t *metrics, size_t cap, char *errstr,
                                                 size_t errstr_size);

/* Loader thread: asks the registry where the challenger alias points and,
 * when that changed, prepares the version (load, check, warm up) and leaves it
 * for sn_scorer_challenger_swap; a refused version is counted and logged, an
 * unset alias drops the challenger (said once). A no-op when the mode is off;
 * NULL-safe. */
void sn_scorer_challenger_poll(sn_scorer_challenger_t *c);

/* Scoring thread, between batches: takes what the loader prepared. */
void sn_scorer_challenger_swap(sn_scorer_challenger_t *c);

/* Scores the challenger's share of a batch of n events (evs, partitions,
 * offsets borrowed, as for sn_feature_redis_apply_batch): every event in
 * shadow, the canary machines' in canary, with the challenger's own features
 * and model. scores (borrowed, n) holds production's scores; in canary mode
 * the canary events' entries are replaced by the challenger's, which then
 * serves them (sn_scorer_challenger_serves). production is borrowed for the
 * call (its threshold, for the agreement metrics). 0, or a negative sn_err:
 * SN_ERR_TRANSIENT when Redis is unavailable (retry the same batch: the
 * feature updates are idempotent per offset). A no-op without a challenger. */
int sn_scorer_challenger_score(sn_scorer_challenger_t *c, const sn_scorer_version_t *production,
                               const sn_event_t *evs, const int32_t *partitions,
                               const int64_t *offsets, size_t n, float *scores, char *errstr,
                               size_t errstr_size);

/* The challenger version when it serves event j of the batch last scored (a
 * canary machine), else NULL; with row (may be NULL) set to the event's
 * feature vector in the challenger's spec (borrowed until the next batch). */
const sn_scorer_version_t *sn_scorer_challenger_serves(const sn_scorer_challenger_t *c, size_t j,
                                                       const float **row);

/* Shadow mode: sends the challenger's score record of each of the n events of
 * the batch last scored to topic.shadow through producer (borrowed), keyed by
 * machine; batch and rec_of (borrowed) give each event's source record. 0 or
 * the producer's negative sn_err. A no-op in the other modes. */
int sn_scorer_challenger_sinks(sn_scorer_challenger_t *c, sn_producer_t *producer,
                               const sn_batch_t *batch, const sn_event_t *evs, const size_t *rec_of,
                               size_t n, char *errstr, size_t errstr_size);

/* The serving challenger's version into buf (empty when none). */
void sn_scorer_challenger_version(const sn_scorer_challenger_t *c, char *buf, size_t size);

/* NULL-safe. Call after the loader thread stopped. */
void sn_scorer_challenger_destroy(sn_scorer_challenger_t *c);

#endif
