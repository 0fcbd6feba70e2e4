#!/usr/bin/env python3
"""Writes tests/data/model/eval_cases.json: scores, labels and scikit-learn's
average_precision_score / roc_auc_score for each case, so that
tests/unit/test_evaluate.c checks scoring/evaluate.c against sklearn without
needing Python at test time.

Run with the venv of tools/reference/requirements.txt:
    python tools/reference/make_eval_fixture.py
"""
import json
import os
import sys

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, precision_recall_curve, f1_score

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "model", "eval_cases.json")


def f32(a):
    # the C side holds scores as float32: make sklearn see the same values
    return np.asarray(a, dtype=np.float32)


def case(name, score, label):
    score = f32(score)
    label = np.asarray(label, dtype=np.int64)
    ap = float(average_precision_score(label, score.astype(np.float64)))
    roc = float(roc_auc_score(label, score.astype(np.float64)))
    # best F1 over thresholds, from the PR curve (what sklearn users compute)
    p, r, t = precision_recall_curve(label, score.astype(np.float64))
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)[:-1]
    k = int(np.argmax(f1))
    return {
        "name": name,
        "score": [float(x) for x in score],
        "label": [int(x) for x in label],
        "average_precision": ap,
        "roc_auc": roc,
        "best_f1": float(f1[k]),
        "best_f1_threshold": float(t[k]),
        "f1_at_best": float(f1_score(label, (score >= t[k]).astype(int))),
    }


def main():
    rng = np.random.default_rng(20260101)
    cases = [
        case("sklearn_doc", [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]),
        case("perfect", [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]),
        case("inverted", [0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]),
        case("all_tied", [0.5] * 6, [1, 0, 0, 1, 0, 0]),
        case("ties_mixed", [0.9, 0.9, 0.7, 0.7, 0.7, 0.3, 0.3, 0.1], [1, 0, 1, 1, 0, 0, 1, 0]),
    ]
    # imbalanced like failure data: 3 % positives, scores with ties (2 decimals)
    n = 2000
    y = (rng.random(n) < 0.03).astype(int)
    s = np.clip(rng.normal(0.2 + 0.35 * y, 0.15), 0, 1).round(2)
    cases.append(case("imbalanced_ties", s, y))
    # continuous scores, no ties
    n = 1000
    y = (rng.random(n) < 0.1).astype(int)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 1.5 * y)))
    cases.append(case("continuous", s, y))
    with open(OUT, "w") as fp:
        json.dump({"generator": "tools/reference/make_eval_fixture.py",
                   "sklearn": __import__("sklearn").__version__,
                   "cases": cases}, fp, indent=1)
        fp.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases")


if __name__ == "__main__":
    sys.exit(main())
