#!/usr/bin/env python3
"""Writes the scoring fixture of tests/unit/test_model.c into tests/data/model/:

  fixture.ubj, fixture.json  a small binary:logistic model trained by Python's
                             xgboost 1.7.4 on AI4I-like features (9 of them)
  fixture_x.csv              200 feature rows (float32, some missing as "nan")
  fixture_pred.csv           Booster.predict() of each row
  fixture_contrib.csv        Booster.predict(pred_contribs=True): 9 SHAP values + bias

The C model must reproduce the predictions within 1e-6 and the contributions
within 1e-5. Run with the venv of tools/reference/requirements.txt:
    python tools/reference/make_model_fixture.py
"""
import os
import sys

import numpy as np
import pandas as pd
import xgboost as xgb

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "model")


def main():
    assert xgb.__version__ == "1.7.4", xgb.__version__
    df = pd.read_csv(os.path.join(ROOT, "data", "ai4i2020.csv"))
    X = np.column_stack([
        df["Air temperature [K]"], df["Process temperature [K]"], df["Rotational speed [rpm]"],
        df["Torque [Nm]"], df["Tool wear [min]"], df["Type"].map({"L": 0, "M": 1, "H": 2}),
        df["Process temperature [K]"] - df["Air temperature [K]"],
        df["Torque [Nm]"] * df["Rotational speed [rpm]"] * (2 * np.pi / 60),
        df["Tool wear [min]"] * df["Torque [Nm]"],
    ]).astype(np.float32)
    y = df["Machine failure"].values
    rng = np.random.default_rng(7)
    # missing values must take the trees' default branches the same way
    X[rng.random(X.shape) < 0.02] = np.nan
    params = dict(objective="binary:logistic", tree_method="hist", max_depth=3, eta=0.3, seed=1, nthread=2)
    b = xgb.train(params, xgb.DMatrix(X[:6000], label=y[:6000], missing=np.nan), 30)
    b.save_model(os.path.join(OUT, "fixture.ubj"))
    b.save_model(os.path.join(OUT, "fixture.json"))
    # rows: the failures of the tail plus others, so scores span the range
    idx = np.concatenate([np.where(y[6000:] == 1)[0][:60] + 6000, np.arange(7000, 7140)])
    Xt = X[idx]
    pred = b.predict(xgb.DMatrix(Xt, missing=np.nan))
    contrib = b.predict(xgb.DMatrix(Xt, missing=np.nan), pred_contribs=True)
    np.savetxt(os.path.join(OUT, "fixture_x.csv"), Xt, fmt="%.9g", delimiter=",")
    np.savetxt(os.path.join(OUT, "fixture_pred.csv"), pred, fmt="%.9g")
    np.savetxt(os.path.join(OUT, "fixture_contrib.csv"), contrib, fmt="%.9g", delimiter=",")
    # in-place prediction is what the C code uses: it must agree with DMatrix
    assert np.array_equal(b.inplace_predict(Xt, missing=np.nan), pred)
    print(f"wrote fixture.ubj/.json and {len(idx)} rows to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
