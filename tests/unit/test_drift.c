/* The drift statistics against scipy and the drift verdict end to end.
 *
 * Statistics: tests/data/drift/ks_cases.json holds cases written by
 * tools/reference/drift_reference.py (scipy 1.13.1): ks_2samp's D within
 * 1e-9 and p-value within 1e-6 (ties, different sizes, identical and
 * disjoint samples, exact and asymptotic modes), kstwo.sf over every branch
 * of scipy's kolmogn, and PSI equal to the Python computation.
 *
 * Verdict: a model is trained (scoring/trainer.h) on generated telemetry
 * with independent Gaussian sensors; a sample whose torque mean is shifted
 * by one standard deviation is flagged on torque and the features built from
 * torque only; unshifted samples over 20 seeds give at most 5 % false
 * alarms; too few events give "not enough data". */
#include <criterion/criterion.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/err.h"
#include "scoring/card.h"
#include "scoring/drift.h"
#include "scoring/drift_conf.h"
#include "scoring/features.h"
#include "scoring/model_conf.h"
#include "scoring/trainer.h"

#define CASES "tests/data/drift/ks_cases.json"

static json_t *load_cases(void) {
    json_error_t jerr;
    json_t *root = json_load_file(CASES, 0, &jerr);

    cr_assert_not_null(root, "%s: %s", CASES, jerr.text);
    return root;
}

static double *doubles(json_t *arr, size_t *n) {
    double *v;

    *n = json_array_size(arr);
    v = malloc((*n ? *n : 1) * sizeof(*v));
    cr_assert_not_null(v);
    for (size_t i = 0; i < *n; i++) v[i] = json_number_value(json_array_get(arr, i));
    return v;
}

Test(drift_stats, ks_2samp_matches_scipy) {
    json_t *root = load_cases(), *c;
    size_t i;

    cr_assert_gt(json_array_size(json_object_get(root, "ks")), 0);
    json_array_foreach(json_object_get(root, "ks"), i, c) {
        size_t na, nb;
        double *a = doubles(json_object_get(c, "a"), &na),
               *b = doubles(json_object_get(c, "b"), &nb);
        double d = json_number_value(json_object_get(c, "d")),
               p = json_number_value(json_object_get(c, "p"));
        const char *name = json_string_value(json_object_get(c, "name"));
        int exact = strcmp(json_string_value(json_object_get(c, "mode")), "exact") == 0;
        sn_drift_ks_t r;

        cr_assert_eq(sn_drift_ks_2samp(a, na, b, nb, &r), 0, "%s", name);
        cr_expect(fabs(r.d - d) <= 1e-9, "%s: D %.17g, scipy %.17g", name, r.d, d);
        cr_expect(fabs(r.p - p) <= 1e-6, "%s: p %.17g, scipy %.17g", name, r.p, p);
        cr_expect_eq(r.exact, exact, "%s: mode", name);
        free(a);
        free(b);
    }
    json_decref(root);
}

/* The test is symmetric: swapping the samples changes nothing. */
Test(drift_stats, ks_2samp_is_symmetric) {
    double a[] = {1, 2, 2, 3, 5, 8}, b[] = {2, 3, 3, 4, 9}, a2[6], b2[5];
    sn_drift_ks_t r1, r2;

    memcpy(a2, a, sizeof(a));
    memcpy(b2, b, sizeof(b));
    cr_assert_eq(sn_drift_ks_2samp(a, 6, b, 5, &r1), 0);
    cr_assert_eq(sn_drift_ks_2samp(b2, 5, a2, 6, &r2), 0);
    cr_expect_float_eq(r1.d, r2.d, 1e-15);
    cr_expect_float_eq(r1.p, r2.p, 1e-12);
    cr_expect_eq(sn_drift_ks_2samp(a, 0, b, 5, &r1), SN_ERR_INVALID);
}

Test(drift_stats, kstwo_sf_matches_scipy) {
    json_t *root = load_cases(), *c;
    size_t i;

    cr_assert_gt(json_array_size(json_object_get(root, "kstwo")), 0);
    json_array_foreach(json_object_get(root, "kstwo"), i, c) {
        uint64_t n = (uint64_t)json_integer_value(json_object_get(c, "n"));
        double x = json_number_value(json_object_get(c, "x")),
               sf = json_number_value(json_object_get(c, "sf"));
        double got = sn_drift_kstwo_sf(x, n);

        cr_expect(fabs(got - sf) <= 1e-6, "kstwo.sf(%.17g, %llu) = %.17g, scipy %.17g", x,
                  (unsigned long long)n, got, sf);
    }
    json_decref(root);
}

Test(drift_stats, psi_matches_python) {
    json_t *root = load_cases(), *c;
    size_t i;

    cr_assert_gt(json_array_size(json_object_get(root, "psi")), 0);
    json_array_foreach(json_object_get(root, "psi"), i, c) {
        json_t *e = json_object_get(c, "expected"), *a = json_object_get(c, "actual");
        uint64_t ev[32], av[32];
        size_t n = json_array_size(e);
        double want = json_number_value(json_object_get(c, "psi"));

        cr_assert(n <= 32 && n == json_array_size(a));
        for (size_t k = 0; k < n; k++) {
            ev[k] = (uint64_t)json_integer_value(json_array_get(e, k));
            av[k] = (uint64_t)json_integer_value(json_array_get(a, k));
        }
        cr_expect(fabs(sn_drift_psi(ev, av, n, json_number_value(json_object_get(c, "floor"))) -
                       want) <= 1e-12 * fmax(1.0, want),
                  "psi case %zu: want %.17g", i, want);
    }
    json_decref(root);
}

/* ---- the verdict, on a trained card ---- */

/* Four independent Gaussian sensors (mean, sd); torque is index 3. */
static const char *fields[] = {"air_temperature_k", "process_temperature_k", "rotational_speed_rpm",
                               "torque_nm", "tool_wear_min"};
static const double mean[] = {300, 310, 1500, 40, 100}, sd[] = {2, 1.5, 100, 10, 30};
#define NFIELDS 5
#define TORQUE 3
#define MACHINES 10
#define STEP_MS 60000
#define T0 1767225600000LL

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i], name) == 0) return i;
    return -1;
}

static int parse(void *opaque, int index, const char *text, double *out) {
    char *end;

    (void)opaque;
    (void)index;
    *out = strtod(text, &end);
    return (*end || end == text) ? SN_ERR_INVALID : 0;
}

static const sn_source_schema_t schema = {NFIELDS, field_index, parse, NULL};

/* Current values, a derived field and two window aggregates of torque and
 * of the temperature difference: 10 features, 4 of them built from torque. */
static const char *spec_json =
    "{\"version\":1,\"bucket_ms\":60000,\"retention_ms\":600000,"
    "\"inputs\":[\"air_temperature_k\",\"process_temperature_k\",\"rotational_speed_rpm\",\"torque_"
    "nm\"],"
    "\"derived\":[{\"name\":\"temp_diff_k\",\"op\":\"difference\",\"a\":\"process_temperature_k\","
    "\"b\":\"air_temperature_k\"},{\"name\":\"power_w\",\"op\":\"product\",\"a\":\"torque_nm\","
    "\"b\":\"rotational_speed_rpm\",\"scale\":0.10471975511965977}],"
    "\"current\":[\"air_temperature_k\",\"process_temperature_k\",\"rotational_speed_rpm\","
    "\"torque_nm\","
    "\"temp_diff_k\",\"power_w\"],"
    "\"windows\":[{\"name\":\"10m\",\"ms\":600000,\"fields\":[\"torque_nm\",\"temp_diff_k\"],"
    "\"aggregates\":[\"mean\",\"max\"]}]}";

static const char *torque_features[] = {"torque_nm", "power_w", "torque_nm__mean_10m",
                                        "torque_nm__max_10m"};

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s) {
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s) {
    return sqrt(-2 * log(rng_uniform(s))) * cos(2 * M_PI * rng_uniform(s));
}

/* Event k of a run: machines interleaved in event-time order, as the
 * trainer replays them. shift is added to torque in standard deviations. */
static void gen_event(uint64_t *rng, size_t k, double shift, sn_event_t *ev) {
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->machine_id, sizeof(ev->machine_id), "m%zu", k % MACHINES);
    ev->ts_ms = T0 + (int64_t)(k / MACHINES) * STEP_MS;
    ev->nvalues = NFIELDS;
    for (int i = 0; i < NFIELDS; i++)
        ev->values[i] = mean[i] + sd[i] * (rng_normal(rng) + (i == TORQUE ? shift : 0));
}

static char card_dir[] = "/tmp/sn_test_drift_XXXXXX";
static sn_card_t *card;
static sn_feature_spec_t *spec;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Trains once per suite on 4000 generated events (labels: 5 % random
 * positives, the model's quality is not the point) and keeps its card. */
static void train_card(void) {
    const sn_conf_def_t *tables[] = {sn_model_conf_defs};
    char err[512], path[512];
    sn_conf_t *conf = sn_conf_new(tables, 1, err, sizeof(err));
    sn_trainer_opts_t o;
    sn_trainer_t *t;
    uint64_t rng = 7;
    FILE *f;

    cr_assert_not_null(conf, "%s", err);
    cr_assert_not_null(mkdtemp(card_dir));
    snprintf(path, sizeof(path), "%s/train.jsonl", card_dir);
    cr_assert_not_null(f = fopen(path, "w"));
    for (size_t k = 0; k < 4000; k++) {
        sn_event_t ev;

        gen_event(&rng, k, 0, &ev);
        fprintf(f, "{\"machine_id\":\"%s\",\"ts\":%lld", ev.machine_id, (long long)ev.ts_ms);
        for (int i = 0; i < NFIELDS; i++) fprintf(f, ",\"%s\":%.6f", fields[i], ev.values[i]);
        fprintf(f, ",\"tags\":{\"label\":\"%d\"}}\n", rng_uniform(&rng) < 0.05);
    }
    fclose(f);
    /* the file reads back through the source the trainer uses (this also
     * puts producers/source.o into the link: the trainer in libsn_scoring
     * needs it, and libsn_producers comes before it on the link line) */
    {
        sn_source_opts_t so = {
            .kind = SN_SOURCE_JSONL, .path = path, .start_ms = T0, .step_ms = STEP_MS};
        sn_source_t *src = sn_source_new(&so, &schema, err, sizeof(err));
        sn_event_t ev;

        cr_assert_not_null(src, "%s", err);
        cr_assert_eq(sn_source_next(src, &ev, err, sizeof(err)), 1, "%s", err);
        cr_assert_str_eq(ev.machine_id, "m0");
        sn_source_destroy(src);
    }
    memset(&o, 0, sizeof(o));
    sn_trainer_opts_from_conf(conf, &o);
    o.source = (sn_source_opts_t){
        .kind = SN_SOURCE_JSONL, .path = path, .start_ms = T0, .step_ms = STEP_MS};
    o.schema = &schema;
    o.spec_json = spec_json;
    o.params.rounds = 5;
    o.progress = 0;
    cr_assert_not_null(t = sn_trainer_new(&o, err, sizeof(err)), "%s", err);
    cr_assert_eq(sn_trainer_run(t, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_trainer_write(t, card_dir, err, sizeof(err)), 0, "%s", err);
    sn_trainer_destroy(t);
    sn_conf_destroy(conf);
    snprintf(path, sizeof(path), "%s/card.json", card_dir);
    cr_assert_not_null(card = sn_card_load_file(path, err, sizeof(err)), "%s", err);
    cr_assert_not_null(spec = sn_feature_spec_parse(sn_card_feature_spec(card),
                                                    strlen(sn_card_feature_spec(card)), err,
                                                    sizeof(err)),
                       "%s", err);
    cr_assert_eq(sn_feature_spec_bind(spec, field_index, NULL, err, sizeof(err)), 0, "%s", err);
}

static void drop_card(void) {
    sn_feature_spec_destroy(spec);
    sn_card_destroy(card);
    nftw(card_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static sn_drift_opts_t default_opts(void) {
    const sn_conf_def_t *tables[] = {sn_drift_conf_defs};
    char err[256];
    sn_conf_t *conf = sn_conf_new(tables, 1, err, sizeof(err));
    sn_drift_opts_t o;

    cr_assert_not_null(conf, "%s", err);
    sn_drift_opts_from_conf(conf, &o);
    sn_conf_destroy(conf);
    return o;
}

/* Runs n generated events (seed, torque shift) through a fresh engine and a
 * drift check; returns the finished check. */
static sn_drift_t *check(uint64_t seed, size_t n, double shift, const sn_drift_opts_t *opts) {
    char err[256];
    sn_features_t *fe = sn_features_new(spec, 0, err, sizeof(err));
    sn_drift_t *d = sn_drift_new(card, opts, err, sizeof(err));
    size_t nf = sn_feature_spec_nfeatures(spec);
    float *x = malloc(nf * sizeof(*x));
    uint64_t rng = seed * 0x2545f4914f6cdd1dULL + 1;

    cr_assert_not_null(fe, "%s", err);
    cr_assert_not_null(d, "%s", err);
    cr_assert_eq(nf, sn_card_nfeatures(card));
    for (size_t k = 0; k < n; k++) {
        sn_event_t ev;

        gen_event(&rng, k, shift, &ev);
        cr_assert_geq(sn_features_apply(fe, &ev, 0, -1, x), 0);
        cr_assert_eq(sn_drift_add(d, x), 0);
    }
    cr_assert_geq(sn_drift_finish(d, err, sizeof(err)), 0, "%s", err);
    free(x);
    sn_features_destroy(fe);
    return d;
}

static int is_torque_feature(const char *name) {
    for (size_t i = 0; i < sizeof(torque_features) / sizeof(torque_features[0]); i++)
        if (strcmp(name, torque_features[i]) == 0) return 1;
    return 0;
}

TestSuite(drift, .init = train_card, .fini = drop_card, .timeout = 240);

Test(drift, one_sd_shift_flags_torque_features_only) {
    sn_drift_opts_t o = default_opts();
    sn_drift_t *d = check(1, 2000, 1.0, &o);

    cr_expect_eq(sn_drift_finish(d, NULL, 0), SN_DRIFT_DRIFTED);
    for (size_t i = 0; i < sn_drift_nfeatures(d); i++) {
        const sn_drift_feature_t *r = sn_drift_feature(d, i);

        cr_expect_eq(r->verdict == SN_DRIFT_DRIFTED, is_torque_feature(r->name),
                     "%s: psi %.4f ks p %.3g -> %s", r->name, r->psi, r->ks.p,
                     sn_drift_verdict_str(r->verdict));
    }
    sn_drift_destroy(d);
}

Test(drift, false_alarm_rate_over_20_seeds) {
    sn_drift_opts_t o = default_opts();
    int alarms = 0;

    for (uint64_t seed = 100; seed < 120; seed++) {
        sn_drift_t *d = check(seed, 2000, 0.0, &o);

        if (sn_drift_finish(d, NULL, 0) == SN_DRIFT_DRIFTED) {
            alarms++;
            for (size_t i = 0; i < sn_drift_nfeatures(d); i++) {
                const sn_drift_feature_t *r = sn_drift_feature(d, i);

                if (r->verdict == SN_DRIFT_DRIFTED)
                    fprintf(stderr, "false alarm, seed %llu: %s psi %.4f ks p %.3g\n",
                            (unsigned long long)seed, r->name, r->psi, r->ks.p);
            }
        }
        sn_drift_destroy(d);
    }
    fprintf(stderr, "drift false alarms: %d of 20 unshifted runs\n", alarms);
    cr_expect_leq(alarms, 1, "false-alarm rate %d/20 > 5 %%", alarms);
}

Test(drift, too_few_events_is_not_enough_data) {
    sn_drift_opts_t o = default_opts();
    sn_drift_t *d = check(3, 500, 3.0, &o);

    cr_expect_eq(sn_drift_finish(d, NULL, 0), SN_DRIFT_NOT_ENOUGH);
    cr_expect_eq(sn_drift_feature(d, 3)->verdict, SN_DRIFT_NOT_ENOUGH);
    sn_drift_destroy(d);
}

/* The JSON report is valid JSON naming the verdict; the HTML report has an
 * inline SVG per drifted feature and nothing for the others. */
Test(drift, reports) {
    sn_drift_opts_t o = default_opts();
    sn_drift_t *d = check(5, 2000, 1.0, &o);
    char *js = sn_drift_report_json(d), *html = NULL;
    size_t len = 0, nsvg = 0, ndrift = 0;
    json_t *root;
    FILE *f = open_memstream(&html, &len);

    cr_assert_not_null(js);
    cr_assert_not_null(root = json_loads(js, 0, NULL));
    cr_expect_str_eq(json_string_value(json_object_get(root, "verdict")), "drift");
    cr_expect_eq(json_array_size(json_object_get(root, "features")), sn_drift_nfeatures(d));
    cr_assert_eq(sn_drift_write_html(d, f), 0);
    fclose(f);
    for (const char *p = html; (p = strstr(p, "<svg")); p++) nsvg++;
    for (size_t i = 0; i < sn_drift_nfeatures(d); i++)
        ndrift += sn_drift_feature(d, i)->verdict == SN_DRIFT_DRIFTED;
    cr_expect_eq(nsvg, ndrift);
    cr_expect_gt(nsvg, 0);
    json_decref(root);
    free(js);
    free(html);
    sn_drift_destroy(d);
}

/* The score row: scores drawn from the card's own holdout scores do not
 * drift; the same scores pushed up do, and make the report "drift" while
 * every feature is unshifted. The score is one more Bonferroni test, and is
 * in the JSON report. */
Test(drift, score_row) {
    sn_drift_opts_t o = default_opts();
    sn_card_profile_t sp;
    char err[256];
    uint64_t rng = 11;

    cr_assert_eq(sn_card_score_profile(card, &sp), 0, "the trainer writes profile.score");
    cr_assert_gt(sp.nsample, 100);
    for (int pass = 0; pass < 2; pass++) {
        sn_features_t *fe = sn_features_new(spec, 0, err, sizeof(err));
        sn_drift_t *d = sn_drift_new(card, &o, err, sizeof(err));
        size_t nf = sn_feature_spec_nfeatures(spec);
        float *x = malloc(nf * sizeof(*x));
        uint64_t erng = 4242;
        const sn_drift_feature_t *s;
        char *js;
        json_t *root;

        cr_assert_not_null(d, "%s", err);
        cr_assert_eq(sn_drift_enable_score(d, err, sizeof(err)), 0, "%s", err);
        for (size_t k = 0; k < 2000; k++) {
            sn_event_t ev;
            double v = sp.sample[(size_t)(rng_uniform(&rng) * (double)sp.nsample)];

            gen_event(&erng, k, 0, &ev);
            cr_assert_geq(sn_features_apply(fe, &ev, 0, -1, x), 0);
            cr_assert_eq(sn_drift_add(d, x), 0);
            cr_assert_eq(sn_drift_add_score(d, pass ? v * 0.5 + 0.5 : v), 0);
        }
        cr_assert_eq(sn_drift_ntests(d), nf + 1);
        cr_assert_eq(sn_drift_scores(d), 2000);
        cr_assert_geq(sn_drift_finish(d, err, sizeof(err)), 0, "%s", err);
        s = sn_drift_score(d);
        cr_assert_not_null(s);
        cr_assert_str_eq(s->name, "score");
        if (pass == 0) {
            cr_expect_eq(s->verdict, SN_DRIFT_NONE, "psi %.4f ks p %.3g", s->psi, s->ks.p);
        } else {
            cr_expect_eq(s->verdict, SN_DRIFT_DRIFTED, "psi %.4f ks p %.3g", s->psi, s->ks.p);
            cr_expect_eq(sn_drift_finish(d, NULL, 0), SN_DRIFT_DRIFTED);
        }
        cr_assert_not_null(js = sn_drift_report_json(d));
        cr_assert_not_null(root = json_loads(js, 0, NULL));
        cr_expect_str_eq(
            json_string_value(json_object_get(json_object_get(root, "score"), "verdict")),
            pass ? "drift" : "no drift");
        cr_expect_eq(json_integer_value(json_object_get(json_object_get(root, "score"), "scores")),
                     2000);
        json_decref(root);
        free(js);
        free(x);
        sn_features_destroy(fe);
        sn_drift_destroy(d);
    }
}

/* A card written before score profiles loads, and drift says why it cannot
 * compare scores. */
Test(drift, card_without_score_profile) {
    char *text = sn_card_dump(card), err[256];
    json_t *root = json_loads(text, 0, NULL);
    char *old;
    sn_card_t *c;
    sn_drift_opts_t o = default_opts();
    sn_drift_t *d;
    sn_card_profile_t sp;

    cr_assert_not_null(root);
    cr_assert_eq(json_object_del(json_object_get(root, "profile"), "score"), 0);
    old = json_dumps(root, 0);
    cr_assert_not_null(c = sn_card_parse(old, strlen(old), err, sizeof(err)), "%s", err);
    cr_expect_eq(sn_card_score_profile(c, &sp), SN_ERR_NOENT);
    cr_assert_not_null(d = sn_drift_new(c, &o, err, sizeof(err)), "%s", err);
    cr_expect_eq(sn_drift_enable_score(d, err, sizeof(err)), SN_ERR_NOENT);
    cr_expect(strstr(err, "no score profile") != NULL, "%s", err);
    cr_expect_eq(sn_drift_ntests(d), sn_drift_nfeatures(d));
    sn_drift_destroy(d);
    sn_card_destroy(c);
    json_decref(root);
    free(old);
    free(text);
}
