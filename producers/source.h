/* source.h: where telemetry comes from before it is encoded and produced.
 *
 * Three kinds of source fill the same sn_event_t: a CSV file with a column
 * mapping (the bundled AI4I data is a preset), JSON lines, and a synthetic fleet
 * (N machines with drift, noise and labelled failures, deterministic for a
 * seed). They know field names only; the schema view below turns names into
 * positions in event.values and text into numbers (enum symbols included), so
 * sources work with any reader schema. */
#ifndef SN_SOURCE_H
#define SN_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/conf.h"
#include "schemas/codec.h"
#include "schemas/event.h"

/* What a source needs to know of the schema; opaque is the codec. */
typedef struct sn_source_schema {
    uint32_t nfields;
    /* Position of a numeric field in event.values, or -1. */
    int (*field_index)(void *opaque, const char *name);
    /* Parses text for field index into out (numbers, booleans, enum symbols);
     * 0 or a negative sn_err. */
    int (*parse)(void *opaque, int index, const char *text, double *out);
    void *opaque;
} sn_source_schema_t;

/* The view every command uses: the codec's reader schema (codec borrowed,
 * must outlive the view). Its field_index is also the shape
 * sn_feature_spec_bind() takes: sn_source_codec_field_index. */
struct sn_codec;
sn_source_schema_t sn_source_schema_of_codec(const struct sn_codec *codec);
int sn_source_codec_field_index(void *codec, const char *name);

typedef struct sn_source sn_source_t;

enum sn_source_kind {
    SN_SOURCE_CSV,
    SN_SOURCE_JSONL,
    SN_SOURCE_FLEET,
    SN_SOURCE_ARCHIVE, /* the archive: producers/source_archive.h */
};

/* Options for sn_source_new. Strings are borrowed for the call. */
typedef struct sn_source_opts {
    enum sn_source_kind kind;
    const char *path;       /* CSV or JSONL file; "-" is standard input */
    const char *const *map; /* CSV: "field=Column" pairs; tag.NAME=Column for tags */
    size_t nmap;
    const char *key_field;  /* name of the machine id field (schema.key.field) */
    const char *time_field; /* name of the event time field (schema.time.field) */
    const char *machine_id; /* constant machine id when no column gives one */
    const char *ts_column;  /* CSV: column with epoch milliseconds; NULL: synthesized */
    int64_t start_ms;       /* first synthesized event time */
    int64_t step_ms;        /* time between consecutive rows (per machine for a fleet) */
    uint64_t limit;         /* stop after this many events; 0: no limit (fleet: required) */
    /* Synthetic fleet only. */
    uint32_t machines;
    uint64_t seed;
    FILE *failures_out; /* borrowed; "machine_id,ts_ms,mode" per failure, or NULL */
    /* Archive only: path is the URL (file://DIR or s3://bucket[/prefix]). */
    const char *topic;      /* NULL: "telemetry" */
    int64_t from_ms, to_ms; /* event-time range [from, to), required */
    const sn_conf_t *conf;  /* archive.read.* and s3.* keys, borrowed for sn_source_new */
    sn_codec_t *codec;      /* decodes the archived records; borrowed, outlives the source */
    int progress;           /* progress lines on stderr */
} sn_source_opts_t;

/* The column mapping of the bundled AI4I 2020 data (data/ai4i2020.csv). */
extern const char *const sn_source_ai4i_map[];
extern const size_t sn_source_ai4i_nmap;

/* Opens a source. schema is copied. NULL with errstr set when the file cannot
 * be read or the mapping names a column or field that does not exist. */
sn_source_t *sn_source_new(const sn_source_opts_t *opts, const sn_source_schema_t *schema,
                           char *errstr, size_t errstr_size);

void sn_source_destroy(sn_source_t *src);

/* Fills ev with the next event. Returns 1 for an event, 0 at the end, or a
 * negative sn_err: SN_ERR_INVALID for a bad row (errstr names the line); the
 * caller may skip a bad row and go on: the next call reads the following
 * one. Any other error (an archive object damaged, S3 unreachable, out of
 * memory) means the input cannot be read further: stop. */
int sn_source_next(sn_source_t *src, sn_event_t *ev, char *errstr, size_t errstr_size);

/* The archive reader of an SN_SOURCE_ARCHIVE source (borrowed), for its
 * counters and digest; NULL for other kinds. */
struct sn_source_archive *sn_source_archive(const sn_source_t *src);

#endif
