#!/usr/bin/env python3
"""Reference numbers for scoring/drift.c: scipy's two-sample KS test and
kstwo distribution, and PSI by the rule drift.h documents.

Writes tests/data/drift/ks_cases.json, read by tests/unit/test_drift.c:
  ks:    [{name, a, b, d, p, mode}]  scipy.stats.ks_2samp(a, b), method='auto'
  kstwo: [{n, x, sf}]                scipy.stats.kstwo.sf(x, n), every branch
  psi:   [{expected, actual, floor, psi}]

PSI rule (the same in C): the cells are the training bins plus the missing
cell; proportions are counts over the side's total; an empty cell gets the
proportion `floor` on the side where it is empty (no renormalisation); a cell
empty on both sides contributes 0; PSI = sum (a - e) ln(a / e).

Usage: ~/.cache/sentinel/venv/bin/python tools/reference/drift_reference.py
(scipy 1.13.1 / numpy 1.26.4, pinned in requirements.txt). Deterministic.
"""
import json
import math
import os
import sys

import numpy as np
import scipy
from scipy import stats

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "drift", "ks_cases.json")


def psi(expected, actual, floor):
    te, ta = sum(expected), sum(actual)
    if te == 0 or ta == 0:
        return 0.0
    s = 0.0
    for e, a in zip(expected, actual):
        if e == 0 and a == 0:
            continue
        pe = e / te if e else floor
        pa = a / ta if a else floor
        s += (pa - pe) * math.log(pa / pe)
    return s


def ks_case(name, a, b):
    # short decimals keep the fixture small; the C side reads the same doubles
    a = [float(v) for v in np.round(np.asarray(a, dtype=np.float64), 4)]
    b = [float(v) for v in np.round(np.asarray(b, dtype=np.float64), 4)]
    r = stats.ks_2samp(a, b)
    mode = "exact" if max(len(a), len(b)) <= 10000 else "asymp"
    return {"name": name, "a": a, "b": b, "d": float(r.statistic), "p": float(r.pvalue), "mode": mode}


def main():
    rng = np.random.default_rng(20260101)
    ks = [
        ks_case("small_equal_n", rng.normal(0, 1, 20), rng.normal(0.5, 1, 20)),
        ks_case("small_unequal_n", rng.normal(0, 1, 37), rng.normal(0.3, 1.2, 53)),
        ks_case("ties_rounded", np.round(rng.normal(0, 1, 300), 1), np.round(rng.normal(0.1, 1, 200), 1)),
        ks_case("integer_ties", rng.integers(0, 5, 500), rng.integers(0, 6, 450)),
        ks_case("identical", *(2 * [rng.normal(3, 2, 100)])),
        ks_case("disjoint", rng.uniform(0, 1, 50), rng.uniform(2, 3, 60)),
        ks_case("one_each", [1.0], [2.0]),
        ks_case("exact_large_unequal", np.round(rng.normal(0, 1, 2000), 3), np.round(rng.normal(0.05, 1, 3000), 3)),
        ks_case("exact_large_equal", rng.normal(0, 1, 1500), rng.normal(0.1, 1, 1500)),
        ks_case("exact_same_dist", rng.normal(0, 1, 2000), rng.normal(0, 1, 2500)),
        ks_case("exact_coprime", rng.exponential(1, 997), rng.exponential(1.1, 1009)),
        ks_case("asymp_small_shift", np.round(rng.normal(0, 1, 400), 2), np.round(rng.normal(0.1, 1, 12000), 2)),
        ks_case("asymp_same_dist", np.round(rng.normal(0, 1, 2000), 2), np.round(rng.normal(0, 1, 10500), 2)),
        ks_case("asymp_big_shift", np.round(rng.normal(0, 1, 300), 2), np.round(rng.normal(1, 1, 11000), 2)),
    ]
    kstwo = []
    for n in [3, 10, 50, 140, 141, 500, 1960, 20000, 100000, 150000]:
        for x in [0.3 / n, 0.7 / n, 1.5 / n, 0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 0.35, 0.6, 0.9, 1 - 0.5 / n]:
            if 0 < x < 1:
                kstwo.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
        for nx2 in [0.3, 0.754, 1.0, 2.0, 2.19, 2.21, 4.0, 8.0, 17.0, 30.0]:
            x = math.sqrt(nx2 / n)
            if x < 1:
                kstwo.append({"n": n, "x": x, "sf": float(stats.kstwo.sf(x, n))})
    cases = [
        ([100, 100, 100, 100, 0], [100, 100, 100, 100, 0]),
        ([100, 100, 100, 100, 0], [50, 150, 100, 100, 0]),
        ([100, 100, 100, 100, 0], [0, 0, 200, 200, 0]),
        ([100, 100, 100, 100, 10], [100, 100, 100, 100, 0]),
        ([100, 100, 100, 100, 0], [10, 10, 10, 10, 400]),
        ([0, 1000, 0, 5], [3, 997, 1, 0]),
        ([7, 13, 21, 34, 55, 89, 0], [89, 55, 34, 21, 13, 7, 2]),
    ]
    psis = [{"expected": e, "actual": a, "floor": f, "psi": psi(e, a, f)} for e, a in cases for f in (1e-4, 1e-6)]
    doc = {"generator": "tools/reference/drift_reference.py", "scipy": scipy.__version__, "numpy": np.__version__,
           "ks": ks, "kstwo": kstwo, "psi": psis}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(ks)} ks, {len(kstwo)} kstwo, {len(psis)} psi cases", file=sys.stderr)


if __name__ == "__main__":
    main()
