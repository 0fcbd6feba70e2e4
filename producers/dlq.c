#include "producers/dlq.h"

#include <stdio.h>
#include <string.h>

int sn_dlq_send(sn_producer_t *p, const char *topic, const sn_dlq_record_t *rec, char *errstr,
                size_t errstr_size) {
    char part[16], off[24], sid[16];
    sn_producer_header_t h[6];

    snprintf(part, sizeof(part), "%d", (int)rec->partition);
    snprintf(off, sizeof(off), "%lld", (long long)rec->offset);
    snprintf(sid, sizeof(sid), "%d", (int)rec->schema_id);
    h[0] =
        (sn_producer_header_t){"sentinel.error.class", rec->error_class, strlen(rec->error_class)};
    h[1] = (sn_producer_header_t){"sentinel.error.message", rec->error_message,
                                  strlen(rec->error_message)};
    h[2] = (sn_producer_header_t){"sentinel.source.topic", rec->source_topic,
                                  strlen(rec->source_topic)};
    h[3] = (sn_producer_header_t){"sentinel.source.partition", part, strlen(part)};
    h[4] = (sn_producer_header_t){"sentinel.source.offset", off, strlen(off)};
    h[5] = (sn_producer_header_t){"sentinel.schema.id", sid, strlen(sid)};
    /* Partition by key: the DLQ may have fewer partitions than the source. */
    return sn_producer_send(p, topic, -1, rec->key, rec->keylen, rec->value, rec->len, h, 6, 30000,
                            errstr, errstr_size);
}
