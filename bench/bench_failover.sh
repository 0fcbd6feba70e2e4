#!/usr/bin/env bash
# bench_failover: how long a scorer's partitions stall after it is killed with
# SIGKILL (no LeaveGroup), for each session timeout in BENCH_TIMEOUTS, on the
# real local broker. The figure behind the Helm chart's scorer.sessionTimeoutMs.
#
# Per timeout: two scorers in one group on a 4-partition topic (each holds 2)
# while a fleet is produced at BENCH_RATE events/s; once both have their
# partitions, one is killed with SIGKILL. Measured: the time from the kill to
# the survivor's log line saying it was assigned the killed scorer's partitions
# (the group noticed the dead member and rebalanced); until then nothing scores
# the killed scorer's machines.
#
# Run (the stack must be up):
#   infra/local/stack up && eval "$(infra/local/stack env)"
#   scripts/build && bench/bench_failover.sh
# Environment: SN_BIN (build/sentinel), BENCH_TIMEOUTS ("45000 10000"; 0 means
# librdkafka's default, not passed), BENCH_RATE (200), BENCH_OUT (a folder for
# the logs; default a temporary one, removed).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1 # the scorer's default schema.dir is ./schemas
# shellcheck source=tests/integration/lib.sh
. "$root/tests/integration/lib.sh"
sn_venv || { echo "bench_failover: venv failed"; exit 1; }
: "${KAFKA_BOOTSTRAP_SERVERS:?eval \"\$(infra/local/stack env)\" first}" "${REDIS_URL:?}"
RATE=${BENCH_RATE:-200}
work=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$work"
base=$(sn_topic failover)
pids=()
tool() { "$SN_PY" "$root/tests/integration/score_tool.py" "$@"; }
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  tool redis-del "$REDIS_URL" "$base-*" >/dev/null 2>&1
  [ -z "${BENCH_OUT:-}" ] && rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
# wait_line FILE PATTERN TIMEOUT_S: 0 when a line matching PATTERN appears
wait_line() {
  local i
  for ((i = 0; i < $3 * 20; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

REG="file://$work/reg"
"$SN_BIN" train --csv data/ai4i2020.csv --preset ai4i --promote -q -X registry.url="$REG" \
  >"$work/train.out" 2>&1 || { echo "bench_failover: training failed:"; tail "$work/train.out"; exit 1; }

echo "| kafka.session.timeout.ms | kill -9 -> the survivor is assigned the killed scorer's partitions |"
echo "|---|---|"
for timeout in ${BENCH_TIMEOUTS:-45000 10000}; do
  run="$base-$timeout"
  tool create-topics "$run.tel" "$run.scores" "$run.alerts" >/dev/null
  args=(-X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X redis.url="$REDIS_URL"
        -X registry.url="$REG" -X metrics.port=0 -X log.format=text
        -X topic.telemetry="$run.tel" -X topic.scores="$run.scores" -X topic.alerts="$run.alerts"
        -X topic.dlq="$run.dlq" -X scorer.group.id="$run" -X redis.key.prefix="$run")
  [ "$timeout" -gt 0 ] && args+=(-X kafka.session.timeout.ms="$timeout")
  "$SN_BIN" produce -q "${args[@]}" --fleet 40 --events $((RATE * 600)) --seed 5 --rate "$RATE" \
    >"$work/produce-$timeout.log" 2>&1 &
  prod=$!; pids+=("$prod")
  "$SN_BIN" score "${args[@]}" >"$work/a-$timeout.log" 2>&1 &
  a=$!; pids+=("$a")
  wait_line "$work/a-$timeout.log" "4 partitions assigned" 60 || { echo "scorer a: no assignment"; exit 1; }
  "$SN_BIN" score "${args[@]}" >"$work/b-$timeout.log" 2>&1 &
  b=$!; pids+=("$b")
  # The scorer's consumer is cooperative (incremental): b logs the 2 partitions
  # it is given, a the 2 it gives up.
  wait_line "$work/b-$timeout.log" " [1-9][0-9]* partitions assigned" 90 || { echo "scorer b: no assignment"; exit 1; }
  sleep 5 # both scoring
  before=$(grep -c " [1-9][0-9]* partitions assigned" "$work/b-$timeout.log")
  t0=$(now)
  kill -9 "$a"; wait "$a" 2>/dev/null
  # the survivor's next assignment of partitions (the killed scorer's)
  t1=""
  for ((i = 0; i < 2400; i++)); do
    if [ "$(grep -c " [1-9][0-9]* partitions assigned" "$work/b-$timeout.log")" -gt "$before" ]; then
      t1=$(now); break
    fi
    sleep 0.05
  done
  kill -TERM "$b" "$prod" 2>/dev/null; wait "$b" "$prod" 2>/dev/null
  d1=$([ -n "$t1" ] && printf '%.1f' "$(echo "$t1 - $t0" | bc)" || echo "none in 120 s")
  echo "| ${timeout/#0/librdkafka default} | ${d1} s |"
done
