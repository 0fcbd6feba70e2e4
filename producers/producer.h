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

/* Flushes for at most flush_ms, then destroys. NULL-safe. */
void sn_producer_destroy(sn_producer_t *p, int flush_ms);

/* Enqueues one record (key, value and headers are copied). partition < 0 lets
 * the partitioner choose by key. Blocks, serving delivery reports, while the
 * local queue is full, for at most timeout_ms; returns SN_ERR_TRANSIENT when it
 * is still full then, SN_ERR_INVALID for a record the broker can never take. */
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
