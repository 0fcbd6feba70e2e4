/* The trainer end to end on the bundled AI4I data: the quality bar (holdout
 * PR-AUC >= 0.77 with the first 80 % of rows for training and validation),
 * determinism (same data and seed, same model bytes), both threshold
 * policies, labels from failure events and a horizon, and the promotion gate
 * (a model trained on shuffled labels is not promoted over a good one, a
 * better one is, and the decision is logged with both scores). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/err.h"
#include "scoring/card.h"
#include "scoring/features.h"
#include "scoring/model_conf.h"
#include "scoring/registry.h"
#include "scoring/trainer.h"

/* The telemetry.avsc numeric fields, as in test_source.c: the trainer is
 * tested on its own, without the codec. */
static const char *fields[] = {"air_temperature_k", "process_temperature_k", "rotational_speed_rpm",
                               "torque_nm",         "tool_wear_min",         "product_type"};
#define NFIELDS 6

static int field_index(void *opaque, const char *name) {
    (void)opaque;
    for (int i = 0; i < NFIELDS; i++)
        if (strcmp(fields[i], name) == 0) return i;
    return -1;
}

static int parse(void *opaque, int index, const char *text, double *out) {
    char *end;

    (void)opaque;
    if (index == 5) {
        static const char *sym[] = {"L", "M", "H"};
        for (int i = 0; i < 3; i++)
            if (strcmp(text, sym[i]) == 0) return *out = i, 0;
        return SN_ERR_INVALID;
    }
    *out = strtod(text, &end);
    return (*end || end == text) ? SN_ERR_INVALID : 0;
}

static const sn_source_schema_t schema = {NFIELDS, field_index, parse, NULL};

static const char *ai4i_map[] = {"air_temperature_k=Air temperature [K]",
                                 "process_temperature_k=Process temperature [K]",
                                 "rotational_speed_rpm=Rotational speed [rpm]",
                                 "torque_nm=Torque [Nm]",
                                 "tool_wear_min=Tool wear [min]",
                                 "product_type=Type",
                                 "tag.label=Machine failure"};

#define SPEC "tests/data/model/ai4i_features.json"

static sn_conf_t *conf;

static void setup(void) {
    const sn_conf_def_t *tables[] = {sn_model_conf_defs};
    char err[256];

    conf = sn_conf_new(tables, 1, err, sizeof(err));
    cr_assert_not_null(conf, "%s", err);
}

static void teardown(void) { sn_conf_destroy(conf); }

TestSuite(trainer, .init = setup, .fini = teardown, .timeout = 120);

/* The defaults of the config table, on the AI4I file (or another CSV with
 * its columns). */
static void ai4i_opts(sn_trainer_opts_t *o, const char *path) {
    memset(o, 0, sizeof(*o));
    sn_trainer_opts_from_conf(conf, o);
    o->source = (sn_source_opts_t){.kind = SN_SOURCE_CSV,
                                   .path = path,
                                   .map = ai4i_map,
                                   .nmap = 7,
                                   .machine_id = "ai4i-mill",
                                   .start_ms = 1767225600000LL,
                                   .step_ms = 60000};
    o->schema = &schema;
    o->spec_path = SPEC;
}

static sn_trainer_t *train(const sn_trainer_opts_t *o) {
    char err[512];
    sn_trainer_t *t = sn_trainer_new(o, err, sizeof(err));

    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(sn_trainer_run(t, err, sizeof(err)), 0, "%s", err);
    return t;
}

/* Removes a test's temporary tree. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *tmpdir(void) {
    char tmpl[] = "/tmp/sn_train_XXXXXX", *d = mkdtemp(tmpl);

    cr_assert_not_null(d);
    return strdup(d);
}

Test(trainer, ai4i_quality_bar) {
    sn_trainer_opts_t o;
    sn_trainer_t *t;
    const sn_trainer_result_t *r;
    char *card_text;
    sn_card_t *card;
    char err[256];

    ai4i_opts(&o, "data/ai4i2020.csv");
    t = train(&o);
    r = sn_trainer_result(t);
    sn_trainer_print_summary(t, stderr);
    /* the first 80 % of rows train and validate, the last 20 % are held out */
    cr_assert_eq(r->events, 10000);
    cr_assert_eq(r->train.events + r->valid.events, 8000);
    cr_assert_eq(r->holdout.events, 2000);
    cr_assert_eq(r->train.positives + r->valid.positives + r->holdout.positives, 339);
    cr_assert_lt(r->valid.to_ms, r->holdout.from_ms, "splits overlap in time");
    cr_assert_lt(r->train.to_ms, r->valid.from_ms, "splits overlap in time");
    cr_log_info(
        "AI4I holdout: PR-AUC %.4f ROC-AUC %.4f best F1 %.4f precision %.4f recall %.4f F1 %.4f "
        "alerts/1000 %.2f threshold %.4f, %d rounds, training %.2f s",
        r->test.pr_auc, r->test.roc_auc, r->test.best_f1, r->test.at.precision, r->test.at.recall,
        r->test.at.f1, r->test.at.alerts_per_1000, r->threshold, r->train_info.best_round + 1,
        r->train_seconds);
    cr_assert_geq(r->test.pr_auc, 0.77, "holdout PR-AUC %.4f below the bar", r->test.pr_auc);
    cr_assert_gt(r->test.roc_auc, 0.9);
    cr_assert_lt(r->train_seconds, 30);

    /* the card carries what the scorer and the drift job need */
    card_text = sn_trainer_card(t);
    card = sn_card_parse(card_text, strlen(card_text), err, sizeof(err));
    cr_assert_not_null(card, "%s", err);
    cr_assert_eq(sn_card_nfeatures(card), 9);
    cr_assert_str_eq(sn_card_feature_name(card, 8), "strain");
    cr_assert_float_eq(sn_card_threshold(card), (float)r->threshold, 0);
    cr_assert_float_eq(sn_card_metric(card, "holdout", "pr_auc"), r->test.pr_auc, 1e-8);
    cr_assert_str_eq(sn_card_get_str(card, "label.kind"), "field");
    cr_assert_str_eq(sn_card_get_str(card, "threshold.chosen_on"), "validation");
    cr_assert_str_eq(sn_card_get_str(card, "data.sha256"), r->data_sha256);
    cr_assert_eq(strlen(r->data_sha256), 64);
    cr_assert_str_eq(sn_card_get_str(card, "libraries.xgboost"), "1.7.4");
    cr_assert_null(sn_card_parent_version(card));
    {
        /* the spec comes back from the card bit for bit (power_w's scale is 2*pi/60) */
        const char *text = sn_card_feature_spec(card);
        sn_feature_spec_t *a = sn_feature_spec_load(SPEC, err, sizeof(err)),
                          *b = sn_feature_spec_parse(text, strlen(text), err, sizeof(err));
        char *ja, *jb;

        cr_assert(a && b, "%s", err);
        ja = sn_feature_spec_to_json(a);
        jb = sn_feature_spec_to_json(b);
        cr_assert_str_eq(ja, jb);
        cr_assert_eq(sn_feature_spec_layout_id(a), sn_feature_spec_layout_id(b));
        free(ja);
        free(jb);
        sn_feature_spec_destroy(a);
        sn_feature_spec_destroy(b);
    }
    {
        size_t len;
        const uint8_t *m = sn_trainer_model(t, &len);
        sn_card_profile_t p;
        uint64_t total = 0;

        cr_assert_eq(sn_card_verify_model(card, m, len, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(sn_card_profile(card, 3, &p), 0);
        cr_assert_str_eq(p.name, "torque_nm");
        cr_assert_eq(p.bins, 10);
        for (size_t k = 0; k < p.bins; k++) total += p.counts[k];
        cr_assert_eq(total + p.missing, r->train.events);
        cr_assert_eq(p.nsample, 2000);
        cr_assert_leq(p.edges[0], p.edges[5]);
        cr_assert_leq(p.edges[5], p.edges[10]);
    }
    sn_card_destroy(card);
    free(card_text);
    sn_trainer_destroy(t);
}

static void sha_of_file(const char *path, char hex[65]) {
    FILE *fp = fopen(path, "rb");
    static uint8_t buf[1 << 20];
    size_t n;

    cr_assert_not_null(fp, "%s", path);
    n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    sn_card_sha256_hex(buf, n, hex);
}

Test(trainer, deterministic_for_a_seed) {
    sn_trainer_opts_t o;
    char *d1 = tmpdir(), *d2 = tmpdir(), p1[512], p2[512], h1[65], h2[65], err[256];
    sn_trainer_t *a, *b;

    ai4i_opts(&o, "data/ai4i2020.csv");
    o.params.subsample = 0.8; /* sampling on: the seed has to carry the determinism */
    o.params.colsample_bytree = 0.8;
    a = train(&o);
    b = train(&o);
    cr_assert_eq(sn_trainer_write(a, d1, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sn_trainer_write(b, d2, err, sizeof(err)), 0, "%s", err);
    snprintf(p1, sizeof(p1), "%s/model.ubj", d1);
    snprintf(p2, sizeof(p2), "%s/model.ubj", d2);
    sha_of_file(p1, h1);
    sha_of_file(p2, h2);
    cr_log_info("model.ubj sha256 twice: %s %s", h1, h2);
    cr_assert_str_eq(h1, h2, "same data and seed, different model.ubj");
    cr_assert_str_eq(h1, sn_trainer_result(a)->model_sha256);
    sn_trainer_destroy(b);
    o.params.seed = 7;
    b = train(&o);
    cr_assert_str_neq(sn_trainer_result(b)->model_sha256, h1, "another seed gave the same model");
    sn_trainer_destroy(a);
    sn_trainer_destroy(b);
    rm_tree(d1);
    rm_tree(d2);
    free(d1);
    free(d2);
}

Test(trainer, threshold_policies) {
    sn_trainer_opts_t o;
    sn_trainer_t *f1, *prec;
    const sn_trainer_result_t *a, *b;

    ai4i_opts(&o, "data/ai4i2020.csv");
    f1 = train(&o);
    a = sn_trainer_result(f1);
    /* max-f1: the threshold's validation F1 is the best there is */
    cr_assert_float_eq(a->validation.at.f1, a->validation.best_f1, 1e-12);
    cr_assert_float_eq(a->threshold, a->validation.best_f1_threshold, 0);

    o.policy = SN_THRESHOLD_PRECISION;
    o.target_precision = 0.9;
    prec = train(&o);
    b = sn_trainer_result(prec);
    cr_assert(b->threshold_reached);
    cr_assert_geq(b->validation.at.precision, 0.9);
    /* the lowest such threshold: the next validation score below it misses the target */
    cr_assert_geq(b->validation.at.recall, 0.0);
    cr_log_info("max-f1 threshold %.4f (val P %.3f R %.3f), precision>=0.9 threshold %.4f (val P "
                "%.3f R %.3f)",
                a->threshold, a->validation.at.precision, a->validation.at.recall, b->threshold,
                b->validation.at.precision, b->validation.at.recall);

    o.target_precision = 1.0; /* likely out of reach: falls back, and says so */
    sn_trainer_destroy(prec);
    prec = train(&o);
    b = sn_trainer_result(prec);
    if (!b->threshold_reached) cr_assert_lt(b->validation.at.precision, 1.0);
    sn_trainer_destroy(f1);
    sn_trainer_destroy(prec);
}

/* A JSON-lines file from the synthetic fleet plus its failures file: labels
 * come from failures within the horizon after each event. */
Test(trainer, labels_from_failures_and_a_horizon) {
    char *d = tmpdir(), events[512], failures[512], err[512], line[1024];
    sn_source_opts_t fo = {.kind = SN_SOURCE_FLEET,
                           .machines = 20,
                           .seed = 3,
                           .start_ms = 1767225600000LL,
                           .step_ms = 60000,
                           .limit = 20 * 1500};
    sn_source_t *src;
    sn_event_t ev;
    FILE *ef, *ff;
    sn_trainer_opts_t o;
    sn_trainer_t *t;
    const sn_trainer_result_t *r;
    uint64_t nfail = 0;

    snprintf(events, sizeof(events), "%s/fleet.jsonl", d);
    snprintf(failures, sizeof(failures), "%s/failures.csv", d);
    ef = fopen(events, "w");
    ff = fopen(failures, "w");
    fo.failures_out = ff;
    src = sn_source_new(&fo, &schema, err, sizeof(err));
    cr_assert_not_null(src, "%s", err);
    while (sn_source_next(src, &ev, err, sizeof(err)) == 1) {
        fprintf(ef, "{\"machine_id\": \"%s\", \"ts\": %lld", ev.machine_id, (long long)ev.ts_ms);
        for (int i = 0; i < NFIELDS - 1; i++)
            fprintf(ef, ", \"%s\": %.17g", fields[i], ev.values[i]);
        fprintf(ef, ", \"product_type\": \"%s\"}\n",
                ev.values[5] == 0   ? "L"
                : ev.values[5] == 1 ? "M"
                                    : "H");
    }
    sn_source_destroy(src);
    fclose(ef);
    fclose(ff);
    ff = fopen(failures, "r");
    while (fgets(line, sizeof(line), ff)) nfail++;
    fclose(ff);
    cr_assert_gt(nfail, 20);

    memset(&o, 0, sizeof(o));
    sn_trainer_opts_from_conf(conf, &o);
    o.source = (sn_source_opts_t){.kind = SN_SOURCE_JSONL, .path = events};
    o.schema = &schema;
    o.failures_path = failures;
    o.horizon_ms = 30 * 60000;
    o.spec_json = sn_feature_spec_default_json(); /* with windows: the degradation is a trend */
    o.params.rounds = 200;
    t = train(&o);
    r = sn_trainer_result(t);
    sn_trainer_print_summary(t, stderr);
    cr_assert_eq(r->events, 30000);
    cr_assert_eq(r->machines, 20);
    /* each failure labels up to 31 events of its machine (the horizon at one-minute steps) */
    cr_assert_gt(r->train.positives + r->valid.positives + r->holdout.positives, nfail);
    cr_assert_leq(r->train.positives + r->valid.positives + r->holdout.positives, nfail * 31);
    /* rows within the horizon before a split are left out: 30 one-minute steps of 20 machines,
     * twice */
    cr_assert_eq(r->embargoed, 2 * 20 * 30);
    cr_assert_gt(r->test.roc_auc, 0.6);
    {
        char *card_text = sn_trainer_card(t);
        sn_card_t *card = sn_card_parse(card_text, strlen(card_text), err, sizeof(err));

        cr_assert_not_null(card, "%s", err);
        cr_assert_str_eq(sn_card_get_str(card, "label.kind"), "failures");
        cr_assert_float_eq(sn_card_get_num(card, "label.horizon_ms"), 1800000, 0);
        cr_assert_gt(sn_card_nfeatures(card), 30);
        sn_card_destroy(card);
        free(card_text);
    }
    sn_trainer_destroy(t);
    rm_tree(d);
    free(d);
}

Test(trainer, built_in_ai4i_spec_is_the_file) {
    char err[256];
    const char *text = sn_trainer_ai4i_spec_json();
    sn_feature_spec_t *a = sn_feature_spec_load(SPEC, err, sizeof(err)),
                      *b = sn_feature_spec_parse(text, strlen(text), err, sizeof(err));
    char *ja, *jb;

    cr_assert(a && b, "%s", err);
    ja = sn_feature_spec_to_json(a);
    jb = sn_feature_spec_to_json(b);
    cr_assert_str_eq(ja, jb);
    free(ja);
    free(jb);
    sn_feature_spec_destroy(a);
    sn_feature_spec_destroy(b);
}

Test(trainer, refuses_unusable_input) {
    sn_trainer_opts_t o;
    char err[512];

    ai4i_opts(&o, "tests/data/model/does-not-exist.csv");
    cr_assert_null(sn_trainer_new(&o, err, sizeof(err)));
    ai4i_opts(&o, "data/ai4i2020.csv");
    o.label_tag = "nope";
    cr_assert_null(sn_trainer_new(&o, err, sizeof(err)));
    cr_assert(strstr(err, "too few") || strstr(err, "no positive"), "%s", err);
}

/* ---- the promotion gate ---- */

/* Writes a copy of the AI4I file with the label column of the first 80 %
 * shuffled (seeded): a model that learns nothing, judged on a real holdout. */
static void write_shuffled(const char *path) {
    FILE *in = fopen("data/ai4i2020.csv", "r"), *out = fopen(path, "w");
    static char lines[10001][256];
    int n = 0, labels[10001];
    uint64_t s = 12345;

    cr_assert(in && out);
    while (n < 10001 && fgets(lines[n], sizeof(lines[n]), in)) n++;
    fclose(in);
    for (int i = 1; i < n; i++) labels[i] = lines[i][strlen(lines[i]) - 2] - '0';
    for (int i = 8000; i > 1; i--) { /* Fisher-Yates over rows 1..8000 */
        int j, tmp;

        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        j = 1 + (int)((s >> 33) % (uint64_t)i);
        tmp = labels[i];
        labels[i] = labels[j];
        labels[j] = tmp;
    }
    fputs(lines[0], out);
    for (int i = 1; i < n; i++) {
        lines[i][strlen(lines[i]) - 2] = (char)('0' + labels[i]);
        fputs(lines[i], out);
    }
    fclose(out);
}

/* Runs fn with stderr in a file and returns what was written. */
static char *capture_stderr_begin(int *saved, char *path) {
    int fd;

    snprintf(path, 64, "/tmp/sn_gate_log_XXXXXX");
    fd = mkstemp(path);
    fflush(stderr);
    *saved = dup(2);
    dup2(fd, 2);
    close(fd);
    return path;
}

static char *capture_stderr_end(int saved, const char *path) {
    FILE *fp;
    char *buf = calloc(1, 1 << 16);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fp = fopen(path, "r");
    fread(buf, 1, (1 << 16) - 1, fp);
    fclose(fp);
    unlink(path);
    return buf;
}

static sn_gate_result_t publish(sn_registry_t *reg, const char *csv, char **log) {
    sn_trainer_opts_t o;
    sn_gate_opts_t g = {.alias = "production",
                        .challenger_alias = "challenger",
                        .promote = 1,
                        .min_improvement = 0.005};
    sn_gate_result_t res;
    sn_trainer_t *t;
    char err[512], path[64];
    int saved, rc;

    ai4i_opts(&o, csv);
    t = train(&o);
    capture_stderr_begin(&saved, path);
    rc = sn_trainer_publish(t, reg, &g, &res, err, sizeof(err));
    *log = capture_stderr_end(saved, path);
    cr_assert_eq(rc, 0, "%s", err);
    sn_trainer_destroy(t);
    return res;
}

Test(trainer, gate_promotes_only_a_better_model) {
    char *d = tmpdir(), url[512], shuffled[512], err[512], v[SN_REGISTRY_VERSION_MAX], *log = NULL;
    sn_registry_opts_t ro = {.url = url, .model_name = "sentinel"};
    sn_registry_t *reg;
    sn_gate_result_t r1, r2, r3;

    snprintf(url, sizeof(url), "file://%s", d);
    snprintf(shuffled, sizeof(shuffled), "%s/shuffled.csv", d);
    write_shuffled(shuffled);
    reg = sn_registry_new(&ro, err, sizeof(err));
    cr_assert_not_null(reg, "%s", err);

    /* no production yet: the first model is promoted, however weak */
    r1 = publish(reg, shuffled, &log);
    cr_assert(r1.promoted);
    cr_assert_str_eq(r1.version, "1");
    cr_assert_str_eq(r1.production_version, "");
    cr_assert(strstr(log, "no production model: promoting version 1"), "%s", log);
    free(log);

    /* a good model beats it by far more than the margin */
    r2 = publish(reg, "data/ai4i2020.csv", &log);
    cr_log_info("gate: %s", r2.message);
    cr_assert(r2.promoted, "%s", r2.message);
    cr_assert_str_eq(r2.version, "2");
    cr_assert_str_eq(r2.production_version, "1");
    cr_assert_gt(r2.challenger_pr_auc, r2.production_pr_auc + 0.005);
    cr_assert(strstr(log, "challenger PR-AUC") && strstr(log, ">= production") &&
                  strstr(log, "promoting version 2"),
              "%s", log);
    free(log);
    cr_assert_eq(sn_registry_get_alias(reg, "production", v, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(v, "2");

    /* the shuffled-label model again: registered, not promoted, logged with both scores */
    r3 = publish(reg, shuffled, &log);
    cr_log_info("gate: %s", r3.message);
    cr_assert_not(r3.promoted, "%s", r3.message);
    cr_assert_str_eq(r3.version, "3");
    cr_assert_str_eq(r3.production_version, "2");
    cr_assert_lt(r3.challenger_pr_auc, r3.production_pr_auc);
    {
        char both[128];

        snprintf(both, sizeof(both),
                 "challenger PR-AUC %.3f < production %.3f + 0.005: not promoting",
                 r3.challenger_pr_auc, r3.production_pr_auc);
        cr_assert(strstr(log, both), "log lacks \"%s\":\n%s", both, log);
    }
    free(log);
    cr_assert_eq(sn_registry_get_alias(reg, "production", v, err, sizeof(err)), 0);
    cr_assert_str_eq(v, "2");
    cr_assert_eq(sn_registry_get_alias(reg, "challenger", v, err, sizeof(err)), 0);
    cr_assert_str_eq(v, "3");
    /* its card names the production version it was judged against */
    {
        char *card = NULL;
        size_t len;
        sn_card_t *c;

        cr_assert_eq(sn_registry_fetch(reg, "3", NULL, NULL, &card, &len, err, sizeof(err)), 0,
                     "%s", err);
        c = sn_card_parse(card, len, err, sizeof(err));
        cr_assert_not_null(c, "%s", err);
        cr_assert_str_eq(sn_card_parent_version(c), "2");
        sn_card_destroy(c);
        free(card);
    }
    /* and production can still be rolled back to the first version */
    cr_assert_eq(sn_registry_rollback(reg, "production", v, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(v, "1");
    sn_registry_destroy(reg);
    rm_tree(d);
    free(d);
}

Test(trainer, gate_rule) {
    char msg[320];

    cr_assert(sn_gate_decide(0.5, NAN, 0, 0.005, "1", "production", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "no production model: promoting version 1 (PR-AUC 0.500)");
    cr_assert_not(sn_gate_decide(0.741, 0.771, 1, 0.005, "4", "production", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "challenger PR-AUC 0.741 < production 0.771 + 0.005: not promoting");
    cr_assert_not(sn_gate_decide(0.775, 0.771, 1, 0.005, "4", "production", msg, sizeof(msg)));
    cr_assert(sn_gate_decide(0.7761, 0.771, 1, 0.005, "4", "production", msg, sizeof(msg)));
    cr_assert_str_eq(msg,
                     "challenger PR-AUC 0.776 >= production 0.771 + 0.005: promoting version 4");
    cr_assert_not(sn_gate_decide(NAN, 0.771, 1, 0.005, "4", "production", msg, sizeof(msg)));
}
