/* feature_redis.h: the online feature backend, with the state in Redis.
 *
 * Each machine's state lives in one hash, <prefix>:{<machine>}:<layout>
 * (buckets, watermark, last values, late-drop count, last applied offset per
 * partition, a version token), with a TTL; the hash tag keeps any future
 * per-machine key in the same Redis Cluster slot. One Lua script call per
 * machine per batch updates it atomically and idempotently (an offset at or
 * below the stored one is a redelivery and changes nothing; with the undo
 * record on, a redo of the machine's last call from its start undoes and
 * re-applies it, so an aborted Kafka transaction's batch gets the same vectors
 * again); the calls for all machines of a batch are pipelined, so a batch
 * costs one round trip. The compare-and-set calls below (the usual case) are
 * combined, up to redis.cas.machines.max machines per script call, since
 * Redis's cost is per call: a batch of a large fleet has about one event per
 * machine. With the undo record on, each machine keeps its own call.
 *
 * The window maths runs in C, the in-memory engine's code, so the vectors
 * equal the in-memory backend's bit for bit. Usually this process holds an
 * exact copy of a machine's state (feature.cache.machines): it applies the
 * events to the copy and the script only stores the result, after checking
 * that the stored version is the copy's (compare-and-set). Without a current
 * copy (first sight, another scorer wrote since, a restart) the script applies
 * the events itself, with the same IEEE operations, and returns the pre-batch
 * state for C to replay. See scoring/features.md.
 *
 * It also keeps the scorer's alert state records (sn_feature_redis_alert_*),
 * next to each machine's feature state, on the same connection.
 *
 * Only this module includes hiredis. Not thread-safe: one handle per thread. */
#ifndef SN_FEATURE_REDIS_H
#define SN_FEATURE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "schemas/event.h"
#include "scoring/features.h"

/* Events per batch accepted by sn_feature_redis_apply_batch. */
#define SN_FEATURE_REDIS_BATCH_MAX 100000
/* Events of one machine per script call; more are split over several round
 * trips. */
#define SN_FEATURE_REDIS_CALL_MAX 1000

typedef struct sn_feature_redis sn_feature_redis_t;

typedef struct sn_feature_redis_stats {
    uint64_t batches;      /* apply_batch calls that succeeded */
    uint64_t calls;        /* script calls (per batch: one per machine, but one per up to
                              redis.cas.machines.max compare-and-sets) */
    uint64_t round_trips;  /* pipelines sent */
    uint64_t reconnects;   /* connections opened after the first */
    uint64_t script_loads; /* SCRIPT LOADs, after connecting or a NOSCRIPT */
    uint64_t cache_hits;   /* calls stored the result computed from the copy */
    uint64_t cache_misses; /* calls with a copy that returned the state instead */
    uint64_t multi_calls;  /* calls (among calls) that stored many machines' results */
    uint64_t cas_moved;    /* machines of those whose stored version had moved: sent
                              again as a plain call */
    uint64_t applied, redelivered, dropped_late; /* events */
} sn_feature_redis_stats_t;

/* Creates the backend. conf is borrowed for the call (redis.url,
 * redis.username, redis.password, redis.timeout.ms, redis.key.prefix,
 * redis.cas.machines.max, feature.state.ttl.s, feature.cache.machines); spec is borrowed, must be
 * bound and must outlive the handle. Does not connect: the first batch does,
 * so a Redis that is not up yet is a transient error there rather than a
 * failed start. NULL with errstr for a bad URL or a TTL shorter than the
 * spec's retention. */
sn_feature_redis_t *sn_feature_redis_new(const sn_conf_t *conf, const sn_feature_spec_t *spec,
                                         char *errstr, size_t errstr_size);

/* As sn_feature_redis_new, with the key prefix given (borrowed for the call)
 * instead of redis.key.prefix. */
sn_feature_redis_t *sn_feature_redis_new_prefix(const sn_conf_t *conf,
                                                const sn_feature_spec_t *spec, const char *prefix,
                                                char *errstr, size_t errstr_size);

/* Applies a batch of n events (borrowed; any mix of machines, each machine's
 * events in the order given) and writes every event's vector to out
 * (caller-owned, n * nfeatures floats, row-major) and its SN_FEATURES_* bits
 * to flags (caller-owned, n bytes; may be NULL). partitions and offsets
 * (borrowed, n each) are the events' Kafka coordinates; offsets NULL or an
 * offset < 0 means no redelivery tracking for that event, partitions NULL
 * means partition 0.
 *
 * Returns 0, or:
 *   SN_ERR_INVALID   a bad event (empty machine id, time beyond +-2^53 ms,
 *                    too few values, offset >= 2^53) or n too large: nothing
 *                    was sent;
 *   SN_ERR_TRANSIENT Redis unreachable, timed out, loading, busy or out of
 *                    memory: pause and retry the same batch (the script is
 *                    idempotent per offset, so a retry after a partial
 *                    failure is safe; see features.md for the vectors that
 *                    events applied by the failed attempt then get); the
 *                    connection is reopened on the next call;
 *   SN_ERR_FATAL     the script failed, authentication failed, or the state
 *                    in Redis disagrees with the replay: exit.
 * out and flags are complete only when 0 is returned. */
int sn_feature_redis_apply_batch(sn_feature_redis_t *r, const sn_event_t *evs,
                                 const int32_t *partitions, const int64_t *offsets, size_t n,
                                 float *out, uint8_t *flags, char *errstr, size_t errstr_size);

/* Writes the name of machine_id's state hash into buf (caller-owned):
 * <prefix>:{<machine id, '%' and '}' escaped>}:<layout id, 8 hex>. Returns
 * the length, or SN_ERR_INVALID for an empty id, SN_ERR_NOMEM when buf is too
 * small. */
int sn_feature_redis_key(const sn_feature_redis_t *r, const char *machine_id, char *buf,
                         size_t size);

/* Reads the persisted alert state of n machines (ids borrowed),
 * <prefix>:{<machine>}:alert, and the decided offsets of np partitions of
 * topic (borrowed), <prefix>:alert-decided:<topic>:<partition>, in one
 * pipelined round trip. vals (caller-owned, n * val_size bytes) gets each
 * record's text, "" when there is none; decided (caller-owned, np) each
 * offset, -1 when there is none. 0, or SN_ERR_TRANSIENT (retry, as for
 * apply_batch), SN_ERR_INVALID for a bad id, SN_ERR_FATAL for a value that is
 * not a record. */
int sn_feature_redis_alert_load(sn_feature_redis_t *r, const char *const *machines, size_t n,
                                char *vals, size_t val_size, const char *topic,
                                const int32_t *partitions, int64_t *decided, size_t np,
                                char *errstr, size_t errstr_size);

/* Writes the alert state of n machines (ids and record texts borrowed) and
 * then the decided offsets of np partitions of topic (all borrowed), in one
 * pipelined round trip, each with feature.state.ttl.s. A stored record of a
 * later batch of the same partition (a higher first offset) is kept, so a
 * late write from a scorer that lost the partition cannot undo its new
 * owner's; a decided offset only grows. Idempotent, so a retry after
 * SN_ERR_TRANSIENT is safe. */
int sn_feature_redis_alert_store(sn_feature_redis_t *r, const char *const *machines,
                                 const char *const *vals, size_t n, const char *topic,
                                 const int32_t *partitions, const int64_t *decided, size_t np,
                                 char *errstr, size_t errstr_size);

/* Keeps (on != 0) an undo record of each machine's last update in its hash,
 * so that a batch redone from the start of a machine's last update (an
 * aborted Kafka transaction's) undoes and re-applies it and gets the vectors
 * it had, instead of redelivered-event vectors computed from a state that
 * already holds it. Off by default: it costs Redis about twice the CPU per
 * call (the previous values are read and stored); the exactly-once scorer
 * turns it on. A record is void once anything else writes the hash. */
void sn_feature_redis_set_undo(sn_feature_redis_t *r, int on);

/* Copies the counters into *out. */
void sn_feature_redis_stats(const sn_feature_redis_t *r, sn_feature_redis_stats_t *out);

/* Closes the connection and frees the handle. NULL-safe. */
void sn_feature_redis_destroy(sn_feature_redis_t *r);

#endif
