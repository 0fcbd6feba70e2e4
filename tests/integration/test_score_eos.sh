#!/usr/bin/env bash
# sentinel score with scorer.exactly.once against the real broker and redis.
#
# The fleet, the model and the offline reference are test_score.sh's (a model
# trained on one fleet scores another; tools/offline_score computes the same
# model on the same events). Outputs are read back by confluent-kafka through
# eos_tool.py (score_tool.py's independent decoders), at read_committed unless
# said otherwise.
#   1. exactly-once: the scorer killed with SIGKILL twice mid-run and
#      restarted (same transactional id), poison records among the events:
#      read_committed sees every telemetry offset scored exactly once, every
#      score equal to the offline one, the alerts equal to an uninterrupted
#      run's (the alert state is persisted in Redis with the batch: README,
#      Delivery semantics) and no duplicate ids, every poison record
#      dead-lettered exactly once. What read_uncommitted
#      sees is printed: aborted records only when a SIGKILL landed between a
#      transaction's first sent records and its commit, a short window.
#   2. the same kill sequence at-least-once: duplicates in the outputs (so the
#      checks above can fail), and the alerts, each id counted once, equal to
#      an uninterrupted run's.
#   3. a second instance with the same transactional id fences the first,
#      which exits non-zero.
# Environment: SN_BIN, KAFKA_BOOTSTRAP_SERVERS, REDIS_URL (scripts/test sets
# them); SN_OFFLINE_SCORE (default: tools/offline_score next to SN_BIN);
# SN_KEEP=1 keeps the working folder (logs).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
sn_scorer_test test_score_eos eos # $work, $pids, $base, cleanup on exit
eos() { "$SN_PY" "$SN_ROOT/tests/integration/eos_tool.py" "$@"; }
tool() { eos --isolation read_committed "$@"; }
BUILD=$(dirname "$SN_BIN")
START=1767225600000 STEP=60000 MACHINES=200 N=${SN_EOS_EVENTS:-24000}

OFFLINE=${SN_OFFLINE_SCORE:-$BUILD/tools/offline_score}
[ -x "$OFFLINE" ] || { echo "test_score_eos: no $OFFLINE (build tools/offline_score)"; exit 1; }
REG="file://$work/reg"
common=(-X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X registry.url="$REG"
        -X metrics.port=0 -X log.format=text -X alert.cooldown.ms=600000 -X alert.resolve.after=5
        -X feature.state.ttl.s=3600 -X redis.url="$REDIS_URL" -X schema.dir="$work/schemas"
        -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=1000)
# run NAME: the topics, group and key prefix of one run, into the array RUN
run() {
  RUN=(-X topic.telemetry="$base-$1.tel" -X topic.scores="$base-$1.scores"
       -X topic.alerts="$base-$1.alerts" -X topic.dlq="$base-$1.dlq"
       -X scorer.group.id="$base-$1" -X redis.key.prefix="$base-$1")
  tool create-topics "$base-$1.tel" "$base-$1.scores" "$base-$1.alerts" "$base-$1.dlq"
}
start_scorer() {
  local log=$1; shift
  "$SN_BIN" score "${common[@]}" "$@" >"$log" 2>&1 &
  SCORER=$!
  pids+=("$SCORER")
}
produce() { "$SN_BIN" produce -q "${common[@]}" "$@" --fleet "$MACHINES" --start "$START" --step "$STEP"; }
t() { echo "  [$((SECONDS - t_start)) s]"; }

# kill_run NAME LOGPREFIX ARGS...: N events in two halves, each a backlog that
# the scorer works through at full speed (so that a SIGKILL lands inside a
# transaction), poison records between them; the scorer killed with SIGKILL
# in each half and restarted; stopped with SIGTERM once all is committed.
kill_run() {
  local name=$1 logs=$2 i; shift 2
  produce "${RUN[@]}" --events $((N / 2)) --seed 7 >"$logs.produce" 2>&1
  start_scorer "$logs.0.log" "$@"
  for i in 1 2; do
    n=$(tool wait-count "$base-$name.scores" $((i * N / 3)) --timeout 60 --interval 0.05)
    kill -9 "$SCORER"; wait "$SCORER" 2>/dev/null
    echo "  killed the scorer with SIGKILL at $n score records (committed or not); restarting"
    if [ "$i" = 1 ]; then
      tool poison --topic "$base-$name.tel" --machines "$POISON_MACHINES" --rounds 1 \
        --out "$work/$name.poison.json" >/dev/null
      produce "${RUN[@]}" --skip $((N / 2)) --events $((N / 2)) --seed 7 >>"$logs.produce" 2>&1
    fi
    start_scorer "$logs.$i.log" "$@"
  done
  tool wait-committed --group "$base-$name" --topic "$base-$name.tel" --timeout 120 >/dev/null
  kill -TERM "$SCORER"; wait "$SCORER"
  STOP_RC=$?
}

# ---- setup: a model, the schemas (with the poison test's schema 4), the reference
echo "setup: training a model on a fleet of $MACHINES machines"
"$OFFLINE" --fleet "$MACHINES" --events 20000 --seed 1 --start "$START" --step "$STEP" \
  --jsonl-out "$work/train.jsonl" --failures-out "$work/train_failures.csv" 2>/dev/null
"$SN_BIN" train --jsonl "$work/train.jsonl" --failures "$work/train_failures.csv" -q \
  -X registry.url="$REG" -X label.horizon.ms=600000 --promote >"$work/train.out" 2>&1
check "version 1 trained and promoted" grep -q "version 1: .*promoting" "$work/train.out"
mkdir -p "$work/schemas"
sed 's/"type": "string", "doc": "Machine identifier, also/"type": ["null", "string"], "default": null, "doc": "Machine identifier, also/;
     s/"type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "Event time/"type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null, "doc": "Event time/' \
  schemas/telemetry.avsc >"$work/schemas/telemetry_nullable.avsc"
printf '1 %s\n2 %s\n3 %s\n4 telemetry_nullable.avsc\n' "$SN_ROOT/schemas/telemetry.avsc" \
  "$SN_ROOT/schemas/failure_alert.avsc" "$SN_ROOT/schemas/score.avsc" >"$work/schemas/ids"
POISON_MACHINES=$(seq -f 'machine-%04g' 0 9 199 | paste -sd,)
"$OFFLINE" "${common[@]}" -X model.alias=production --events "$N" --seed 7 --fleet "$MACHINES" \
  --start "$START" --step "$STEP" >"$work/offline.csv" 2>"$work/offline.err"
CARD=$work/reg/sentinel/versions/1/card.json
t

# ---- 1. exactly-once through two SIGKILLs
echo "1. exactly-once: $N events, SIGKILL twice mid-run, poison records"
run e
kill_run e "$work/e" "${RUN[@]}" -X scorer.exactly.once=true -X scorer.transactional.id="$base-e"
check "restarted scorer: SIGTERM exits 0" test "$STOP_RC" -eq 0
check "produced $N events" test "$(grep -c "$((N / 2)) delivered, 0 failed" "$work/e.produce")" -eq 2
tool coverage --telemetry "$base-e.tel" --scores "$base-e.scores" --skip "$work/e.poison.json" \
  --expect "$N" --exactly-once
check "read_committed: every telemetry offset scored exactly once" test $? -eq 0
tool alerts --scores "$base-e.scores" --alerts "$base-e.alerts" --offline "$work/offline.csv" \
  --card "$CARD" --cooldown 600000 --resolve-after 5 --exact-scores
check "read_committed: every score == offline; alerts == an uninterrupted run's (through two SIGKILLs), ids unique" \
  test $? -eq 0
tool check-dlq --dlq "$base-e.dlq" --sent "$work/e.poison.json" --telemetry "$base-e.tel"
check "read_committed: every poison record dead-lettered exactly once, intact" test $? -eq 0
rc_json=$(tool dups --scores "$base-e.scores" --alerts "$base-e.alerts" --dlq "$base-e.dlq")
ru_json=$(eos --isolation read_uncommitted dups --scores "$base-e.scores" --alerts "$base-e.alerts" \
  --dlq "$base-e.dlq")
echo "  $rc_json"
echo "  $ru_json"
field() { "$SN_PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
check "read_committed: no duplicate scores, alerts or dead letters" \
  test "$(field "$rc_json" score_dups)$(field "$rc_json" alert_dups)$(field "$rc_json" dlq_dups)" = 000
# Only when a SIGKILL landed after a transaction's first records were sent.
echo "  read_uncommitted sees $(field "$ru_json" score_dups) duplicate score records of aborted transactions"
aborted=$(grep -h "transactions committed" "$work"/e.*.log | sed 's/.*transactions committed/committed/')
echo "  last scorer: $aborted"
grep -h "exactly-once: transactional id" "$work/e.0.log" | sed 's/^.*scorer: /  log: /'
t

# ---- 2. the same at-least-once: the duplicates the checks above would catch
echo "2. at-least-once, the same SIGKILLs: duplicates expected"
run a
kill_run a "$work/a" "${RUN[@]}"
check "restarted scorer: SIGTERM exits 0" test "$STOP_RC" -eq 0
tool coverage --telemetry "$base-a.tel" --scores "$base-a.scores" --skip "$work/a.poison.json" \
  --expect "$N" >/dev/null
check "every telemetry offset scored at least once" test $? -eq 0
al_json=$(eos --isolation read_uncommitted dups --scores "$base-a.scores" --alerts "$base-a.alerts" \
  --dlq "$base-a.dlq")
echo "  $al_json"
check "at-least-once after SIGKILLs: duplicate score records (the exactly-once check has teeth)" \
  test "$(field "$al_json" score_dups)" -gt 0
tool alerts --scores "$base-a.scores" --alerts "$base-a.alerts" --offline "$work/offline.csv" \
  --card "$CARD" --cooldown 600000 --resolve-after 5 --dedup
check "at-least-once after SIGKILLs: alerts, each id once, == an uninterrupted run's" test $? -eq 0
t

# ---- 3. fencing: a second instance with the same transactional id
echo "3. a second scorer with the same transactional id fences the first"
run f
start_scorer "$work/f1.log" "${RUN[@]}" -X scorer.exactly.once=true -X scorer.transactional.id="$base-f"; f1=$SCORER
produce "${RUN[@]}" --events 2000 --seed 8 >/dev/null 2>&1
tool wait-committed --group "$base-f" --topic "$base-f.tel" --timeout 60 >/dev/null
start_scorer "$work/f2.log" "${RUN[@]}" -X scorer.exactly.once=true -X scorer.transactional.id="$base-f"; f2=$SCORER
for _ in $(seq 100); do grep -q "transactional id" "$work/f2.log" && break; sleep 0.1; done
sleep 2
produce "${RUN[@]}" --skip 2000 --events 4000 --seed 8 --rate 2000 >/dev/null 2>&1
for _ in $(seq 100); do kill -0 "$f1" 2>/dev/null || break; sleep 0.1; done
wait "$f1"; f1rc=$?
check "the fenced scorer exited non-zero ($f1rc)" test "$f1rc" -ne 0
grep -h -i "fenc" "$work/f1.log" | tail -1 | sed 's/^/  log: /'
check "its log says it was fenced" grep -q -i "fenced" "$work/f1.log"
tool wait-committed --group "$base-f" --topic "$base-f.tel" --timeout 60 >/dev/null
check "the new instance carries on" kill -0 "$f2"
kill -TERM "$f2"; wait "$f2"
tool coverage --telemetry "$base-f.tel" --scores "$base-f.scores" --expect 6000 --exactly-once
check "fencing: every event scored exactly once" test $? -eq 0
t

sn_done
