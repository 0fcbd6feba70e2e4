# Sourced by the integration tests: shared helpers. Not a test itself.
# Expects the local stack's environment (eval "$(infra/local/stack env)").

SN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SN_CACHE_DIR=${SN_CACHE_DIR:-$HOME/.cache/sentinel}
SN_BIN=${SN_BIN:-$SN_ROOT/build/sentinel}
# Never export SENTINEL_* names for tooling: sentinel reads every SENTINEL_*
# variable as a config key and stops on an unknown one.
SN_PY="$SN_CACHE_DIR/venv/bin/python"

# Creates (once) the venv with tests/requirements.txt; re-installs when the file
# changes.
sn_venv() {
  local stamp="$SN_CACHE_DIR/venv/.requirements"
  if [ ! -x "$SN_PY" ]; then
    mkdir -p "$SN_CACHE_DIR"
    python3 -m venv "$SN_CACHE_DIR/venv" || return 1
  fi
  if ! cmp -s "$SN_ROOT/tests/requirements.txt" "$stamp"; then
    "$SN_CACHE_DIR/venv/bin/pip" install -q -r "$SN_ROOT/tests/requirements.txt" || return 1
    cp "$SN_ROOT/tests/requirements.txt" "$stamp"
  fi
}

# A fresh topic name per test run, so reruns never see old data.
sn_topic() { echo "$1-$(date +%s)-$$"; }

sn_pass=0 sn_fail=0
ok() { sn_pass=$((sn_pass + 1)); echo "  ok: $*"; }
not_ok() { sn_fail=$((sn_fail + 1)); echo "  FAILED: $*"; }
# check DESCRIPTION COMMAND...: passes when the command exits 0
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# Prints the closing line and returns the status.
sn_done() {
  echo "$(basename "$0" .sh): $sn_pass passed, $sn_fail failed"
  [ "$sn_fail" -eq 0 ]
}

# sn_scorer_test NAME PREFIX: what the scorer tests share. The venv; the repo
# as working directory (the scorer's default schema.dir is ./schemas); $work,
# a scratch folder (kept with SN_KEEP=1); $pids, processes killed on exit;
# $base, a unique prefix for topics, groups and Redis keys (the keys deleted on
# exit); $t_start for timings.
sn_scorer_test() {
  sn_venv || { echo "$1: venv failed"; exit 1; }
  cd "$SN_ROOT" || exit 1
  work=$(mktemp -d)
  pids=()
  base=$(sn_topic "$2")
  trap sn_scorer_test_cleanup EXIT
  t_start=$SECONDS
}

sn_scorer_test_cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  "$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" redis-del "$REDIS_URL" "$base-*" >/dev/null 2>&1
  if [ "${SN_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
