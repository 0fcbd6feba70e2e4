/* producer.h: a bounded, idempotent Kafka producer that counts deliveries.
 *
 * One wrapper for every producer in Sentinel (telemetry, alerts, scores, dead
 * letters): idempotence on, delivery reports counted, and a full local queue
 * turned into back-pressure (poll and retry, bounded) instead of an error, so a
 * slow broker slows the caller down rather than losing events. */
#ifndef SN_PRODUCER_H
#define SN_PRODUCER_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"

typedef struct sn_producer sn_producer_t;

/* A consumer's position and group metadata, made by the consumer runtime
 * (sn_consumer_batch_offsets) for a transaction; defined in common/kafka.h. */
typedef struct sn_kafka_offsets sn_kafka_offsets_t;

typedef struct sn_producer_stats {
    uint64_t enqueued;  /* accepted by sn_producer_send */
    uint64_t delivered; /* acknowledged by the broker */
    uint64_t failed;    /* delivery failed permanently */
} sn_producer_stats_t;

/* One Kafka record header; name and value are borrowed for the call. */
typedef struct sn_producer_header {
    const char *name;
    const void *value;
    size_t len;
} sn_producer_header_t;

/* Creates a producer from the kafka.* keys of conf (borrowed; only read here).
 * bootstrap overrides kafka.bootstrap.servers when not NULL (the embedded mock
 * cluster). Returns NULL with errstr set on a bad config. */
sn_producer_t *sn_producer_new(const sn_conf_t *conf, const char *bootstrap, char *errstr,
                               size_t errstr_size);

/* Exactly-once outputs: a transactional producer, with transactional_id
 * (borrowed for the call) unique per running instance and stable across its
 * restarts. Initialising fences any older producer with the same id and
 * aborts the transaction it left open; waits at most timeout_ms for that.
 * NULL with errstr on a bad config, or when the broker cannot be reached or
 * refuses. Records sent between sn_producer_txn_begin and
 * sn_producer_txn_commit become visible to read_committed consumers together,
 * or not at all. */
sn_producer_t *sn_producer_new_transactional(const sn_conf_t *conf, const char *bootstrap,
                                             const char *transactional_id, int timeout_ms,
                                             char *errstr, size_t errstr_size);

/* Starts a transaction (local: nothing is sent until the first record).
 * SN_ERR_FATAL when the producer is fenced or dead. */
int sn_producer_txn_begin(sn_producer_t *p, char *errstr, size_t errstr_size);

/* Adds offsets (borrowed; NULL or empty: none) to the transaction, flushes its
 * records and commits. Returns 0 when committed; SN_ERR_TRANSIENT when the
 * transaction had to be aborted (a failed delivery, a rebalance, a timeout):
 * it is aborted on return, none of its records or offsets will be seen, and
 * the caller redoes the batch; SN_ERR_FATAL when fenced by a newer instance
 * with the same transactional id (exit: the supervisor restarts). */
int sn_producer_txn_commit(sn_producer_t *p, const sn_kafka_offsets_t *offsets, char *errstr,
                           size_t errstr_size);

/* Aborts the transaction in progress: its records are discarded. 0, or
 * SN_ERR_FATAL when even that failed. */
int sn_producer_txn_abort(sn_producer_t *p, char *errstr, size_t errstr_size);

/* Flushes for at most flush_ms, then destroys. NULL-safe. */
void sn_producer_destroy(sn_producer_t *p, int flush_ms);

/* Enqueues one record (key, value and headers are copied). partition < 0 lets
 * the partitioner choose by key. Blocks, serving delivery reports, while the
 * local queue is full, for at most timeout_ms; returns SN_ERR_TRANSIENT when it
 * is still full then (or, transactional, when the transaction must be
 * aborted), SN_ERR_INVALID for a record the broker can never take,
 * SN_ERR_FATAL when the producer is dead (fenced). */
int sn_producer_send(sn_producer_t *p, const char *topic, int32_t partition, const void *key,
                     size_t keylen, const void *value, size_t len,
                     const sn_producer_header_t *headers, size_t nheaders, int timeout_ms,
                     char *errstr, size_t errstr_size);

/* Serves delivery reports without blocking longer than timeout_ms. */
void sn_producer_poll(sn_producer_t *p, int timeout_ms);

/* Waits until every enqueued record is delivered or failed, for at most
 * timeout_ms. Returns 0 when nothing is left in flight, SN_ERR_TRANSIENT
 * otherwise. */
int sn_producer_flush(sn_producer_t *p, int timeout_ms);

void sn_producer_stats(const sn_producer_t *p, sn_producer_stats_t *out);

/* The first delivery error seen, or "" (borrowed). */
const char *sn_producer_last_error(const sn_producer_t *p);

#endif
