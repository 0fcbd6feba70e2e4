#!/usr/bin/env bash
# The MLflow registry backend against a real MLflow tracking server (the PyPI
# package, pinned in tools/reference/requirements.txt, installed into the
# cached venv), started here on loopback with --serve-artifacts and a sqlite
# backend in a temporary folder, and stopped at the end.
#
#   1. the registry_mlflow Criterion tests (register, alias, download,
#      history, rollback, list) with SN_MLFLOW_URL pointing at the server;
#   2. when the sentinel binary has the train and registry commands: train on
#      the AI4I data with --promote (exit 0), train on shuffled labels with
#      --promote (exit 4: registered, not promoted, both scores logged),
#      list, download with the hash checked, promote and roll back by hand;
#   3. MLflow's own Python client, an independent peer, reads the aliases back.
#
# Environment: SN_BIN (default build/sentinel), SN_UNIT_DIR (default
# build/tests/unit), SN_CACHE_DIR (the venv's home).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

SN_UNIT_DIR=${SN_UNIT_DIR:-$SN_ROOT/build/tests/unit}
sentinel() { "$SN_BIN" "$@"; }
REQ="$SN_ROOT/tools/reference/requirements.txt"

echo "test_mlflow: setting up the venv"
sn_venv || { echo "test_mlflow: venv setup failed"; exit 1; }
stamp="$SN_CACHE_DIR/venv/.reference-requirements"
if ! cmp -s "$REQ" "$stamp"; then
  "$SN_CACHE_DIR/venv/bin/pip" install -q -r "$REQ" || { echo "test_mlflow: pip install failed"; exit 1; }
  cp "$REQ" "$stamp"
fi
MLFLOW="$SN_CACHE_DIR/venv/bin/mlflow"
mlflow_version=$("$SN_PY" -c 'import mlflow; print(mlflow.__version__)')
echo "test_mlflow: MLflow $mlflow_version"

tmp=$(mktemp -d /tmp/sn_mlflow.XXXXXX)
port=$("$SN_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    # the server runs in its own process group (setsid): gunicorn and its workers go together
    kill -TERM -- "-$server_pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

setsid "$MLFLOW" server --host 127.0.0.1 --port "$port" --workers 1 \
  --backend-store-uri "sqlite:///$tmp/mlflow.db" --serve-artifacts \
  --artifacts-destination "$tmp/artifacts" --default-artifact-root mlflow-artifacts:/ \
  >"$tmp/server.log" 2>&1 &
server_pid=$!
up=0
for _ in $(seq 1 240); do
  if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then up=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
if [ "$up" != 1 ]; then
  echo "test_mlflow: the MLflow server did not come up:"; tail -20 "$tmp/server.log"
  exit 1
fi
url="mlflow+http://127.0.0.1:$port"
echo "test_mlflow: MLflow $mlflow_version serving on 127.0.0.1:$port"

# 1. the registry's own round trips
if [ -x "$SN_UNIT_DIR/test_registry" ]; then
  check "registry round trips on MLflow (Criterion registry_mlflow)" \
    env SN_MLFLOW_URL="$url" "$SN_UNIT_DIR/test_registry" --jobs 1 --filter 'registry_mlflow/*'
else
  not_ok "no $SN_UNIT_DIR/test_registry: build the unit tests first"
fi

# 2. the commands, when this build has them
if sentinel registry --help >/dev/null 2>&1 && sentinel train --help >/dev/null 2>&1; then
  name="sentinel-it-$$"
  X=(-X "registry.url=$url" -X "model.name=$name" -X log.format=text)
  "$SN_PY" - "$SN_ROOT/data/ai4i2020.csv" "$tmp/shuffled.csv" <<'EOF'
import random, sys
rows = open(sys.argv[1]).read().splitlines()
head, body = rows[0], rows[1:]
labels = [r.rsplit(",", 1)[1] for r in body[:8000]]
random.Random(1).shuffle(labels)
body[:8000] = [r.rsplit(",", 1)[0] + "," + l for r, l in zip(body[:8000], labels)]
open(sys.argv[2], "w").write("\n".join([head] + body) + "\n")
EOF
  sentinel train --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i --promote -q "${X[@]}" \
    >"$tmp/train1.out" 2>"$tmp/train1.err"
  rc=$?
  check "train --promote with no production: exit 0 (got $rc)" test "$rc" = 0
  check "first version promoted" grep -q "promoting version 1" "$tmp/train1.out"
  sentinel train --csv "$tmp/shuffled.csv" --preset ai4i --promote -q "${X[@]}" \
    >"$tmp/train2.out" 2>"$tmp/train2.err"
  rc=$?
  check "train --promote on shuffled labels: exit 4 (got $rc)" test "$rc" = 4
  check "gate logged both scores" grep -Eq "challenger PR-AUC 0\.[0-9]+ < production 0\.[0-9]+ \+ 0\.005: not promoting" "$tmp/train2.err"
  sentinel registry list "${X[@]}" >"$tmp/list.out" 2>&1
  check "registry list shows production on 1" grep -Eq '^1 .*production' "$tmp/list.out"
  check "registry list shows challenger on 2" grep -Eq '^2 .*challenger' "$tmp/list.out"
  check "registry download production" sentinel registry download production "$tmp/dl" "${X[@]}"
  want=$("$SN_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["sha256"])' "$tmp/dl/card.json" 2>/dev/null)
  got=$(sha256sum "$tmp/dl/model.ubj" 2>/dev/null | cut -d' ' -f1)
  check "downloaded model.ubj matches its card's sha256" test -n "$want" -a "$want" = "$got"
  check "registry show 2" sentinel registry show 2 "${X[@]}"
  check "registry promote 2 (by hand)" sentinel registry promote 2 "${X[@]}"
  check "registry rollback" sentinel registry rollback "${X[@]}"
  sentinel registry alias production "${X[@]}" >"$tmp/alias.out" 2>&1
  check "production is back on 1" grep -q '^production -> 1' "$tmp/alias.out"
  # 3. MLflow's client agrees
  check "MLflow's client sees production=1, challenger=2" "$SN_PY" - "http://127.0.0.1:$port" "$name" <<'EOF'
import sys
from mlflow import MlflowClient
c = MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1])
prod = c.get_model_version_by_alias(sys.argv[2], "production")
chal = c.get_model_version_by_alias(sys.argv[2], "challenger")
run = c.get_run(prod.run_id)
assert prod.version == "1" and chal.version == "2", (prod.version, chal.version)
assert run.data.metrics["holdout_pr_auc"] >= 0.77, run.data.metrics
print(f"production={prod.version} challenger={chal.version} holdout_pr_auc={run.data.metrics['holdout_pr_auc']:.4f}")
EOF
else
  not_ok "$SN_BIN has no train/registry commands"
fi

sn_done
