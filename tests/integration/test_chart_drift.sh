#!/usr/bin/env bash
# test_chart_drift.sh: the Helm chart's drift CronJob, as rendered, run against
# the real stack (Kafka, S3) with the binary built from this tree.
#
# The chart is rendered (helm template) with retrainOnDrift on and the local
# stack's endpoints as values; the CronJob container's command, arguments and
# plain environment and its drift.conf are taken from the rendered YAML and run
# as the pod would (only the binary's and the config file's paths are
# replaced, and schema.dir points at the tree instead of the image's copy;
# env -i, so nothing of the caller's leaks in but the AWS credentials IRSA
# would provide). A model is trained into the S3 registry the
# chart names. Asserted:
#   1. the rendered drift.conf passes `sentinel config --check`
#   2. the command runs the audit on [hour - window, hour) of the archive at
#      archive.url with --retrain-on-drift: the window of this run's empty
#      archive prefix has no events, so exit 4 (not enough data), after the
#      model was loaded from the S3 registry and the archive listed
#   3. a broken S3 endpoint in the same values makes the Job fail with exit 1
#      (the audit never passes on storage it could not read)
# Skipped (77) without helm (scripts/deploy-tools builds it).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

: "${KAFKA_BOOTSTRAP_SERVERS:?run with the stack environment: eval \"\$(infra/local/stack env)\"}"
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
HELM=${SN_HELM:-$SN_CACHE_DIR/bin/helm}
if [ ! -x "$HELM" ]; then
  echo "test_chart_drift: skipped (no helm at $HELM: run scripts/deploy-tools)"
  exit 77
fi
sn_venv || { not_ok "python venv"; sn_done; exit 1; }
TOOL=("$SN_PY" "$SN_ROOT/tests/integration/archive_tool.py")
RUN=$(sn_topic chartdrift)
PREFIX=it-$RUN
WORK=$(mktemp -d /tmp/sn-chart-drift-XXXXXX)
cleanup() {
  "${TOOL[@]}" rmprefix --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" --prefix "$PREFIX/" >/dev/null 2>&1
  if [ "$sn_fail" -gt 0 ]; then echo "test_chart_drift: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# render VALUES_ARGS... -> $WORK/job.json (command, args, env) and $WORK/drift.conf
render() {
  "$HELM" template sentinel "$SN_ROOT/helm/sentinel" --namespace sentinel \
    --set kafka.bootstrapServers="$KAFKA_BOOTSTRAP_SERVERS" \
    --set archive.url="s3://$S3_BUCKET/$PREFIX/archive" \
    --set registry.url="s3://$S3_BUCKET/$PREFIX/registry" \
    --set s3.region="$AWS_REGION" \
    --set schema.dir="$SN_ROOT/schemas" --set schema.reader="$SN_ROOT/schemas/telemetry.avsc" \
    --set drift.retrainOnDrift=true --set drift.window="2 hours" \
    --set-string 'drift.config.drift\.events\.topic'="$RUN-drift-events" \
    --set log.format=text "$@" >"$WORK/rendered.yaml" 2>"$WORK/helm.err" || return 1
  "$SN_PY" - "$WORK/rendered.yaml" "$WORK" <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cj = next(d for d in docs if d["kind"] == "CronJob")
c = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"))
open(f"{sys.argv[2]}/drift.conf", "w").write(cm["data"]["drift.conf"])
env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
json.dump({"command": c["command"], "args": c.get("args", []), "env": env}, open(f"{sys.argv[2]}/job.json", "w"))
PY
}

# run_job LOG: the container's command as the pod runs it; prints the exit code
run_job() {
  local -a cmd envs
  mapfile -t cmd < <("$SN_PY" - "$WORK/job.json" "$SN_BIN" "$WORK/drift.conf" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for part in j["command"] + j["args"]:
    print(part.replace("/usr/local/bin/sentinel", sys.argv[2]).replace("/etc/sentinel/sentinel.conf", sys.argv[3]))
PY
  )
  mapfile -t envs < <("$SN_PY" -c 'import json,sys; [print(f"{k}={v}") for k, v in json.load(open(sys.argv[1]))["env"].items()]' "$WORK/job.json")
  env -i PATH=/usr/bin:/bin HOME="$WORK" TMPDIR="$WORK" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" "${envs[@]}" \
    "${cmd[@]}" >"$1" 2>&1
  echo $?
}

echo "1. the rendered drift CronJob and its config"
if render --set s3.endpoint="$S3_ENDPOINT"; then ok "helm template"; else not_ok "helm template: $(cat "$WORK/helm.err")"; sn_done; exit 1; fi
check "drift.conf names the archive, the registry, the S3 endpoint, Kafka and the retrain window" \
  grep -q "^archive.url=s3://$S3_BUCKET/$PREFIX/archive$" "$WORK/drift.conf"
for k in "registry.url=s3://$S3_BUCKET/$PREFIX/registry" "s3.endpoint=$S3_ENDPOINT" \
  "kafka.bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" "drift.retrain.window.ms=604800000"; do
  grep -qx "$k" "$WORK/drift.conf" || not_ok "drift.conf lacks $k"
done
check "the command has --retrain-on-drift" grep -q -- '"--retrain-on-drift"' "$WORK/job.json"
check "sentinel config --check accepts drift.conf" \
  env -i PATH=/usr/bin:/bin "$SN_BIN" config --check -c "$WORK/drift.conf"

echo "2. the Job against the stack: a model in the S3 registry, an empty archive window"
env -i PATH=/usr/bin:/bin HOME="$WORK" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" \
  "$SN_BIN" train -c "$WORK/drift.conf" --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i --promote -q \
  >"$WORK/train.log" 2>&1
check "model trained into the chart's S3 registry and promoted" test $? -eq 0
rc=$(run_job "$WORK/job.log")
check "exit 4, not enough data (got $rc)" test "$rc" -eq 4
check "the audit covered [hour - 2 hours, hour) of the archive at archive.url" \
  grep -qE "s3://$S3_BUCKET/$PREFIX/archive" "$WORK/job.log"
if [ "$rc" -ne 4 ]; then tail -n 20 "$WORK/job.log" | sed 's/^/    /'; fi

echo "3. the same Job with an S3 endpoint nothing listens on"
render --set s3.endpoint="http://127.0.0.1:9" --set 'drift.config.s3\.max\.retries=0' ||
  not_ok "helm template (bad endpoint)"
rc=$(run_job "$WORK/job-bad.log")
check "exit 1: the Job fails on storage it cannot reach (got $rc)" test "$rc" -eq 1
sn_done
