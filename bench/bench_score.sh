#!/usr/bin/env bash
# bench_score: sentinel score on the real local stack (the Kafka KRaft broker of
# infra/local/stack; a private redis-server so that its CPU is the scorer's
# alone), with the ceilings measured in the same run.
#
#   1. throughput: BENCH_EVENTS events of a BENCH_MACHINES fleet already in a
#      topic; a fresh scorer drains it. events/s, scorer CPU us/event
#      (/proc/PID/stat utime+stime, every thread), Redis CPU us/event (INFO
#      cpu deltas), peak RSS (VmHWM); measured from 5 % to 100 % of the
#      score records, so start-up is left out.
#   2. latency: produce at BENCH_RATE events/s for BENCH_WARMUP_S +
#      BENCH_SECONDS; per event, the telemetry record's timestamp (the
#      producer's send) against the score record's (broker append time: the
#      scores topic is created with message.timestamp.type=LogAppendTime),
#      joined on the score record's source_partition/source_offset; the
#      warm-up seconds are left out. CPU per event at that rate too. Alongside,
#      the transport floor: a plain consumer's receive time minus the same
#      send timestamps (what Kafka alone adds, and when the machine stalls).
#   3. ceilings: raw consumption of the run-1 topic by librdkafka alone
#      (kcat -C -e), and the Redis feature update alone (bench/bench_features.c,
#      same fleet size, same private Redis).
#   4. profile (when perf works): perf record (DWARF call graphs) of a second
#      drain of the run-1 topic and of 8 s at BENCH_RATE: CPU by pipeline
#      stage (inclusive), by library and the top functions (exclusive).
#
# Run (the stack must be up; the build needs no tests):
#   infra/local/stack up && eval "$(infra/local/stack env)"
#   cmake -S . -B build -G Ninja -DSN_TESTS=OFF && cmake --build build
#   bench/bench_score.sh
# Environment: SN_BIN (build/sentinel), BENCH_MACHINES (1000), BENCH_EVENTS
# (200000), BENCH_RATE (5000), BENCH_WARMUP_S (5), BENCH_SECONDS (30),
# BENCH_PHASES ("drain rate ceilings profile", any subset), BENCH_SCORER_ARGS
# (extra scorer options, e.g. "-X scorer.batch.max.ms=5"), BENCH_OUT (a folder
# for the results; default a temporary one, printed), BENCH_REDIS_PORT (16390).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
SN_BIN=${SN_BIN:-$root/build/sentinel}
BUILD=$(dirname "$SN_BIN")
PY=${SN_PY:-$HOME/.cache/sentinel/venv/bin/python} # the venv of tests/integration/lib.sh
M=${BENCH_MACHINES:-1000} N=${BENCH_EVENTS:-200000} RATE=${BENCH_RATE:-5000}
WARM=${BENCH_WARMUP_S:-5} SECS=${BENCH_SECONDS:-30} PHASES=${BENCH_PHASES:-drain rate ceilings profile}
read -r -a extra <<<"${BENCH_SCORER_ARGS:-}"
RPORT=${BENCH_REDIS_PORT:-16390}
: "${KAFKA_BOOTSTRAP_SERVERS:?run eval \"\$(infra/local/stack env)\" first}"
out=${BENCH_OUT:-$(mktemp -d /tmp/bench_score.XXXXXX)}
mkdir -p "$out"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap cleanup EXIT
tool() { "$PY" "$root/tests/integration/score_tool.py" "$@"; }
bench() { "$PY" "$root/bench/score_bench.py" "$@"; }
log() { echo "bench_score: $*" >&2; }

# ---- a private redis-server, idle but for us
redis-cli -p "$RPORT" ping >/dev/null 2>&1 && { log "port $RPORT is taken (BENCH_REDIS_PORT)"; exit 1; }
mkdir -p "$out/redis"
redis-server --bind 127.0.0.1 --port "$RPORT" --save "" --appendonly no --dir "$out/redis" \
  --logfile "$out/redis/redis.log" & pids+=($!)
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS=redis://127.0.0.1:$RPORT

base=bench-score-$(date +%s)-$$
REG=file://$out/reg
common=(-X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X registry.url="$REG"
        -X redis.url="$REDIS" -X metrics.port=0 -X log.format=text)
phase() { [[ " $PHASES " == *" $1 "* ]]; }
# scorer LOG: starts a scorer for RUN in the background; its pid in spid
scorer() {
  "$SN_BIN" score "${common[@]}" "${RUN[@]}" "${extra[@]}" >"$1" 2>&1 &
  spid=$!
  pids+=("$spid")
}
run() { # run NAME TELEMETRY: the outputs, group and key prefix of one scorer run, into RUN
  RUN=(-X topic.telemetry="$2" -X topic.scores="$base-$1.scores" -X topic.alerts="$base-$1.alerts"
       -X topic.dlq="$base-$1.dlq" -X scorer.group.id="$base-$1" -X redis.key.prefix="$base-$1")
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# ---- a model, trained as in tests/integration/test_score.sh (an event a minute per machine)
log "training the model"
OFFLINE=${SN_OFFLINE_SCORE:-$BUILD/tools/offline_score}
if [ ! -x "$OFFLINE" ]; then # not built with tools/: from the build's libraries
  OFFLINE=$out/offline_score
  # shellcheck disable=SC2046
  cc -std=c11 -O2 -D_GNU_SOURCE -I"$root" "$root/tools/offline_score.c" "$BUILD"/libsn_consumers.a \
    "$BUILD"/libsn_producers.a "$BUILD"/libsn_scoring.a "$BUILD"/libsn_schemas.a "$BUILD"/libsn_common.a \
    $(pkg-config --libs xgboost hiredis jansson avro-c libcurl libmicrohttpd libcrypto rdkafka) \
    -lm -lpthread -o "$OFFLINE" || exit 1
fi
"$OFFLINE" --fleet 200 --events 40000 --seed 1 --step 60000 --jsonl-out "$out/train.jsonl" \
  --failures-out "$out/train_failures.csv" 2>/dev/null || exit 1
"$SN_BIN" train --jsonl "$out/train.jsonl" --failures "$out/train_failures.csv" -q --promote \
  -X registry.url="$REG" -X label.horizon.ms=600000 >"$out/train.out" 2>&1 || { cat "$out/train.out"; exit 1; }

# ---- 1. throughput: drain a backlog
tel1=$base-backlog.tel
if phase drain || phase ceilings || phase profile; then
  tool create-topics "$tel1"
  "$SN_BIN" produce -q "${common[@]}" --topic "$tel1" --fleet "$M" --events "$N" --seed 2 --step 60000 \
    >"$out/produce1.out" || exit 1
fi
if phase drain; then
  log "1. throughput: $N events of $M machines, backlog"
  tool create-topics "$base-drain.scores" "$base-drain.alerts"
  run drain "$tel1"
  scorer "$out/score1.log"
  bench window --pid "$spid" --redis "$REDIS" --scores "$base-drain.scores" --start $((N / 20)) --end "$N" \
    | tee "$out/drain.json"
  stop "$spid"
  tool count "$base-drain.alerts" >"$out/drain_alerts.txt" # each one explained (SHAP)
fi

# ---- 2. latency at a fixed rate
TOTAL=$((RATE * (WARM + SECS)))
if phase rate; then
  log "2. latency: $TOTAL events at $RATE/s (first $WARM s are warm-up)"
  tel2=$base-rate.tel
  tool create-topics "$tel2" "$base-rate.alerts"
  tool create-topics "$base-rate.scores" --config message.timestamp.type=LogAppendTime
  run rate "$tel2"
  scorer "$out/score2.log"
  sleep 2 # joined and idle before the first event
  bench floor --topic "$tel2" --events "$TOTAL" --warmup-s "$WARM" >"$out/floor.json" & fpid=$!
  "$SN_BIN" produce -q "${common[@]}" --topic "$tel2" --fleet "$M" --events "$TOTAL" --seed 3 \
    --step 60000 --rate "$RATE" >"$out/produce2.out" 2>&1 & ppid=$!; pids+=("$ppid")
  bench window --pid "$spid" --redis "$REDIS" --scores "$base-rate.scores" --start $((RATE * WARM)) \
    --end "$TOTAL" | tee "$out/rate.json"
  wait "$ppid" "$fpid"
  echo "transport floor (plain consumer): $(cat "$out/floor.json")"
  stop "$spid"
  tool latency --telemetry "$tel2" --scores "$base-rate.scores" --warmup-s "$WARM" | tee "$out/latency.json"
fi

# ---- 3. ceilings
if phase ceilings; then
log "3a. ceiling: librdkafka alone (kcat) consuming the $N-event topic"
/usr/bin/time -f '{"seconds": %e, "user_s": %U, "sys_s": %S, "maxrss_kb": %M}' -o "$out/kcat.time" \
  kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$tel1" -o beginning -e -q >/dev/null
"$PY" -c 'import json,sys; t=json.load(open(sys.argv[1])); n=int(sys.argv[2])
print(json.dumps({"events": n, "events_per_s": round(n / t["seconds"]), "cpu_us": round((t["user_s"] + t["sys_s"]) / n * 1e6, 2), **t}))' \
  "$out/kcat.time" "$N" | tee "$out/kcat.json"
log "3b. ceiling: the Redis feature update alone (bench_features, $M machines)"
BF=$BUILD/bench_features
if [ ! -x "$BF" ]; then
  # shellcheck disable=SC2046
  cc -std=c11 -O2 -D_GNU_SOURCE -I"$root" "$root/bench/bench_features.c" "$BUILD/libsn_scoring.a" \
    "$BUILD/libsn_schemas.a" "$BUILD/libsn_common.a" $(pkg-config --libs hiredis jansson) -lm -lpthread \
    -o "$out/bench_features" && BF=$out/bench_features
fi
BENCH_REDIS_ONLY=1 "$BF" -u "$REDIS" -m "$M" -r 20 | tee "$out/bench_features.txt"
fi

# ---- 4. profile: where the scorer's CPU goes, drained and at the fixed rate
# perf_report NAME: CPU by pipeline stage (inclusive, DWARF call graphs), by
# library, and the top functions (exclusive), into $out/profile_NAME.txt
STAGES='sn_scorer_run|sn_consumer_poll_batch|sn_codec_decode$|sn_feature_redis_apply_batch|sn_fstate_features$'
STAGES+='|sn_model_predict|sn_model_explain|sn_codec_encode_score|sn_codec_encode_alert|sn_producer_send'
STAGES+='|sn_producer_flush|sn_consumer_commit_batch|start_thread|redisAppendCommandArgv|redisGetReply$'
perf_report() {
  {
    echo "== $1: inclusive CPU of the pipeline stages (% of the scorer's samples, all threads)"
    perf report -i "$out/perf_$1.data" --children --sort sym --stdio -g none 2>/dev/null \
      | grep -E "\] ($STAGES)" | awk '{printf "  %7s  %s\n", $1, $NF}'
    echo "== $1: by library (exclusive)"
    perf report -i "$out/perf_$1.data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | grep '%' | head -12
    echo "== $1: top functions (exclusive)"
    perf report -i "$out/perf_$1.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null \
      | grep '%' | head -25 | cut -c1-150
  } >"$out/profile_$1.txt"
  cat "$out/profile_$1.txt"
}
if phase profile && perf stat -e task-clock true >/dev/null 2>&1; then
  perfrec() { perf record -F 499 --call-graph dwarf,16384 -p "$spid" -o "$out/perf_$1.data" -- sleep "$2" \
                >/dev/null 2>&1; }
  log "4a. profile: perf record of a second drain of the $N-event topic"
  run prof "$tel1"
  scorer "$out/score4.log"
  tool wait-count "$base-prof.scores" $((N / 20)) --timeout 300 >/dev/null
  perfrec drain 4
  tool wait-count "$base-prof.scores" "$N" --timeout 300 >/dev/null
  stop "$spid"
  perf_report drain
  log "4b. profile: perf record at $RATE events/s"
  tel3=$base-profrate.tel
  tool create-topics "$tel3"
  run profrate "$tel3"
  scorer "$out/score5.log"
  sleep 2
  "$SN_BIN" produce -q "${common[@]}" --topic "$tel3" --fleet "$M" --events $((RATE * (WARM + 10))) \
    --seed 4 --step 60000 --rate "$RATE" >"$out/produce5.out" 2>&1 & ppid=$!; pids+=("$ppid")
  sleep "$WARM"
  perfrec rate 8
  wait "$ppid"
  stop "$spid"
  perf_report rate
fi

# ---- summary (a phase not run shows "-")
"$PY" - "$out" "$M" "$N" "$RATE" <<'PY'
import json, os, sys
out, m, n, rate = sys.argv[1:5]
def j(f):
    try:
        return json.load(open(os.path.join(out, f)))
    except OSError:
        return {}
d, r, l, k, f = j("drain.json"), j("rate.json"), j("latency.json"), j("kcat.json"), j("floor.json")
g = lambda x, key: x.get(key, "-")
mb = lambda x: f"{x['vmhwm_kb'] / 1024:.1f}" if "vmhwm_kb" in x else "-"
print(f"\n| measure | backlog drain ({n} events, {m} machines) | {rate} events/s | target |")
print("|---|---|---|---|")
print(f"| events/s | {g(d, 'events_per_s')} | {g(r, 'events_per_s')} | |")
print(f"| scorer CPU us/event | {g(d, 'scorer_cpu_us')} | {g(r, 'scorer_cpu_us')} | <= 10 |")
print(f"| Redis CPU us/event | {g(d, 'redis_cpu_us')} | {g(r, 'redis_cpu_us')} | <= 15 |")
print(f"| latency p50 / p99 / max ms | - | {g(l, 'p50_ms')} / {g(l, 'p99_ms')} / {g(l, 'max_ms')} | p99 <= 50 |")
print(f"| transport floor p50 / p99 / max ms (plain consumer) | - | {g(f, 'p50_ms')} / {g(f, 'p99_ms')} / {g(f, 'max_ms')} | |")
print(f"| scorer peak RSS MB | {mb(d)} | {mb(r)} | |")
try:
    na = int(open(os.path.join(out, "drain_alerts.txt")).read())
    print(f"| alert records per 1000 events (each explained with SHAP) | {1000 * na / int(n):.1f} | | |")
except (OSError, ValueError):
    pass
print(f"| ceiling: kcat alone, events/s and CPU us/event | {g(k, 'events_per_s')}, {g(k, 'cpu_us')} | | |")
PY
echo "results in $out"
