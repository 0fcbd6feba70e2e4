/* dlq.h: dead-lettering a record that cannot be processed.
 *
 * The dead-letter record keeps the original key and value bytes untouched and
 * says why in headers, so an operator can read the reason with any Kafka tool
 * (`kcat -f '%h'`) and replay the record once the cause is fixed:
 *   sentinel.error.class      stable lower-case class ("bad_magic", ...)
 *   sentinel.error.message    the decoder's message
 *   sentinel.source.topic     where the record was read
 *   sentinel.source.partition decimal
 *   sentinel.source.offset    decimal
 *   sentinel.schema.id        decimal writer schema id, -1 when the frame had none */
#ifndef SN_DLQ_H
#define SN_DLQ_H

#include <stddef.h>
#include <stdint.h>

#include "producers/producer.h"

typedef struct sn_dlq_record {
    const char *source_topic;
    int32_t partition;
    int64_t offset;
    const void *key;
    size_t keylen;
    const void *value;
    size_t len;
    const char *error_class;
    const char *error_message;
    int32_t schema_id;
} sn_dlq_record_t;

/* Enqueues the dead letter on topic, partitioned by the original key (the DLQ
 * may have fewer partitions than the source). Everything is copied. Same
 * returns as sn_producer_send. */
int sn_dlq_send(sn_producer_t *p, const char *topic, const sn_dlq_record_t *rec, char *errstr,
                size_t errstr_size);

#endif
