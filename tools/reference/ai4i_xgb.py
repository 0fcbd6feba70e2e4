#!/usr/bin/env python3
"""The AI4I 2020 reference numbers for `sentinel train`, with Python's
xgboost 1.7.4 and scikit-learn.

Split as the trainer splits (by time = UDI order, never shuffled): rows
1-6000 train, 6001-8000 validation (early stopping), 8001-10000 holdout, i.e.
the first 80 % for training and validation and the last 20 % held out. No
failure-mode columns are inputs (the bundled copy has none). PR-AUC is
sklearn's average precision on the holdout.

Two runs:
  reference  the raw sensors (air and process temperature, speed, torque,
             tool wear, product type) plus temperature difference and power;
             no class weighting. Holdout PR-AUC 0.770: the bar.
  sentinel   what `sentinel train` does by default with
             tests/data/model/ai4i_features.json: the same inputs plus
             strain (tool wear x torque), scale_pos_weight = sqrt(neg/pos),
             depth 3, eta 0.05, min_child_weight 5. The C trainer reproduces
             its holdout PR-AUC (0.7938) to the last digit: same library,
             same float32 features, no sampling.

Run with the venv of tools/reference/requirements.txt:
    python tools/reference/ai4i_xgb.py [--json]
"""
import argparse
import json
import os
import sys

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, roc_auc_score

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
N_TRAIN, N_TRAIN_VALID = 6000, 8000


def features(df, strain):
    cols = [
        df["Air temperature [K]"], df["Process temperature [K]"], df["Rotational speed [rpm]"],
        df["Torque [Nm]"], df["Tool wear [min]"], df["Type"].map({"L": 0, "M": 1, "H": 2}),
        df["Process temperature [K]"] - df["Air temperature [K]"],                # temperature difference [K]
        df["Torque [Nm]"] * df["Rotational speed [rpm]"] * (2 * np.pi / 60),      # power [W]
    ]
    if strain:
        cols.append(df["Tool wear [min]"] * df["Torque [Nm]"])                   # strain [min Nm]
    # computed in float64, handed to XGBoost as float32: what the feature engine does
    return np.column_stack(cols).astype(np.float32)


def run(name, X, y, params, rounds=1000, early_stopping=50):
    dtr = xgb.DMatrix(X[:N_TRAIN], label=y[:N_TRAIN])
    dva = xgb.DMatrix(X[N_TRAIN:N_TRAIN_VALID], label=y[N_TRAIN:N_TRAIN_VALID])
    dho = xgb.DMatrix(X[N_TRAIN_VALID:])
    p = dict(objective="binary:logistic", tree_method="hist", eval_metric="aucpr", seed=42, nthread=2)
    p.update(params)
    booster = xgb.train(p, dtr, rounds, evals=[(dtr, "train"), (dva, "valid")],
                        early_stopping_rounds=early_stopping, verbose_eval=False)
    s = booster.predict(dho, iteration_range=(0, booster.best_iteration + 1))
    yh = y[N_TRAIN_VALID:]
    return {
        "run": name,
        "features": X.shape[1],
        "best_round": booster.best_iteration + 1,
        "holdout_pr_auc": round(float(average_precision_score(yh, s)), 4),
        "holdout_roc_auc": round(float(roc_auc_score(yh, s)), 4),
        "params": {k: v for k, v in p.items() if k not in ("objective", "tree_method", "nthread")},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print JSON lines")
    args = ap.parse_args()
    assert xgb.__version__ == "1.7.4", f"xgboost {xgb.__version__}, want 1.7.4"
    df = pd.read_csv(os.path.join(ROOT, "data", "ai4i2020.csv"))
    assert "TWF" not in df.columns, "failure-mode columns are labels, not inputs"
    y = df["Machine failure"].values
    pos = y[:N_TRAIN].sum()
    results = [
        run("reference", features(df, strain=False), y,
            dict(max_depth=5, eta=0.02, subsample=0.7, colsample_bytree=1.0, min_child_weight=1)),
        run("sentinel", features(df, strain=True), y,
            dict(max_depth=3, eta=0.05, subsample=1.0, colsample_bytree=1.0, min_child_weight=5,
                 scale_pos_weight=float(np.sqrt((N_TRAIN - pos) / pos)))),
    ]
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(f"{r['run']:10s} {r['features']} features, {r['best_round']:4d} rounds: "
                  f"holdout PR-AUC {r['holdout_pr_auc']:.4f}  ROC-AUC {r['holdout_roc_auc']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
