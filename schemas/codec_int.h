/* codec_int.h (internal to schemas/): what codec.c shares with codec_records.c.
 *
 * The codec keeps, per writer schema id, the compiled writer (its schema, the
 * wire validator, a reusable generic value to decode into) and, per reader
 * kind (telemetry, alert, score), a plan that resolves the writer to that
 * reader: a resolved-reader view over the generic value (or the value itself
 * when the schemas are equal), the view index of each reader field, and the
 * enum symbol maps that avro-c 1.11 does not apply itself. */
#ifndef SN_SCHEMAS_CODEC_INT_H
#define SN_SCHEMAS_CODEC_INT_H

#include <avro.h>
#include <jansson.h>
#include <stdint.h>

#include "schemas/codec.h"
#include "schemas/schema_store.h"
#include "schemas/wire.h"

#define SN_CODEC_ERR_MAX 256
#define SN_CODEC_WRITERS_MAX 1024 /* writer ids cached per codec */
#define SN_CODEC_READER_FIELDS_MAX 256

enum sn_codec_kind { SN_KIND_TELEMETRY = 0, SN_KIND_ALERT = 1, SN_KIND_SCORE = 2, SN_KIND_COUNT };

/* What a plan needs to know of one reader field. */
struct sn_rinfo {
    const char *name;          /* borrowed from the reader schema */
    int has_default;           /* may be absent from the writer */
    avro_schema_t enum_schema; /* the reader's enum (also inside a nullable union), or NULL */
    int enum_default;          /* reader enum's "default" symbol index, or -1 */
};

/* A reader schema: the avro schema and its JSON (for projections). */
struct sn_reader {
    avro_schema_t schema; /* owned */
    json_t *json;         /* owned */
    size_t nf;
    struct sn_rinfo *f; /* nf entries, owned */
};

/* Per reader field, how a given writer provides it. */
struct sn_fplan {
    int pidx;      /* index in the view record; -1: absent from the writer, use the default */
    int wnullable; /* the writer's field is a union with null */
    int16_t *emap; /* enum: writer symbol index -> reader index (-1: no such symbol) */
    int nemap;
};

struct sn_plan {
    int ok;
    enum sn_codec_error_class cls; /* when !ok */
    char err[SN_CODEC_ERR_MAX];
    avro_schema_t proj;         /* the reader less the fields the writer lacks, or NULL */
    avro_value_iface_t *riface; /* resolved reader, NULL when the view is the generic value */
    avro_value_t rvalue;
    avro_value_t *view; /* what extraction reads */
    struct sn_fplan *f; /* one per reader field */
};

enum sn_writer_state { SN_WS_OK, SN_WS_UNKNOWN, SN_WS_BAD };

struct sn_writer {
    int32_t id;
    enum sn_writer_state state;
    int64_t retry_at_ms; /* SN_WS_UNKNOWN: ask the registry again after */
    char err[SN_CODEC_ERR_MAX];
    avro_schema_t schema;
    sn_wire_t *wire;
    avro_value_iface_t *giface;
    avro_value_t gvalue;
    int has_gvalue;
    struct sn_plan *plans[SN_KIND_COUNT];
};

/* A schema this process produces with, and the id its frames carry. */
struct sn_slot {
    int32_t conf_id;
    int32_t id; /* valid when resolved */
    int resolved;
    const char *what;     /* "schema.id", ... for messages */
    char *subject;        /* owned; for registry lookup/register */
    avro_schema_t schema; /* borrowed from the reader */
    char *json;           /* owned compact schema text, for the registry */
};

struct sn_tfield; /* telemetry role of a reader field, codec.c only */

struct sn_codec {
    size_t max_alloc;
    int registry_mode; /* 0 none, 1 lookup, 2 register */
    int64_t unknown_retry_ms;
    sn_schema_store_t *store;
    avro_reader_t areader;
    avro_writer_t awriter;
    struct sn_writer *writers[SN_CODEC_WRITERS_MAX];
    size_t nwriters;
    struct sn_writer *last;  /* fast path: the previous frame's writer */
    struct sn_writer *datum; /* set during sn_codec_decode_*datum: the buffer is a bare
                                datum of this writer, not a frame */

    struct sn_reader readers[SN_KIND_COUNT];
    struct sn_slot slots[SN_KIND_COUNT];
    avro_value_iface_t *eiface[SN_KIND_COUNT]; /* encoding values, lazily */
    avro_value_t evalue[SN_KIND_COUNT];

    /* telemetry */
    struct sn_tfield *tf; /* one per reader field */
    size_t nvalues;
    const char *value_names[SN_EVENT_FIELDS_MAX];
    int nignored;
    const char *first_ignored;
    uint32_t ndef_tags;
    sn_event_tag_t def_tags[SN_EVENT_TAGS_MAX];
};

/* Parses a reader schema from JSON text (borrowed) into r. has_default of each
 * field comes from the JSON. */
int sn_codec_reader_init(struct sn_reader *r, const char *json, size_t len, const char *what,
                         char *errstr, size_t errstr_size);
void sn_codec_reader_fini(struct sn_reader *r);

/* Frame header, writer lookup, plan, validation and avro-c decode: on success
 * *view is the record to extract from (valid until the next call). */
int sn_codec_decode_common(sn_codec_t *c, enum sn_codec_kind kind, const void *buf, size_t len,
                           avro_value_t **view, struct sn_plan **plan,
                           enum sn_codec_error_class *cls, int32_t *schema_id_out, char *errstr,
                           size_t errstr_size);

/* Resolves the slot's id (registry or check against the schema dir), creates
 * the encoding value, and returns it reset for filling. */
int sn_codec_encode_begin(sn_codec_t *c, enum sn_codec_kind kind, avro_value_t **value,
                          char *errstr, size_t errstr_size);

/* Sizes, frames and writes the filled encoding value into buf. */
int sn_codec_encode_finish(sn_codec_t *c, enum sn_codec_kind kind, void *buf, size_t size,
                           size_t *len_out, char *errstr, size_t errstr_size);

/* Sets *cls (if cls) and formats errstr; returns err. */
int sn_codec_fail(enum sn_codec_error_class *cls, enum sn_codec_error_class v, int err,
                  char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Copies an avro string value into dst[cap] with the record checks: too long
 * is TOO_LARGE, NUL bytes or invalid UTF-8 BAD_VALUE. */
int sn_codec_copy_string(avro_value_t *v, char *dst, size_t cap, const char *field,
                         enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);

/* Maps an enum value read through a plan to the reader's symbol index. */
int sn_codec_enum_index(const struct sn_fplan *fp, const char *field, int windex, int *out,
                        enum sn_codec_error_class *cls, char *errstr, size_t errstr_size);

#endif
