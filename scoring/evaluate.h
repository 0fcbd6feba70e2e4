/* evaluate.h: the metrics a binary failure classifier is judged by.
 *
 * Scores are probabilities (higher = more likely to fail) and labels 0/1. The
 * ranking metrics match scikit-learn exactly, ties included, so numbers in a
 * model card can be checked against a notebook:
 *   - PR-AUC is average precision, sum over distinct thresholds of
 *     (R_k - R_{k-1}) * P_k (sklearn.metrics.average_precision_score), not the
 *     trapezoidal area, which is optimistic on imbalanced data;
 *   - ROC-AUC is the trapezoidal area under the ROC curve over distinct
 *     thresholds (sklearn.metrics.roc_auc_score), i.e. the Mann-Whitney
 *     statistic with ties counted one half.
 * An event is flagged when score >= threshold. Pure C, no allocation except a
 * sort index inside the calls that need one. */
#ifndef SN_EVALUATE_H
#define SN_EVALUATE_H

#include <stddef.h>
#include <stdint.h>

/* Confusion counts and the rates derived from them at one threshold. */
typedef struct sn_eval_point {
    double threshold;
    uint64_t tp, fp, fn, tn;
    double precision;       /* tp / (tp + fp); 0 when nothing is flagged */
    double recall;          /* tp / (tp + fn); 0 when there are no positives */
    double f1;              /* harmonic mean; 0 when precision + recall is 0 */
    double alerts_per_1000; /* flagged events per 1,000 events */
} sn_eval_point_t;

/* Everything the trainer reports for one split. */
typedef struct sn_eval_report {
    uint64_t n, positives;
    double pr_auc;  /* average precision; NaN without positives */
    double roc_auc; /* NaN when one class is absent */
    double best_f1; /* best F1 over all thresholds */
    double best_f1_threshold;
    sn_eval_point_t at; /* at the threshold that was asked for */
} sn_eval_report_t;

/* How the decision threshold is chosen (on validation data). */
enum sn_threshold_policy {
    SN_THRESHOLD_MAX_F1 = 0,    /* the threshold with the best F1 (the highest one on a tie) */
    SN_THRESHOLD_PRECISION = 1, /* the lowest threshold whose precision reaches a target */
};

/* Parses "max-f1" or "precision"; -1 when unknown. */
int sn_eval_policy_parse(const char *name);

/* "max-f1" or "precision"; borrowed, static. */
const char *sn_eval_policy_str(enum sn_threshold_policy policy);

/* Average precision of score (n values, borrowed) against label (0/1,
 * borrowed) into *out. SN_ERR_INVALID for n == 0 or a label other than 0/1;
 * NaN without positives. SN_ERR_NOMEM when the sort index cannot be had. */
int sn_eval_pr_auc(const float *score, const uint8_t *label, size_t n, double *out);

/* ROC-AUC, same conventions; NaN when either class is absent. */
int sn_eval_roc_auc(const float *score, const uint8_t *label, size_t n, double *out);

/* Confusion counts when events with score >= threshold are flagged. */
int sn_eval_at(const float *score, const uint8_t *label, size_t n, double threshold,
               sn_eval_point_t *out);

/* Chooses a threshold by policy. target_precision is used by
 * SN_THRESHOLD_PRECISION only; when no threshold reaches it, the threshold
 * with the highest precision is taken (the lowest such) and *reached is 0.
 * reached may be NULL. The threshold is one of the scores. */
int sn_eval_choose_threshold(const float *score, const uint8_t *label, size_t n,
                             enum sn_threshold_policy policy, double target_precision,
                             double *threshold, int *reached);

/* Fills a report: both AUCs, best F1, and the point at threshold. */
int sn_eval_report(const float *score, const uint8_t *label, size_t n, double threshold,
                   sn_eval_report_t *out);

#endif
