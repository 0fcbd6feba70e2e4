/* feature_state.c: one machine's bucket ring and the window maths.
 *
 * Both backends call these functions: the in-memory engine on its own states,
 * the Redis backend on a scratch state loaded from what the Lua script
 * returned. Bit-for-bit parity with the script rests on sn_fstate_apply()
 * performing exactly the script's IEEE operations in the script's order; the
 * window merge (sn_fstate_features) runs only in C, so it may be as clever as
 * it likes.
 *
 * No floating-point contraction: a fused multiply-add rounds once where Lua
 * rounds twice, and the backends would drift apart in the last bit. GCC does
 * not contract in ISO mode (-std=c11, which CMakeLists.txt sets); clang
 * contracts within an expression unless told not to; and each product below
 * is its own statement anyway. */
#include <math.h>
#include <string.h>

#include "scoring/feature_state.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#define NO_BUCKET INT64_MIN

size_t sn_fstate_size(const sn_feature_spec_t *spec) {
    size_t nb = (size_t)spec->nbuckets, nwf = (size_t)spec->nwf;

    return nb * sizeof(int64_t) + nb * nwf * SN_FREC_DOUBLES * sizeof(double) +
           nwf * 2 * sizeof(double);
}

void sn_fstate_reset(sn_fstate_t *st, const sn_feature_spec_t *spec) {
    st->has_wm = 0;
    st->wm = st->wmb = 0;
    st->dropped = 0;
    for (int i = 0; i < spec->nbuckets; i++) st->bidx[i] = NO_BUCKET;
    for (int k = 0; k < spec->nwf; k++) {
        st->last[2 * k] = NAN;
        st->last[2 * k + 1] = -INFINITY;
    }
}

void sn_fstate_init(sn_fstate_t *st, const sn_feature_spec_t *spec, void *mem) {
    char *p = mem;
    size_t nb = (size_t)spec->nbuckets, nwf = (size_t)spec->nwf;

    st->bidx = (int64_t *)(void *)p;
    p += nb * sizeof(int64_t);
    st->rec = (double *)(void *)p;
    p += nb * nwf * SN_FREC_DOUBLES * sizeof(double);
    st->last = (double *)(void *)p;
    sn_fstate_reset(st, spec);
}

int64_t sn_fstate_bucket(int64_t ts_ms, int64_t bucket_ms) {
    int64_t b = ts_ms / bucket_ms;

    if (ts_ms % bucket_ms != 0 && ts_ms < 0) b--;
    return b;
}

double sn_fstate_bucket_t(int64_t ts_ms, int64_t bucket, int64_t bucket_ms) {
    return (double)(ts_ms - bucket * bucket_ms) / 1000.0;
}

static inline size_t slot_of(int64_t b, int nbuckets) {
    int64_t s = b % nbuckets;

    return (size_t)(s < 0 ? s + nbuckets : s);
}

/* Welford's update of one field's running moments, with the time moments
 * alongside for the slope. Mirrored line by line in the Lua script (see
 * feature_redis.c, the loop under "apply"): change both or neither. Welford
 * rather than raw sums because it keeps the exact zeros that matter (a
 * constant signal has M2 == 0, events at one instant have TM2 == 0) and does
 * not cancel catastrophically for a large mean with a small spread. */
static void rec_update(double *r, double v, double t) {
    double n1 = r[SN_FREC_N] + 1.0;
    double dv = v - r[SN_FREC_MEAN];
    double dt = t - r[SN_FREC_TMEAN];
    double m, tm, ev, et, p;

    if (r[SN_FREC_N] == 0.0) {
        r[SN_FREC_MIN] = v;
        r[SN_FREC_MAX] = v;
    } else {
        if (v < r[SN_FREC_MIN]) r[SN_FREC_MIN] = v;
        if (v > r[SN_FREC_MAX]) r[SN_FREC_MAX] = v;
    }
    r[SN_FREC_N] = n1;
    m = dv / n1;
    m = r[SN_FREC_MEAN] + m;
    r[SN_FREC_MEAN] = m;
    tm = dt / n1;
    tm = r[SN_FREC_TMEAN] + tm;
    r[SN_FREC_TMEAN] = tm;
    ev = v - m;
    et = t - tm;
    p = dv * ev;
    r[SN_FREC_M2] = r[SN_FREC_M2] + p;
    p = dt * et;
    r[SN_FREC_TM2] = r[SN_FREC_TM2] + p;
    p = dt * ev;
    r[SN_FREC_CTV] = r[SN_FREC_CTV] + p;
}

/* Decides late versus applied on bucket indexes, not milliseconds: an event
 * is too late exactly when its bucket has left the retention, so an accepted
 * event never lands in a pruned bucket. The watermark is the largest event
 * time seen; it only moves forward, so a pruned bucket never comes back. */
int sn_fstate_apply(sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                    int64_t ts_ms) {
    int64_t b = sn_fstate_bucket(ts_ms, spec->bucket_ms);
    int flags = SN_FEATURES_APPLIED;
    size_t stride = (size_t)spec->nwf * SN_FREC_DOUBLES, slot;
    double t, ts = (double)ts_ms, *rec;

    if (st->has_wm && b <= st->wmb - spec->nbuckets) {
        st->dropped++;
        return SN_FEATURES_DROPPED_LATE;
    }
    if (st->has_wm && ts_ms < st->wm) flags |= SN_FEATURES_OUT_OF_ORDER;
    if (!st->has_wm || ts_ms > st->wm) {
        st->has_wm = 1;
        st->wm = ts_ms;
        st->wmb = b;
    }
    /* A slot holding another index holds a pruned bucket: retained indexes are
     * nbuckets consecutive integers, so they never share a slot. */
    slot = slot_of(b, spec->nbuckets);
    rec = st->rec + slot * stride;
    if (st->bidx[slot] != b) {
        st->bidx[slot] = b;
        memset(rec, 0, stride * sizeof(double));
    }
    t = sn_fstate_bucket_t(ts_ms, b, spec->bucket_ms);
    for (int k = 0; k < spec->nwf; k++) {
        double v = vals[spec->wf_field[k]];

        if (v != v) continue; /* absent */
        rec_update(rec + (size_t)k * SN_FREC_DOUBLES, v, t);
        if (ts >= st->last[2 * k + 1]) {
            st->last[2 * k] = v;
            st->last[2 * k + 1] = ts;
        }
    }
    return flags;
}

/* Moments of a window, merged from buckets. */
struct acc {
    double n, mean, m2, min, max, tmean, tm2, ctv;
};

/* Chan et al.'s pairwise combination of centred moments. Buckets keep their
 * time moments relative to their own start; delta moves them onto the
 * window's origin (the start of the event's bucket) before combining, which
 * shifts only the mean of t: the deviations are unchanged. */
static void acc_merge(struct acc *a, const double *r, double delta) {
    double nb = r[SN_FREC_N], n, dv, dt, w, g, p;
    double tmean = r[SN_FREC_TMEAN] + delta;

    if (a->n == 0.0) {
        a->n = nb;
        a->mean = r[SN_FREC_MEAN];
        a->m2 = r[SN_FREC_M2];
        a->min = r[SN_FREC_MIN];
        a->max = r[SN_FREC_MAX];
        a->tmean = tmean;
        a->tm2 = r[SN_FREC_TM2];
        a->ctv = r[SN_FREC_CTV];
        return;
    }
    n = a->n + nb;
    dv = r[SN_FREC_MEAN] - a->mean;
    dt = tmean - a->tmean;
    w = nb / n;
    g = a->n * w;
    p = dv * w;
    a->mean = a->mean + p;
    p = dt * w;
    a->tmean = a->tmean + p;
    p = dv * dv;
    p = p * g;
    a->m2 = a->m2 + r[SN_FREC_M2] + p;
    p = dt * dt;
    p = p * g;
    a->tm2 = a->tm2 + r[SN_FREC_TM2] + p;
    p = dt * dv;
    p = p * g;
    a->ctv = a->ctv + r[SN_FREC_CTV] + p;
    a->n = n;
    if (r[SN_FREC_MIN] < a->min) a->min = r[SN_FREC_MIN];
    if (r[SN_FREC_MAX] > a->max) a->max = r[SN_FREC_MAX];
}

/* The aggregates of one (window, field). Empty windows give NaN for the
 * value-like aggregates (XGBoost's missing) but 0 for count, std and slope,
 * which have a natural value there. */
static void emit(const struct acc *a, const struct sn_fspec_window *win, double last, double *out) {
    for (int i = 0; i < win->naggs; i++) {
        double x;

        switch (win->aggs[i]) {
        case SN_AGG_MEAN: x = a->n > 0 ? a->mean : NAN; break;
        case SN_AGG_STD: x = a->n >= 2 ? sqrt(fmax(0.0, a->m2 / (a->n - 1.0))) : 0.0; break;
        case SN_AGG_MIN: x = a->n > 0 ? a->min : NAN; break;
        case SN_AGG_MAX: x = a->n > 0 ? a->max : NAN; break;
        case SN_AGG_COUNT: x = a->n; break;
        case SN_AGG_LAST: x = a->n > 0 ? last : NAN; break;
        case SN_AGG_SLOPE: x = a->n >= 2 && a->tm2 > 0.0 ? a->ctv / a->tm2 : 0.0; break;
        default: x = NAN; break;
        }
        out[i] = x;
    }
}

/* Every window ends with the event's bucket, so the windows of a field nest:
 * one pass from the newest bucket backwards serves them all, emitting each
 * window when its length is reached (the field's windows are sorted shortest
 * first). Buckets outside the retention, or never written, count as empty. */
void sn_fstate_features_d(const sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                          int64_t ts_ms, double *out) {
    int64_t b = sn_fstate_bucket(ts_ms, spec->bucket_ms);
    int64_t oldest = st->has_wm ? st->wmb - spec->nbuckets + 1 : INT64_MAX;
    size_t stride = (size_t)spec->nwf * SN_FREC_DOUBLES;

    for (int i = 0; i < spec->ncurrent; i++) out[i] = vals[spec->current[i]];
    for (int k = 0; k < spec->nwf; k++) {
        struct acc a = {0, 0, 0, 0, 0, 0, 0, 0};
        int done = 0;

        for (int u = 0; u < spec->nuses[k]; u++) {
            const struct sn_fspec_use *use = &spec->uses[k][u];

            for (; done < use->nbuckets; done++) {
                int64_t j = b - done;
                size_t slot;
                const double *r;

                if (j < oldest) {
                    done = use->nbuckets;
                    break;
                }
                slot = slot_of(j, spec->nbuckets);
                if (st->bidx[slot] != j) continue;
                r = st->rec + slot * stride + (size_t)k * SN_FREC_DOUBLES;
                if (r[SN_FREC_N] == 0.0) continue;
                acc_merge(&a, r, (double)(-(int64_t)done * spec->bucket_ms) / 1000.0);
            }
            emit(&a, &spec->windows[use->window], st->last[2 * k], out + use->out);
        }
    }
}

/* XGBoost takes float: the maths stays in double and is rounded once here. */
void sn_fstate_features(const sn_fstate_t *st, const sn_feature_spec_t *spec, const double *vals,
                        int64_t ts_ms, float *out) {
    double d[SN_FEATURE_SPEC_FEATURES_MAX];

    sn_fstate_features_d(st, spec, vals, ts_ms, d);
    for (size_t i = 0; i < spec->nfeatures; i++) out[i] = (float)d[i];
}
