/* The keys of the model registry, the trainer and the promotion gate. The
 * training defaults are the ones that reach the quality bar on the bundled
 * AI4I data (see tools/reference/README.md); change them with -X. */
#include "scoring/model_conf.h"

const sn_conf_def_t sn_model_conf_defs[] = {
    {"model.name", SN_CONF_STR, "sentinel", 0, 0, NULL, 0,
     "Registered model name: versions and aliases live under it in the registry."},
    {"model.alias", SN_CONF_STR, "production", 0, 0, NULL, 0,
     "Alias the scorer follows and that 'sentinel train --promote' moves when the gate passes."},
    {"model.challenger.alias", SN_CONF_STR, "challenger", 0, 0, NULL, 0,
     "Alias given to a newly trained version that the gate did not promote (for shadow "
     "scoring); empty leaves aliases alone."},
    {"model.nthread", SN_CONF_INT, "1", 1, 64, NULL, 0, "XGBoost threads per prediction call."},
    {"registry.url", SN_CONF_STR, "file://./registry", 0, 0, NULL, 0,
     "Model registry: file://DIR (a directory, relative paths from the working directory), "
     "mlflow+http://HOST:PORT (an MLflow tracking server with --serve-artifacts; "
     "mlflow+https:// for TLS) or s3://BUCKET[/PREFIX] (an S3 bucket, reached with the s3.* "
     "keys: endpoint, credentials, retries)."},
    {"registry.timeout.ms", SN_CONF_INT, "30000", 100, 3600000, NULL, 0,
     "Bound on one registry request (MLflow): connect and transfer. An S3 registry uses "
     "s3.connect.timeout.ms and s3.request.timeout.ms."},
    {"registry.username", SN_CONF_STR, "", 0, 0, NULL, 0,
     "MLflow basic-auth user name; empty for none."},
    {"registry.password", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "MLflow basic-auth password."},
    {"registry.token", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "MLflow bearer token (as MLFLOW_TRACKING_TOKEN); used instead of basic auth when set."},
    {"registry.mlflow.experiment", SN_CONF_STR, "sentinel", 0, 0, NULL, 0,
     "MLflow experiment that holds one run per training (parameters, holdout metrics, "
     "artifacts); created when missing."},
    {"train.seed", SN_CONF_INT, "42", 0, 2147483647.0, NULL, 0,
     "Seed of XGBoost's sampling and of the reference-sample reservoir: the same data and "
     "seed give the same model bytes."},
    {"train.rounds", SN_CONF_INT, "1000", 1, 100000, NULL, 0, "Most boosting rounds."},
    {"train.early.stopping.rounds", SN_CONF_INT, "50", 0, 10000, NULL, 0,
     "Stop after this many rounds without a better validation metric and keep the best "
     "round; 0 trains every round."},
    {"train.max.depth", SN_CONF_INT, "3", 1, 16, NULL, 0, "Maximum depth of a tree."},
    {"train.eta", SN_CONF_DOUBLE, "0.05", 0.0001, 1, NULL, 0, "Learning rate (shrinkage)."},
    {"train.subsample", SN_CONF_DOUBLE, "1", 0.05, 1, NULL, 0,
     "Fraction of training rows sampled for each tree."},
    {"train.colsample.bytree", SN_CONF_DOUBLE, "1", 0.05, 1, NULL, 0,
     "Fraction of features sampled for each tree."},
    {"train.min.child.weight", SN_CONF_DOUBLE, "5", 0, 1e6, NULL, 0,
     "Minimum hessian weight in a leaf."},
    {"train.lambda", SN_CONF_DOUBLE, "1", 0, 1e6, NULL, 0, "L2 regularisation of leaf weights."},
    {"train.gamma", SN_CONF_DOUBLE, "0", 0, 1e6, NULL, 0,
     "Minimum loss reduction to split a leaf."},
    {"train.class.weight", SN_CONF_ENUM, "sqrt", 0, 0, "sqrt|balanced|none", 0,
     "Class-imbalance weighting of positives (XGBoost scale_pos_weight): balanced is "
     "negatives/positives of the training rows, sqrt its square root, none 1."},
    {"train.scale.pos.weight", SN_CONF_DOUBLE, "0", 0, 1e6, NULL, 0,
     "Explicit scale_pos_weight; 0 derives it from train.class.weight."},
    {"train.eval.metric", SN_CONF_ENUM, "aucpr", 0, 0, "aucpr|auc|logloss", 0,
     "Validation metric that early stopping watches."},
    {"train.nthread", SN_CONF_INT, "2", 1, 64, NULL, 0,
     "XGBoost threads while training; fixed so that the model bytes are reproducible."},
    {"train.valid.fraction", SN_CONF_DOUBLE, "0.2", 0.01, 0.5, NULL, 0,
     "Share of the events, by event time after the training part, used for early stopping "
     "and for choosing the threshold."},
    {"train.holdout.fraction", SN_CONF_DOUBLE, "0.2", 0.01, 0.5, NULL, 0,
     "Share of the latest events held out for the reported metrics and the promotion gate."},
    {"train.threshold.policy", SN_CONF_ENUM, "max-f1", 0, 0, "max-f1|precision", 0,
     "How the alert threshold is chosen on validation: the best F1, or the lowest threshold "
     "whose precision reaches train.target.precision."},
    {"train.target.precision", SN_CONF_DOUBLE, "0.8", 0.01, 1, NULL, 0,
     "Precision the 'precision' threshold policy aims for."},
    {"train.feature.spec", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Feature spec JSON file; empty uses the built-in default spec. Stored in the model card."},
    {"train.profile.bins", SN_CONF_INT, "10", 2, 100, NULL, 0,
     "Quantile bins per feature in the training profile (drift reference)."},
    {"train.profile.sample", SN_CONF_INT, "2000", 0, 100000, NULL, 0,
     "Training rows kept per feature as the drift reference sample (reservoir sampled)."},
    {"train.max.events", SN_CONF_INT, "5000000", 100, 200000000.0, NULL, 0,
     "Most events read for one training run; more is an error rather than a silent cut."},
    {"gate.min.improvement", SN_CONF_DOUBLE, "0.005", 0, 1, NULL, 0,
     "Holdout PR-AUC by which a new model must beat the production model to be promoted."},
    {"label.field", SN_CONF_STR, "label", 0, 0, NULL, 0,
     "Tag holding a per-event 0/1 label (CSV: map it with --map tag.label=Column)."},
    {"label.horizon.ms", SN_CONF_INT, "3600000", 0, 31536000000.0, NULL, 0,
     "With a failures file: an event is positive when its machine fails within this many "
     "milliseconds after it (the failure's own event included)."},
    SN_CONF_END,
};
