/* The keys of the drift check. The defaults are the usual industry reading of
 * PSI (0.1 watch, 0.2 act) and a 1 % family-wise error rate for the KS tests,
 * spread over the features by Bonferroni (see scoring/drift.h). */
#include "scoring/drift_conf.h"

const sn_conf_def_t sn_drift_conf_defs[] = {
    {"drift.psi.threshold", SN_CONF_DOUBLE, "0.2", 0, 100, NULL, 0,
     "A feature has drifted when its population stability index over the training quantile "
     "bins (plus a missing-value cell) is at least this."},
    {"drift.ks.alpha", SN_CONF_DOUBLE, "0.01", 0, 1, NULL, 0,
     "Family-wise significance of the two-sample Kolmogorov-Smirnov tests: a feature has "
     "drifted when its p-value is below drift.ks.alpha / number of features (Bonferroni)."},
    {"drift.min.events", SN_CONF_INT, "1000", 1, 1000000000, NULL, 0,
     "Fewer events than this give the verdict 'not enough data', never 'no drift'."},
    {"drift.psi.floor", SN_CONF_DOUBLE, "0.0001", 1e-12, 0.1, NULL, 0,
     "Proportion given to an empty PSI cell (expected or current) so that ln(a/e) stays "
     "finite; cells empty on both sides contribute 0. No renormalisation."},
    {"drift.max.events", SN_CONF_INT, "1000000", 1000, 100000000, NULL, 0,
     "Bound on the current values kept per feature for the KS test (4 bytes each); beyond it "
     "a seeded reservoir sample of rows is kept. PSI counts always use every event."},
    {"drift.ks.windowed", SN_CONF_BOOL, "false", 0, 0, NULL, 0,
     "Let the KS test flag window aggregates too (features named <field>__<agg>_<window>). Off: "
     "overlapping windows make successive values dependent, the KS test assumes independent "
     "values and its p-values come out orders of magnitude too small (20 false alarms in 20 "
     "unshifted runs in tests/unit/test_drift.c); PSI still judges them, KS is still reported."},
    {"drift.events.topic", SN_CONF_STR, "drift-events", 0, 0, NULL, 0,
     "Topic that gets a JSON event when drift is found (and one with the outcome of "
     "--retrain-on-drift), keyed by model name, through kafka.*; empty: no events. A drift "
     "found but not published is an error (exit 1)."},
    {"drift.retrain.window.ms", SN_CONF_INT, "604800000", 60000, 31536000000.0, NULL, 0,
     "--retrain-on-drift trains on the archive's [--to - this, --to) (--to: now when not given); "
     "default 7 days."},
    {"drift.retrain.failures", SN_CONF_STR, "", 0, 0, NULL, 0,
     "--retrain-on-drift: failure events (machine_id,ts_ms[,mode] lines) for the labels, as "
     "sentinel train --failures; empty: the 0/1 tag named by label.field."},
    SN_CONF_END,
};
