/* event.h: one telemetry event as the pipeline sees it after decoding.
 *
 * Flat and fixed-size so that a batch is one array with no allocation per event.
 * Any reader schema maps onto it: the key field (a string) becomes machine_id,
 * the timestamp field becomes ts_ms, and every other numeric field (int, long,
 * float, double, boolean, or an enum as its symbol index) becomes values[i] in
 * the order of the reader schema (sn_codec_field_name() names them). A null in
 * an optional field is NaN; a NaN or infinity on the wire is rejected by the
 * decoder, so NaN here always means "absent". */
#ifndef SN_EVENT_H
#define SN_EVENT_H

#include <stdint.h>

#define SN_EVENT_ID_MAX 64     /* machine id bytes, NUL included */
#define SN_EVENT_FIELDS_MAX 32 /* numeric fields per event */
#define SN_EVENT_TAGS_MAX 16   /* entries of the optional tags map */
#define SN_EVENT_TAG_MAX 64    /* tag key or value bytes, NUL included */

typedef struct sn_event_tag {
    char key[SN_EVENT_TAG_MAX];
    char value[SN_EVENT_TAG_MAX];
} sn_event_tag_t;

typedef struct sn_event {
    char machine_id[SN_EVENT_ID_MAX];
    int64_t ts_ms; /* event time, Unix epoch milliseconds */
    uint32_t nvalues;
    double values[SN_EVENT_FIELDS_MAX];
    uint32_t ntags;
    sn_event_tag_t tags[SN_EVENT_TAGS_MAX];
} sn_event_t;

#endif
