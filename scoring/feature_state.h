/* feature_state.h: internals shared by the feature engine's files (the spec
 * parser, the in-memory backend and the Redis backend). Not a public API: only
 * scoring/feature*.c include it; everything here is prefixed sn_fstate_ or
 * sn_fspec_.
 *
 * The numbers are the contract with the Lua script in feature_redis.c, which
 * must apply the same IEEE operations in the same order for the backends to
 * agree bit for bit: see sn_fstate_apply() and scoring/features.md. */
#ifndef SN_FEATURE_STATE_H
#define SN_FEATURE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "schemas/event.h"
#include "scoring/features.h"

/* Doubles kept per bucket per windowed field, in this order (the packed layout
 * in Redis is the same). Welford running moments relative to the bucket start,
 * t in seconds: see features.md for why not raw sums of squares. */
enum {
    SN_FREC_N = 0,  /* count of non-absent values */
    SN_FREC_MEAN,   /* mean of v */
    SN_FREC_M2,     /* sum of squared deviations of v */
    SN_FREC_MIN,    /* min of v */
    SN_FREC_MAX,    /* max of v */
    SN_FREC_TMEAN,  /* mean of t (seconds since the bucket start) */
    SN_FREC_TM2,    /* sum of squared deviations of t */
    SN_FREC_CTV,    /* sum of co-deviations of t and v */
    SN_FREC_DOUBLES /* 8 */
};

enum sn_fspec_agg {
    SN_AGG_MEAN = 0,
    SN_AGG_STD,
    SN_AGG_MIN,
    SN_AGG_MAX,
    SN_AGG_COUNT,
    SN_AGG_LAST,
    SN_AGG_SLOPE,
    SN_AGG_COUNT_OF_KINDS /* 7 */
};

enum sn_fspec_op { SN_OP_INPUT = 0, SN_OP_DIFFERENCE, SN_OP_PRODUCT, SN_OP_RATIO };

#define SN_FSPEC_WINDOW_NAME_MAX 16

struct sn_fspec_field {
    char name[SN_FEATURE_SPEC_NAME_MAX];
    enum sn_fspec_op op;
    int a, b;        /* derived: operand field indexes (earlier fields) */
    double scale;    /* product only */
    int value_index; /* input: position in sn_event_t.values once bound, else -1 */
    int wf;          /* position among the windowed fields, or -1 */
};

struct sn_fspec_window {
    char name[SN_FSPEC_WINDOW_NAME_MAX];
    int64_t ms;
    int nbuckets; /* ms / bucket_ms */
    int nfields;
    int fields[SN_FEATURE_SPEC_FIELDS_MAX]; /* field indexes */
    int naggs;
    int aggs[SN_AGG_COUNT_OF_KINDS];
    int out; /* position of the window's first feature */
};

/* One (window, field) pair, as seen from the field: the field's windows are
 * visited shortest first so that one merge pass serves them all. */
struct sn_fspec_use {
    int window;   /* index into windows */
    int nbuckets; /* window length in buckets */
    int out;      /* position of this (window, field)'s first aggregate */
};

struct sn_feature_spec {
    int version;
    int64_t bucket_ms, retention_ms;
    int nbuckets;         /* retention_ms / bucket_ms */
    int ninputs, nfields; /* fields: inputs first, then derived in spec order */
    struct sn_fspec_field fields[SN_FEATURE_SPEC_FIELDS_MAX];
    int ncurrent;
    int current[SN_FEATURE_SPEC_FIELDS_MAX];
    int nwindows;
    struct sn_fspec_window windows[SN_FEATURE_SPEC_WINDOWS_MAX];
    int nwf; /* windowed fields: the union of all windows' fields */
    int wf_field[SN_FEATURE_SPEC_FIELDS_MAX];
    int nuses[SN_FEATURE_SPEC_FIELDS_MAX]; /* per windowed field */
    struct sn_fspec_use uses[SN_FEATURE_SPEC_FIELDS_MAX][SN_FEATURE_SPEC_WINDOWS_MAX];
    int max_window_buckets;
    int bound;      /* sn_feature_spec_bind() succeeded */
    int min_values; /* 1 + the largest bound value index */
    uint32_t layout_id;
    size_t nfeatures;
    char names[SN_FEATURE_SPEC_FEATURES_MAX][SN_FEATURE_SPEC_NAME_MAX];
};

/* Name of an aggregate ("mean", ...). */
const char *sn_fspec_agg_name(int agg);

/* Fills vals (nfields doubles, caller-owned) from ev: inputs copied, derived
 * fields computed; NaN means absent. Non-finite derived results become NaN. */
void sn_fspec_values(const sn_feature_spec_t *spec, const sn_event_t *ev, double *vals);

/* One machine's state. The arrays live in memory the owner provides (one
 * block, sn_fstate_size()), so an engine can reuse a block without allocating. */
typedef struct sn_fstate {
    int has_wm;
    int64_t wm;       /* watermark: the largest event time applied (ms) */
    int64_t wmb;      /* its bucket index */
    uint64_t dropped; /* events older than the retention */
    int64_t *bidx;    /* [nbuckets] bucket index held by each ring slot, INT64_MIN: none */
    double *rec;      /* [nbuckets][nwf * SN_FREC_DOUBLES] */
    double *last;     /* [nwf * 2]: last value and its event time (ms, as double) */
} sn_fstate_t;

/* Bytes of the arrays of one state for spec. */
size_t sn_fstate_size(const sn_feature_spec_t *spec);

/* Points st's arrays into mem (sn_fstate_size() bytes, 8-aligned, borrowed for
 * the life of st) and resets it to empty. */
void sn_fstate_init(sn_fstate_t *st, const sn_feature_spec_t *spec, void *mem);

/* Resets st to empty (no buckets, no watermark, no last values). */
void sn_fstate_reset(sn_fstate_t *st, const sn_feature_spec_t *spec);

/* Floor division of an event time by the bucket size. */
int64_t sn_fstate_bucket(int64_t ts_ms, int64_t bucket_ms);

/* The event's time in seconds since the start of its bucket, as the script
 * receives it. */
double sn_fstate_bucket_t(int64_t ts_ms, int64_t bucket, int64_t bucket_ms);

/* Folds one event (its field values from sn_fspec_values) into st, or counts
 * it as too late. Returns SN_FEATURES_APPLIED (| SN_FEATURES_OUT_OF_ORDER) or
 * SN_FEATURES_DROPPED_LATE. */
int sn_fstate_apply(sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                    int64_t ts_ms);

/* Writes the feature vector of an event at ts_ms with field values vals, from
 * the state as it is now (the caller applies first when the event counts). */
void sn_fstate_features(const sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                        int64_t ts_ms, float *out);

/* The same in double precision, before the final rounding to float (tests
 * check the maths against brute force at this precision). */
void sn_fstate_features_d(const sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                          int64_t ts_ms, double *out);

/* sn_features_apply() with a double vector (features.c; for tests). */
int sn_features_apply_d(sn_features_t *f, const sn_event_t *ev, int32_t partition, int64_t offset,
                        double *out);

/* ---- a bounded map from machine id to state (feature_map.c) ----
 *
 * Used by the in-memory engine for its states and by the Redis backend for its
 * cache of the states it last saw in Redis. At most max_entries entries; a new
 * entry beyond that evicts the least recently used one (sn_fmap_get moves an
 * entry to the front). Each entry is one allocation made when its machine is
 * first seen, reused on eviction. */

#define SN_FMAP_OFFSETS_MAX 8 /* partitions whose offsets an entry remembers */
#define SN_FMAP_TAG_MAX 48

struct sn_foffset {
    int32_t partition;
    int64_t offset;
    uint64_t used; /* map tick of the last use; 0: empty slot */
};

typedef struct sn_fentry {
    sn_fstate_t st;
    char tag[SN_FMAP_TAG_MAX]; /* owner's label ("" when created) */
    int64_t aux;               /* owner's number (0 when created) */
    struct sn_foffset offsets[SN_FMAP_OFFSETS_MAX];
} sn_fentry_t;

typedef struct sn_fmap sn_fmap_t;

/* spec is borrowed and must outlive the map. NULL when out of memory. */
sn_fmap_t *sn_fmap_new(const sn_feature_spec_t *spec, size_t max_entries);
void sn_fmap_destroy(sn_fmap_t *map);

/* The entry of machine id (borrowed), most recent from now on. When absent:
 * NULL unless create, else a new empty entry (*created = 1), evicting the
 * least recently used entry at the cap. NULL with create set means out of
 * memory. The entry is owned by the map: valid until it is removed or
 * evicted (only a later create can evict). */
sn_fentry_t *sn_fmap_get(sn_fmap_t *map, const char *id, int create, int *created);

/* Removes and frees an entry returned by sn_fmap_get. */
void sn_fmap_remove(sn_fmap_t *map, sn_fentry_t *e);

/* Monotonic counter bumped by every sn_fmap_get, for LRU choices inside an
 * entry (the offsets). */
uint64_t sn_fmap_tick(const sn_fmap_t *map);

size_t sn_fmap_count(const sn_fmap_t *map);
uint64_t sn_fmap_evicted(const sn_fmap_t *map);

/* Largest |event time| accepted: the script holds times as Lua doubles. */
#define SN_FSTATE_TS_LIMIT ((int64_t)1 << 53)

#endif
