/* trainer.h: `sentinel train` as a library: read labelled telemetry, compute
 * features with the feature engine, train and evaluate an XGBoost model,
 * write its card, register it and pass it through the promotion gate.
 *
 * The steps, in order:
 *   1. sn_trainer_new: read every event of a CSV or JSON-lines file through
 *      producers/source.h (the same column mapping as `sentinel produce`),
 *      label each one (a 0/1 tag, or failure events and a horizon), hash the
 *      input (SHA-256) and sort the events by event time (stable: ties keep
 *      file order).
 *   2. sn_trainer_run: replay the events in that order through the in-memory
 *      feature engine (so each machine's events are folded in event-time
 *      order, exactly what the scorer computes online), split by time into
 *      train / validation / holdout (never shuffled; an event time is never
 *      split across parts; with a horizon label, events whose horizon reaches
 *      into the next part are left out of training/validation so that no
 *      label peeks across a split), train with early stopping on validation,
 *      choose the alert threshold on validation, report on holdout, build the
 *      card (with the drift profile of the training rows).
 *   3. sn_trainer_publish: register the version and, when asked, promote it
 *      if it beats the production model on this run's holdout.
 *
 * Memory: about (8 * fields + 24) bytes per event plus 4 bytes per feature per
 * event; max_events bounds it. */
#ifndef SN_TRAINER_H
#define SN_TRAINER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/conf.h"
#include "producers/source.h"
#include "scoring/evaluate.h"
#include "scoring/model.h"
#include "scoring/registry.h"

/* Exit code of `sentinel train --promote` when the new version was
 * registered but the gate kept the production model. */
#define SN_EXIT_NOT_PROMOTED 4

enum sn_class_weight {
    SN_CLASS_WEIGHT_SQRT = 0, /* scale_pos_weight = sqrt(negatives / positives) */
    SN_CLASS_WEIGHT_BALANCED, /* negatives / positives */
    SN_CLASS_WEIGHT_NONE,     /* 1 */
};

/* Everything a run needs. Strings and arrays are borrowed and must outlive
 * the trainer. */
typedef struct sn_trainer_opts {
    /* input: kind, path, map, machine_id, ts_column, start_ms, step_ms,
     * key_field and time_field as for sn_source_new (CSV or JSONL: path must
     * be a regular file so that it can be hashed; or SN_SOURCE_ARCHIVE with
     * its URL, range, conf and codec: the list of objects read is hashed) */
    sn_source_opts_t source;
    const sn_source_schema_t *schema; /* field names <-> event values; also binds the spec */
    /* labels: a 0/1 tag (label_tag), or failures_path and horizon_ms */
    const char *label_tag;
    const char *failures_path; /* "machine_id,ts_ms[,mode]" lines; NULL: use label_tag */
    int64_t horizon_ms;
    /* features: the spec as JSON text, else read from spec_path, else (both
     * NULL or "") sn_feature_spec_default_json() */
    const char *spec_json;
    const char *spec_path;
    /* model */
    sn_model_params_t params; /* scale_pos_weight 0: from class_weight */
    enum sn_class_weight class_weight;
    double valid_fraction, holdout_fraction;
    enum sn_threshold_policy policy;
    double target_precision;
    int profile_bins;
    size_t profile_sample;
    uint64_t max_events;
    const char *model_name;
    int progress; /* print a line per boosting round on stderr (meant for a terminal) */
} sn_trainer_opts_t;

/* Fills the model, split, threshold, profile, label and limit options from
 * the train.*, label.* and model.name keys of conf (borrowed: the strings
 * point into it), spec_path from train.feature.spec. Input, schema and
 * spec_json are left for the caller. */
void sn_trainer_opts_from_conf(const sn_conf_t *conf, sn_trainer_opts_t *opts);

/* Sizes of one time split. */
typedef struct sn_trainer_split {
    uint64_t events, positives;
    int64_t from_ms, to_ms; /* event times of its first and last event */
} sn_trainer_split_t;

/* What a run produced, valid after sn_trainer_run. */
typedef struct sn_trainer_result {
    uint64_t events, bad_rows, machines;
    sn_trainer_split_t train, valid, holdout;
    uint64_t embargoed; /* rows left out because their horizon crossed a split */
    size_t nfeatures;
    double threshold;
    int threshold_reached;             /* precision policy: the target was reached on validation */
    sn_eval_report_t validation, test; /* test: the holdout, at the threshold */
    sn_model_train_info_t train_info;
    double read_seconds, feature_seconds, train_seconds, total_seconds;
    char data_sha256[65];
    char model_sha256[65];
    size_t model_bytes;
} sn_trainer_result_t;

typedef struct sn_trainer sn_trainer_t;

/* Reads and labels the input (step 1). NULL with errstr set when the input,
 * the labels or the options are unusable (no positives, unreadable file, too
 * many events, ...). Bad rows are skipped, logged (bounded) and counted. */
sn_trainer_t *sn_trainer_new(const sn_trainer_opts_t *opts, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_trainer_destroy(sn_trainer_t *t);

/* Features, split, training, threshold, evaluation and card (step 2). */
int sn_trainer_run(sn_trainer_t *t, char *errstr, size_t errstr_size);

/* The result; borrowed from the trainer. */
const sn_trainer_result_t *sn_trainer_result(const sn_trainer_t *t);

/* The trained model's model.ubj bytes (borrowed from the trainer). */
const uint8_t *sn_trainer_model(const sn_trainer_t *t, size_t *len);

/* The card as JSON text (caller frees with free()), with parent_version as
 * last set by sn_trainer_publish (null before). */
char *sn_trainer_card(const sn_trainer_t *t);

/* Writes model.ubj and card.json into dir (created if missing). */
int sn_trainer_write(const sn_trainer_t *t, const char *dir, char *errstr, size_t errstr_size);

/* Scores another model version (model bytes and card text, borrowed) on
 * this run's holdout: its own feature spec is replayed over the same
 * events, and its own threshold used. Fails when its spec needs fields that
 * the input schema lacks, or its card does not match its model. */
int sn_trainer_evaluate(sn_trainer_t *t, const uint8_t *model, size_t model_len, const char *card,
                        size_t card_len, sn_eval_report_t *out, char *errstr, size_t errstr_size);

/* The promotion gate's options. */
typedef struct sn_gate_opts {
    const char *alias;            /* the alias to promote, "production" */
    const char *challenger_alias; /* set on a version that is not promoted; NULL or "": none */
    int promote;                  /* 0: only register */
    double min_improvement;       /* PR-AUC margin the new version must win by */
} sn_gate_opts_t;

/* What the gate decided. */
typedef struct sn_gate_result {
    char version[SN_REGISTRY_VERSION_MAX];            /* the new version */
    char production_version[SN_REGISTRY_VERSION_MAX]; /* "" when there was none */
    int promoted;
    double challenger_pr_auc, production_pr_auc; /* on this run's holdout; NaN when not evaluated */
    char message[320];                           /* the decision in one sentence, as logged */
} sn_gate_result_t;

/* Registers the trained version (its card naming the current production
 * version as parent) and applies the gate: with opts->promote, the new
 * version takes the alias when there is no production version or when its
 * holdout PR-AUC is at least the production version's (on the same holdout)
 * plus min_improvement; otherwise it is only registered (and given the
 * challenger alias), and the log says why. Returns 0 whether or not it was
 * promoted (see res->promoted); an error when registering or evaluating
 * failed. */
int sn_trainer_publish(sn_trainer_t *t, sn_registry_t *reg, const sn_gate_opts_t *opts,
                       sn_gate_result_t *res, char *errstr, size_t errstr_size);

/* The gate's rule alone: whether challenger beats production by min_improvement,
 * with the sentence that says so in msg (caller-owned, size bytes). A NaN
 * challenger never wins; a NaN production (no positives to judge by) is
 * beaten by any number. */
int sn_gate_decide(double challenger, double production, int has_production, double min_improvement,
                   const char *version, const char *alias, char *msg, size_t size);

/* The feature spec tuned for the bundled AI4I data (JSON text, static):
 * `sentinel train --preset ai4i` uses it unless a spec is given. */
const char *sn_trainer_ai4i_spec_json(void);

/* Prints the end-of-run summary table (splits, metrics, threshold, timing). */
void sn_trainer_print_summary(const sn_trainer_t *t, FILE *out);

#endif
