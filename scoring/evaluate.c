#include "scoring/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

struct pair {
    float score;
    uint8_t label;
};

/* Walking the events from the highest score down, one group per distinct
 * score, gives every point of the PR and ROC curves; a group is what sklearn
 * calls one threshold. */
struct group {
    double threshold;
    uint64_t tp, fp; /* cumulative, this group included */
};

static int cmp_desc(const void *a, const void *b) {
    float x = ((const struct pair *)a)->score, y = ((const struct pair *)b)->score;

    return (x < y) - (x > y);
}

int sn_eval_policy_parse(const char *name) {
    if (!name) return -1;
    if (strcmp(name, "max-f1") == 0) return SN_THRESHOLD_MAX_F1;
    if (strcmp(name, "precision") == 0) return SN_THRESHOLD_PRECISION;
    return -1;
}

const char *sn_eval_policy_str(enum sn_threshold_policy policy) {
    return policy == SN_THRESHOLD_PRECISION ? "precision" : "max-f1";
}

static int check_input(const float *score, const uint8_t *label, size_t n, uint64_t *pos) {
    *pos = 0;
    if (!score || !label || n == 0) return SN_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (label[i] > 1 || isnan(score[i])) return SN_ERR_INVALID;
        *pos += label[i];
    }
    return 0;
}

/* Sorts a copy once and folds equal scores into groups; every metric below is
 * a pass over the groups. *groups is freed by the caller. */
static int build_groups(const float *score, const uint8_t *label, size_t n, struct group **groups,
                        size_t *ngroups, uint64_t *pos) {
    struct pair *p = NULL;
    struct group *g = NULL;
    uint64_t tp = 0, fp = 0;
    size_t k = 0;
    int rc;

    *groups = NULL;
    *ngroups = 0;
    if ((rc = check_input(score, label, n, pos)) != 0) return rc;
    p = malloc(n * sizeof(*p));
    g = malloc(n * sizeof(*g));
    if (!p || !g) {
        free(p);
        free(g);
        return SN_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) p[i] = (struct pair){score[i], label[i]};
    qsort(p, n, sizeof(*p), cmp_desc);
    for (size_t i = 0; i < n; i++) {
        tp += p[i].label;
        fp += 1u - p[i].label;
        if (i + 1 == n || p[i + 1].score != p[i].score) g[k++] = (struct group){p[i].score, tp, fp};
    }
    free(p);
    *groups = g;
    *ngroups = k;
    return 0;
}

int sn_eval_pr_auc(const float *score, const uint8_t *label, size_t n, double *out) {
    struct group *g = NULL;
    size_t ng;
    uint64_t pos, prev_tp = 0;
    double ap = 0;
    int rc = build_groups(score, label, n, &g, &ng, &pos);

    if (rc != 0) return rc;
    if (pos == 0) {
        *out = NAN;
        goto out;
    }
    for (size_t k = 0; k < ng; k++) {
        double precision = (double)g[k].tp / (double)(g[k].tp + g[k].fp);

        ap += (double)(g[k].tp - prev_tp) / (double)pos * precision;
        prev_tp = g[k].tp;
    }
    *out = ap;
out:
    free(g);
    return 0;
}

int sn_eval_roc_auc(const float *score, const uint8_t *label, size_t n, double *out) {
    struct group *g = NULL;
    size_t ng;
    uint64_t pos, neg;
    double auc = 0, px = 0, py = 0;
    int rc = build_groups(score, label, n, &g, &ng, &pos);

    if (rc != 0) return rc;
    neg = n - pos;
    if (pos == 0 || neg == 0) {
        *out = NAN;
        goto out;
    }
    for (size_t k = 0; k < ng; k++) {
        double x = (double)g[k].fp / (double)neg, y = (double)g[k].tp / (double)pos;

        auc += (x - px) * (y + py) / 2.0;
        px = x;
        py = y;
    }
    *out = auc;
out:
    free(g);
    return 0;
}

int sn_eval_at(const float *score, const uint8_t *label, size_t n, double threshold,
               sn_eval_point_t *out) {
    uint64_t pos;
    int rc = check_input(score, label, n, &pos);

    if (rc != 0) return rc;
    memset(out, 0, sizeof(*out));
    out->threshold = threshold;
    for (size_t i = 0; i < n; i++) {
        int flagged = (double)score[i] >= threshold;

        if (flagged && label[i])
            out->tp++;
        else if (flagged)
            out->fp++;
        else if (label[i])
            out->fn++;
        else
            out->tn++;
    }
    out->precision = out->tp + out->fp ? (double)out->tp / (double)(out->tp + out->fp) : 0;
    out->recall = pos ? (double)out->tp / (double)pos : 0;
    out->f1 = out->precision + out->recall > 0
                  ? 2 * out->precision * out->recall / (out->precision + out->recall)
                  : 0;
    out->alerts_per_1000 = 1000.0 * (double)(out->tp + out->fp) / (double)n;
    return 0;
}

/* F1 from counts, as 2tp / (2tp + fp + fn): no division by zero when tp > 0. */
static double f1_of(uint64_t tp, uint64_t fp, uint64_t pos) {
    return tp ? 2.0 * (double)tp / (double)(2 * tp + fp + (pos - tp)) : 0;
}

int sn_eval_choose_threshold(const float *score, const uint8_t *label, size_t n,
                             enum sn_threshold_policy policy, double target_precision,
                             double *threshold, int *reached) {
    struct group *g = NULL;
    size_t ng;
    uint64_t pos;
    double best = -1, best_prec = -1;
    int rc = build_groups(score, label, n, &g, &ng, &pos), found = 0;

    if (rc != 0) return rc;
    *threshold = g[0].threshold;
    for (size_t k = 0; k < ng; k++) {
        double prec = (double)g[k].tp / (double)(g[k].tp + g[k].fp);

        if (policy == SN_THRESHOLD_MAX_F1) {
            double f1 = f1_of(g[k].tp, g[k].fp, pos);

            if (f1 > best) best = f1, *threshold = g[k].threshold;
            found = 1;
        } else if (prec >= target_precision && g[k].tp > 0) {
            /* groups descend, so the last one that qualifies is the lowest */
            *threshold = g[k].threshold;
            found = 1;
        } else if (!found && prec >= best_prec) {
            best_prec = prec;
            *threshold = g[k].threshold;
        }
    }
    if (reached) *reached = found;
    free(g);
    return 0;
}

int sn_eval_report(const float *score, const uint8_t *label, size_t n, double threshold,
                   sn_eval_report_t *out) {
    struct group *g = NULL;
    size_t ng;
    uint64_t pos;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = sn_eval_pr_auc(score, label, n, &out->pr_auc)) != 0) return rc;
    if ((rc = sn_eval_roc_auc(score, label, n, &out->roc_auc)) != 0) return rc;
    if ((rc = sn_eval_at(score, label, n, threshold, &out->at)) != 0) return rc;
    if ((rc = build_groups(score, label, n, &g, &ng, &pos)) != 0) return rc;
    out->n = n;
    out->positives = pos;
    out->best_f1 = 0;
    out->best_f1_threshold = g[0].threshold;
    for (size_t k = 0; k < ng; k++) {
        double f1 = f1_of(g[k].tp, g[k].fp, pos);

        if (f1 > out->best_f1) out->best_f1 = f1, out->best_f1_threshold = g[k].threshold;
    }
    free(g);
    return 0;
}
