#!/usr/bin/env bash
# The rendered manifests against the Kubernetes JSON schemas, offline:
#  * built-in kinds: kubeconform -strict (unknown fields are errors) with the
#    schemas of $KUBE_VERSION from the cache (scripts/deploy-tools);
#  * custom resources (ScaledObject, TriggerAuthentication, ServiceMonitor,
#    WorkflowTemplate): kubeconform has no schema for them (-ignore-missing-schemas
#    would skip them silently), so they go through the @kubernetes-models
#    validators (lib/crd_validate.mjs) instead: types, enums, required fields.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

need_tool helm || finish
need_tool kubeconform || finish
schemas="$SN_CACHE_DIR/k8s-schemas"
if [ ! -d "$schemas/v$KUBE_VERSION-local-strict" ]; then
  not_ok "Kubernetes $KUBE_VERSION JSON schemas in $schemas" "run scripts/deploy-tools"
  finish
fi
location="$schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"
crd_kinds='ScaledObject|TriggerAuthentication|ServiceMonitor|WorkflowTemplate'
render_all || true

kc() { kubeconform -strict -summary -kubernetes-version "$KUBE_VERSION" -schema-location "$location" \
  -skip "$(tr '|' ',' <<<"$crd_kinds")" "$@"; }

while IFS='|' read -r name _; do
  f="$WORK/rendered/$name.yaml"
  [ -s "$f" ] || { not_ok "kubeconform ($name values)" "not rendered: see check_helm"; continue; }
  if out="$(kc "$f" 2>&1)" && ! grep -q 'could not find schema' <<<"$out"; then
    ok "kubeconform -strict, Kubernetes $KUBE_VERSION ($name values): $(grep -o 'Valid: [0-9]*' <<<"$out")"
  else
    not_ok "kubeconform -strict, Kubernetes $KUBE_VERSION ($name values)" "$out"
  fi
done < <(render_sets)

# Negative control: an unknown field and a wrong type must be refused.
python3 - "$WORK/rendered/default.yaml" "$WORK/broken.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/x"
dep["spec"]["revisionHistoryLimit"] = "five"
yaml.safe_dump(dep, open(sys.argv[2], "w"))
PY
out="$(kc "$WORK/broken.yaml" 2>&1)"
if grep -q 'paht' <<<"$out" && grep -qi 'revisionHistoryLimit' <<<"$out"; then
  ok "kubeconform refuses an unknown field and a wrong type (negative control)"
else
  not_ok "kubeconform refuses an unknown field and a wrong type (negative control)" "$out"
fi

# Custom resources.
models="$SN_CACHE_DIR/crd-models"
if [ ! -d "$models/node_modules/@kubernetes-models" ]; then
  not_ok "CRD validators in $models" "run scripts/deploy-tools"
  finish
fi
need_tool node || finish
to_jsonl() { python3 -c '
import json, re, sys, yaml
for path in sys.argv[2:]:
    for d in yaml.safe_load_all(open(path)):
        if d and re.fullmatch(sys.argv[1], d.get("kind", "")):
            print(json.dumps(d))' "$@"; }
# shellcheck disable=SC2317  # called through check
crd_check() { to_jsonl "$crd_kinds" "$1" | node "$DEPLOY_DIR/lib/crd_validate.mjs" "$models"; }
while IFS='|' read -r name _; do
  f="$WORK/rendered/$name.yaml"
  [ -s "$f" ] || continue
  n="$(to_jsonl "$crd_kinds" "$f" | wc -l)"
  if [ "$n" -eq 0 ]; then
    if [ "$name" = default ]; then
      ok "the default values need no CRDs (KEDA, ServiceMonitor, Argo Workflows off)"
    else
      not_ok "custom resources rendered ($name values)" "none: the production-like sets should enable them"
    fi
    continue
  fi
  kinds="$(to_jsonl "$crd_kinds" "$f" | python3 -c '
import json, sys, collections
c = collections.Counter(json.loads(l)["kind"] for l in sys.stdin)
print(", ".join(f"{v} {k}" for k, v in sorted(c.items())))')"
  check "custom resources valid ($name values: $kinds)" crd_check "$f"
done < <(render_sets)

# Negative control for the CRD validators.
out="$(to_jsonl 'ScaledObject' "$WORK/rendered/production.yaml" | python3 -c '
import json, sys
for l in sys.stdin:
    d = json.loads(l); d["spec"]["maxReplicaCount"] = "many"; print(json.dumps(d))' |
  node "$DEPLOY_DIR/lib/crd_validate.mjs" "$models")"
if grep -q '^fail .*maxReplicaCount' <<<"$out"; then
  ok "the CRD validator refuses a ScaledObject with a string maxReplicaCount (negative control)"
else
  not_ok "the CRD validator refuses a ScaledObject with a string maxReplicaCount (negative control)" "$out"
fi
finish
