/* features.c: the in-memory feature engine (training, drift, tests).
 *
 * A bounded map of machine states (feature_map.c) plus per-partition offset
 * tracking; the window maths is feature_state.c, shared with the Redis
 * backend. Steady state allocates nothing per event. */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/feature_state.h"
#include "scoring/features.h"

struct sn_features {
    const sn_feature_spec_t *spec;
    sn_fmap_t *map;
    double vals[SN_FEATURE_SPEC_FIELDS_MAX]; /* the current event's field values */
    sn_features_stats_t stats;
};

sn_features_t *sn_features_new(const sn_feature_spec_t *spec, size_t max_machines, char *errstr,
                               size_t errstr_size) {
    sn_features_t *f = NULL;

    if (!spec->bound) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "features: the spec is not bound to a schema (sn_feature_spec_bind)");
        return NULL;
    }
    if (max_machines == 0) max_machines = SN_FEATURES_MACHINES_DEFAULT;
    if (max_machines > ((size_t)1 << 28)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "features: max_machines is too large");
        return NULL;
    }
    if (!(f = calloc(1, sizeof(*f))) || !(f->map = sn_fmap_new(spec, max_machines))) {
        sn_features_destroy(f);
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->spec = spec;
    return f;
}

void sn_features_destroy(sn_features_t *f) {
    if (!f) return;
    sn_fmap_destroy(f->map);
    free(f);
}

/* Returns 1 when offset was already applied in partition, else records it.
 * The slot used longest ago gives way to a partition not seen before. */
static int offset_seen(sn_fentry_t *e, uint64_t tick, int32_t partition, int64_t offset) {
    struct sn_foffset *victim = &e->offsets[0];

    for (int i = 0; i < SN_FMAP_OFFSETS_MAX; i++) {
        struct sn_foffset *o = &e->offsets[i];
        if (o->used && o->partition == partition) {
            o->used = tick;
            if (offset <= o->offset) return 1;
            o->offset = offset;
            return 0;
        }
        if (o->used < victim->used) victim = o;
    }
    victim->partition = partition;
    victim->offset = offset;
    victim->used = tick;
    return 0;
}

/* Validates the event, checks its offset, folds it in unless it is a
 * redelivery, and leaves the entry for the caller to compute the vector. */
static int apply(sn_features_t *f, const sn_event_t *ev, int32_t partition, int64_t offset,
                 sn_fentry_t **entry) {
    const sn_feature_spec_t *spec = f->spec;
    sn_fentry_t *e;
    int flags;

    if (!ev->machine_id[0] || memchr(ev->machine_id, 0, sizeof(ev->machine_id)) == NULL ||
        ev->ts_ms <= -SN_FSTATE_TS_LIMIT || ev->ts_ms >= SN_FSTATE_TS_LIMIT ||
        ev->nvalues < (uint32_t)spec->min_values)
        return SN_ERR_INVALID;
    if (!(e = sn_fmap_get(f->map, ev->machine_id, 1, NULL))) return SN_ERR_NOMEM;
    sn_fspec_values(spec, ev, f->vals);
    if (offset >= 0 && offset_seen(e, sn_fmap_tick(f->map), partition, offset)) {
        flags = SN_FEATURES_REDELIVERED;
        f->stats.redelivered++;
    } else {
        flags = sn_fstate_apply(&e->st, spec, f->vals, ev->ts_ms);
        if (flags & SN_FEATURES_APPLIED)
            f->stats.applied++;
        else
            f->stats.dropped_late++;
    }
    *entry = e;
    return flags;
}

int sn_features_apply(sn_features_t *f, const sn_event_t *ev, int32_t partition, int64_t offset,
                      float *out) {
    sn_fentry_t *e = NULL;
    int flags = apply(f, ev, partition, offset, &e);

    if (flags >= 0) sn_fstate_features(&e->st, f->spec, f->vals, ev->ts_ms, out);
    return flags;
}

int sn_features_apply_d(sn_features_t *f, const sn_event_t *ev, int32_t partition, int64_t offset,
                        double *out) {
    sn_fentry_t *e = NULL;
    int flags = apply(f, ev, partition, offset, &e);

    if (flags >= 0) sn_fstate_features_d(&e->st, f->spec, f->vals, ev->ts_ms, out);
    return flags;
}

void sn_features_stats(const sn_features_t *f, sn_features_stats_t *out) {
    *out = f->stats;
    out->machines = sn_fmap_count(f->map);
    out->evicted = sn_fmap_evicted(f->map);
}
