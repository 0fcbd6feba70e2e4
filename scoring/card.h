/* card.h: the model card (card.json), what travels with every model version.
 *
 * The card says what the model needs and what it is worth: the feature spec
 * (so that the scorer computes the same vector the model was trained on), the
 * label definition, the alert threshold and how it was chosen, holdout and
 * validation metrics, the SHA-256 of the training data and of model.ubj, the
 * training profile for drift (per-feature quantile bins and a bounded
 * reference sample), the parent version, library versions, training params
 * and the creation time. The trainer writes it (scoring/trainer.c); the
 * scorer, the drift job and the promotion gate read it through this header.
 *
 * Layout (card_version 1), every key below is present unless marked optional:
 *   card_version                 1
 *   created                      "2026-01-01T00:00:00Z" (UTC)
 *   parent_version               "3", or null for a first model
 *   model    {name, format ("ubj"), sha256, bytes, nfeatures, rounds}
 *   feature_spec                 the spec object (scoring/features.h)
 *   feature_names                [nfeatures names, in vector order]
 *   label    {kind: "field", field} | {kind: "failures", horizon_ms, failures_sha256}
 *   threshold {value, policy, target_precision, target_reached, chosen_on}
 *   metrics  {validation: M, holdout: M} with M = {n, positives, pr_auc, roc_auc,
 *            best_f1, best_f1_threshold, precision, recall, f1, alerts_per_1000,
 *            tp, fp, fn}
 *   data     {path, format, sha256, events, bad_rows, split: {train, valid,
 *            holdout: {events, positives, from_ms, to_ms}}}
 *   profile  {bins, sample_seed, features: [{name, edges[bins+1], counts[bins],
 *            missing, sample[]}], score (optional): {name: "score", edges, counts,
 *            missing, sample} of the model's holdout scores}; a value v falls in bin i = the number
 * of edges[1..bins-1] that are <= v (so values outside [edges[0], edges[bins]] land in the first or
 * last bin) training {params, eval_metric, best_round, rounds_run, best_valid, scale_pos_weight,
 * seconds} libraries {sentinel, xgboost, jansson, openssl}
 */
#ifndef SN_CARD_H
#define SN_CARD_H

#include <stddef.h>
#include <stdint.h>

#define SN_CARD_VERSION 1
#define SN_CARD_MAX_BYTES (64u * 1024 * 1024)

typedef struct sn_card sn_card_t;

/* Parses and validates a card from JSON text (len bytes, borrowed for the
 * call). NULL with errstr naming the first problem (missing key, wrong type,
 * feature_names not matching model.nfeatures, threshold outside [0, 1], bad
 * profile shape, ...). Free with sn_card_destroy(). */
sn_card_t *sn_card_parse(const char *json, size_t len, char *errstr, size_t errstr_size);

/* Reads path (at most SN_CARD_MAX_BYTES) and parses it. */
sn_card_t *sn_card_load_file(const char *path, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_card_destroy(sn_card_t *card);

/* The card as indented JSON with sorted keys (stable bytes for a given card).
 * Caller frees with free(); NULL when out of memory. */
char *sn_card_dump(const sn_card_t *card);

/* Alert threshold: flag when score >= it. */
double sn_card_threshold(const sn_card_t *card);

/* "max-f1" or "precision"; borrowed from the card. */
const char *sn_card_threshold_policy(const sn_card_t *card);

/* The feature spec as compact JSON text (borrowed from the card), for
 * sn_feature_spec_parse(). */
const char *sn_card_feature_spec(const sn_card_t *card);

/* Length of the feature vector. */
size_t sn_card_nfeatures(const sn_card_t *card);

/* Name of feature i (borrowed), NULL when out of range. */
const char *sn_card_feature_name(const sn_card_t *card, size_t i);

/* Hex SHA-256 of model.ubj (borrowed): loaders compare it to the bytes. */
const char *sn_card_model_sha256(const sn_card_t *card);

/* Checks that model (len bytes, borrowed) is the file the card describes:
 * its SHA-256 equals model.sha256. SN_ERR_INVALID naming both digests when
 * not (a model.ubj swapped or corrupted in the registry). */
int sn_card_verify_model(const sn_card_t *card, const void *model, size_t len, char *errstr,
                         size_t errstr_size);

/* Writes the lower-case hex SHA-256 of buf (len bytes) into hex (65 bytes). */
void sn_card_sha256_hex(const void *buf, size_t len, char hex[65]);

/* Parent version (borrowed), NULL for none. */
const char *sn_card_parent_version(const sn_card_t *card);

/* Sets the parent version (copied; NULL for none). */
int sn_card_set_parent_version(sn_card_t *card, const char *version);

/* A holdout or validation metric: split is "holdout" or "validation", name
 * one of the metric keys above. NaN when absent. */
double sn_card_metric(const sn_card_t *card, const char *split, const char *name);

/* A string anywhere in the card by a dotted path ("label.kind",
 * "data.sha256", "created"); borrowed, NULL when absent or not a string. */
const char *sn_card_get_str(const sn_card_t *card, const char *path);

/* A number by a dotted path ("label.horizon_ms", "training.best_round"); NaN
 * when absent or not a number. */
double sn_card_get_num(const sn_card_t *card, const char *path);

/* The training profile of one feature, for drift statistics. All arrays are
 * borrowed from the card. */
typedef struct sn_card_profile {
    const char *name;
    size_t bins; /* counts has bins entries, edges bins + 1 */
    const double *edges;
    const uint64_t *counts;
    uint64_t missing;    /* NaN values, not in any bin */
    const float *sample; /* reference sample (non-missing values) */
    size_t nsample;
} sn_card_profile_t;

/* Fills *out for feature i. SN_ERR_NOENT when the card has no profile,
 * SN_ERR_INVALID when i is out of range. */
int sn_card_profile(const sn_card_t *card, size_t i, sn_card_profile_t *out);

/* The profile of the model's own scores on its holdout (profile.score), for
 * score drift. SN_ERR_NOENT when the card has none (cards before it). */
int sn_card_score_profile(const sn_card_t *card, sn_card_profile_t *out);

/* The bin of value v in a profile by the rule above. */
size_t sn_card_profile_bin(const sn_card_profile_t *p, double v);

#endif
