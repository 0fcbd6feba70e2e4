/* drift.h: has the data moved away from what the model was trained on?
 *
 * For every feature of a model card this compares the current feature values
 * with the card's training profile (scoring/card.h) in two ways:
 *
 *   PSI  the population stability index over the training quantile bins,
 *        PSI = sum_i (a_i - e_i) ln(a_i / e_i), a_i and e_i the current and
 *        expected proportions. The cells are the card's bins plus one cell
 *        for missing values (NaN), so a feature that starts to go missing
 *        drifts too. Proportions are over all events, missing included. An
 *        empty cell gets the proportion drift.psi.floor (default 1e-4) on the
 *        side where it is empty, without renormalising; a cell empty on both
 *        sides contributes exactly 0. tools/reference/drift_reference.py
 *        applies the same rule.
 *   KS   the two-sample Kolmogorov-Smirnov test of the current non-missing
 *        values against the card's reference sample, matching
 *        scipy.stats.ks_2samp(a, b) (scipy 1.13, alternative='two-sided',
 *        method='auto'):
 *          max(n1, n2) <= 10000: the exact distribution (scipy's
 *            _compute_prob_outside_square for n1 == n2, the Hodges/Viehmann
 *            "inside" lattice-path recursion otherwise), D rounded to
 *            h / lcm(n1, n2) as scipy does;
 *          larger, or when the exact recursion fails numerically: the
 *            asymptotic mode, kstwo.sf(D, round(n1 n2 / (n1 + n2))), with
 *            kstwo ported from scipy.stats._ksstats (Ruben-Gambino ends,
 *            2 * smirnov above n x^2 = 2.2, Durbin / Marsaglia-Tsang-Wang
 *            matrix, Pelz-Good). One deviation: where scipy uses Pomeranz
 *            (n <= 140, 0.754693 < n x^2 <= 4) this uses the Durbin matrix,
 *            which is exact as well (agrees within ~1e-12). scipy's smirnov
 *            is computed by the Birnbaum-Tingey sum in log space: equal
 *            within 1e-10 for n up to 1e6, but it underflows to 0 below
 *            ~1e-300 where scipy still returns a tiny number.
 *
 * Verdict per feature: drifted when PSI >= drift.psi.threshold or the KS
 * p-value < drift.ks.alpha / nfeatures (Bonferroni over the features). The
 * KS test assumes independent values; window aggregates (features named
 * "<field>__<aggregate>_<window>") of successive events share most of their
 * window, so their KS p-values are far too small (measured: a false alarm in
 * 20 of 20 unshifted runs). Unless drift.ks.windowed is set, their KS result
 * is reported but only PSI decides for them. With
 * fewer than drift.min.events events every feature and the whole report say
 * "not enough data", never "no drift".
 *
 * Score drift (sn_drift_enable_score): the model's own scores in the window
 * (the scorer's telemetry.scores records) against the card's score profile
 * (profile.score, the model's holdout scores), one more row named "score"
 * with the same PSI and KS. It is one more test in the family: the KS level
 * becomes drift.ks.alpha / (features + 1). Its KS decides like a window
 * aggregate's (PSI only, unless drift.ks.windowed) when any feature of the
 * card is a window aggregate, since the score inherits their dependence. It
 * needs drift.min.events scores for a verdict; a drifted score makes the
 * report "drift", too few scores leave only its row "not enough data".
 *
 * A handle is used by one thread at a time. */
#ifndef SN_DRIFT_H
#define SN_DRIFT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/conf.h"
#include "scoring/card.h"

/* Exit codes of `sentinel drift` beyond 0 (no drift), 1 and 2. */
#define SN_EXIT_DRIFT 3
#define SN_EXIT_DRIFT_NO_DATA 4

/* ---- statistics ---- */

/* One two-sample KS test, as scipy.stats.ks_2samp reports it. */
typedef struct sn_drift_ks {
    double d;  /* the statistic */
    double p;  /* two-sided p-value */
    int exact; /* 1: exact distribution, 0: asymptotic (kstwo) */
} sn_drift_ks_t;

/* The two-sample KS test of a (na values) against b (nb values). Both arrays
 * are caller-owned and SORTED IN PLACE. NaN values are not allowed (drop
 * them first). SN_ERR_INVALID when a sample is empty, SN_ERR_NOMEM. */
int sn_drift_ks_2samp(double *a, size_t na, double *b, size_t nb, sn_drift_ks_t *out);

/* scipy.stats.kstwo.sf(x, n): P(D_n >= x) for the one-sample two-sided
 * statistic; the asymptotic mode of sn_drift_ks_2samp. NaN for n < 1. */
double sn_drift_kstwo_sf(double x, uint64_t n);

/* PSI of actual against expected counts over ncells cells (both borrowed),
 * with the floor rule above. 0 when either side has no events. */
double sn_drift_psi(const uint64_t *expected, const uint64_t *actual, size_t ncells,
                    double psi_floor);

/* ---- a drift check against a card ---- */

typedef struct sn_drift_opts {
    double psi_threshold;
    double ks_alpha; /* family-wise; divided by the number of features */
    double psi_floor;
    uint64_t min_events;
    uint64_t max_events; /* values kept per feature for KS (reservoir beyond) */
    int ks_windowed;     /* let KS flag window aggregates too */
} sn_drift_opts_t;

/* Fills opts from the drift.* keys of conf (borrowed for the call). */
void sn_drift_opts_from_conf(const sn_conf_t *conf, sn_drift_opts_t *opts);

enum sn_drift_verdict {
    SN_DRIFT_NONE = 0,       /* no drift */
    SN_DRIFT_DRIFTED = 1,    /* drift */
    SN_DRIFT_NOT_ENOUGH = 2, /* fewer than min_events events: no verdict */
};

/* "no drift", "drift", "not enough data". */
const char *sn_drift_verdict_str(enum sn_drift_verdict v);

/* One feature's result, valid after sn_drift_finish(). */
typedef struct sn_drift_feature {
    const char *name; /* borrowed from the card */
    uint64_t n;       /* events seen */
    uint64_t missing; /* of which NaN */
    double psi;
    sn_drift_ks_t ks;      /* p NaN when either side has no values */
    int windowed;          /* a window aggregate (see above) */
    int psi_flag, ks_flag; /* ks_flag: p below the Bonferroni level and KS may decide */
    enum sn_drift_verdict verdict;
    /* histogram for reports: bins + 1 cells (the last: missing), borrowed
     * from the handle */
    size_t ncells;
    const uint64_t *expected, *actual;
    const double *edges; /* bins + 1 edges, borrowed from the card */
} sn_drift_feature_t;

typedef struct sn_drift sn_drift_t;

/* A check of card (borrowed: must outlive the handle) with opts (copied).
 * NULL with errstr set when the card has no profile or is malformed. Memory:
 * about 4 * nfeatures * min(events, max_events) bytes. Free with
 * sn_drift_destroy(). */
sn_drift_t *sn_drift_new(const sn_card_t *card, const sn_drift_opts_t *opts, char *errstr,
                         size_t errstr_size);

/* NULL-safe. */
void sn_drift_destroy(sn_drift_t *d);

/* Adds one event's feature vector x (sn_card_nfeatures() floats, borrowed,
 * in the card's order). SN_ERR_NOMEM. */
int sn_drift_add(sn_drift_t *d, const float *x);

/* Adds the score row: SN_ERR_NOENT when the card has no score profile. */
int sn_drift_enable_score(sn_drift_t *d, char *errstr, size_t errstr_size);

/* Adds one of the model's scores (NaN counts as missing). SN_ERR_NOMEM;
 * SN_ERR_INVALID before sn_drift_enable_score(). */
int sn_drift_add_score(sn_drift_t *d, double score);

/* Computes every feature's statistics and verdicts; call once, after the
 * last sn_drift_add(). Returns the overall verdict (>= 0: drifted when any
 * feature drifted), or a negative sn_err. */
int sn_drift_finish(sn_drift_t *d, char *errstr, size_t errstr_size);

size_t sn_drift_nfeatures(const sn_drift_t *d);
uint64_t sn_drift_events(const sn_drift_t *d);

/* Feature i's result (borrowed from the handle), NULL when out of range. */
const sn_drift_feature_t *sn_drift_feature(const sn_drift_t *d, size_t i);

/* The score row's result (borrowed), NULL when scores are not compared. */
const sn_drift_feature_t *sn_drift_score(const sn_drift_t *d);

/* Scores added; the tests in the Bonferroni family (features, + 1 with the
 * score row). */
uint64_t sn_drift_scores(const sn_drift_t *d);
size_t sn_drift_ntests(const sn_drift_t *d);

/* Optional context printed in the reports (copied; NULL for none): the
 * model version and a description of the input. */
int sn_drift_set_context(sn_drift_t *d, const char *model, const char *version, const char *input,
                         int64_t from_ms, int64_t to_ms);

/* A fixed-width table, one line per feature, drifted ones marked. */
void sn_drift_print_table(const sn_drift_t *d, FILE *out);

/* The report as indented JSON. Caller frees with free(); NULL when out of
 * memory. */
char *sn_drift_report_json(const sn_drift_t *d);

/* A self-contained HTML report (no scripts, no external files): the table,
 * and per drifted feature an inline SVG histogram of reference vs current
 * proportions over the training bins. */
int sn_drift_write_html(const sn_drift_t *d, FILE *out);

#endif
