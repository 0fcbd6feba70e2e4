/* consumer.h: the consumer runtime shared by the scorer and the archiver.
 *
 * A Kafka consumer-group member that hands out bounded micro-batches (flushed on
 * count or age) and stores offsets only when the caller says a batch is done,
 * so nothing is committed before its side effects are durable (at-least-once).
 * While a dependency is down the caller keeps its batch and calls
 * sn_consumer_pause(): the consumer stops fetching (memory stays bounded) but
 * keeps serving the group protocol, so it is not kicked out. When a rebalance
 * takes partitions away, the batch in hand keeps their records (processing them
 * again is harmless: side effects are idempotent) but their offsets are not
 * stored: the new owner gets them again. */
#ifndef SN_CONSUMER_H
#define SN_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"

typedef struct sn_consumer sn_consumer_t;

/* A batch's next offsets and the group's metadata, for a transactional
 * producer; defined in common/kafka.h. */
typedef struct sn_kafka_offsets sn_kafka_offsets_t;

/* One consumed record; every pointer is borrowed from the consumer and valid
 * until the batch is released. */
typedef struct sn_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* broker/producer timestamp, -1 when none */
    const void *key;
    size_t keylen;
    const void *value;
    size_t len;
    void *msg; /* the librdkafka message, owned by the batch */
} sn_record_t;

typedef struct sn_batch {
    sn_record_t *records;
    size_t n;
    size_t cap;
} sn_batch_t;

typedef struct sn_consumer_opts {
    const char *group_id;      /* consumer group */
    const char *const *topics; /* subscribed topics (borrowed for the call) */
    size_t ntopics;
    const char *bootstrap;    /* overrides kafka.bootstrap.servers when not NULL */
    size_t batch_max_records; /* bound on a batch */
    int batch_max_ms;         /* age bound: a partial batch is returned after this */
    /* Called from sn_consumer_poll_batch() when partitions are revoked or lost,
     * before they go; the archiver closes their files here. May be NULL. */
    void (*on_revoke)(void *opaque, const char *topic, int32_t partition);
    void *opaque;
    /* Offsets are committed by a transactional producer along with the
     * batch's outputs (sn_consumer_batch_offsets), never by the consumer:
     * auto-commit is off. */
    int transactional;
} sn_consumer_opts_t;

/* Joins the group (asynchronously: the assignment arrives during polls).
 * conf is borrowed. NULL with errstr set on a bad config. */
sn_consumer_t *sn_consumer_new(const sn_conf_t *conf, const sn_consumer_opts_t *opts, char *errstr,
                               size_t errstr_size);

/* Leaves the group cleanly (commits what was stored) and frees. NULL-safe. */
void sn_consumer_destroy(sn_consumer_t *c);

/* Fills batch (emptied first) with up to batch_max_records records, returning
 * when it is full, when batch_max_ms passed since its first record, or after
 * timeout_ms with nothing. Partition EOFs and transient broker errors are
 * logged, not returned. Returns the number of records, or a negative sn_err
 * for a fatal consumer error. */
int sn_consumer_poll_batch(sn_consumer_t *c, sn_batch_t *batch, int timeout_ms);

/* Stores the offsets after every record in batch (per partition, the highest
 * offset + 1) and asks for an asynchronous commit; then releases the batch's
 * messages. Offsets of partitions revoked meanwhile are not stored. */
int sn_consumer_commit_batch(sn_consumer_t *c, sn_batch_t *batch, char *errstr, size_t errstr_size);

/* Exactly-once: sets *out (caller frees with sn_consumer_offsets_destroy) to
 * the offsets after every record in batch, per partition, with the group's
 * metadata, for sn_producer_txn_commit. SN_ERR_TRANSIENT when a partition of
 * the batch was revoked while it was processed: its new owner processes those
 * records, so this transaction must be aborted, not committed without them. */
int sn_consumer_batch_offsets(sn_consumer_t *c, const sn_batch_t *batch, sn_kafka_offsets_t **out,
                              char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_consumer_offsets_destroy(sn_kafka_offsets_t *o);

/* After an aborted transaction: moves every partition of batch back to the
 * batch's first record there, so that the next polls deliver the same records
 * again, then releases the batch. Partitions revoked meanwhile are skipped
 * (their committed offset is where the new owner starts). */
void sn_consumer_rewind(sn_consumer_t *c, sn_batch_t *batch);

/* Releases the batch's messages without storing offsets. */
void sn_consumer_release_batch(sn_batch_t *batch);

/* Frees the batch's record array (after the last use). */
void sn_batch_free(sn_batch_t *batch);

/* Stops (1) or resumes (0) fetching on every assigned partition. */
void sn_consumer_pause(sn_consumer_t *c, int paused);

/* Serves the group protocol and rebalances without taking records; call it
 * while paused. batch is unused (may be NULL). */
void sn_consumer_serve(sn_consumer_t *c, sn_batch_t *batch, int timeout_ms);

/* Synchronous commit of stored offsets (at shutdown). */
int sn_consumer_commit_sync(sn_consumer_t *c);

/* Number of partitions assigned now. */
int sn_consumer_assigned(const sn_consumer_t *c);

/* Consumer lag per assigned partition, summed (high watermark - position), or -1
 * when unknown. */
int64_t sn_consumer_lag(sn_consumer_t *c);

#endif
