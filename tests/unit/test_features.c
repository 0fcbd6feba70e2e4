/* Feature spec and the in-memory feature engine: spec validation, every
 * aggregate against a brute-force recomputation from the raw events on
 * randomized sequences (late, out-of-order, too-late, absent values, gaps
 * beyond the retention), redelivery, derived fields, eviction. The schema view
 * is a fixed table, so the engine is tested without the codec. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/feature_state.h"
#include "scoring/features.h"

/* ---- a fixed schema ---- */

static const char *const schema_fields[] = {"air_temperature_k",
                                            "process_temperature_k",
                                            "rotational_speed_rpm",
                                            "torque_nm",
                                            "tool_wear_min",
                                            "product_type",
                                            "a",
                                            "b",
                                            "c"};
#define SCHEMA_N 9

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < SCHEMA_N; i++)
        if (strcmp(schema_fields[i], name) == 0) return i;
    return -1;
}

static sn_feature_spec_t *parse_ok(const char *json) {
    char errstr[512] = "";
    sn_feature_spec_t *spec = sn_feature_spec_parse(json, strlen(json), errstr, sizeof(errstr));

    cr_assert_not_null(spec, "spec rejected: %s", errstr);
    cr_assert_eq(sn_feature_spec_bind(spec, field_index, NULL, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    return spec;
}

/* Expects the spec to be rejected with a message containing want. */
static void parse_fails(const char *json, const char *want) {
    char errstr[512] = "";
    sn_feature_spec_t *spec = sn_feature_spec_parse(json, strlen(json), errstr, sizeof(errstr));

    cr_expect_null(spec, "accepted: %s", json);
    cr_expect(strstr(errstr, want) != NULL, "error \"%s\" does not mention \"%s\"", errstr, want);
    sn_feature_spec_destroy(spec);
}

/* ---- spec ---- */

Test(feature_spec, default_spec_parses_and_names_features) {
    sn_feature_spec_t *spec = parse_ok(sn_feature_spec_default_json());

    /* 9 current + 10m: 4 fields x 7 + 1h: 5 fields x 6 */
    cr_assert_eq(sn_feature_spec_nfeatures(spec), 9 + 28 + 30);
    cr_assert_str_eq(sn_feature_spec_name(spec, 0), "air_temperature_k");
    cr_assert_str_eq(sn_feature_spec_name(spec, 6), "temp_diff_k");
    cr_assert_str_eq(sn_feature_spec_name(spec, 9), "torque_nm__mean_10m");
    cr_assert_str_eq(sn_feature_spec_name(spec, 15), "torque_nm__slope_10m");
    cr_assert_str_eq(sn_feature_spec_name(spec, 16), "rotational_speed_rpm__mean_10m");
    cr_assert_str_eq(sn_feature_spec_name(spec, 37), "torque_nm__mean_1h");
    cr_assert_str_eq(sn_feature_spec_name(spec, 66), "strain__slope_1h");
    cr_assert_null(sn_feature_spec_name(spec, 67));
    cr_assert_eq(sn_feature_spec_index(spec, "power_w__std_1h"), 56);
    cr_assert_eq(sn_feature_spec_index(spec, "nope"), -1);
    sn_feature_spec_destroy(spec);
}

Test(feature_spec, default_file_matches_builtin_and_round_trips) {
    char errstr[512];
    sn_feature_spec_t *a = sn_feature_spec_load(SN_SOURCE_DIR "/tests/data/features/default.json",
                                                errstr, sizeof(errstr));
    sn_feature_spec_t *b = parse_ok(sn_feature_spec_default_json()), *c;
    char *ja, *jb, *jc;

    cr_assert_not_null(a, "%s", errstr);
    ja = sn_feature_spec_to_json(a);
    jb = sn_feature_spec_to_json(b);
    cr_assert_str_eq(ja, jb);
    c = parse_ok(ja);
    jc = sn_feature_spec_to_json(c);
    cr_assert_str_eq(ja, jc, "canonical JSON is a fixed point");
    cr_assert_eq(sn_feature_spec_layout_id(a), sn_feature_spec_layout_id(c));
    cr_assert(strstr(ja, "0.10471975511965977") != NULL, "scale keeps 17 digits: %s", ja);
    free(ja);
    free(jb);
    free(jc);
    sn_feature_spec_destroy(a);
    sn_feature_spec_destroy(b);
    sn_feature_spec_destroy(c);
}

Test(feature_spec, layout_id_ignores_windows_but_not_state_layout) {
    const char *base =
        "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":10000,\"inputs\":[\"a\"],"
        "\"windows\":[{\"name\":\"5s\",\"ms\":5000,\"fields\":[\"a\"],"
        "\"aggregates\":[\"mean\"]}]}";
    const char *more =
        "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":10000,\"inputs\":[\"a\"],"
        "\"windows\":[{\"name\":\"9s\",\"ms\":9000,\"fields\":[\"a\"],"
        "\"aggregates\":[\"mean\",\"slope\"]}]}";
    const char *other =
        "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":20000,\"inputs\":[\"a\"],"
        "\"windows\":[{\"name\":\"5s\",\"ms\":5000,\"fields\":[\"a\"],"
        "\"aggregates\":[\"mean\"]}]}";
    sn_feature_spec_t *x = parse_ok(base), *y = parse_ok(more), *z = parse_ok(other);

    cr_expect_eq(sn_feature_spec_layout_id(x), sn_feature_spec_layout_id(y));
    cr_expect_neq(sn_feature_spec_layout_id(x), sn_feature_spec_layout_id(z));
    sn_feature_spec_destroy(x);
    sn_feature_spec_destroy(y);
    sn_feature_spec_destroy(z);
}

#define HEAD "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":10000,\"inputs\":[\"a\",\"b\"],"

Test(feature_spec, validation_errors_are_specific) {
    parse_fails("{", "JSON error");
    parse_fails("[]", "not a JSON object");
    parse_fails("{\"version\":2,\"bucket_ms\":1000,\"retention_ms\":1000,\"inputs\":[\"a\"]}",
                "\"version\" must be 1");
    parse_fails(HEAD "\"windowz\":[]}", "unknown key \"windowz\"");
    parse_fails("{\"version\":1,\"bucket_ms\":0,\"retention_ms\":1000,\"inputs\":[\"a\"]}",
                "positive integer");
    parse_fails("{\"version\":1,\"bucket_ms\":1000.5,\"retention_ms\":1000,\"inputs\":[\"a\"]}",
                "positive integer");
    parse_fails("{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":1500,\"inputs\":[\"a\"]}",
                "not a multiple of bucket_ms");
    parse_fails("{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":1441000,\"inputs\":[\"a\"]}",
                "more than 1440");
    parse_fails("{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":1000,\"inputs\":[\"a\",\"a\"]}",
                "listed twice");
    parse_fails("{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":1000,\"inputs\":[\"a-b\"]}",
                "inputs[0]");
    parse_fails(HEAD "\"current\":[\"zz\"]}", "unknown field \"zz\"");
    parse_fails(HEAD "\"derived\":[{\"name\":\"d\",\"op\":\"sum\",\"a\":\"a\",\"b\":\"b\"}]}",
                "unknown op \"sum\"");
    parse_fails(HEAD "\"derived\":[{\"name\":\"d\",\"op\":\"ratio\",\"a\":\"a\",\"b\":\"q\"}]}",
                "unknown field \"q\"");
    parse_fails(HEAD "\"derived\":[{\"name\":\"a\",\"op\":\"ratio\",\"a\":\"a\",\"b\":\"b\"}]}",
                "already defined");
    parse_fails(HEAD "\"derived\":[{\"name\":\"d\",\"op\":\"ratio\",\"a\":\"a\",\"b\":\"b\","
                     "\"scale\":2}]}",
                "product only");
    parse_fails(HEAD "\"derived\":[{\"name\":\"d\",\"op\":\"product\",\"a\":\"a\",\"b\":\"b\","
                     "\"scale\":\"x\"}]}",
                "finite non-zero");
    parse_fails(HEAD "\"derived\":[{\"name\":\"d\",\"op\":\"product\",\"a\":\"e\",\"b\":\"b\"},"
                     "{\"name\":\"e\",\"op\":\"product\",\"a\":\"a\",\"b\":\"b\"}]}",
                "earlier derived");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2500,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"]}]}",
                "not a multiple of bucket_ms");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":20000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"]}]}",
                "longer than retention_ms");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"median\"]}]}",
                "unknown aggregate \"median\"");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\",\"mean\"]}]}",
                "listed twice");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2000,\"fields\":[\"x\"],"
                     "\"aggregates\":[\"mean\"]}]}",
                "unknown field \"x\"");
    parse_fails(HEAD "\"windows\":[{\"name\":\"W\",\"ms\":2000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"]}]}",
                "lower-case");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"],\"step\":1}]}",
                "unknown key \"step\"");
    parse_fails(HEAD "\"windows\":[{\"name\":\"w\",\"ms\":2000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"]},{\"name\":\"w\",\"ms\":3000,\"fields\":[\"a\"],"
                     "\"aggregates\":[\"mean\"]}]}",
                "defined twice");
    parse_fails(HEAD "\"current\":[\"a\",\"a\"]}", "listed twice");
    parse_fails(HEAD "\"current\":[]}", "no features");
}

Test(feature_spec, bounds) {
    char json[16384];
    size_t n;

    /* 9 windows */
    n = (size_t)snprintf(json, sizeof(json), HEAD "\"windows\":[");
    for (int i = 0; i < 9; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s{\"name\":\"w%d\",\"ms\":1000,\"fields\":[\"a\"],"
                              "\"aggregates\":[\"mean\"]}",
                              i ? "," : "", i);
    snprintf(json + n, sizeof(json) - n, "]}");
    parse_fails(json, "more than 8 windows");

    /* 33 fields: 2 inputs + 31 derived */
    n = (size_t)snprintf(json, sizeof(json), HEAD "\"derived\":[");
    for (int i = 0; i < 31; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s{\"name\":\"d%d\",\"op\":\"difference\",\"a\":\"a\",\"b\":\"b\"}",
                              i ? "," : "", i);
    snprintf(json + n, sizeof(json) - n, "]}");
    parse_fails(json, "more than 32 fields");

    /* 8 windows x 10 fields x 7 aggregates = 560 features */
    n = (size_t)snprintf(json, sizeof(json), HEAD "\"derived\":[");
    for (int i = 0; i < 8; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "%s{\"name\":\"d%d\",\"op\":\"difference\",\"a\":\"a\",\"b\":\"b\"}",
                              i ? "," : "", i);
    n += (size_t)snprintf(json + n, sizeof(json) - n, "],\"windows\":[");
    for (int w = 0; w < 8; w++)
        n += (size_t)snprintf(
            json + n, sizeof(json) - n,
            "%s{\"name\":\"w%d\",\"ms\":1000,\"fields\":[\"a\",\"b\",\"d0\",\"d1\","
            "\"d2\",\"d3\",\"d4\",\"d5\",\"d6\",\"d7\"],\"aggregates\":[\"mean\","
            "\"std\",\"min\",\"max\",\"count\",\"last\",\"slope\"]}",
            w ? "," : "", w);
    snprintf(json + n, sizeof(json) - n, "]}");
    parse_fails(json, "more than 512 features");

    /* a feature name over 63 bytes */
    parse_fails(
        "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":10000,\"inputs\":"
        "[\"a_very_long_field_name_that_goes_on_and_on_and_on_and_on_ok\"],\"windows\":[{"
        "\"name\":\"w\",\"ms\":1000,\"fields\":[\"a_very_long_field_name_that_goes_on_and_on_"
        "and_on_and_on_ok\"],\"aggregates\":[\"count\"]}]}",
        "longer than 63 bytes");
}

Test(feature_spec, bind_names_missing_input) {
    char errstr[256] = "";
    const char *json = "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":1000,\"inputs\":"
                       "[\"a\",\"humidity\"],\"current\":[\"a\"]}";
    sn_feature_spec_t *spec = sn_feature_spec_parse(json, strlen(json), errstr, sizeof(errstr));
    sn_features_t *f;

    cr_assert_not_null(spec, "%s", errstr);
    f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    cr_expect_null(f);
    cr_expect(strstr(errstr, "not bound") != NULL, "%s", errstr);
    cr_expect_eq(sn_feature_spec_bind(spec, field_index, NULL, errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_expect(strstr(errstr, "\"humidity\"") != NULL, "%s", errstr);
    sn_feature_spec_destroy(spec);
}

/* ---- the engine against brute force ---- */

/* Small buckets so that a few thousand events cross many windows, prune and
 * go late. Values are scaled like the AI4I sensors (large mean, small spread)
 * where a naive sum of squares would lose digits. */
static const char test_spec[] =
    "{\"version\":1,\"bucket_ms\":1000,\"retention_ms\":20000,"
    "\"inputs\":[\"a\",\"b\",\"c\"],"
    "\"derived\":[{\"name\":\"d\",\"op\":\"difference\",\"a\":\"a\",\"b\":\"b\"},"
    "{\"name\":\"p\",\"op\":\"product\",\"a\":\"a\",\"b\":\"c\",\"scale\":0.5},"
    "{\"name\":\"r\",\"op\":\"ratio\",\"a\":\"a\",\"b\":\"c\"}],"
    "\"current\":[\"a\",\"b\",\"c\",\"d\",\"p\",\"r\"],"
    "\"windows\":["
    "{\"name\":\"3s\",\"ms\":3000,\"fields\":[\"a\",\"d\",\"p\"],"
    "\"aggregates\":[\"mean\",\"std\",\"min\",\"max\",\"count\",\"last\",\"slope\"]},"
    "{\"name\":\"10s\",\"ms\":10000,\"fields\":[\"b\",\"a\"],"
    "\"aggregates\":[\"slope\",\"last\",\"count\",\"max\",\"min\",\"std\",\"mean\"]},"
    "{\"name\":\"20s\",\"ms\":20000,\"fields\":[\"p\",\"r\",\"a\"],"
    "\"aggregates\":[\"count\",\"mean\",\"slope\",\"last\",\"std\"]}]}";

#define IDX_A 6 /* positions of a, b, c in the fixed schema */
#define MAX_RAW 20000

struct raw {
    int64_t ts;
    double v[SN_FEATURE_SPEC_FIELDS_MAX]; /* all spec fields */
};

struct ref_machine {
    struct raw *ev; /* applied events, in order of application */
    size_t n;
    int has_wm;
    int64_t wm, wmb;
    uint64_t dropped;
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng_next(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double rng_unit(void) { return (double)(rng_next() >> 11) / 9007199254740992.0; }
static double rng_normal(void) {
    double u = rng_unit() + 1e-300, v = rng_unit();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int64_t floordiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

/* The reference aggregate of field fi over the window of nbw buckets ending
 * with the bucket of ts: straight from the raw events, two-pass, long
 * double, times in integer milliseconds. */
static double brute(const sn_feature_spec_t *spec, const struct ref_machine *m, int fi, int nbw,
                    int agg, int64_t ts) {
    int64_t bt = floordiv(ts, spec->bucket_ms), lo = bt - nbw + 1;
    long double sum = 0, mean, m2 = 0, tsum = 0, tmean, tm2 = 0, ctv = 0;
    double mn = INFINITY, mx = -INFINITY, last = NAN;
    int64_t last_ts = INT64_MIN, t0 = 0;
    size_t n = 0;
    int same_t = 1;

    if (m->has_wm && lo < m->wmb - spec->nbuckets + 1) lo = m->wmb - spec->nbuckets + 1;
    for (size_t i = 0; i < m->n; i++) {
        const struct raw *e = &m->ev[i];
        int64_t b = floordiv(e->ts, spec->bucket_ms);
        double v = e->v[fi];

        if (isnan(v)) continue;
        if (e->ts >= last_ts) last_ts = e->ts, last = v;
        if (b < lo || b > bt) continue;
        if (n == 0)
            t0 = e->ts;
        else if (e->ts != t0)
            same_t = 0;
        n++;
        sum += v;
        tsum += (long double)(e->ts - t0);
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    if (agg == SN_AGG_COUNT) return (double)n;
    if (n == 0) return agg == SN_AGG_STD || agg == SN_AGG_SLOPE ? 0.0 : NAN;
    mean = sum / n;
    tmean = tsum / n;
    for (size_t i = 0; i < m->n; i++) {
        const struct raw *e = &m->ev[i];
        int64_t b = floordiv(e->ts, spec->bucket_ms);
        long double dv, dt;

        if (isnan(e->v[fi]) || b < lo || b > bt) continue;
        dv = e->v[fi] - mean;
        dt = (long double)(e->ts - t0) - tmean;
        m2 += dv * dv;
        tm2 += dt * dt;
        ctv += dt * dv;
    }
    switch (agg) {
    case SN_AGG_MEAN: return (double)mean;
    case SN_AGG_STD: return n < 2 ? 0.0 : (double)sqrtl(m2 / (n - 1));
    case SN_AGG_MIN: return mn;
    case SN_AGG_MAX: return mx;
    case SN_AGG_LAST: return last;
    case SN_AGG_SLOPE: return n < 2 || same_t ? 0.0 : (double)(ctv / tm2 * 1000.0L);
    }
    return NAN;
}

static double max_rel[SN_AGG_COUNT_OF_KINDS]; /* largest error seen, for the log */

/* Checks every window feature of the vector got (doubles) against brute
 * force; exact for count, min, max and last, 1e-9 relative for the rest. */
static void check_vector(const sn_feature_spec_t *spec, const struct ref_machine *m,
                         const double *got, int64_t ts, size_t evno) {
    for (int w = 0; w < spec->nwindows; w++) {
        const struct sn_fspec_window *win = &spec->windows[w];
        for (int j = 0; j < win->nfields; j++) {
            double sd = brute(spec, m, win->fields[j], win->nbuckets, SN_AGG_STD, ts);
            for (int a = 0; a < win->naggs; a++) {
                int pos = win->out + j * win->naggs + a, agg = win->aggs[a];
                double want = brute(spec, m, win->fields[j], win->nbuckets, agg, ts), g = got[pos];
                double scale;

                if (agg == SN_AGG_COUNT || agg == SN_AGG_MIN || agg == SN_AGG_MAX ||
                    agg == SN_AGG_LAST) {
                    cr_assert((isnan(want) && isnan(g)) || want == g,
                              "event %zu %s: got %.17g want %.17g", evno, spec->names[pos], g,
                              want);
                    continue;
                }
                if (isnan(want)) {
                    cr_assert(isnan(g), "event %zu %s: got %.17g want NaN", evno, spec->names[pos],
                              g);
                    continue;
                }
                /* relative to the quantity's natural scale: a slope of 0 in
                 * noisy data is only known to within std/spread */
                scale = fabs(want);
                if (agg == SN_AGG_MEAN && sd > scale) scale = sd;
                if (agg == SN_AGG_SLOPE && want != 0.0 && sd / 20.0 > scale) scale = sd / 20.0;
                if (agg == SN_AGG_STD && want == 0.0) scale = 0.0;
                if (scale > 0 && fabs(g - want) / scale > max_rel[agg])
                    max_rel[agg] = fabs(g - want) / scale;
                cr_assert(fabs(g - want) <= 1e-9 * scale,
                          "event %zu %s: got %.17g want %.17g (rel %.3g)", evno, spec->names[pos],
                          g, want, fabs(g - want) / (scale ? scale : 1));
            }
        }
    }
}

static void set_values(sn_event_t *ev, double a, double b, double c) {
    memset(ev->values, 0, sizeof(ev->values));
    ev->nvalues = SCHEMA_N;
    ev->values[IDX_A] = a;
    ev->values[IDX_A + 1] = b;
    ev->values[IDX_A + 2] = c;
}

Test(features, random_sequences_match_brute_force) {
    enum { MACHINES = 4, EVENTS = 6000 };
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    struct ref_machine ref[MACHINES];
    int64_t clock[MACHINES];
    double *got = malloc(spec->nfeatures * sizeof(double));
    uint64_t n_late = 0, n_ooo = 0, n_drop = 0;
    sn_features_stats_t stats;

    cr_assert_not_null(f, "%s", errstr);
    rng_state = 42;
    for (int m = 0; m < MACHINES; m++) {
        memset(&ref[m], 0, sizeof(ref[m]));
        ref[m].ev = calloc(MAX_RAW, sizeof(struct raw));
        clock[m] = 1700000000000LL + m * 333;
    }
    for (size_t i = 0; i < EVENTS; i++) {
        int m = (int)(rng_next() % MACHINES);
        sn_event_t ev;
        double u = rng_unit(), vals[SN_FEATURE_SPEC_FIELDS_MAX];
        double a = 300 + 2 * rng_normal(), b = 310 + 2 * rng_normal(), c = 40 + 10 * rng_normal();
        int64_t ts, bt;
        int flags, want;

        memset(&ev, 0, sizeof(ev));
        snprintf(ev.machine_id, sizeof(ev.machine_id), "m%d", m);
        if (u < 0.02)
            clock[m] += 15000 + (int64_t)(rng_next() % 15000); /* a gap: prunes */
        else
            clock[m] += (int64_t)(rng_next() % 1500);
        ts = clock[m];
        u = rng_unit();
        if (u < 0.15)
            ts -= (int64_t)(rng_next() % 25000); /* out of order, some too late */
        else if (u < 0.20)
            ts = ref[m].has_wm ? ref[m].wm : ts; /* same instant as the latest */
        if (rng_unit() < 0.1) a = NAN;
        if (rng_unit() < 0.1) b = NAN;
        if (rng_unit() < 0.05) c = 0; /* ratio by zero: absent */
        if (rng_unit() < 0.05) c = NAN;
        if (rng_unit() < 0.05) a = 300.0; /* repeated values: exact zeros must stay zero */
        ev.ts_ms = ts;
        set_values(&ev, a, b, c);
        sn_fspec_values(spec, &ev, vals);

        /* the reference's view of the event */
        bt = floordiv(ts, spec->bucket_ms);
        if (ref[m].has_wm && bt <= ref[m].wmb - spec->nbuckets) {
            want = SN_FEATURES_DROPPED_LATE;
            ref[m].dropped++;
            n_drop++;
        } else {
            want = SN_FEATURES_APPLIED;
            if (ref[m].has_wm && ts < ref[m].wm) want |= SN_FEATURES_OUT_OF_ORDER, n_ooo++;
            if (!ref[m].has_wm || ts > ref[m].wm)
                ref[m].has_wm = 1, ref[m].wm = ts, ref[m].wmb = bt;
            cr_assert_lt(ref[m].n, MAX_RAW);
            ref[m].ev[ref[m].n].ts = ts;
            memcpy(ref[m].ev[ref[m].n].v, vals, sizeof(vals));
            ref[m].n++;
        }
        if (ts < clock[m]) n_late++;

        flags = sn_features_apply_d(f, &ev, 0, -1, got);
        cr_assert_eq(flags, want, "event %zu: flags %d want %d", i, flags, want);
        for (int k = 0; k < spec->ncurrent; k++)
            cr_assert(memcmp(&got[k], &vals[spec->current[k]], sizeof(double)) == 0 ||
                          (isnan(got[k]) && isnan(vals[spec->current[k]])),
                      "current feature %d", k);
        check_vector(spec, &ref[m], got, ts, i);
    }
    sn_features_stats(f, &stats);
    cr_expect_eq(stats.dropped_late, n_drop);
    cr_expect_eq(stats.applied, EVENTS - n_drop);
    cr_expect_eq(stats.machines, MACHINES);
    cr_expect_gt(n_drop, 50, "the sequence exercises too-late events (%llu)",
                 (unsigned long long)n_drop);
    cr_expect_gt(n_ooo, 300, "the sequence exercises out-of-order events");
    cr_log_info("largest relative error: mean %.3g std %.3g slope %.3g", max_rel[SN_AGG_MEAN],
                max_rel[SN_AGG_STD], max_rel[SN_AGG_SLOPE]);
    for (int m = 0; m < MACHINES; m++) free(ref[m].ev);
    free(got);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}

Test(features, float_vector_is_the_double_vector_rounded) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    sn_features_t *g = sn_features_new(spec, 0, errstr, sizeof(errstr));
    double d[SN_FEATURE_SPEC_FEATURES_MAX];
    float x[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_event_t ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "m");
    rng_state = 7;
    for (int i = 0; i < 500; i++) {
        ev.ts_ms = 1000000 + i * 700 - (int64_t)(rng_next() % 3000);
        set_values(&ev, 300 + rng_normal(), i % 7 ? 310 + rng_normal() : NAN, 40 + rng_normal());
        cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, d), sn_features_apply(g, &ev, 0, -1, x));
        for (size_t k = 0; k < spec->nfeatures; k++) {
            float want = (float)d[k];
            cr_assert(memcmp(&want, &x[k], sizeof(float)) == 0 || (isnan(want) && isnan(x[k])));
        }
    }
    sn_features_destroy(f);
    sn_features_destroy(g);
    sn_feature_spec_destroy(spec);
}

static sn_event_t mkev(const char *id, int64_t ts, double a, double b, double c) {
    sn_event_t ev;

    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "%s", id);
    ev.ts_ms = ts;
    set_values(&ev, a, b, c);
    return ev;
}

static double feat(const sn_feature_spec_t *spec, const double *v, const char *name) {
    int i = sn_feature_spec_index(spec, name);

    cr_assert_geq(i, 0, "no feature %s", name);
    return v[i];
}

Test(features, known_values_derived_and_absent) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    double v[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_event_t ev;

    /* one bucket: t = 0.0, 0.5, 0.9 s; a = 1, 2, 4 */
    ev = mkev("k", 5000, 1, 10, 2);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_eq(feat(spec, v, "d"), -9.0);
    cr_expect_eq(feat(spec, v, "p"), 1.0); /* 1 * 2 * 0.5 */
    cr_expect_eq(feat(spec, v, "r"), 0.5);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 1);
    cr_expect_eq(feat(spec, v, "a__std_3s"), 0);
    cr_expect_eq(feat(spec, v, "a__slope_3s"), 0);
    ev = mkev("k", 5500, 2, NAN, 0);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect(isnan(feat(spec, v, "b")), "absent input is NaN");
    cr_expect(isnan(feat(spec, v, "d")), "derived from an absent input is NaN");
    cr_expect(isnan(feat(spec, v, "r")), "ratio by zero is NaN");
    cr_expect_eq(feat(spec, v, "b__count_10s"), 1, "absent values are not counted");
    cr_expect_eq(feat(spec, v, "b__last_10s"), 10, "last skips absent values");
    cr_expect_eq(feat(spec, v, "a__count_3s"), 2);
    cr_expect_eq(feat(spec, v, "r__count_20s"), 1);
    ev = mkev("k", 5900, 4, 12, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_float_eq(feat(spec, v, "a__mean_3s"), 7.0 / 3, 1e-15);
    cr_expect_float_eq(feat(spec, v, "a__std_3s"), sqrt(7.0 / 3), 1e-15);
    cr_expect_eq(feat(spec, v, "a__min_3s"), 1);
    cr_expect_eq(feat(spec, v, "a__max_3s"), 4);
    cr_expect_eq(feat(spec, v, "a__last_3s"), 4);
    /* least squares through (0,1) (0.5,2) (0.9,4): slope = Sxy / Sxx */
    {
        double tm = 1.4 / 3, am = 7.0 / 3;
        double sxy = (0 - tm) * (1 - am) + (0.5 - tm) * (2 - am) + (0.9 - tm) * (4 - am);
        double sxx = tm * tm + (0.5 - tm) * (0.5 - tm) + (0.9 - tm) * (0.9 - tm);
        cr_expect_float_eq(feat(spec, v, "a__slope_3s"), sxy / sxx, 1e-12);
    }
    /* 3 s later: the 3s window no longer holds bucket 5 */
    ev = mkev("k", 8000, 8, 12, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 1);
    cr_expect_eq(feat(spec, v, "a__count_10s"), 4);
    /* an event at the same instant as others: slope of a constant time is 0 */
    ev = mkev("same", 1000, 1, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    ev = mkev("same", 1000, 5, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    ev = mkev("same", 1000, 9, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    cr_expect_eq(feat(spec, v, "a__slope_3s"), 0.0);
    cr_expect_eq(feat(spec, v, "b__std_10s"), 0.0, "a constant has a std of exactly 0");
    /* empty window: value aggregates NaN, count/std/slope 0 */
    ev = mkev("empty", 1000, NAN, NAN, NAN);
    sn_features_apply_d(f, &ev, 0, -1, v);
    cr_expect(isnan(feat(spec, v, "a__mean_3s")));
    cr_expect(isnan(feat(spec, v, "a__min_3s")));
    cr_expect(isnan(feat(spec, v, "a__max_3s")));
    cr_expect(isnan(feat(spec, v, "a__last_3s")));
    cr_expect_eq(feat(spec, v, "a__count_3s"), 0);
    cr_expect_eq(feat(spec, v, "a__std_3s"), 0);
    cr_expect_eq(feat(spec, v, "a__slope_3s"), 0);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}

Test(features, late_events_and_pruning) {
    sn_feature_spec_t *spec = parse_ok(test_spec); /* 1 s buckets, 20 s retention */
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    double v[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_features_stats_t st;
    sn_event_t ev;

    ev = mkev("m", 100000, 1, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    ev = mkev("m", 110000, 2, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_eq(feat(spec, v, "a__count_20s"), 2);
    /* late, inside the retention: applied to its own bucket */
    ev = mkev("m", 95000, 3, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v),
                 SN_FEATURES_APPLIED | SN_FEATURES_OUT_OF_ORDER);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 1, "window ends at the late event's bucket");
    cr_expect_eq(feat(spec, v, "a__last_3s"), 2, "last is the latest by event time");
    /* the oldest retained bucket is wmb - 19 = 91: 91000 is in, 90999 is out */
    ev = mkev("m", 91000, 4, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v),
                 SN_FEATURES_APPLIED | SN_FEATURES_OUT_OF_ORDER);
    ev = mkev("m", 90999, 5, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_DROPPED_LATE);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 0, "a dropped event is not in its window");
    cr_expect_eq(feat(spec, v, "a"), 5, "but it still gets its current features");
    /* watermark moves 19 s: buckets 91..95 leave the retention */
    ev = mkev("m", 129000, 6, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_eq(feat(spec, v, "a__count_20s"), 2, "buckets up to 109 are pruned: 110, 129 stay");
    ev = mkev("m", 109999, 7, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_DROPPED_LATE);
    /* a jump far ahead prunes everything */
    ev = mkev("m", 1000000, 8, 1, 1);
    cr_assert_eq(sn_features_apply_d(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    cr_expect_eq(feat(spec, v, "a__count_20s"), 1);
    cr_expect_eq(feat(spec, v, "a__mean_20s"), 8);
    sn_features_stats(f, &st);
    cr_expect_eq(st.dropped_late, 2);
    cr_expect_eq(st.applied, 6);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}

Test(features, redelivery_is_a_no_op) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    sn_features_t *ctl = sn_features_new(spec, 0, errstr, sizeof(errstr));
    float a[SN_FEATURE_SPEC_FEATURES_MAX], b[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_features_stats_t st;
    sn_event_t ev[400];

    rng_state = 3;
    for (int i = 0; i < 400; i++)
        ev[i] = mkev(i % 2 ? "x" : "y", 50000 + i * 300 - (int64_t)(rng_next() % 2000),
                     300 + rng_normal(), 310 + rng_normal(), 40 + rng_normal());
    for (int i = 0; i < 300; i++) {
        cr_assert_geq(sn_features_apply(f, &ev[i], i % 3, i, a), 0);
        cr_assert_geq(sn_features_apply(ctl, &ev[i], i % 3, i, b), 0);
    }
    /* offsets 100..199 again: every one a redelivery, state untouched */
    for (int i = 100; i < 200; i++)
        cr_assert_eq(sn_features_apply(f, &ev[i], i % 3, i, a), SN_FEATURES_REDELIVERED);
    /* a redelivered event's vector: its own time, from the current state */
    for (int i = 300; i < 400; i++) {
        cr_assert_eq(sn_features_apply(f, &ev[i], i % 3, i, a),
                     sn_features_apply(ctl, &ev[i], i % 3, i, b));
        cr_assert(memcmp(a, b, spec->nfeatures * sizeof(float)) == 0, "event %d differs", i);
    }
    /* the same offset in another partition is a different message */
    cr_assert_geq(sn_features_apply(f, &ev[399], 7, 399, a), 0);
    cr_assert_eq(sn_features_apply(f, &ev[399], 7, 399, a), SN_FEATURES_REDELIVERED);
    /* offset < 0: no tracking, applied every time */
    cr_assert_eq(sn_features_apply(f, &ev[399], 0, -1, a) & SN_FEATURES_APPLIED,
                 SN_FEATURES_APPLIED);
    cr_assert_eq(sn_features_apply(f, &ev[399], 0, -1, a) & SN_FEATURES_APPLIED,
                 SN_FEATURES_APPLIED);
    sn_features_stats(f, &st);
    cr_expect_eq(st.redelivered, 101);
    sn_features_destroy(f);
    sn_features_destroy(ctl);
    sn_feature_spec_destroy(spec);
}

Test(features, eviction_at_the_cap) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 2, errstr, sizeof(errstr));
    double v[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_features_stats_t st;
    sn_event_t ev;

    ev = mkev("one", 1000, 1, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    ev = mkev("two", 1000, 1, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    ev = mkev("one", 1100, 1, 1, 1); /* "one" is now the most recent */
    sn_features_apply_d(f, &ev, 0, -1, v);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 2);
    ev = mkev("three", 1000, 1, 1, 1); /* evicts "two" */
    sn_features_apply_d(f, &ev, 0, -1, v);
    ev = mkev("one", 1200, 1, 1, 1);
    sn_features_apply_d(f, &ev, 0, -1, v);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 3, "kept");
    ev = mkev("two", 1200, 1, 1, 1); /* evicts "three", starts empty */
    sn_features_apply_d(f, &ev, 0, -1, v);
    cr_expect_eq(feat(spec, v, "a__count_3s"), 1, "evicted machines start again");
    sn_features_stats(f, &st);
    cr_expect_eq(st.machines, 2);
    cr_expect_eq(st.evicted, 2);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}

Test(features, many_machines_churn) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 500, errstr, sizeof(errstr));
    float v[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_features_stats_t st;
    sn_event_t ev;

    rng_state = 11;
    for (int i = 0; i < 20000; i++) {
        char id[16];
        snprintf(id, sizeof(id), "m%llu", (unsigned long long)(rng_next() % 1500));
        ev = mkev(id, 1000 + i, 1, 2, 3);
        cr_assert_geq(sn_features_apply(f, &ev, 0, -1, v), 0);
    }
    sn_features_stats(f, &st);
    cr_expect_eq(st.machines, 500);
    cr_expect_gt(st.evicted, 1000);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}

Test(features, invalid_events) {
    sn_feature_spec_t *spec = parse_ok(test_spec);
    char errstr[256];
    sn_features_t *f = sn_features_new(spec, 0, errstr, sizeof(errstr));
    float v[SN_FEATURE_SPEC_FEATURES_MAX];
    sn_event_t ev = mkev("", 1000, 1, 1, 1);

    cr_expect_eq(sn_features_apply(f, &ev, 0, -1, v), SN_ERR_INVALID);
    ev = mkev("m", (int64_t)1 << 53, 1, 1, 1);
    cr_expect_eq(sn_features_apply(f, &ev, 0, -1, v), SN_ERR_INVALID);
    ev = mkev("m", 1000, 1, 1, 1);
    ev.nvalues = 3; /* the spec reads values[6..8] */
    cr_expect_eq(sn_features_apply(f, &ev, 0, -1, v), SN_ERR_INVALID);
    ev = mkev("m", -123456789, 1, 1, 1); /* before 1970 is fine */
    cr_expect_eq(sn_features_apply(f, &ev, 0, -1, v), SN_FEATURES_APPLIED);
    sn_features_destroy(f);
    sn_feature_spec_destroy(spec);
}
