/* The XGBoost wrapper: scores and SHAP values equal Python's xgboost 1.7.4 on
 * a committed fixture (tools/reference/make_model_fixture.py), corrupt or
 * mismatched models are refused with a clear error, per-thread contexts
 * predict concurrently, and training is deterministic. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/model.h"

#define NF 9
#define NROWS 200
#define DIR SN_SOURCE_DIR "/tests/data/model/"

static float X[NROWS * NF], PRED[NROWS], CONTRIB[NROWS * (NF + 1)];

static size_t read_csv(const char *path, float *out, size_t max) {
    FILE *fp = fopen(path, "r");
    char line[4096];
    size_t n = 0;

    cr_assert_not_null(fp, "cannot open %s", path);
    while (fgets(line, sizeof(line), fp)) {
        char *p = line, *end;

        while (*p && *p != '\n') {
            cr_assert_lt(n, max);
            out[n++] = strtof(p, &end); /* "nan" parses as NaN */
            cr_assert_neq(end, p, "bad number in %s", path);
            p = *end == ',' ? end + 1 : end;
        }
    }
    fclose(fp);
    return n;
}

static uint8_t *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    cr_assert_not_null(fp, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void load_fixture(void) {
    cr_assert_eq(read_csv(DIR "fixture_x.csv", X, NROWS * NF), NROWS * NF);
    cr_assert_eq(read_csv(DIR "fixture_pred.csv", PRED, NROWS), NROWS);
    cr_assert_eq(read_csv(DIR "fixture_contrib.csv", CONTRIB, NROWS * (NF + 1)), NROWS * (NF + 1));
}

TestSuite(model, .init = load_fixture);

static void check_scores(const char *file) {
    char err[256];
    sn_model_t *m = sn_model_load_file(file, NF, 2, err, sizeof(err));
    sn_model_ctx_t *ctx = sn_model_ctx_new(err, sizeof(err));
    float out[NROWS];
    double worst = 0;

    cr_assert_not_null(m, "%s", err);
    cr_assert_not_null(ctx, "%s", err);
    cr_assert_eq(sn_model_nfeatures(m), NF);
    cr_assert_eq(sn_model_rounds(m), 30);
    cr_assert_eq(sn_model_predict(m, ctx, X, NROWS, out, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < NROWS; i++) {
        double d = fabs((double)out[i] - (double)PRED[i]);

        if (d > worst) worst = d;
        cr_assert_leq(d, 1e-6, "row %d: C %.9g, Python %.9g", i, (double)out[i], (double)PRED[i]);
    }
    cr_log_info("%s: largest |C - Python| = %g over %d rows", file, worst, NROWS);
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(m);
}

Test(model, scores_equal_python_ubj) { check_scores(DIR "fixture.ubj"); }

Test(model, scores_equal_python_json) { check_scores(DIR "fixture.json"); }

Test(model, batch_equals_row_by_row) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 1, err, sizeof(err));
    sn_model_ctx_t *ctx = sn_model_ctx_new(err, sizeof(err));
    float batch[NROWS];

    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(sn_model_predict(m, ctx, X, NROWS, batch, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < NROWS; i++) {
        float one;

        cr_assert_eq(sn_model_predict(m, ctx, X + i * NF, 1, &one, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(one, batch[i], "row %d", i);
    }
    cr_assert_eq(sn_model_predict(m, ctx, X, 0, batch, err, sizeof(err)), 0);
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(m);
}

Test(model, contributions_equal_python_and_sum_to_margin) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 2, err, sizeof(err));
    float *c = malloc(sizeof(float) * NROWS * (NF + 1));

    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(sn_model_contribs(m, X, NROWS, c, err, sizeof(err)), 0, "%s", err);
    for (int i = 0; i < NROWS; i++) {
        double sum = 0, margin = log(PRED[i] / (1.0 - PRED[i]));

        for (int j = 0; j <= NF; j++) {
            cr_assert_leq(fabs(c[i * (NF + 1) + j] - CONTRIB[i * (NF + 1) + j]), 1e-5,
                          "row %d feature %d", i, j);
            sum += c[i * (NF + 1) + j];
        }
        cr_assert_leq(fabs(sum - margin), 1e-3, "row %d: contributions sum %g, margin %g", i, sum,
                      margin);
    }
    free(c);
    sn_model_destroy(m);
}

/* One contributions call for many rows must give each row what explaining it
 * alone gives, bit for bit, whichever rows are picked and in whatever order. */
Test(model, explain_rows_equals_explain_row_by_row) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 1, err, sizeof(err));
    size_t rows[64], n = 0, nb = 0;
    sn_model_reason_t *batch = calloc(NROWS * NF, sizeof(*batch)), one[3];

    cr_assert_not_null(m, "%s", err);
    for (size_t i = 0; i < 64; i++) rows[i] = (i * 37 + 11) % NROWS; /* scattered, repeats */
    cr_assert_eq(sn_model_explain_rows(m, X, rows, 64, 3, batch, &nb, err, sizeof(err)), 0, "%s",
                 err);
    cr_assert_eq(nb, 3);
    for (size_t i = 0; i < 64; i++) {
        cr_assert_eq(sn_model_explain(m, X + rows[i] * NF, 3, one, &n, err, sizeof(err)), 0, "%s",
                     err);
        cr_assert_eq(n, 3);
        for (size_t k = 0; k < 3; k++) {
            const sn_model_reason_t *b = &batch[i * 3 + k];

            cr_assert_eq(b->feature, one[k].feature, "row %zu reason %zu", rows[i], k);
            cr_assert_eq(memcmp(&b->contribution, &one[k].contribution, sizeof(float)), 0,
                         "row %zu reason %zu: %a vs %a", rows[i], k, (double)b->contribution,
                         (double)one[k].contribution);
            cr_assert_eq(memcmp(&b->value, &one[k].value, sizeof(float)), 0);
        }
    }
    /* rows NULL: the first nrows rows; k beyond the features is cut to them */
    cr_assert_eq(sn_model_explain_rows(m, X, NULL, NROWS, NF + 5, batch, &nb, err, sizeof(err)), 0,
                 "%s", err);
    cr_assert_eq(nb, NF);
    for (size_t i = 0; i < NROWS; i += 17) {
        sn_model_reason_t all[NF];

        cr_assert_eq(sn_model_explain(m, X + i * NF, NF, all, &n, err, sizeof(err)), 0, "%s", err);
        for (size_t k = 0; k < NF; k++)
            cr_assert_eq(batch[i * NF + k].contribution, all[k].contribution, "row %zu", i);
    }
    cr_assert_eq(sn_model_explain_rows(m, X, rows, 0, 3, batch, &nb, err, sizeof(err)), 0);
    cr_assert_eq(sn_model_explain_rows(m, X, NULL, SN_MODEL_EXPLAIN_ROWS_MAX + 1, 3, batch, &nb,
                                       err, sizeof(err)),
                 SN_ERR_INVALID);
    cr_assert(strstr(err, "more than"), "%s", err);
    free(batch);
    sn_model_destroy(m);
}

Test(model, explain_gives_the_top_contributions) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 1, err, sizeof(err));
    sn_model_reason_t r[3];
    size_t n = 0;

    cr_assert_not_null(m, "%s", err);
    for (int i = 0; i < 20; i++) {
        const float *c = CONTRIB + i * (NF + 1);

        cr_assert_eq(sn_model_explain(m, X + i * NF, 3, r, &n, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(n, 3);
        cr_assert_geq(r[0].contribution, r[1].contribution);
        cr_assert_geq(r[1].contribution, r[2].contribution);
        for (int j = 0; j < NF; j++) {
            /* nothing left out beats the third reason */
            if (j == (int)r[0].feature || j == (int)r[1].feature || j == (int)r[2].feature)
                continue;
            cr_assert_leq(c[j], r[2].contribution + 1e-5f);
        }
        for (int k = 0; k < 3; k++) {
            float v = X[i * NF + r[k].feature];

            cr_assert(isnan(v) ? isnan(r[k].value) : v == r[k].value);
        }
    }
    sn_model_destroy(m);
}

Test(model, warmup) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 1, err, sizeof(err));
    sn_model_ctx_t *ctx = sn_model_ctx_new(err, sizeof(err));

    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(sn_model_warmup(m, ctx, err, sizeof(err)), 0, "%s", err);
    sn_model_ctx_destroy(ctx);
    sn_model_destroy(m);
}

Test(model, refuses_feature_count_other_than_the_cards) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF + 1, 1, err, sizeof(err));

    cr_assert_null(m);
    cr_assert(strstr(err, "expects 9 features") && strstr(err, "yields 10"), "%s", err);
}

/* Every truncation of the file and a sample of corruptions are refused (or,
 * for a corruption that still parses, loaded consistently), never a crash:
 * ASan watches the reads. */
Test(model, refuses_corrupt_files) {
    char err[256];
    size_t len;
    uint8_t *buf = read_all(DIR "fixture.ubj", &len), *copy = malloc(len);
    sn_model_t *m;

    cr_assert_null(sn_model_load(buf, 0, 0, 1, err, sizeof(err)));
    cr_assert(strstr(err, "empty"), "%s", err);
    cr_assert_null(sn_model_load("binf garbage", 12, 0, 1, err, sizeof(err)));
    cr_assert(strstr(err, "not an XGBoost"), "%s", err);
    cr_assert_null(sn_model_load("{\"learner\": ", 12, 0, 1, err, sizeof(err)));
    cr_assert(strstr(err, "corrupt JSON"), "%s", err);
    cr_assert_null(sn_model_load("{\"x\": 1}", 8, 0, 1, err, sizeof(err)));
    for (size_t cut = 1; cut < len; cut += (cut < 64 ? 1 : 97)) {
        m = sn_model_load(buf, cut, 0, 1, err, sizeof(err));
        cr_assert_null(m, "truncated at %zu loaded", cut);
        cr_assert(strstr(err, "model:"), "%s", err);
    }
    m = sn_model_load(buf, len - 1, 0, 1, err, sizeof(err));
    cr_assert_null(m);
    cr_assert(strstr(err, "truncated") || strstr(err, "corrupt"), "%s", err);
    srand(1);
    for (int i = 0; i < 300; i++) {
        memcpy(copy, buf, len);
        copy[(size_t)rand() % len] ^= (uint8_t)(1 + rand() % 255);
        m = sn_model_load(copy, len, 0, 1, err, sizeof(err));
        if (m) {
            sn_model_ctx_t *ctx = sn_model_ctx_new(err, sizeof(err));
            float out[4];

            /* a flipped bit in a split value is still a model; it must behave as one */
            cr_assert_eq(sn_model_nfeatures(m), NF);
            sn_model_predict(m, ctx, X, 4, out, err, sizeof(err));
            sn_model_ctx_destroy(ctx);
            sn_model_destroy(m);
        }
    }
    free(copy);
    free(buf);
}

Test(model, save_round_trips_bytes) {
    char err[256];
    size_t len;
    uint8_t *buf = read_all(DIR "fixture.ubj", &len), *out = NULL, *out2 = NULL;
    size_t olen = 0, olen2 = 0;
    sn_model_t *m = sn_model_load(buf, len, NF, 1, err, sizeof(err)), *m2;

    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(sn_model_save(m, "ubj", &out, &olen, err, sizeof(err)), 0, "%s", err);
    m2 = sn_model_load(out, olen, NF, 1, err, sizeof(err));
    cr_assert_not_null(m2, "%s", err);
    cr_assert_eq(sn_model_save(m2, "ubj", &out2, &olen2, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(olen, olen2);
    cr_assert_eq(memcmp(out, out2, olen), 0);
    free(out2);
    cr_assert_neq(sn_model_save(m, "xml", &out2, &olen2, err, sizeof(err)), 0);
    cr_assert_null(out2);
    free(out);
    free(buf);
    sn_model_destroy(m2);
    sn_model_destroy(m);
}

struct worker {
    sn_model_t *m;
    float out[NROWS];
    int rc;
};

static void *predict_thread(void *arg) {
    struct worker *w = arg;
    char err[256];
    sn_model_ctx_t *ctx = sn_model_ctx_new(err, sizeof(err));

    w->rc = -1;
    if (!ctx) return NULL;
    for (int rep = 0;
         rep < 50 && (w->rc = sn_model_predict(w->m, ctx, X, NROWS, w->out, err, sizeof(err))) == 0;
         rep++)
        ;
    sn_model_ctx_destroy(ctx);
    return NULL;
}

Test(model, threads_with_own_contexts_share_a_model) {
    char err[256];
    sn_model_t *m = sn_model_load_file(DIR "fixture.ubj", NF, 1, err, sizeof(err));
    struct worker w[3];
    pthread_t t[3];

    cr_assert_not_null(m, "%s", err);
    for (int i = 0; i < 3; i++) {
        w[i].m = m;
        pthread_create(&t[i], NULL, predict_thread, &w[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(w[i].rc, 0);
        for (int r = 0; r < NROWS; r++) cr_assert_leq(fabs(w[i].out[r] - PRED[r]), 1e-6);
    }
    sn_model_destroy(m);
}

static sn_model_t *train_small_esr(uint64_t seed, double subsample, int esr,
                                   sn_model_train_info_t *info);

static sn_model_t *train_small(uint64_t seed, double subsample, sn_model_train_info_t *info) {
    return train_small_esr(seed, subsample, 10, info);
}

static sn_model_t *train_small_esr(uint64_t seed, double subsample, int esr,
                                   sn_model_train_info_t *info) {
    static float xs[2000 * NF];
    static uint8_t ys[2000];
    char err[256];
    sn_model_params_t p = {.rounds = 40,
                           .early_stopping_rounds = esr,
                           .max_depth = 3,
                           .eta = 0.3,
                           .subsample = subsample,
                           .colsample_bytree = 0.8,
                           .min_child_weight = 1,
                           .lambda = 1,
                           .eval_metric = "aucpr",
                           .seed = seed,
                           .nthread = 2};
    sn_model_data_t tr, va;
    sn_model_t *m = NULL;

    /* a synthetic separable-ish problem from the fixture rows */
    for (int i = 0; i < 2000; i++) {
        for (int j = 0; j < NF; j++)
            xs[i * NF + j] = X[(i % NROWS) * NF + j] + (float)((i * 7 + j) % 13) * 0.01f;
        ys[i] = PRED[i % NROWS] > 0.5f;
    }
    tr = (sn_model_data_t){xs, ys, 1500};
    va = (sn_model_data_t){xs + 1500 * NF, ys + 1500, 500};
    cr_assert_eq(sn_model_train(&p, NF, &tr, &va, NULL, NULL, &m, info, err, sizeof(err)), 0, "%s",
                 err);
    return m;
}

Test(model, training_is_deterministic_for_a_seed) {
    sn_model_train_info_t i1, i2, i3;
    sn_model_t *a = train_small(5, 0.7, &i1), *b = train_small(5, 0.7, &i2),
               *c = train_small(6, 0.7, &i3);
    uint8_t *ba, *bb, *bc;
    size_t la, lb, lc;
    char err[256];

    cr_assert_eq(sn_model_save(a, "ubj", &ba, &la, err, sizeof(err)), 0);
    cr_assert_eq(sn_model_save(b, "ubj", &bb, &lb, err, sizeof(err)), 0);
    cr_assert_eq(sn_model_save(c, "ubj", &bc, &lc, err, sizeof(err)), 0);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(ba, bb, la), 0, "same data and seed gave different model bytes");
    cr_assert(lc != la || memcmp(ba, bc, la) != 0, "another seed gave the same model");
    cr_assert_eq(sn_model_rounds(a), i1.best_round + 1);
    cr_assert_gt(i1.scale_pos_weight, 0);
    free(ba);
    free(bb);
    free(bc);
    sn_model_destroy(a);
    sn_model_destroy(b);
    sn_model_destroy(c);
}

Test(model, without_early_stopping_every_round_is_kept) {
    sn_model_train_info_t info;
    sn_model_t *m = train_small_esr(5, 1.0, 0, &info);

    cr_assert_eq(info.rounds_run, 40);
    cr_assert_eq(info.best_round, 39);
    cr_assert_eq(sn_model_rounds(m), 40);
    sn_model_destroy(m);
}

Test(model, xgboost_errors_are_one_line) {
    static float xs[20 * NF];
    static uint8_t ys[20];
    char err[512];
    sn_model_params_t p = {.rounds = 2,
                           .max_depth = -1,
                           .eta = 0.3,
                           .subsample = 1,
                           .colsample_bytree = 1,
                           .lambda = 1,
                           .eval_metric = "logloss",
                           .nthread = 1};
    sn_model_data_t d = {xs, ys, 20};
    sn_model_train_info_t info;
    sn_model_t *m = NULL;

    for (int i = 0; i < 20; i++) ys[i] = i % 2;
    /* XGBoost refuses the depth with a message and a stack trace: one line is kept */
    cr_assert_neq(sn_model_train(&p, NF, &d, &d, NULL, NULL, &m, &info, err, sizeof(err)), 0);
    cr_assert_null(m);
    cr_assert_null(strchr(err, '\n'), "%s", err);
    cr_assert(strstr(err, "max_depth"), "%s", err);
    cr_assert_null(strstr(err, "Stack trace"), "%s", err);
    cr_log_info("%s", err);
}
