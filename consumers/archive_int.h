/* archive_int.h (internal to consumers/): the pieces of the archiver.
 *
 *   archive_file.c  what a record becomes in the archive (the archive schema of
 *                   each writer schema id, the encoding of a record under it),
 *                   the Avro object container file writer (snappy), and the
 *                   object key layout
 *   archive_sink.c  where a closed file goes: s3://bucket/prefix or file://DIR
 *   archiver.c      the loop: consume, rotate, upload, commit
 *
 * Exposed here (not in archiver.h) for the unit tests. */
#ifndef SN_ARCHIVE_INT_H
#define SN_ARCHIVE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "consumers/consumer.h"

/* ---- keys ------------------------------------------------------------------ */

#define SN_ARCHIVE_KEY_MAX 1024

/* Writes "<prefix>/<topic>/dt=YYYY-MM-DD/hour=HH/partition=P/" (prefix and its
 * slash left out when prefix is "") for the UTC hour of ts_ms (a negative
 * timestamp counts as 0). Returns the length or SN_ERR_NOMEM. */
int sn_archive_dir(char *out, size_t size, const char *prefix, const char *topic, int64_t ts_ms,
                   int32_t partition);

/* Writes the object key: the dir above and "<first>-<last>.avro", offsets in 20
 * zero-padded digits so names sort by offset. Returns the length or
 * SN_ERR_NOMEM. */
int sn_archive_key(char *out, size_t size, const char *prefix, const char *topic, int64_t ts_ms,
                   int32_t partition, int64_t first, int64_t last);

/* Parses a file name (the part after the last '/') "<first>-<last>.avro";
 * 0 or SN_ERR_INVALID. */
int sn_archive_parse_name(const char *name, int64_t *first, int64_t *last);

/* ---- archive schemas and record encoding -------------------------------------
 *
 * A record whose value is a Confluent frame (magic 0, schema id, Avro binary)
 * that validates against its writer schema is archived with the archive
 * schema of that id: the writer's record schema with three fields appended,
 * kafka_partition (int), kafka_offset (long) and kafka_timestamp (long,
 * timestamp-millis). Avro encodes a record as its fields in order, so the
 * archived datum is the frame's Avro bytes followed by the three values:
 * nothing is decoded and re-encoded. A writer schema that is not a record, or
 * has a field of those names, is wrapped: {value: <writer schema>, kafka_...}.
 *
 * Every other record (not a frame, unknown id, bytes that do not validate,
 * a null value) is archived with the raw schema sentinel.archive.RawRecord:
 * key and value as bytes, the reason, and the same three fields. So every
 * offset ends up in the archive, and a reader finds partition and offset in
 * each record. */

#define SN_ARCHIVE_RAW_ID (-1)
#define SN_ARCHIVE_KINDS_MAX 1024 /* writer schema ids remembered */

typedef struct sn_archive_schemas sn_archive_schemas_t;
typedef struct sn_archive_kind sn_archive_kind_t; /* owned by the schemas cache */

/* A reusable output buffer, grown as needed up to max bytes. */
typedef struct sn_archive_buf {
    uint8_t *p;
    size_t len, cap, max;
} sn_archive_buf_t;

/* Reads writer schemas through the schema.* keys of conf (the local schema
 * directory or a Schema Registry); conf is borrowed for the call. */
sn_archive_schemas_t *sn_archive_schemas_new(const sn_conf_t *conf, char *errstr,
                                             size_t errstr_size);

/* NULL-safe. */
void sn_archive_schemas_destroy(sn_archive_schemas_t *s);

/* Encodes r (borrowed) as one archive datum into out (emptied first) and sets
 * *kind (borrowed from s). Returns 0; SN_ERR_TRANSIENT when the schema
 * registry cannot be reached (retry later, do not archive as raw);
 * SN_ERR_NOMEM when the datum is over out->max. *invalid is set to 1 when
 * the record went raw. */
int sn_archive_encode(sn_archive_schemas_t *s, const sn_record_t *r, sn_archive_buf_t *out,
                      const sn_archive_kind_t **kind, int *invalid, char *errstr,
                      size_t errstr_size);

/* The writer schema id of a kind, or SN_ARCHIVE_RAW_ID. */
int32_t sn_archive_kind_id(const sn_archive_kind_t *k);

/* The archive schema of a kind as JSON text (borrowed). */
const char *sn_archive_kind_schema(const sn_archive_kind_t *k);

void sn_archive_buf_free(sn_archive_buf_t *b);

/* ---- Avro object container files ----------------------------------------------
 *
 * Our own writer, not avro-c's: avro-c 1.11.1 re-serialises the schema into
 * the file header and drops logicalType and doc attributes (so "ts" would no
 * longer read as a timestamp in Spark or Athena), and it refuses a record
 * larger than its block. Ours writes the archive schema text as is, snappy
 * blocks (the Avro snappy codec: raw snappy, then the big-endian CRC-32 of the
 * uncompressed block), a sync marker derived from the file's identity, and
 * grows a block to fit one large record. */

typedef struct sn_archive_file sn_archive_file_t;

/* Creates path (truncated) and writes the header for schema_json (borrowed for
 * the call). seed makes the sync marker (use topic, partition, first offset so
 * that rewriting the same records gives the same bytes). block_bytes is the
 * uncompressed block size. NULL with errstr on an I/O error. */
sn_archive_file_t *sn_archive_file_open(const char *path, const char *schema_json, uint64_t seed,
                                        size_t block_bytes, char *errstr, size_t errstr_size);

/* Appends one encoded datum (borrowed). A full block is compressed and
 * written first. */
int sn_archive_file_append(sn_archive_file_t *f, const void *datum, size_t len, char *errstr,
                           size_t errstr_size);

/* Estimated size of the finished file if closed now, in bytes. */
int64_t sn_archive_file_size(const sn_archive_file_t *f);

/* Records appended so far. */
int64_t sn_archive_file_records(const sn_archive_file_t *f);

/* Writes the last block, closes and frees f (also on error); the file stays at
 * its path. Returns 0 or SN_ERR_IO. */
int sn_archive_file_close(sn_archive_file_t *f, char *errstr, size_t errstr_size);

/* Closes, removes the file and frees f. NULL-safe. */
void sn_archive_file_discard(sn_archive_file_t *f);

/* Snappy compression (the block format), exposed for tests: compresses
 * src[0..n) into dst, which must hold sn_archive_snappy_bound(n) bytes, and
 * returns the compressed length. */
size_t sn_archive_snappy_bound(size_t n);
size_t sn_archive_snappy_compress(const uint8_t *src, size_t n, uint8_t *dst);

/* CRC-32 (IEEE, as zlib's crc32) of buf[0..n). */
uint32_t sn_archive_crc32(const void *buf, size_t n);

/* ---- sinks ------------------------------------------------------------------ */

typedef struct sn_archive_sink sn_archive_sink_t;

/* Parses url (s3://bucket[/prefix] or file://DIR; borrowed) and prepares the
 * sink; an S3 sink reads the s3.* keys of conf (borrowed for the call). Does
 * not contact S3. */
sn_archive_sink_t *sn_archive_sink_new(const sn_conf_t *conf, const char *url, char *errstr,
                                       size_t errstr_size);

/* NULL-safe. */
void sn_archive_sink_destroy(sn_archive_sink_t *s);

/* The key prefix ("" when none) and a printable location ("s3://b/p",
 * "file:///abs/dir"); borrowed. */
const char *sn_archive_sink_prefix(const sn_archive_sink_t *s);
const char *sn_archive_sink_location(const sn_archive_sink_t *s);

/* Checks that the sink can be used: the folder can be created, or the bucket
 * listed. SN_ERR_TRANSIENT when S3 cannot be reached (the caller may go on),
 * another error when it never will be (no such bucket, access denied). */
int sn_archive_sink_probe(sn_archive_sink_t *s, char *errstr, size_t errstr_size);

/* Stores the local file at path (borrowed) under key. Visible whole or not at
 * all: S3 makes an object visible when its upload completes; the file sink
 * writes ".<name>.tmp" in the target folder, fsyncs, renames, fsyncs the
 * folder. Putting the same key again replaces the object. */
int sn_archive_sink_put(sn_archive_sink_t *s, const char *key, const char *path, char *errstr,
                        size_t errstr_size);

/* Looks in dir (from sn_archive_dir) for an object whose name starts with
 * first; sets *last to its last offset (the largest when several). Returns 0,
 * SN_ERR_NOENT when there is none, or the sink's error. */
int sn_archive_sink_find(sn_archive_sink_t *s, const char *dir, int64_t first, int64_t *last,
                         char *errstr, size_t errstr_size);

/* Removes key (no error when it is not there). */
int sn_archive_sink_delete(sn_archive_sink_t *s, const char *key, char *errstr, size_t errstr_size);

/* Retries the sink's client made on its own so far (S3 only). */
uint64_t sn_archive_sink_retries(const sn_archive_sink_t *s);

#endif
