/* container.h: reading the archive's Avro object container files.
 *
 * The archiver (consumers/archive_file.c) writes one container per object:
 * the header (magic, {avro.schema, avro.codec}, a sync marker), then blocks
 * of datums, "null" or "snappy" (raw snappy plus the big-endian CRC-32 of the
 * uncompressed block). The header schema is the archive schema: the writer's
 * record plus kafka_partition, kafka_offset and kafka_timestamp, or
 * sentinel.archive.RawRecord for records that were not valid frames.
 *
 * Our own reader, not avro-c's file reader: avro-c 1.11.1 reads whole blocks
 * into avro values with its unchecked allocations (schemas/README.md,
 * defects 1-4) and has no way to hand a datum to our validator first. Here
 * every block is bounds-checked, decompressed into a capped buffer, CRC
 * checked, and every datum walked by the validator before the codec decodes
 * it against the reader schema, as a Kafka frame would be.
 *
 * Errors: SN_ERR_IO when the object itself is damaged (truncated, bad magic,
 * bad sync marker, bad CRC, a datum running past its block): nothing more is
 * read from it. SN_ERR_INVALID for one record the codec refuses (a bad key, a
 * NaN): that record is skipped and the next call goes on. A container is used
 * by one thread at a time, with the codec it was opened with. */
#ifndef SN_SCHEMAS_CONTAINER_H
#define SN_SCHEMAS_CONTAINER_H

#include <stddef.h>
#include <stdint.h>

#include "schemas/codec.h"

#define SN_CONTAINER_BLOCK_MAX (64u * 1024 * 1024) /* uncompressed bytes of one block */

typedef struct sn_container sn_container_t;

/* Where an archived record came from (the appended fields). */
typedef struct sn_container_meta {
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* Kafka timestamp, -1 when it had none */
} sn_container_meta_t;

/* Opens the container in buf[0..len) (borrowed: must outlive the handle);
 * name (copied) is used in messages. codec is borrowed and must outlive the
 * handle. NULL with errstr (naming name) when the header is unusable. */
sn_container_t *sn_container_open(sn_codec_t *codec, const void *buf, size_t len, const char *name,
                                  char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_container_destroy(sn_container_t *c);

/* 1 when the file holds sentinel.archive.RawRecord (records that were not
 * valid frames when archived). */
int sn_container_is_raw(const sn_container_t *c);

/* The header schema's record name ("Telemetry", "Score", "RawRecord");
 * borrowed. */
const char *sn_container_schema_name(const sn_container_t *c);

/* The next record as a telemetry event (or a score). Returns 1 with *ev and
 * *meta (meta may be NULL) filled, 0 at the end, or a negative sn_err (see
 * above). */
int sn_container_next_event(sn_container_t *c, sn_event_t *ev, sn_container_meta_t *meta,
                            char *errstr, size_t errstr_size);
int sn_container_next_score(sn_container_t *c, sn_score_t *sc, sn_container_meta_t *meta,
                            char *errstr, size_t errstr_size);

/* Snappy block decompression, exposed for tests: src[0..n) into a buffer
 * allocated here (*out, caller frees with free()) of *out_len bytes, at most
 * max bytes. SN_ERR_INVALID on malformed input, SN_ERR_NOMEM over max. */
int sn_container_unsnappy(const uint8_t *src, size_t n, size_t max, uint8_t **out, size_t *out_len);

#endif
