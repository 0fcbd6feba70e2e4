#!/usr/bin/env bash
# helm lint and helm template of the chart for every value set (lib.sh
# render_sets: the defaults, the production-like ci values, Argo CD's values, a
# KEDA-off fallback and production with retrain on drift, a shadow challenger and
# exactly-once), values.schema.json rejecting typos, the template guards,
# and the chart's contract (chart_contract.py) on the rendered manifests.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

need_tool helm || finish

while IFS='|' read -r name args; do
  # shellcheck disable=SC2086
  check "helm lint --strict ($name values)" \
    helm lint --strict "$CHART" --namespace sentinel --kube-version "$KUBE_VERSION" $args
done < <(render_sets)

render_all
while IFS='|' read -r name _; do
  if [ -s "$WORK/rendered/$name.yaml" ]; then
    ok "helm template ($name values): $(grep -c '^kind:' "$WORK/rendered/$name.yaml") objects"
  else
    not_ok "helm template ($name values)" "$(cat "$WORK/rendered/$name.err")"
  fi
done < <(render_sets)

# must_fail WHAT PATTERN helm-args...: rendering must fail with PATTERN in the error.
must_fail() {
  local what="$1" pattern="$2" out
  shift 2
  if out="$(helm template sentinel "$CHART" --kube-version "$KUBE_VERSION" "$@" 2>&1)"; then
    not_ok "$what is rejected" "helm template succeeded with: $*"
  elif grep -qiE -- "$pattern" <<<"$out"; then
    ok "$what is rejected"
  else
    not_ok "$what is rejected with /$pattern/" "$(tail -n 5 <<<"$out")"
  fi
}
schema_err='values don.t meet the specifications of the schema|additional propert'
must_fail "a top-level typo (scorerr.replicas)" "$schema_err" --set scorerr.replicas=3
must_fail "a nested typo (scorer.autoscaling.maxReplica)" "$schema_err" --set scorer.autoscaling.maxReplica=3
must_fail "a deep typo (networkPolicy.egress.kafka.port)" "$schema_err" --set 'networkPolicy.egress.kafka.port[0]=9092'
must_fail "a wrong type (metrics.port=abc)" "$schema_err" --set-string metrics.port=abc
must_fail "an unknown log level" "$schema_err" --set log.level=verbose
must_fail "a malformed IRSA role ARN" "$schema_err" --set scorer.serviceAccount.roleArn=my-role
must_fail "a secret in the ConfigMap (config.redis.password)" "looks like a secret" \
  --set 'config.redis\.password=hunter2'
must_fail "a config value with a newline" "newline" --set-string 'config.log\.level=info
evil.key=1'
must_fail "a non-default metrics.port the binary cannot be told about" "writeConfig" \
  --set metrics.port=9500 --set metrics.writeConfig=false
must_fail "a pod-local archive (archive.url=file://...)" "$schema_err" --set archive.url=file:///var/lib/sentinel/archive
must_fail "a pod-local registry through config (config.registry.url=file://...)" "a folder inside one pod" \
  --set 'config.registry\.url=file://registry'
must_fail "an unknown challenger mode" "$schema_err" --set scorer.challenger=blue-green
# In a values file a bare off is YAML's boolean false, not the mode "off".
printf 'scorer:\n  challenger: off\n' >"$WORK/challenger-off.yaml"
must_fail "scorer.challenger: off unquoted (a YAML boolean)" "$schema_err" -f "$WORK/challenger-off.yaml"
must_fail "a canary fraction above 1" "$schema_err" --set scorer.canaryFraction=1.5
must_fail "a session timeout below the brokers' 6 s minimum" "$schema_err" --set scorer.sessionTimeoutMs=3000
must_fail "a retrain window below a minute" "$schema_err" --set drift.retrainWindowMs=1000

check "chart contract (scaling, probes, jobs, secrets, IRSA, monitoring)" \
  python3 "$DEPLOY_DIR/lib/chart_contract.py" "$WORK/rendered" "$CHART"

finish
