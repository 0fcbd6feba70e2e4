/* Metrics registry: values and their text rendering for every kind, label
 * escaping, name and label validation, the bounds and what happens at them,
 * exact totals under concurrent updates, render-time callbacks, and the
 * acceptance check that promtool accepts the output without a complaint. */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/metrics.h"

static void quiet(void) { sn_log_set_level(SN_LOG_ERROR); }

TestSuite(metrics, .init = quiet);

static sn_metrics_t *new_reg(size_t max) {
    char errstr[256];
    sn_metrics_t *reg = sn_metrics_new(max, errstr, sizeof(errstr));

    cr_assert_not_null(reg, "%s", errstr);
    return reg;
}

/* Renders into a string the test frees. */
static char *render(sn_metrics_t *reg) {
    char *out = NULL;
    size_t len = 0;

    cr_assert_eq(sn_metrics_render(reg, &out, &len, 0), 0);
    cr_assert_not_null(out);
    cr_assert_eq(strlen(out), len);
    return out;
}

static void assert_contains(const char *text, const char *needle) {
    cr_assert_not_null(strstr(text, needle), "expected to find:\n%s\nin:\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle) {
    cr_assert_null(strstr(text, needle), "did not expect:\n%s\nin:\n%s", needle, text);
}

static double rejected(sn_metrics_t *reg) {
    /* The registry's own counter is a normal counter: registering it again
     * returns the same handle. */
    return sn_counter_value(sn_metrics_counter(reg, SN_METRICS_REJECTED_NAME, "x"));
}

Test(metrics, counter_values_and_rendering) {
    sn_metrics_t *reg = new_reg(0);
    sn_counter_t *c = sn_metrics_counter(reg, "sentinel_events_total", "Events consumed.");
    sn_counter_t *s = sn_metrics_counter(reg, "sentinel_busy_seconds_total", "Time busy.");
    char *out;

    cr_assert_not_null(c);
    sn_counter_inc(c);
    sn_counter_add(c, 41);
    cr_assert_float_eq(sn_counter_value(c), 42.0, 1e-12);
    sn_counter_add_double(s, 0.25);
    sn_counter_add_double(s, -5);       /* ignored: counters never go down */
    sn_counter_add_double(s, NAN);      /* ignored */
    sn_counter_add_double(s, INFINITY); /* ignored */
    sn_counter_add(s, 1);
    cr_assert_float_eq(sn_counter_value(s), 1.25, 1e-12);
    out = render(reg);
    assert_contains(out, "# HELP sentinel_events_total Events consumed.\n"
                         "# TYPE sentinel_events_total counter\n"
                         "sentinel_events_total 42\n");
    assert_contains(out, "sentinel_busy_seconds_total 1.25\n");
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, gauges_double_and_int) {
    sn_metrics_t *reg = new_reg(0);
    sn_gauge_t *d = sn_metrics_gauge(reg, "sentinel_threshold", "Decision threshold.");
    sn_gauge_t *i = sn_metrics_gauge_int(reg, "sentinel_queue_depth", "Queued events.");
    char *out;

    sn_gauge_set(d, 0.75);
    sn_gauge_add(d, -0.5);
    sn_gauge_inc(d);
    cr_assert_float_eq(sn_gauge_value(d), 1.25, 1e-12);
    sn_gauge_set_int(i, 10);
    sn_gauge_inc(i);
    sn_gauge_dec(i);
    sn_gauge_dec(i);
    sn_gauge_add_int(i, -20);
    cr_assert_float_eq(sn_gauge_value(i), -11.0, 1e-12);
    sn_gauge_set(i, 2.6); /* rounded on an int gauge */
    cr_assert_float_eq(sn_gauge_value(i), 3.0, 1e-12);
    sn_gauge_set(i, NAN); /* ignored on an int gauge */
    cr_assert_float_eq(sn_gauge_value(i), 3.0, 1e-12);
    sn_gauge_set(i, 1e300); /* saturates */
    cr_assert_float_eq(sn_gauge_value(i), 9223372036854775807.0, 1);
    sn_gauge_set_int(i, -7);
    out = render(reg);
    assert_contains(out, "# TYPE sentinel_threshold gauge\nsentinel_threshold 1.25\n");
    assert_contains(out, "# TYPE sentinel_queue_depth gauge\nsentinel_queue_depth -7\n");
    free(out);
    sn_gauge_set(d, INFINITY);
    out = render(reg);
    assert_contains(out, "sentinel_threshold +Inf\n");
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, histogram_buckets_are_cumulative) {
    sn_metrics_t *reg = new_reg(0);
    const double b[] = {0.1, 0.5, 1};
    sn_histogram_t *h = sn_metrics_histogram(reg, "sentinel_score_seconds", "Scoring time.", b, 3);
    char *out;

    cr_assert_not_null(h);
    sn_histogram_observe(h, 0.05);
    sn_histogram_observe(h, 0.1); /* le is inclusive */
    sn_histogram_observe(h, 0.7);
    sn_histogram_observe(h, 5);
    sn_histogram_observe(h, NAN); /* ignored */
    cr_assert_eq(sn_histogram_count(h), 4);
    cr_assert_float_eq(sn_histogram_sum(h), 5.85, 1e-12);
    out = render(reg);
    assert_contains(out, "# HELP sentinel_score_seconds Scoring time.\n"
                         "# TYPE sentinel_score_seconds histogram\n"
                         "sentinel_score_seconds_bucket{le=\"0.1\"} 2\n"
                         "sentinel_score_seconds_bucket{le=\"0.5\"} 2\n"
                         "sentinel_score_seconds_bucket{le=\"1\"} 3\n"
                         "sentinel_score_seconds_bucket{le=\"+Inf\"} 4\n"
                         "sentinel_score_seconds_sum 5.85\n"
                         "sentinel_score_seconds_count 4\n");
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, histogram_many_buckets_binary_search) {
    sn_metrics_t *reg = new_reg(0);
    double b[20];
    sn_histogram_t *h;

    cr_assert_eq(sn_metrics_buckets_linear(b, 20, 1, 1), 0); /* 1..20 */
    h = sn_metrics_histogram(reg, "sentinel_batch_size", "Batch sizes.", b, 20);
    for (int v = 0; v <= 25; v++) sn_histogram_observe(h, v);
    cr_assert_eq(sn_histogram_count(h), 26);
    {
        char *out = render(reg);

        assert_contains(out, "sentinel_batch_size_bucket{le=\"1\"} 2\n"); /* 0 and 1 */
        assert_contains(out, "sentinel_batch_size_bucket{le=\"13\"} 14\n");
        assert_contains(out, "sentinel_batch_size_bucket{le=\"20\"} 21\n");
        assert_contains(out, "sentinel_batch_size_bucket{le=\"+Inf\"} 26\n");
        free(out);
    }
    sn_metrics_destroy(reg);
}

Test(metrics, le_labels_use_the_shortest_spelling) {
    sn_metrics_t *reg = new_reg(0);
    double b[4];
    char *out;

    cr_assert_eq(sn_metrics_buckets_exponential(b, 4, 0.005, 10), 0);
    cr_assert_not_null(sn_metrics_histogram(reg, "sentinel_lat_seconds", "Latency.", b, 4));
    out = render(reg);
    assert_contains(out, "le=\"0.005\"");
    assert_contains(out, "le=\"0.05\"");
    assert_contains(out, "le=\"0.5\"");
    assert_contains(out, "le=\"5\"");
    free(out);
    cr_assert_neq(sn_metrics_buckets_exponential(b, 4, 0, 10), 0);
    cr_assert_neq(sn_metrics_buckets_exponential(b, 4, 1, 1), 0);
    cr_assert_neq(sn_metrics_buckets_linear(b, 4, 0, 0), 0);
    sn_metrics_destroy(reg);
}

Test(metrics, histogram_bounds_validation) {
    sn_metrics_t *reg = new_reg(0);
    const double dec[] = {1, 0.5};
    const double dup[] = {1, 1};
    const double nan_b[] = {NAN};
    const double inf_end[] = {1, 2, INFINITY};
    double many[SN_METRICS_MAX_BUCKETS + 1];
    sn_histogram_t *h;

    cr_assert_null(sn_metrics_histogram(reg, "h_a", "x", dec, 2));
    cr_assert_null(sn_metrics_histogram(reg, "h_b", "x", dup, 2));
    cr_assert_null(sn_metrics_histogram(reg, "h_c", "x", nan_b, 1));
    cr_assert_null(sn_metrics_histogram(reg, "h_d", "x", NULL, 2));
    sn_metrics_buckets_linear(many, SN_METRICS_MAX_BUCKETS + 1, 1, 1);
    cr_assert_null(sn_metrics_histogram(reg, "h_e", "x", many, SN_METRICS_MAX_BUCKETS + 1));
    cr_assert_not_null(sn_metrics_histogram(reg, "h_f", "x", many, SN_METRICS_MAX_BUCKETS));
    /* A trailing +Inf is the implicit bucket: accepted, not doubled. */
    h = sn_metrics_histogram(reg, "h_g", "x", inf_end, 3);
    cr_assert_not_null(h);
    cr_assert_eq(sn_metrics_histogram(reg, "h_g", "x", inf_end, 2), h);
    /* No bounds at all: just +Inf, _sum and _count. */
    h = sn_metrics_histogram(reg, "h_h", "x", NULL, 0);
    cr_assert_not_null(h);
    sn_histogram_observe(h, 3);
    {
        char *out = render(reg);

        assert_contains(out, "h_g_bucket{le=\"2\"} 0\nh_g_bucket{le=\"+Inf\"} 0\n");
        assert_contains(out, "h_h_bucket{le=\"+Inf\"} 1\nh_h_sum 3\nh_h_count 1\n");
        free(out);
    }
    cr_assert_float_eq(rejected(reg), 5, 1e-9);
    sn_metrics_destroy(reg);
}

Test(metrics, exact_rendering_of_a_small_registry) {
    sn_metrics_t *reg = new_reg(0);
    sn_counter_vec_t *dlq =
        sn_metrics_counter_vec(reg, "sentinel_dlq_records_total",
                               "Records dead-lettered, by class.", (const char *[]){"class"}, 1, 8);
    sn_gauge_vec_t *lag = sn_metrics_gauge_int_vec(reg, "sentinel_consumer_lag",
                                                   "Messages behind the high watermark.",
                                                   (const char *[]){"topic", "partition"}, 2, 0);
    char *out;

    sn_counter_add(sn_counter_vec_get(dlq, (const char *[]){"bad_magic"}), 3);
    sn_counter_inc(sn_counter_vec_get(dlq, (const char *[]){"schema"}));
    sn_counter_inc(sn_counter_vec_get(dlq, (const char *[]){"bad_magic"}));
    sn_gauge_set_int(sn_gauge_vec_get(lag, (const char *[]){"telemetry", "3"}), 120);
    out = render(reg);
    cr_assert_str_eq(out, "# HELP sentinel_metrics_rejected_total Metrics, label sets and samples "
                          "refused because a registry bound was reached or the name or value was "
                          "invalid.\n"
                          "# TYPE sentinel_metrics_rejected_total counter\n"
                          "sentinel_metrics_rejected_total 0\n"
                          "# HELP sentinel_dlq_records_total Records dead-lettered, by class.\n"
                          "# TYPE sentinel_dlq_records_total counter\n"
                          "sentinel_dlq_records_total{class=\"bad_magic\"} 4\n"
                          "sentinel_dlq_records_total{class=\"schema\"} 1\n"
                          "# HELP sentinel_consumer_lag Messages behind the high watermark.\n"
                          "# TYPE sentinel_consumer_lag gauge\n"
                          "sentinel_consumer_lag{topic=\"telemetry\",partition=\"3\"} 120\n");
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, labelled_histogram) {
    sn_metrics_t *reg = new_reg(0);
    const double b[] = {0.01, 0.1};
    sn_histogram_vec_t *v = sn_metrics_histogram_vec(reg, "sentinel_stage_seconds", "Stage time.",
                                                     (const char *[]){"stage"}, 1, 4, b, 2);
    char *out;

    sn_histogram_observe(sn_histogram_vec_get(v, (const char *[]){"decode"}), 0.005);
    sn_histogram_observe(sn_histogram_vec_get(v, (const char *[]){"score"}), 0.05);
    out = render(reg);
    assert_contains(out, "sentinel_stage_seconds_bucket{stage=\"decode\",le=\"0.01\"} 1\n");
    assert_contains(out, "sentinel_stage_seconds_bucket{stage=\"score\",le=\"0.01\"} 0\n");
    assert_contains(out, "sentinel_stage_seconds_bucket{stage=\"score\",le=\"+Inf\"} 1\n");
    assert_contains(out, "sentinel_stage_seconds_sum{stage=\"score\"} 0.05\n");
    assert_contains(out, "sentinel_stage_seconds_count{stage=\"decode\"} 1\n");
    free(out);
    /* "le" cannot be a histogram label. */
    cr_assert_null(sn_metrics_histogram_vec(reg, "h_le", "x", (const char *[]){"le"}, 1, 4, b, 2));
    sn_metrics_destroy(reg);
}

Test(metrics, label_values_and_help_are_escaped) {
    sn_metrics_t *reg = new_reg(0);
    sn_counter_vec_t *v = sn_metrics_counter_vec(reg, "sentinel_odd_total",
                                                 "Help with a \\ backslash\nand a newline \"q\".",
                                                 (const char *[]){"path"}, 1, 4);
    char *out;

    sn_counter_inc(sn_counter_vec_get(v, (const char *[]){"a\"b\\c\nd"}));
    sn_counter_inc(sn_counter_vec_get(v, (const char *[]){"caf\xc3\xa9 \xe2\x82\xac"}));
    sn_counter_inc(sn_counter_vec_get(v, (const char *[]){""}));
    out = render(reg);
    assert_contains(out, "# HELP sentinel_odd_total Help with a \\\\ backslash\\nand a newline "
                         "\"q\".\n");
    assert_contains(out, "sentinel_odd_total{path=\"a\\\"b\\\\c\\nd\"} 1\n");
    assert_contains(out, "sentinel_odd_total{path=\"caf\xc3\xa9 \xe2\x82\xac\"} 1\n");
    assert_contains(out, "sentinel_odd_total{path=\"\"} 1\n");
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, names_and_labels_are_validated) {
    sn_metrics_t *reg = new_reg(0);
    char longname[SN_METRICS_NAME_MAX + 2];

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    cr_assert_null(sn_metrics_counter(reg, "1abc_total", "x"));
    cr_assert_null(sn_metrics_counter(reg, "a-b_total", "x"));
    cr_assert_null(sn_metrics_counter(reg, "", "x"));
    cr_assert_null(sn_metrics_counter(reg, NULL, "x"));
    cr_assert_null(sn_metrics_counter(reg, longname, "x"));
    cr_assert_null(sn_metrics_counter(reg, "no_help_total", ""));
    cr_assert_null(sn_metrics_counter(reg, "no_help_total", NULL));
    cr_assert_null(sn_metrics_counter(reg, "bad_help_total", "\xff"));
    cr_assert_not_null(sn_metrics_counter(reg, "ok:with_colon_total", "x"));
    cr_assert_not_null(sn_metrics_gauge(reg, "_leading_underscore", "x"));
    cr_assert_null(sn_metrics_counter_vec(reg, "v1_total", "x", (const char *[]){"__x"}, 1, 1));
    cr_assert_null(sn_metrics_counter_vec(reg, "v2_total", "x", (const char *[]){"a:b"}, 1, 1));
    cr_assert_null(sn_metrics_counter_vec(reg, "v3_total", "x", (const char *[]){"a", "a"}, 2, 1));
    cr_assert_null(sn_metrics_counter_vec(reg, "v4_total", "x", NULL, 1, 1));
    cr_assert_null(sn_metrics_counter_vec(reg, "v5_total", "x", (const char *[]){"a"}, 0, 1));
    cr_assert_null(sn_metrics_counter_vec(reg, "v6_total", "x", (const char *[]){"a"}, 1,
                                          SN_METRICS_MAX_SERIES + 1));
    cr_assert_float_eq(rejected(reg), 14, 1e-9);
    sn_metrics_destroy(reg);
}

Test(metrics, same_name_returns_same_handle_or_is_refused) {
    sn_metrics_t *reg = new_reg(0);
    sn_counter_t *a = sn_metrics_counter(reg, "sentinel_x_total", "x");
    const double b[] = {1};
    sn_counter_vec_t *v =
        sn_metrics_counter_vec(reg, "sentinel_v_total", "x", (const char *[]){"k"}, 1, 2);

    cr_assert_eq(sn_metrics_counter(reg, "sentinel_x_total", "other help"), a);
    cr_assert_null(sn_metrics_gauge(reg, "sentinel_x_total", "x"));
    cr_assert_eq(sn_metrics_counter_vec(reg, "sentinel_v_total", "x", (const char *[]){"k"}, 1, 9),
                 v);
    cr_assert_null(
        sn_metrics_counter_vec(reg, "sentinel_v_total", "x", (const char *[]){"j"}, 1, 2));
    /* A histogram's derived series clash with plain metrics, both ways round. */
    cr_assert_not_null(sn_metrics_histogram(reg, "sentinel_h", "x", b, 1));
    cr_assert_null(sn_metrics_gauge(reg, "sentinel_h_count", "x"));
    cr_assert_null(sn_metrics_counter(reg, "sentinel_h_bucket", "x"));
    cr_assert_not_null(sn_metrics_gauge(reg, "sentinel_g_sum", "x"));
    cr_assert_null(sn_metrics_histogram(reg, "sentinel_g", "x", b, 1));
    cr_assert_null(sn_metrics_histogram(reg, "sentinel_h", "x", (const double[]){2}, 1));
    sn_metrics_destroy(reg);
}

Test(metrics, bounds_on_metrics_and_series) {
    sn_metrics_t *reg = new_reg(3); /* one slot is the rejected counter */
    sn_counter_vec_t *v;
    sn_counter_t *a, *b;
    char toolong[SN_METRICS_VALUE_MAX + 2];
    char *out;

    v = sn_metrics_counter_vec(reg, "sentinel_v_total", "x", (const char *[]){"k"}, 1, 2);
    cr_assert_not_null(sn_metrics_gauge(reg, "sentinel_g", "x"));
    cr_assert_null(sn_metrics_gauge(reg, "sentinel_full", "x")); /* max_metrics reached */
    cr_assert_eq(sn_metrics_gauge_fn(reg, "sentinel_full_fn", "x", (sn_metrics_value_cb)NULL, NULL),
                 SN_ERR_INVALID);

    a = sn_counter_vec_get(v, (const char *[]){"a"});
    b = sn_counter_vec_get(v, (const char *[]){"b"});
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_neq(a, b);
    cr_assert_null(sn_counter_vec_get(v, (const char *[]){"c"})); /* max_series reached */
    cr_assert_null(sn_counter_vec_get(v, (const char *[]){"d"}));
    cr_assert_eq(sn_counter_vec_get(v, (const char *[]){"a"}), a); /* existing still found */
    sn_counter_inc(sn_counter_vec_get(v, (const char *[]){"e"}));  /* NULL: a no-op */
    memset(toolong, 'x', sizeof(toolong) - 1);
    toolong[sizeof(toolong) - 1] = '\0';
    cr_assert_null(sn_counter_vec_get(v, (const char *[]){toolong}));
    cr_assert_null(sn_counter_vec_get(v, (const char *[]){NULL}));
    cr_assert_null(sn_counter_vec_get(v, NULL));
    cr_assert_null(sn_counter_vec_get(NULL, (const char *[]){"a"}));
    cr_assert_float_eq(rejected(reg), 8, 1e-9);
    out = render(reg);
    assert_lacks(out, "k=\"c\"");
    assert_contains(out, "sentinel_metrics_rejected_total 8\n");
    free(out);
    sn_metrics_destroy(reg);

    {
        char errstr[128];

        cr_assert_null(sn_metrics_new(SN_METRICS_MAX_METRICS + 1, errstr, sizeof(errstr)));
        assert_contains(errstr, "max_metrics");
    }
}

Test(metrics, invalid_utf8_label_values_are_refused) {
    sn_metrics_t *reg = new_reg(0);
    sn_counter_vec_t *v =
        sn_metrics_counter_vec(reg, "sentinel_u_total", "x", (const char *[]){"k"}, 1, 8);
    const char *bad[] = {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_null(sn_counter_vec_get(v, (const char *[]){bad[i]}), "value %zu accepted", i);
    cr_assert_not_null(sn_counter_vec_get(v, (const char *[]){"\xf0\x9f\x98\x80"}));
    sn_metrics_destroy(reg);
}

Test(metrics, null_handles_are_no_ops) {
    sn_counter_inc(NULL);
    sn_counter_add(NULL, 3);
    sn_counter_add_double(NULL, 1);
    sn_gauge_set(NULL, 1);
    sn_gauge_add(NULL, 1);
    sn_gauge_set_int(NULL, 1);
    sn_gauge_add_int(NULL, 1);
    sn_gauge_inc(NULL);
    sn_gauge_dec(NULL);
    sn_histogram_observe(NULL, 1);
    cr_assert_eq(sn_counter_value(NULL), 0);
    cr_assert_eq(sn_gauge_value(NULL), 0);
    cr_assert_eq(sn_histogram_count(NULL), 0);
    cr_assert_null(sn_metrics_counter(NULL, "a_total", "x"));
    cr_assert_eq(sn_metrics_unregister_fn(NULL, NULL), 0);
    sn_metrics_destroy(NULL);
}

Test(metrics, render_cap_is_an_error_not_a_truncation) {
    sn_metrics_t *reg = new_reg(0);
    char *out = (char *)1;
    size_t len = 99;

    for (int i = 0; i < 50; i++) {
        char name[64];

        snprintf(name, sizeof(name), "sentinel_padding_%d_total", i);
        sn_counter_inc(sn_metrics_counter(reg, name, "Some help text to take up room."));
    }
    cr_assert_eq(sn_metrics_render(reg, &out, &len, 1024), SN_ERR_NOMEM);
    cr_assert_null(out);
    cr_assert_eq(len, 0);
    cr_assert_eq(sn_metrics_render(reg, &out, &len, 1 << 20), 0);
    cr_assert_gt(len, 1024);
    free(out);
    sn_metrics_destroy(reg);
}

Test(metrics, render_file_matches_render) {
    sn_metrics_t *reg = new_reg(0);
    char *a, *b = NULL;
    size_t blen = 0;
    FILE *fp;

    sn_counter_add(sn_metrics_counter(reg, "sentinel_a_total", "A."), 5);
    sn_histogram_observe(
        sn_metrics_histogram(reg, "sentinel_b_seconds", "B.", (const double[]){1, 2}, 2), 1.5);
    a = render(reg);
    fp = open_memstream(&b, &blen);
    cr_assert_not_null(fp);
    cr_assert_eq(sn_metrics_render_file(reg, fp), 0);
    fclose(fp);
    cr_assert_str_eq(b, a);
    free(a);
    free(b);
    sn_metrics_destroy(reg);
}

/* ---- callbacks ---------------------------------------------------------- */

struct lag_src {
    int npart;
    long lag[8];
    int calls;
};

static double oldest_age(void *opaque) { return *(double *)opaque; }

static void collect_lag(void *opaque, sn_metrics_emitter_t *em) {
    struct lag_src *s = opaque;

    s->calls++;
    for (int p = 0; p < s->npart; p++) {
        char part[16];

        snprintf(part, sizeof(part), "%d", p);
        sn_metrics_emit(em, (const char *[]){"telemetry", part}, (double)s->lag[p]);
    }
}

Test(metrics, callback_gauges_at_render_time) {
    sn_metrics_t *reg = new_reg(0);
    double age = 12.5;
    struct lag_src src = {.npart = 2, .lag = {5, 7}};
    char *out;

    cr_assert_eq(sn_metrics_gauge_fn(reg, "sentinel_oldest_unarchived_age_seconds",
                                     "Age of the oldest event not yet archived.", oldest_age, &age),
                 0);
    cr_assert_eq(sn_metrics_gauge_vec_fn(reg, "sentinel_consumer_lag", "Lag per partition.",
                                         (const char *[]){"topic", "partition"}, 2, 3, collect_lag,
                                         &src),
                 0);
    out = render(reg);
    assert_contains(out, "# TYPE sentinel_oldest_unarchived_age_seconds gauge\n"
                         "sentinel_oldest_unarchived_age_seconds 12.5\n");
    assert_contains(out, "# TYPE sentinel_consumer_lag gauge\n"
                         "sentinel_consumer_lag{topic=\"telemetry\",partition=\"0\"} 5\n"
                         "sentinel_consumer_lag{topic=\"telemetry\",partition=\"1\"} 7\n");
    free(out);

    /* NaN omits the sample (and the family), no partitions omits the family. */
    age = NAN;
    src.npart = 0;
    out = render(reg);
    assert_lacks(out, "sentinel_oldest_unarchived_age_seconds");
    assert_lacks(out, "sentinel_consumer_lag");
    free(out);

    /* Past max_series (3) samples are dropped and counted. */
    src.npart = 5;
    out = render(reg);
    assert_contains(out, "partition=\"2\"} 0\n");
    assert_lacks(out, "partition=\"3\"");
    free(out);
    cr_assert_float_eq(rejected(reg), 2, 1e-9);

    /* Unregistered: never called again, gone from the output. */
    cr_assert_eq(sn_metrics_unregister_fn(reg, &src), 1);
    src.calls = 0;
    out = render(reg);
    assert_lacks(out, "sentinel_consumer_lag");
    cr_assert_eq(src.calls, 0);
    free(out);
    /* Registering again re-attaches. */
    age = 1;
    cr_assert_eq(
        sn_metrics_gauge_fn(reg, "sentinel_oldest_unarchived_age_seconds", "x", oldest_age, &age),
        0);
    out = render(reg);
    assert_contains(out, "sentinel_oldest_unarchived_age_seconds 1\n");
    free(out);
    cr_assert_eq(
        sn_metrics_gauge_fn(reg, "sentinel_oldest_unarchived_age_seconds", "x", NULL, NULL),
        SN_ERR_INVALID);
    sn_metrics_destroy(reg);
}

static void collect_bad(void *opaque, sn_metrics_emitter_t *em) {
    (void)opaque;
    cr_assert_eq(sn_metrics_emit(em, (const char *[]){"\xff"}, 1), SN_ERR_INVALID);
    cr_assert_eq(sn_metrics_emit(em, NULL, 1), SN_ERR_INVALID);
    cr_assert_eq(sn_metrics_emit(em, (const char *[]){"ok\"q"}, 2), 0);
}

Test(metrics, collector_values_are_validated_and_escaped) {
    sn_metrics_t *reg = new_reg(0);
    char *out;

    cr_assert_eq(sn_metrics_gauge_vec_fn(reg, "sentinel_c", "x", (const char *[]){"k"}, 1, 4,
                                         collect_bad, NULL),
                 0);
    out = render(reg);
    assert_contains(out, "sentinel_c{k=\"ok\\\"q\"} 2\n");
    free(out);
    cr_assert_float_eq(rejected(reg), 2, 1e-9);
    sn_metrics_destroy(reg);
}

/* ---- concurrency -------------------------------------------------------- */

#define NTHREADS 8
#define NITER 200000

struct shared {
    sn_metrics_t *reg;
    sn_counter_t *c;
    sn_counter_vec_t *vec;
    sn_gauge_t *g;
    sn_gauge_t *gd;
    sn_histogram_t *h;
    sn_counter_t *frac;
    int id;
};

static void *hammer(void *arg) {
    struct shared *s = arg;
    char mine[16];
    sn_counter_t *own, *common;

    snprintf(mine, sizeof(mine), "t%d", s->id);
    /* Every thread races to create the same series and one of its own. */
    common = sn_counter_vec_get(s->vec, (const char *[]){"common"});
    own = sn_counter_vec_get(s->vec, (const char *[]){mine});
    for (int i = 0; i < NITER; i++) {
        sn_counter_inc(s->c);
        sn_counter_inc(common);
        sn_counter_inc(own);
        sn_gauge_inc(s->g);
        sn_gauge_add(s->gd, 1);
        sn_histogram_observe(s->h, (double)(i % 4));
        sn_counter_add_double(s->frac, 0.5);
        if (i % 50000 == 0) /* lock-free lookups of an existing series */
            cr_assert_eq(sn_counter_vec_get(s->vec, (const char *[]){"common"}), common);
    }
    return NULL;
}

static void *scraper(void *arg) {
    struct shared *s = arg;

    for (int i = 0; i < 50; i++) {
        char *out = NULL;
        size_t len;

        cr_assert_eq(sn_metrics_render(s->reg, &out, &len, 0), 0);
        free(out);
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_exact) {
    struct shared base = {0}, args[NTHREADS];
    pthread_t th[NTHREADS], scr;
    const double b[] = {0.5, 1.5, 2.5};
    char *out;

    base.reg = new_reg(0);
    base.c = sn_metrics_counter(base.reg, "sentinel_hot_total", "x");
    base.vec = sn_metrics_counter_vec(base.reg, "sentinel_hot_vec_total", "x",
                                      (const char *[]){"who"}, 1, NTHREADS + 1);
    base.g = sn_metrics_gauge_int(base.reg, "sentinel_hot_gauge", "x");
    base.gd = sn_metrics_gauge(base.reg, "sentinel_hot_gauge_d", "x");
    base.h = sn_metrics_histogram(base.reg, "sentinel_hot_h", "x", b, 3);
    base.frac = sn_metrics_counter(base.reg, "sentinel_hot_seconds_total", "x");
    for (int i = 0; i < NTHREADS; i++) {
        args[i] = base;
        args[i].id = i;
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    cr_assert_eq(pthread_create(&scr, NULL, scraper, &base), 0);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    pthread_join(scr, NULL);

    cr_assert_float_eq(sn_counter_value(base.c), (double)NTHREADS * NITER, 0.5);
    cr_assert_float_eq(sn_gauge_value(base.g), (double)NTHREADS * NITER, 0.5);
    cr_assert_float_eq(sn_gauge_value(base.gd), (double)NTHREADS * NITER, 0.5);
    cr_assert_float_eq(sn_counter_value(base.frac), (double)NTHREADS * NITER * 0.5, 0.5);
    cr_assert_eq(sn_histogram_count(base.h), (uint64_t)NTHREADS * NITER);
    cr_assert_float_eq(sn_histogram_sum(base.h), (double)NTHREADS * NITER * 1.5, 0.5);
    out = render(base.reg);
    {
        char line[128];

        snprintf(line, sizeof(line), "sentinel_hot_vec_total{who=\"common\"} %d\n",
                 NTHREADS * NITER);
        assert_contains(out, line);
        snprintf(line, sizeof(line), "sentinel_hot_vec_total{who=\"t%d\"} %d\n", NTHREADS - 1,
                 NITER);
        assert_contains(out, line);
        snprintf(line, sizeof(line), "sentinel_hot_h_bucket{le=\"0.5\"} %d\n",
                 NTHREADS * NITER / 4);
        assert_contains(out, line);
        snprintf(line, sizeof(line), "sentinel_hot_h_count %d\n", NTHREADS * NITER);
        assert_contains(out, line);
    }
    free(out);
    sn_metrics_destroy(base.reg);
}

/* ---- acceptance: promtool --------------------------------------------- */

static double five(void *opaque) {
    (void)opaque;
    return 5;
}

static void collect_two(void *opaque, sn_metrics_emitter_t *em) {
    (void)opaque;
    sn_metrics_emit(em, (const char *[]){"0"}, 10);
    sn_metrics_emit(em, (const char *[]){"1"}, 0);
}

/* Every kind of metric, labels with characters that need escaping, help text
 * with a newline, as a real deployment would name them. */
static sn_metrics_t *full_registry(void) {
    sn_metrics_t *reg = new_reg(0);
    const double lat[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5};
    const double sizes[] = {1, 10, 100, 1000};
    sn_counter_vec_t *dlq;
    sn_gauge_vec_t *gv;
    sn_histogram_vec_t *hv;

    sn_counter_add(sn_metrics_counter(reg, "sentinel_events_consumed_total",
                                      "Telemetry events consumed from Kafka."),
                   123456);
    sn_counter_add_double(
        sn_metrics_counter(reg, "sentinel_scoring_cpu_seconds_total", "CPU time spent scoring."),
        12.75);
    sn_gauge_set(sn_metrics_gauge(reg, "sentinel_model_threshold_ratio",
                                  "Decision threshold of the serving model."),
                 0.42);
    sn_gauge_set_int(
        sn_metrics_gauge_int(reg, "sentinel_batch_queue_depth", "Events waiting to be scored."),
        17);
    {
        sn_histogram_t *h =
            sn_metrics_histogram(reg, "sentinel_score_latency_seconds",
                                 "Time to score one batch.\nMeasured per batch.", lat, 8);

        for (int i = 0; i < 1000; i++) sn_histogram_observe(h, i / 997.0);
    }
    dlq = sn_metrics_counter_vec(reg, "sentinel_dlq_records_total",
                                 "Records sent to the dead-letter topic, by error class.",
                                 (const char *[]){"class"}, 1, 16);
    sn_counter_add(sn_counter_vec_get(dlq, (const char *[]){"bad_magic"}), 3);
    sn_counter_inc(sn_counter_vec_get(dlq, (const char *[]){"schema \"v2\" \\ unknown\nid"}));
    gv = sn_metrics_gauge_vec(reg, "sentinel_feature_window_fill_ratio",
                              "Fill of the rolling window per feature.",
                              (const char *[]){"feature", "window"}, 2, 16);
    sn_gauge_set(sn_gauge_vec_get(gv, (const char *[]){"temp", "1m"}), 0.5);
    hv = sn_metrics_histogram_vec(reg, "sentinel_batch_size_events", "Events per batch, by stage.",
                                  (const char *[]){"stage"}, 1, 4, sizes, 4);
    sn_histogram_observe(sn_histogram_vec_get(hv, (const char *[]){"decode"}), 64);
    sn_histogram_observe(sn_histogram_vec_get(hv, (const char *[]){"score"}), 500);
    sn_metrics_gauge_fn(reg, "sentinel_archive_oldest_unarchived_age_seconds",
                        "Age of the oldest event not yet archived to S3.", five, NULL);
    sn_metrics_gauge_vec_fn(reg, "sentinel_consumer_lag_messages",
                            "Messages behind the high watermark, per partition.",
                            (const char *[]){"partition"}, 1, 64, collect_two, NULL);
    return reg;
}

Test(metrics, promtool_check_metrics_accepts_the_output) {
    sn_metrics_t *reg = full_registry();
    char path[] = "/tmp/sn_metrics_promtool_XXXXXX";
    char cmd[256], report[4096];
    const char *promtool = getenv("SN_PROMTOOL") ? getenv("SN_PROMTOOL") : "promtool";
    size_t n;
    FILE *fp, *pp;
    int fd, status;

    fd = mkstemp(path);
    cr_assert(fd >= 0);
    fp = fdopen(fd, "w");
    cr_assert_not_null(fp);
    cr_assert_eq(sn_metrics_render_file(reg, fp), 0);
    cr_assert_eq(fclose(fp), 0);

    /* Lint problems go to stdout and parse errors to stderr: both are failures. */
    snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", promtool, path);
    pp = popen(cmd, "r");
    cr_assert_not_null(pp);
    n = fread(report, 1, sizeof(report) - 1, pp);
    report[n] = '\0';
    status = pclose(pp);
    {
        char *text = NULL;
        size_t len;

        sn_metrics_render(reg, &text, &len, 0);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "'%s' failed (status %d; 127 means promtool is not installed):\n%s\n"
                  "--- input ---\n%s",
                  cmd, status, report, text);
        cr_assert_eq(n, 0, "promtool complained:\n%s\n--- input ---\n%s", report, text);
        free(text);
    }
    unlink(path);
    sn_metrics_destroy(reg);
}

/* The check above is only worth something if promtool does fail on problems. */
Test(metrics, promtool_rejects_a_lint_problem) {
    sn_metrics_t *reg = new_reg(0);
    char path[] = "/tmp/sn_metrics_promtool_XXXXXX";
    char cmd[256], report[1024];
    const char *promtool = getenv("SN_PROMTOOL") ? getenv("SN_PROMTOOL") : "promtool";
    FILE *fp, *pp;
    size_t n;
    int fd;

    sn_counter_inc(sn_metrics_counter(reg, "sentinel_events", "A counter without _total."));
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    fp = fdopen(fd, "w");
    cr_assert_eq(sn_metrics_render_file(reg, fp), 0);
    fclose(fp);
    snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", promtool, path);
    pp = popen(cmd, "r");
    cr_assert_not_null(pp);
    n = fread(report, 1, sizeof(report) - 1, pp);
    report[n] = '\0';
    cr_assert_neq(pclose(pp), 0);
    assert_contains(report, "_total");
    unlink(path);
    sn_metrics_destroy(reg);
}
