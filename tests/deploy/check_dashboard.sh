#!/usr/bin/env bash
# The Grafana dashboard (helm/sentinel/files/dashboard.json): valid JSON, the
# metrics it queries = the list in docs/deploy.md, every query valid PromQL
# (promtool check rules), and the chart ships it in a grafana_dashboard ConfigMap.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

dash="$CHART/files/dashboard.json"
check "dashboard metrics match docs/deploy.md 'Metrics the dashboard expects'" \
  python3 "$DEPLOY_DIR/lib/dashboard_check.py" "$dash" "$ROOT/docs/deploy.md" "$WORK/dashboard-rules.yaml"
if command -v promtool >/dev/null 2>&1; then
  check "every dashboard query is valid PromQL (promtool check rules)" \
    promtool check rules "$WORK/dashboard-rules.yaml"
else
  skip "every dashboard query is valid PromQL" "promtool not installed (Debian package prometheus, scripts/setup)"
fi
# Negative control: an undocumented metric and a broken query must be refused.
python3 - "$dash" "$WORK/bad-dashboard.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = next(p for p in d["panels"] if p.get("targets"))
p["targets"].append({"refId": "Z", "expr": "sum(rate(sentinel_undocumented_total[5m])"})
json.dump(d, open(sys.argv[2], "w"))
PY
out="$(python3 "$DEPLOY_DIR/lib/dashboard_check.py" "$WORK/bad-dashboard.json" "$ROOT/docs/deploy.md" "$WORK/bad-rules.yaml")"
if grep -q 'sentinel_undocumented_total' <<<"$out" &&
  { ! command -v promtool >/dev/null 2>&1 || ! promtool check rules "$WORK/bad-rules.yaml" >/dev/null 2>&1; }; then
  ok "an undocumented metric and a broken query are refused (negative control)"
else
  not_ok "an undocumented metric and a broken query are refused (negative control)" "$out"
fi

render_all || true
if [ -s "$WORK/rendered/default.yaml" ]; then
  check "the rendered dashboard ConfigMap holds the same JSON" python3 - "$WORK/rendered/default.yaml" "$dash" <<'PY'
import json, sys, yaml
cm = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
assert len(cm) == 1, "no dashboard ConfigMap"
assert cm[0]["metadata"]["labels"].get("grafana_dashboard") == "1", cm[0]["metadata"]["labels"]
assert json.loads(cm[0]["data"]["sentinel.json"]) == json.load(open(sys.argv[2])), "JSON differs"
PY
fi
finish
