#!/usr/bin/env python3
"""The Grafana dashboard against the metrics list in docs/deploy.md.

usage: dashboard_check.py DASHBOARD.json DEPLOY.md RULES_OUT.yaml
Checks the JSON, that every sentinel_* metric a panel queries is listed under
"Metrics the dashboard expects" in docs/deploy.md (and every listed one is
used), that the metrics the design names are all there, and writes every panel
query as a Prometheus recording rule to RULES_OUT.yaml so promtool can check the
PromQL. Prints problems; exits 1 if any.
"""
import json
import re
import sys

import yaml

REQUIRED = {
    "sentinel_records_consumed_total", "sentinel_records_scored_total",
    "sentinel_dlq_records_total", "sentinel_alerts_total", "sentinel_batch_latency_seconds",
    "sentinel_e2e_latency_seconds", "sentinel_consumer_lag", "sentinel_model_info",
    "sentinel_archive_bytes_total", "sentinel_drift_psi",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def base(metric, histograms):
    for s in HISTOGRAM_SUFFIXES:
        if metric.endswith(s) and metric[: -len(s)] in histograms:
            return metric[: -len(s)]
    return metric


def documented(md):
    """{metric: (type, labels)} from the table under 'Metrics the dashboard expects'."""
    m = re.search(r"^#+ Metrics the dashboard expects\s*$(.*?)(?=^#+ |\Z)", md, re.M | re.S | re.I)
    if not m:
        return None
    out = {}
    for row in m.group(1).splitlines():
        cells = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("sentinel_"):
            name = cells[0].split("{")[0]
            labels = set(re.findall(r"\w+", cells[0].split("{", 1)[1])) if "{" in cells[0] else set()
            out[name] = (cells[1].lower(), labels)
    return out


def main():
    dash_path, md_path, rules_path = sys.argv[1:4]
    problems = []
    dash = json.load(open(dash_path))
    for key in ("uid", "title", "panels"):
        if not dash.get(key):
            problems.append(f"dashboard has no {key}")
    panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids are not unique")
    docs = documented(open(md_path).read())
    if docs is None:
        problems.append("docs/deploy.md has no 'Metrics the dashboard expects' section")
        docs = {}
    histograms = {n for n, (t, _) in docs.items() if t == "histogram"}
    used, rules = {}, []
    for p in panels:
        if not p.get("targets"):
            problems.append(f"panel {p.get('title')!r} has no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            for metric in re.findall(r"\bsentinel_[a-z0-9_]+", expr):
                used.setdefault(base(metric, histograms), []).append(p.get("title"))
            for lbl in re.findall(r"by \(([^)]*)\)", expr):
                for name in re.findall(r"\bsentinel_[a-z0-9_]+", expr):
                    b = base(name, histograms)
                    if b in docs:
                        allowed = docs[b][1] | {"le", "namespace", "pod", "app_kubernetes_io_component"}
                        bad = {x.strip() for x in lbl.split(",")} - allowed
                        if bad:
                            problems.append(f"panel {p.get('title')!r}: groups {b} by {sorted(bad)}, not a documented label")
            prom = expr.replace("$__rate_interval", "5m").replace("$namespace", "sentinel")
            rules.append({"record": f"dashboard:panel_{p.get('id')}_{t.get('refId')}", "expr": prom})
    for m in sorted(set(used) - set(docs)):
        problems.append(f"{m} is queried (panels {used[m]}) but not listed in docs/deploy.md")
    for m in sorted(set(docs) - set(used)):
        problems.append(f"{m} is listed in docs/deploy.md but no panel shows it")
    for m in sorted(REQUIRED - set(used)):
        problems.append(f"{m} (named by the design) is on no panel")
    for m in sorted(h for h in REQUIRED if h.endswith("_seconds")):
        if m in docs and docs[m][0] != "histogram":
            problems.append(f"{m} should be documented as a histogram")
    yaml.safe_dump({"groups": [{"name": "sentinel-dashboard", "rules": rules}]}, open(rules_path, "w"))
    for x in problems:
        print(x)
    print(f"dashboard_check: {len(panels)} panels, {len(rules)} queries, {len(used)} metrics, {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
