/* model.h: the XGBoost model: load with validation, batch predict, SHAP
 * explanations, warm-up, and training (the only module that includes
 * xgboost/c_api.h).
 *
 * A model is a binary:logistic gradient-boosted tree ensemble saved as UBJSON
 * (model.ubj) or JSON. Loading refuses anything that is not a well-formed
 * UBJSON/JSON document before XGBoost parses it (XGBoost 1.7's readers trust
 * their input), and checks the number of features against what the model
 * card's feature spec yields, so a model never scores vectors of another
 * shape.
 *
 * Threads: an sn_model_t is immutable after loading and may be shared by
 * threads (the scorer swaps it by pointer). Prediction needs per-thread
 * scratch, an sn_model_ctx_t (it owns the XGBoost proxy matrix that in-place
 * prediction fills, which must not be shared): one per thread. */
#ifndef SN_MODEL_H
#define SN_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct sn_model sn_model_t;
typedef struct sn_model_ctx sn_model_ctx_t;

/* Largest model file accepted (a guard against a wrong file, not a tuning knob). */
#define SN_MODEL_MAX_BYTES (256u * 1024 * 1024)

/* Loads a model from buf (len bytes, borrowed for the call: the model keeps no
 * pointer into it). expect_nfeatures > 0 must equal the model's number of
 * features; 0 skips that check. nthread bounds XGBoost's threads per call
 * (>= 1). Returns NULL with errstr set ("model: not UBJSON or JSON", "model:
 * truncated at byte 1234", "model: expects 9 features, the card's spec yields 8",
 * ...) for anything that cannot be scored. */
sn_model_t *sn_model_load(const void *buf, size_t len, size_t expect_nfeatures, int nthread,
                          char *errstr, size_t errstr_size);

/* Reads path (at most SN_MODEL_MAX_BYTES) and loads it like sn_model_load. */
sn_model_t *sn_model_load_file(const char *path, size_t expect_nfeatures, int nthread, char *errstr,
                               size_t errstr_size);

/* NULL-safe. No sn_model_ctx_t may be predicting with it any more. */
void sn_model_destroy(sn_model_t *model);

/* Number of input features. */
size_t sn_model_nfeatures(const sn_model_t *model);

/* Number of boosting rounds (trees) in the model. */
int sn_model_rounds(const sn_model_t *model);

/* Serialises the model as "ubj" or "json" into *out (caller frees with free()). */
int sn_model_save(const sn_model_t *model, const char *format, uint8_t **out, size_t *out_len,
                  char *errstr, size_t errstr_size);

/* Per-thread prediction scratch. NULL with errstr set when XGBoost fails. */
sn_model_ctx_t *sn_model_ctx_new(char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_model_ctx_destroy(sn_model_ctx_t *ctx);

/* Scores nrows rows of x (row-major, nrows * sn_model_nfeatures floats, NaN
 * meaning missing; borrowed) into out (nrows floats, caller-owned): the
 * probability of failure, exactly as XGBoost's Python predict() gives it. One
 * in-place XGBoost call for the whole batch. ctx is the calling thread's. */
int sn_model_predict(const sn_model_t *model, sn_model_ctx_t *ctx, const float *x, size_t nrows,
                     float *out, char *errstr, size_t errstr_size);

/* SHAP contributions of nrows rows of x into out (caller-owned, nrows *
 * (nfeatures + 1) floats; the last one of each row is the bias). They sum to
 * the margin (log-odds) of the row. */
int sn_model_contribs(const sn_model_t *model, const float *x, size_t nrows, float *out,
                      char *errstr, size_t errstr_size);

/* One feature's part in a score. */
typedef struct sn_model_reason {
    uint32_t feature;   /* index into the feature vector */
    float value;        /* the feature's value (NaN: missing) */
    float contribution; /* SHAP value in log-odds; > 0 pushes towards failure */
} sn_model_reason_t;

/* The k features (k <= nfeatures) that push the score of one row (x,
 * nfeatures floats, borrowed) up the most, largest contribution first, into
 * out (caller-owned, k entries). *nout is k, or fewer when the model has
 * fewer features. */
int sn_model_explain(const sn_model_t *model, const float *x, size_t k, sn_model_reason_t *out,
                     size_t *nout, char *errstr, size_t errstr_size);

/* Rows accepted by one sn_model_explain_rows call. */
#define SN_MODEL_EXPLAIN_ROWS_MAX 100000

/* sn_model_explain for nrows rows at once, with one XGBoost contributions
 * call: row i is x[rows[i] * nfeatures ...] (rows: nrows indices, borrowed;
 * NULL means rows 0..nrows-1 of x), its reasons go to out[i * k ...]
 * (caller-owned, nrows * k entries). The reasons equal sn_model_explain's row
 * by row, bit for bit. *nout is the number of reasons per row (k, or fewer
 * when the model has fewer features). */
int sn_model_explain_rows(const sn_model_t *model, const float *x, const size_t *rows, size_t nrows,
                          size_t k, sn_model_reason_t *out, size_t *nout, char *errstr,
                          size_t errstr_size);

/* Runs one prediction and one explanation on a row of missing values, so that
 * XGBoost's lazy set-up (configuration, thread pools, predictor caches) is
 * paid before the model takes traffic, and a model that cannot predict is
 * found before it is swapped in. */
int sn_model_warmup(const sn_model_t *model, sn_model_ctx_t *ctx, char *errstr, size_t errstr_size);

/* ---- training ---- */

/* Hyper-parameters; see scoring/model_conf.c for their meaning and defaults. */
typedef struct sn_model_params {
    int rounds;                /* upper bound on boosting rounds */
    int early_stopping_rounds; /* stop after this many rounds without a better
                                  validation metric; 0: never */
    int max_depth;
    double eta;
    double subsample;
    double colsample_bytree;
    double min_child_weight;
    double lambda;
    double gamma;
    double scale_pos_weight; /* weight of positives; 0: negatives / positives of the
                                training rows */
    const char *eval_metric; /* XGBoost metric watched for early stopping: "aucpr",
                                "auc" or "logloss" */
    uint64_t seed;
    int nthread; /* fixed, so that the model bytes are deterministic */
} sn_model_params_t;

/* One training split: row-major features (nrows * nfeatures, borrowed) and
 * 0/1 labels (nrows, borrowed). */
typedef struct sn_model_data {
    const float *x;
    const uint8_t *y;
    size_t nrows;
} sn_model_data_t;

/* Called after each boosting round with the metric on both splits. */
typedef void (*sn_model_progress_fn)(void *opaque, int round, int rounds, const char *metric,
                                     double train_value, double valid_value, int best_round,
                                     double best_value);

/* What training found out. */
typedef struct sn_model_train_info {
    int best_round;          /* 0-based; the model keeps rounds 0..best_round */
    int rounds_run;          /* rounds trained before stopping */
    double best_valid;       /* the watched metric at best_round */
    double scale_pos_weight; /* the value used */
    char metric[32];
} sn_model_train_info_t;

/* Trains a binary:logistic model on train, watching valid for early
 * stopping, and returns it cut to the best round in *out (destroy with
 * sn_model_destroy). Deterministic: the same data, params and seed give the
 * same model bytes. progress may be NULL. */
int sn_model_train(const sn_model_params_t *params, size_t nfeatures, const sn_model_data_t *train,
                   const sn_model_data_t *valid, sn_model_progress_fn progress, void *opaque,
                   sn_model_t **out, sn_model_train_info_t *info, char *errstr, size_t errstr_size);

/* The params as the JSON object XGBoost was given (for the model card);
 * caller frees with free(). */
char *sn_model_params_json(const sn_model_params_t *params, double scale_pos_weight);

#endif
