/* Evaluation metrics against scikit-learn: average precision and ROC-AUC on
 * the cases of tests/data/model/eval_cases.json (written by
 * tools/reference/make_eval_fixture.py with sklearn, ties included), best F1,
 * confusion counts, and both threshold policies checked by brute force. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/evaluate.h"

struct fixture {
    const char *name;
    float *score;
    uint8_t *label;
    size_t n;
    double ap, roc, best_f1, best_f1_threshold;
};

static json_t *doc;

static void load(void) {
    json_error_t e;

    doc = json_load_file(SN_SOURCE_DIR "/tests/data/model/eval_cases.json", 0, &e);
    cr_assert_not_null(doc, "%s", e.text);
}

static void unload(void) { json_decref(doc); }

static struct fixture get(size_t i) {
    json_t *c = json_array_get(json_object_get(doc, "cases"), i), *s = json_object_get(c, "score"),
           *l = json_object_get(c, "label");
    struct fixture f = {json_string_value(json_object_get(c, "name")),
                        NULL,
                        NULL,
                        json_array_size(s),
                        json_real_value(json_object_get(c, "average_precision")),
                        json_number_value(json_object_get(c, "roc_auc")),
                        json_number_value(json_object_get(c, "best_f1")),
                        json_number_value(json_object_get(c, "best_f1_threshold"))};

    f.score = malloc(f.n * sizeof(float));
    f.label = malloc(f.n);
    for (size_t k = 0; k < f.n; k++) {
        f.score[k] = (float)json_number_value(json_array_get(s, k));
        f.label[k] = (uint8_t)json_integer_value(json_array_get(l, k));
    }
    return f;
}

static size_t ncases(void) { return json_array_size(json_object_get(doc, "cases")); }

TestSuite(evaluate, .init = load, .fini = unload);

Test(evaluate, pr_auc_and_roc_auc_equal_sklearn) {
    cr_assert_geq(ncases(), 7);
    for (size_t i = 0; i < ncases(); i++) {
        struct fixture f = get(i);
        double ap, roc;

        cr_assert_eq(sn_eval_pr_auc(f.score, f.label, f.n, &ap), 0);
        cr_assert_eq(sn_eval_roc_auc(f.score, f.label, f.n, &roc), 0);
        cr_assert_float_eq(ap, f.ap, 1e-12, "%s: average precision %.15g, sklearn %.15g", f.name,
                           ap, f.ap);
        cr_assert_float_eq(roc, f.roc, 1e-12, "%s: ROC-AUC %.15g, sklearn %.15g", f.name, roc,
                           f.roc);
        free(f.score);
        free(f.label);
    }
}

Test(evaluate, best_f1_equals_sklearn) {
    for (size_t i = 0; i < ncases(); i++) {
        struct fixture f = get(i);
        sn_eval_report_t r;

        cr_assert_eq(sn_eval_report(f.score, f.label, f.n, 0.5, &r), 0);
        cr_assert_float_eq(r.best_f1, f.best_f1, 1e-12, "%s: best F1 %.15g, sklearn %.15g", f.name,
                           r.best_f1, f.best_f1);
        free(f.score);
        free(f.label);
    }
}

Test(evaluate, confusion_at_a_threshold) {
    float s[] = {0.9f, 0.8f, 0.8f, 0.3f, 0.2f, 0.1f};
    uint8_t y[] = {1, 0, 1, 1, 0, 0};
    sn_eval_point_t p;

    cr_assert_eq(sn_eval_at(s, y, 6, 0.8f, &p), 0);
    /* score >= threshold is flagged: the tie at 0.8 is in */
    cr_assert_eq(p.tp, 2);
    cr_assert_eq(p.fp, 1);
    cr_assert_eq(p.fn, 1);
    cr_assert_eq(p.tn, 2);
    cr_assert_float_eq(p.precision, 2.0 / 3, 1e-12);
    cr_assert_float_eq(p.recall, 2.0 / 3, 1e-12);
    cr_assert_float_eq(p.f1, 2.0 / 3, 1e-12);
    cr_assert_float_eq(p.alerts_per_1000, 500, 1e-9);
    cr_assert_eq(sn_eval_at(s, y, 6, 2.0, &p), 0);
    cr_assert_eq(p.precision, 0);
    cr_assert_eq(p.alerts_per_1000, 0);
}

Test(evaluate, refuses_bad_input) {
    float s[] = {0.1f, NAN};
    uint8_t y[] = {0, 2};
    double v;

    cr_assert_eq(sn_eval_pr_auc(s, y, 0, &v), SN_ERR_INVALID);
    cr_assert_eq(sn_eval_pr_auc(s, y, 2, &v), SN_ERR_INVALID);
    y[1] = 1;
    cr_assert_eq(sn_eval_roc_auc(s, y, 2, &v), SN_ERR_INVALID); /* NaN score */
    s[1] = 0.3f;
    y[1] = 0;
    cr_assert_eq(sn_eval_pr_auc(s, y, 2, &v), 0);
    cr_assert(isnan(v), "no positives: undefined");
    cr_assert_eq(sn_eval_roc_auc(s, y, 2, &v), 0);
    cr_assert(isnan(v));
    cr_assert_eq(sn_eval_policy_parse("max-f1"), SN_THRESHOLD_MAX_F1);
    cr_assert_eq(sn_eval_policy_parse("precision"), SN_THRESHOLD_PRECISION);
    cr_assert_eq(sn_eval_policy_parse("f2"), -1);
}

/* Both policies against a brute force over every distinct score. */
Test(evaluate, threshold_policies_by_brute_force) {
    for (size_t i = 0; i < ncases(); i++) {
        struct fixture f = get(i);
        double thr, best_f1 = -1, best_thr = 0, lowest_ok = NAN, target = 0.6;
        int reached;

        for (size_t k = 0; k < f.n; k++) {
            sn_eval_point_t p;

            sn_eval_at(f.score, f.label, f.n, f.score[k], &p);
            if (p.f1 > best_f1 || (p.f1 == best_f1 && f.score[k] > best_thr))
                best_f1 = p.f1, best_thr = f.score[k];
            if (p.precision >= target && p.tp > 0 && (isnan(lowest_ok) || f.score[k] < lowest_ok))
                lowest_ok = f.score[k];
        }
        cr_assert_eq(
            sn_eval_choose_threshold(f.score, f.label, f.n, SN_THRESHOLD_MAX_F1, 0, &thr, NULL), 0);
        cr_assert_eq(thr, best_thr, "%s: max-f1 threshold %g, brute force %g", f.name, thr,
                     best_thr);
        cr_assert_eq(sn_eval_choose_threshold(f.score, f.label, f.n, SN_THRESHOLD_PRECISION, target,
                                              &thr, &reached),
                     0);
        if (isnan(lowest_ok)) {
            cr_assert_not(reached, "%s", f.name);
        } else {
            cr_assert(reached, "%s", f.name);
            cr_assert_eq(thr, lowest_ok, "%s: precision threshold %g, brute force %g", f.name, thr,
                         lowest_ok);
        }
        free(f.score);
        free(f.label);
    }
}
