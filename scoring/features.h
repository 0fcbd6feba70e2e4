/* features.h: the feature spec and the in-memory feature engine.
 *
 * A feature spec is JSON data (see scoring/features.md): which event fields are
 * read, simple derived fields, the event's own values as "current" features, and
 * rolling windows with aggregates. It fixes the order and the names of the
 * feature vector, and it is stored in the model card so that training and
 * serving compute the same vector.
 *
 * The engine keeps per machine a ring of time buckets (event time, not arrival
 * time) and turns each event into a float vector. Two backends run the same C
 * code for the window maths: this in-memory one (training, drift, tests) and
 * the Redis one (scoring/feature_redis.h, online). Fed the same events in the
 * same order they give bit-identical vectors. */
#ifndef SN_FEATURES_H
#define SN_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "schemas/event.h"

/* Bounds of a spec; sn_feature_spec_parse() rejects anything larger. */
#define SN_FEATURE_SPEC_FIELDS_MAX 32    /* inputs + derived fields */
#define SN_FEATURE_SPEC_WINDOWS_MAX 8    /* windows */
#define SN_FEATURE_SPEC_FEATURES_MAX 512 /* length of the feature vector */
#define SN_FEATURE_SPEC_BUCKETS_MAX 1440 /* retention_ms / bucket_ms */
/* Bytes of a feature name, NUL included: equal to the codec's
 * SN_FEATURE_NAME_MAX so that any feature can be named in an alert. */
#define SN_FEATURE_SPEC_NAME_MAX 64

/* Per-event outcome, a bit set returned by sn_features_apply() and by the
 * Redis backend for every event of a batch. Every event gets a vector. */
#define SN_FEATURES_APPLIED 0x1      /* folded into the state */
#define SN_FEATURES_OUT_OF_ORDER 0x2 /* applied, but older than the watermark */
#define SN_FEATURES_REDELIVERED 0x4  /* offset already applied: state untouched */
#define SN_FEATURES_DROPPED_LATE 0x8 /* older than the retention: counted, not applied */

typedef struct sn_feature_spec sn_feature_spec_t;
typedef struct sn_features sn_features_t;

/* ---- spec ---- */

/* Parses and validates a spec from JSON text (len bytes, need not be
 * NUL-terminated; borrowed for the call). NULL with errstr naming the problem
 * (unknown field, op or aggregate, a window that is not a multiple of
 * bucket_ms or exceeds the retention, a bound exceeded, ...). The spec must be
 * bound with sn_feature_spec_bind() before an engine can use it. Free with
 * sn_feature_spec_destroy(). */
sn_feature_spec_t *sn_feature_spec_parse(const char *json, size_t len, char *errstr,
                                         size_t errstr_size);

/* Reads and parses a spec file (path borrowed). */
sn_feature_spec_t *sn_feature_spec_load(const char *path, char *errstr, size_t errstr_size);

/* The default spec for the AI4I 2020 sensors (schemas/telemetry.avsc), as JSON
 * text (static storage; also in tests/data/features/default.json). */
const char *sn_feature_spec_default_json(void);

/* Binds the spec's inputs to positions in sn_event_t.values: field_index
 * (opaque is passed through; both borrowed for the call) returns the position
 * of a numeric field or -1. SN_ERR_INVALID naming the first input the schema
 * lacks. May be called again to rebind to another schema. */
int sn_feature_spec_bind(sn_feature_spec_t *spec,
                         int (*field_index)(void *opaque, const char *name), void *opaque,
                         char *errstr, size_t errstr_size);

/* Number of features, i.e. the length of every output vector. */
size_t sn_feature_spec_nfeatures(const sn_feature_spec_t *spec);

/* Name of feature i (borrowed from the spec), NULL when out of range. Current
 * features are named after their field; window features are
 * "<field>__<aggregate>_<window>", e.g. "torque_nm__mean_10m". */
const char *sn_feature_spec_name(const sn_feature_spec_t *spec, size_t i);

/* Position of the feature called name, or -1. */
int sn_feature_spec_index(const sn_feature_spec_t *spec, const char *name);

/* The spec as canonical compact JSON (for the model card). Caller frees with
 * free(). NULL when out of memory. */
char *sn_feature_spec_to_json(const sn_feature_spec_t *spec);

/* The longest window in ms (0 without windows): how much history a machine's
 * state needs before its window features mean what they mean in the scorer,
 * whose state is always warm. Batch readers of a time range (drift) feed this
 * much before the range to the engine without counting it. */
int64_t sn_feature_spec_warmup_ms(const sn_feature_spec_t *spec);

/* An identifier of the state layout (bucket size, retention, windowed fields
 * and derived definitions): two specs with the same id can share stored state.
 * Windows and aggregates may differ. */
uint32_t sn_feature_spec_layout_id(const sn_feature_spec_t *spec);

/* NULL-safe. */
void sn_feature_spec_destroy(sn_feature_spec_t *spec);

/* ---- in-memory engine ---- */

#define SN_FEATURES_MACHINES_DEFAULT 10000

typedef struct sn_features_stats {
    uint64_t machines;     /* machines held now */
    uint64_t evicted;      /* machines dropped to stay under max_machines */
    uint64_t applied;      /* events folded into the state */
    uint64_t redelivered;  /* events skipped because their offset was applied */
    uint64_t dropped_late; /* events older than the retention */
} sn_features_stats_t;

/* Creates an engine for spec (borrowed: must be bound and outlive the engine).
 * At most max_machines machines are held (0: SN_FEATURES_MACHINES_DEFAULT);
 * when a new machine would exceed that, the least recently updated machine is
 * evicted: its state is forgotten and it starts again from empty when it is
 * seen next (counted in stats.evicted). Memory per machine is about
 * retention_ms / bucket_ms * (8 + 64 * windowed fields) bytes. */
sn_features_t *sn_features_new(const sn_feature_spec_t *spec, size_t max_machines, char *errstr,
                               size_t errstr_size);

/* Applies one event (borrowed) and writes its feature vector into out
 * (caller-owned, sn_feature_spec_nfeatures() floats). offset is the event's
 * Kafka offset in partition: an event whose offset is <= the last one applied
 * for this machine and partition is a redelivery and does not change the state;
 * offset < 0 means no offset tracking (CSV training data). Returns the
 * SN_FEATURES_* bits (>= 0), or SN_ERR_INVALID (empty machine id, event time
 * beyond +-2^53 ms, fewer values than the spec's inputs need). What vector a
 * redelivered or too-late event gets: see scoring/features.md. */
int sn_features_apply(sn_features_t *f, const sn_event_t *ev, int32_t partition, int64_t offset,
                      float *out);

/* Copies the counters into *out. */
void sn_features_stats(const sn_features_t *f, sn_features_stats_t *out);

/* NULL-safe. */
void sn_features_destroy(sn_features_t *f);

#endif
