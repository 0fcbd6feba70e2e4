/* codec.h: Avro encode/decode of Sentinel records in the Confluent wire format.
 *
 * A frame is the magic byte 0, the writer schema id as 4 bytes big-endian, then
 * the record in Avro binary written with that schema. The decoder finds the
 * writer schema by id (the local schema directory, see schemas/ids, or a
 * Confluent-compatible Schema Registry when schema.registry.url is set; found
 * schemas are cached forever since ids are immutable), resolves it to the
 * reader schema (schema.reader) by the Avro rules, and fills an sn_event_t:
 * the key field becomes machine_id, the time field ts_ms, every numeric field
 * a slot of values[] in reader-schema order, and a "tags" map the tags. See
 * schemas/README.md for the rules and the schema id mapping.
 *
 * Input is untrusted: every malformed frame yields SN_ERR_INVALID, a class
 * (below) and a message, never a crash or an allocation above
 * schema.max.alloc.bytes. The frame is first walked against the writer
 * schema without allocating (every length checked against the bytes left),
 * then decoded by avro-c with its allocator capped as a backstop.
 *
 * Threads: an sn_codec_t is used by one thread at a time (it reuses its avro
 * values and buffers between calls); use one codec per thread. Distinct codecs
 * may be used concurrently. The first sn_codec_new() installs a process-wide
 * avro-c allocator (avro_set_allocator) that passes through to realloc/free
 * and refuses large requests only on a thread that is inside a decode call,
 * so other avro-c users in the process are unaffected. */
#ifndef SN_SCHEMAS_CODEC_H
#define SN_SCHEMAS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"
#include "schemas/event.h"

/* Why a frame was rejected. The names from sn_codec_error_class_str() are
 * stable: they are written as dead-letter header values. */
enum sn_codec_error_class {
    SN_CODEC_OK = 0,
    SN_CODEC_BAD_MAGIC,           /* "bad_magic": first byte is not 0 */
    SN_CODEC_UNKNOWN_SCHEMA,      /* "unknown_schema": no writer schema has this id */
    SN_CODEC_INCOMPATIBLE_SCHEMA, /* "incompatible_schema": writer schema invalid, or it
                                     cannot be resolved to the reader schema */
    SN_CODEC_TRUNCATED,           /* "truncated": the data ends inside the record */
    SN_CODEC_TRAILING_BYTES,      /* "trailing_bytes": bytes left after the record */
    SN_CODEC_BAD_LENGTH,          /* "bad_length": negative or impossible length or count */
    SN_CODEC_BAD_VALUE,           /* "bad_value": NaN/infinite number, enum or union index
                                     out of range, bad boolean or varint, invalid UTF-8,
                                     negative timestamp */
    SN_CODEC_BAD_KEY,             /* "bad_key": machine id empty, over 63 bytes, not UTF-8,
                                     or with control characters */
    SN_CODEC_MISSING_FIELD,       /* "missing_field": key or timestamp is null or absent */
    SN_CODEC_TOO_LARGE,           /* "too_large": over a bound (schema.max.alloc.bytes, tag
                                     count or length, nesting depth, array items) */
    SN_CODEC_SCHEMA_UNAVAILABLE,  /* "schema_unavailable": the registry could not be asked;
                                     returned with SN_ERR_TRANSIENT: retry, do not
                                     dead-letter */
    SN_CODEC_INTERNAL,            /* "internal": out of memory or an unexpected avro-c error */
    SN_CODEC__CLASS_COUNT
};

/* Stable lower-case name of a class ("bad_magic", ...); "unknown" when out of range. */
const char *sn_codec_error_class_str(enum sn_codec_error_class cls);

typedef struct sn_codec sn_codec_t;

/* Creates a codec from the schema.* keys of conf (borrowed; read only during
 * this call). Loads and checks the reader schema: it must be a record with the
 * key field (string), the time field (long) and only supported fields (see
 * schema.unsupported.fields); the error names the offending field. Reads the
 * schema id manifest of schema.dir, or prepares the registry client. Does not
 * contact the registry. Returns NULL with a message in errstr on failure. */
sn_codec_t *sn_codec_new(const sn_conf_t *conf, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_codec_destroy(sn_codec_t *codec);

/* Decodes one telemetry frame into out (caller-owned; overwritten, also on
 * failure). buf is borrowed for the call. cls and schema_id_out may be NULL;
 * *schema_id_out is the frame's writer schema id, or -1 when the frame is too
 * short to have one. Returns:
 *   0                 decoded; *cls = SN_CODEC_OK
 *   SN_ERR_INVALID    the record is bad: dead-letter it with *cls
 *   SN_ERR_TRANSIENT  the writer schema could not be fetched (registry down):
 *                     retry later; *cls = SN_CODEC_SCHEMA_UNAVAILABLE
 *   SN_ERR_FATAL      the registry refused our credentials (401/403)
 *   SN_ERR_NOMEM      out of memory */
int sn_codec_decode(sn_codec_t *codec, const void *buf, size_t len, sn_event_t *out,
                    enum sn_codec_error_class *cls, int32_t *schema_id_out, char *errstr,
                    size_t errstr_size);

/* Encodes ev (borrowed) as a frame with the reader schema, into buf (caller
 * owned, size bytes). ev->nvalues must equal sn_codec_nfields(). The frame
 * carries schema.id (or the registry's id for the subject with
 * schema.registry.mode lookup/register); on the first call the schema under
 * that id is checked to be the reader schema, so a frame is never labelled
 * with the wrong id. *len_out is the frame length, or the length needed when
 * SN_ERR_NOMEM says buf is too small. SN_ERR_INVALID for a value the schema
 * cannot carry (NaN in a non-nullable field, enum index out of range, bad
 * machine id, ...), SN_ERR_TRANSIENT when the registry is down. */
int sn_codec_encode(sn_codec_t *codec, const sn_event_t *ev, void *buf, size_t size,
                    size_t *len_out, char *errstr, size_t errstr_size);

/* Number of numeric fields, i.e. the slots of sn_event_t.values. */
size_t sn_codec_nfields(const sn_codec_t *codec);

/* Name of numeric field i (borrowed from the codec), NULL when out of range. */
const char *sn_codec_field_name(const sn_codec_t *codec, size_t i);

/* Index of the numeric field called name (borrowed), or -1. */
int sn_codec_field_index(const sn_codec_t *codec, const char *name);

/* Parses text (borrowed) as the value of numeric field index, the way a CSV
 * cell or a JSON value spells it: a number for int/long/float/double fields
 * (integers must be whole and in range), true/false/1/0 for booleans, and an
 * enum's symbol (or its index) for enums. SN_ERR_INVALID naming the field
 * otherwise. */
int sn_codec_parse_value(const sn_codec_t *codec, int index, const char *text, double *out,
                         char *errstr, size_t errstr_size);

/* ---- Scorer outputs: failure alerts (schemas/failure_alert.avsc) and scores
 * (schemas/score.avsc). Same framing; the schemas are built into the binary
 * and must equal the .avsc files (a unit test checks). */

#define SN_ALERT_ID_MAX 160      /* "topic/partition/offset", NUL included */
#define SN_MODEL_NAME_MAX 64     /* NUL included */
#define SN_MODEL_VERSION_MAX 64  /* NUL included */
#define SN_FEATURE_NAME_MAX 64   /* NUL included */
#define SN_ALERT_FEATURES_MAX 10 /* entries of top_features */

enum sn_alert_state {
    SN_ALERT_OPEN = 0,
    SN_ALERT_RENOTIFY = 1,
    SN_ALERT_RESOLVED = 2,
};

typedef struct sn_alert_feature {
    char name[SN_FEATURE_NAME_MAX];
    double value;
    double contribution;
} sn_alert_feature_t;

typedef struct sn_alert {
    char id[SN_ALERT_ID_MAX];
    char machine_id[SN_EVENT_ID_MAX];
    int64_t ts_ms;
    double score;
    double threshold;
    char model_name[SN_MODEL_NAME_MAX];
    char model_version[SN_MODEL_VERSION_MAX];
    enum sn_alert_state state;
    uint32_t nfeatures;
    sn_alert_feature_t features[SN_ALERT_FEATURES_MAX];
} sn_alert_t;

typedef struct sn_score {
    char machine_id[SN_EVENT_ID_MAX];
    int64_t ts_ms;
    double score;
    char model_name[SN_MODEL_NAME_MAX];
    char model_version[SN_MODEL_VERSION_MAX];
    int32_t source_partition;
    int64_t source_offset;
} sn_score_t;

/* Writes the deterministic alert id "topic/partition/offset" into out (caller
 * owned, size bytes). SN_ERR_INVALID when it does not fit. */
int sn_alert_make_id(char *out, size_t size, const char *topic, int32_t partition, int64_t offset);

/* Encode/decode an alert or a score; same contracts as sn_codec_encode and
 * sn_codec_decode (the frame carries schema.alert.id / schema.score.id).
 * Decoding resolves any compatible writer schema to the built-in one. */
int sn_codec_encode_alert(sn_codec_t *codec, const sn_alert_t *alert, void *buf, size_t size,
                          size_t *len_out, char *errstr, size_t errstr_size);
int sn_codec_decode_alert(sn_codec_t *codec, const void *buf, size_t len, sn_alert_t *out,
                          enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);
int sn_codec_encode_score(sn_codec_t *codec, const sn_score_t *score, void *buf, size_t size,
                          size_t *len_out, char *errstr, size_t errstr_size);
int sn_codec_decode_score(sn_codec_t *codec, const void *buf, size_t len, sn_score_t *out,
                          enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);

/* ---- Bare datums of a writer schema given as text: the records of an
 * archive file (consumers/archive_file.c), whose header holds the schema
 * (the writer's fields plus kafka_partition, kafka_offset, kafka_timestamp)
 * and whose blocks hold datums back to back. The datum resolves to the
 * reader like a frame of that writer would; the extra fields are skipped. */

typedef struct sn_writer sn_codec_writer_t;

/* Compiles json (len bytes, borrowed for the call). Caller frees with
 * sn_codec_writer_destroy() before the codec. NULL with errstr when the text
 * is not an Avro schema the validator supports. */
sn_codec_writer_t *sn_codec_writer_new(sn_codec_t *codec, const char *json, size_t len,
                                       char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_codec_writer_destroy(sn_codec_t *codec, sn_codec_writer_t *w);

/* The writer record's name without namespace ("Telemetry", "RawRecord"); borrowed. */
const char *sn_codec_writer_name(const sn_codec_writer_t *w);

/* Length of the datum at the start of buf[0..len) (borrowed), without
 * decoding it; SN_ERR_INVALID when it is malformed or cut short. */
int sn_codec_writer_measure(sn_codec_t *codec, const sn_codec_writer_t *w, const void *buf,
                            size_t len, size_t *used, char *errstr, size_t errstr_size);

/* An int or long field of the datum decoded last with w ("kafka_offset");
 * SN_ERR_NOENT when the writer has no such field. */
int sn_codec_writer_long(const sn_codec_writer_t *w, const char *field, int64_t *out);

/* Decode exactly one datum buf[0..len) written with w, as sn_codec_decode
 * and sn_codec_decode_score do for a frame. */
int sn_codec_decode_datum(sn_codec_t *codec, sn_codec_writer_t *w, const void *buf, size_t len,
                          sn_event_t *out, enum sn_codec_error_class *cls, char *errstr,
                          size_t errstr_size);
int sn_codec_decode_score_datum(sn_codec_t *codec, sn_codec_writer_t *w, const void *buf,
                                size_t len, sn_score_t *out, enum sn_codec_error_class *cls,
                                char *errstr, size_t errstr_size);

#endif
