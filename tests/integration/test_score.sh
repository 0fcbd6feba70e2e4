#!/usr/bin/env bash
# sentinel score against the real broker and real redis-servers.
#
# A model is trained on one synthetic fleet (sentinel train, failure labels)
# and scores other fleets. The reference is an offline computation of the same
# model on the same events (tools/offline_score: the producer's own fleet
# source, the in-memory feature engine, the registry's model), read back and
# compared by an independent peer (score_tool.py: confluent-kafka, Avro decoded
# by hand, the alert state machine written again, Redis over raw RESP).
#   1. 50,000 events of 200 machines with failures: every score equals the
#      offline score, the alerts equal the offline state machine's, each
#      alert's top SHAP features (explained a batch at a time) equal the
#      offline per-row explanation; SIGTERM exits 0 within 10 s.
#   2. kill -9 mid-run and a restart: every event scored (at least once), the
#      Redis feature state equal to an uninterrupted run's (but the version
#      token 'v'), and its alerts too, each id counted once (the repeats a
#      redelivery sent identical).
#   3. poison records of every bad-input class among good ones: each one in
#      the dead-letter topic with the right headers and its bytes intact,
#      everything else scored exactly once.
#   4. our own redis-server killed and restarted mid-run: every event scored,
#      the pause and the resume logged, the feature state equal to an
#      uninterrupted run's.
#   5. the production alias flipped 10 times during 100,000 events, twice to
#      a corrupt version (a truncated model.ubj whose card vouches for it; a
#      model.ubj that is not the card's): every event scored exactly once by a
#      registered version, each score equal to that version's offline score;
#      the corrupt versions refused and logged, the old one kept serving.
# Environment: SN_BIN, KAFKA_BOOTSTRAP_SERVERS, REDIS_URL (scripts/test sets
# them); SN_OFFLINE_SCORE (default: tools/offline_score next to SN_BIN, built
# from SN_BIN's static libraries when missing); SN_SCORE_TESTS (the parts to
# run, default "1 2 3 4 5"); SN_KEEP=1 keeps the working folder (logs).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
sn_scorer_test test_score score # $work, $pids, $base, cleanup on exit
tool() { "$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" "$@"; }
BUILD=$(dirname "$SN_BIN")
START=1767225600000 STEP=60000 MACHINES=200
N1=${SN_SCORE_EVENTS:-50000} N2=20000 N3=3000 N4=12000 N5=${SN_SCORE_SWAP_EVENTS:-100000}

# ---- the offline reference tool
OFFLINE=${SN_OFFLINE_SCORE:-$BUILD/tools/offline_score}
if [ ! -x "$OFFLINE" ]; then
  OFFLINE=$work/offline_score
  # shellcheck disable=SC2046
  cc -std=c11 -O2 -D_GNU_SOURCE -I"$SN_ROOT" "$SN_ROOT/tools/offline_score.c" \
    "$BUILD"/libsn_consumers.a "$BUILD"/libsn_producers.a "$BUILD"/libsn_scoring.a \
    "$BUILD"/libsn_schemas.a "$BUILD"/libsn_common.a \
    $(pkg-config --libs xgboost hiredis jansson avro-c libcurl libmicrohttpd libcrypto rdkafka) \
    -lm -lpthread -o "$OFFLINE" || { echo "test_score: cannot build offline_score"; exit 1; }
fi

REG="file://$work/reg"
# feature state for an hour (the spec's retention) only, and deleted at the end
common=(-X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X registry.url="$REG"
        -X metrics.port=0 -X log.format=text -X alert.cooldown.ms=600000 -X alert.resolve.after=5
        -X feature.state.ttl.s=3600)
# run NAME: the topics, group and key prefix of one run, into the array RUN
run() {
  RUN=(-X topic.telemetry="$base-$1.tel" -X topic.scores="$base-$1.scores"
       -X topic.alerts="$base-$1.alerts" -X topic.dlq="$base-$1.dlq"
       -X scorer.group.id="$base-$1" -X redis.key.prefix="$base-$1")
}
# start_scorer LOG ARGS...: a scorer in the background; its pid in SCORER
start_scorer() {
  local log=$1; shift
  "$SN_BIN" score "${common[@]}" "$@" >"$log" 2>&1 &
  SCORER=$!
  pids+=("$SCORER")
}
# stop_scorer PID: SIGTERM, then the exit code within 10 s (124 when it hung)
stop_scorer() {
  local pid=$1 i rc
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"; wait "$pid" 2>/dev/null; echo "  scorer $pid still running 10 s after SIGTERM"
    return 124
  fi
  wait "$pid"; rc=$?
  echo "  scorer $pid exited $rc after SIGTERM in $(( i / 10 )).$(( i % 10 )) s"
  return $rc
}
produce() { "$SN_BIN" produce -q "${common[@]}" "$@" --fleet "$MACHINES" --start "$START" --step "$STEP"; }
offline() { "$OFFLINE" "${common[@]}" "$@" --fleet "$MACHINES" --start "$START" --step "$STEP"; }
t() { echo "  [$((SECONDS - t_start)) s]"; }
part() { [[ " ${SN_SCORE_TESTS:-1 2 3 4 5} " == *" $1 "* ]]; }

# ---- models: trained on one fleet (seed 1), scoring others
echo "setup: training models on a fleet of $MACHINES machines"
"$OFFLINE" --fleet "$MACHINES" --events 40000 --seed 1 --start "$START" --step "$STEP" \
  --jsonl-out "$work/train.jsonl" --failures-out "$work/train_failures.csv" 2>/dev/null
train=("$SN_BIN" train --jsonl "$work/train.jsonl" --failures "$work/train_failures.csv" -q
       -X registry.url="$REG" -X label.horizon.ms=600000)
"${train[@]}" --promote >"$work/train1.out" 2>&1
check "version 1 trained and promoted" grep -q "version 1: .*promoting" "$work/train1.out"
"${train[@]}" -X train.max.depth=2 -X train.rounds=40 -X train.early.stopping.rounds=0 >"$work/train2.out" 2>&1
"${train[@]}" -X train.max.depth=4 -X train.eta=0.1 -X train.rounds=30 -X train.early.stopping.rounds=0 \
  >"$work/train3.out" 2>&1
check "versions 2 and 3 trained (production stays 1)" \
  test -s "$work/reg/sentinel/versions/3/model.ubj" -a "$(cat "$work/reg/sentinel/aliases/production")" = 1
grep -h "holdout PR-AUC" "$work"/train[123].out | sed 's/.*"msg":"/  /; s/"}$//'
t

# ---- 1. scores and alerts equal the offline computation
if part 1; then
echo "1. $N1 events of $MACHINES machines: online == offline"
run t1; r1=("${RUN[@]}")
tool create-topics "$base-t1.tel" "$base-t1.scores" "$base-t1.alerts"
start_scorer "$work/score1.log" "${r1[@]}" -X redis.url="$REDIS_URL"; s1=$SCORER
produce "${r1[@]}" --events "$N1" --seed 2 --failures-out "$work/failures1.csv" >"$work/produce1.out"
check "produced $N1 events" grep -q "$N1 delivered, 0 failed" "$work/produce1.out"
n=$(tool wait-count "$base-t1.scores" "$N1" --timeout 120)
check "the scores topic holds $N1 records ($n)" test "$n" -ge "$N1"
stop_scorer "$s1"
check "SIGTERM: exit 0 within 10 s" test $? -eq 0
offline -X model.alias=production --events "$N1" --seed 2 --explain-out "$work/explain1.csv" \
  >"$work/offline1.csv" 2>"$work/offline1.err"
tool compare --scores "$base-t1.scores" --alerts "$base-t1.alerts" --telemetry "$base-t1.tel" \
  --offline "$work/offline1.csv" --card "$work/reg/sentinel/versions/1/card.json" --version 1 \
  --cooldown 600000 --resolve-after 5 --failures "$work/failures1.csv" --explain "$work/explain1.csv"
check "every score equal to the offline one (<= 1e-6), alerts equal to the offline state machine's, each alert's top SHAP features equal to the offline per-row ones" test $? -eq 0
grep -h "score: consumed" "$work/score1.log" | sed 's/^.*score: /  scorer: /'
t
fi

# ---- 2. kill -9 mid-run, restart: at least once, and the same Redis state
if part 2; then
echo "2. kill -9 mid-run and a restart ($N2 events at 4000/s)"
run t2
# a short session so that the group gives the killed member's partitions to its
# successor after 6 s (the broker's minimum) rather than librdkafka's 45 s
r2=("${RUN[@]}" -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=1000)
tool create-topics "$base-t2.tel" "$base-t2.scores" "$base-t2.alerts"
start_scorer "$work/score2a.log" "${r2[@]}" -X redis.url="$REDIS_URL"; s2=$SCORER
produce "${r2[@]}" --events "$N2" --seed 3 --rate 4000 >"$work/produce2.out" 2>&1 &
p2=$!; pids+=("$p2")
n=$(tool wait-count "$base-t2.scores" 8000 --timeout 60)
kill -9 "$s2"; wait "$s2" 2>/dev/null
echo "  killed scorer $s2 with SIGKILL after $n score records"
start_scorer "$work/score2b.log" "${r2[@]}" -X redis.url="$REDIS_URL"; s2=$SCORER
wait "$p2"
check "produced $N2 events" grep -q "$N2 delivered, 0 failed" "$work/produce2.out"
tool wait-committed --group "$base-t2" --topic "$base-t2.tel" --timeout 120 >/dev/null
stop_scorer "$s2"
check "restarted scorer: SIGTERM exits 0" test $? -eq 0
tool coverage --telemetry "$base-t2.tel" --scores "$base-t2.scores" --expect "$N2"
check "after kill -9 and restart: every event scored at least once" test $? -eq 0
# the uninterrupted run: same telemetry, its own group, key prefix and outputs
run t2-clean
ref2=("${RUN[@]}" -X topic.telemetry="$base-t2.tel")
start_scorer "$work/score2c.log" "${ref2[@]}" -X redis.url="$REDIS_URL"; s2c=$SCORER
tool wait-committed --group "$base-t2-clean" --topic "$base-t2.tel" --timeout 120 >/dev/null
stop_scorer "$s2c" >/dev/null
tool coverage --telemetry "$base-t2.tel" --scores "$base-t2-clean.scores" --expect "$N2" --exactly-once
check "uninterrupted run: every event scored exactly once" test $? -eq 0
tool redis-dump "$REDIS_URL" "$base-t2" "$work/state2.json" >/dev/null
tool redis-dump "$REDIS_URL" "$base-t2-clean" "$work/state2c.json"
tool redis-compare "$work/state2.json" "$work/state2c.json"
check "Redis feature state after kill -9 == uninterrupted run's (but 'v' and 'u')" test $? -eq 0
"$SN_PY" "$SN_ROOT/tests/integration/eos_tool.py" alerts-equal --alerts "$base-t2.alerts" \
  --ref "$base-t2-clean.alerts"
check "alerts after kill -9 == the uninterrupted run's, each id once (a redelivery's repeats identical)" \
  test $? -eq 0
t
fi

# ---- 3. poison records: dead-lettered with the reason, the rest scored
if part 3; then
echo "3. poison records of every bad-input class among $((2 * N3)) good events"
run t3; r3=("${RUN[@]}")
# a writer schema with a nullable key and time, so that missing_field can happen
mkdir -p "$work/schemas"
sed 's/"type": "string", "doc": "Machine identifier, also/"type": ["null", "string"], "default": null, "doc": "Machine identifier, also/;
     s/"type": {"type": "long", "logicalType": "timestamp-millis"}, "doc": "Event time/"type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": null, "doc": "Event time/' \
  schemas/telemetry.avsc >"$work/schemas/telemetry_nullable.avsc"
printf '1 %s\n2 %s\n3 %s\n4 telemetry_nullable.avsc\n' "$SN_ROOT/schemas/telemetry.avsc" \
  "$SN_ROOT/schemas/failure_alert.avsc" "$SN_ROOT/schemas/score.avsc" >"$work/schemas/ids"
tool create-topics "$base-t3.tel" "$base-t3.scores" "$base-t3.alerts" "$base-t3.dlq"
start_scorer "$work/score3.log" "${r3[@]}" -X redis.url="$REDIS_URL" -X schema.dir="$work/schemas"; s3=$SCORER
produce "${r3[@]}" --events "$N3" --seed 4 >"$work/produce3.out"
machines=$(seq -f 'machine-%04g' 0 5 199 | paste -sd,)
tool poison --topic "$base-t3.tel" --machines "$machines" --rounds 2 --out "$work/poison.json"
produce "${r3[@]}" --skip "$N3" --events "$N3" --seed 4 >>"$work/produce3.out"
check "produced $((2 * N3)) good events around the poison" test "$(grep -c "$N3 delivered, 0 failed" "$work/produce3.out")" -eq 2
tool wait-committed --group "$base-t3" --topic "$base-t3.tel" --timeout 120 >/dev/null
stop_scorer "$s3"
check "SIGTERM: exit 0 within 10 s" test $? -eq 0
tool check-dlq --dlq "$base-t3.dlq" --sent "$work/poison.json" --telemetry "$base-t3.tel" --show
check "every poison record dead-lettered: class, source and schema headers, bytes intact" test $? -eq 0
tool coverage --telemetry "$base-t3.tel" --scores "$base-t3.scores" --skip "$work/poison.json" \
  --expect $((2 * N3)) --exactly-once
check "every good event scored exactly once, no poison record scored" test $? -eq 0
npoison=$("$SN_PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/poison.json")
check "the scorer counted $npoison dead letters" grep -q "dead-lettered $npoison," "$work/score3.log"
t
fi

# ---- 4. Redis killed and restarted mid-run (our own redis-server)
if part 4; then
echo "4. redis-server killed (SIGKILL) and restarted mid-run ($N4 events at 3000/s)"
mkdir -p "$work/redis"
redis_args=(--port 0 --unixsocket "$work/redis/redis.sock" --unixsocketperm 700 --dir "$work/redis"
            --appendonly yes --appendfsync always --save "" --logfile "$work/redis/redis.log")
redis-server "${redis_args[@]}" & rpid=$!; pids+=("$rpid")
for _ in $(seq 50); do [ -S "$work/redis/redis.sock" ] && break; sleep 0.1; done
R4="unix://$work/redis/redis.sock"
run t4; r4=("${RUN[@]}")
tool create-topics "$base-t4.tel" "$base-t4.scores" "$base-t4.alerts"
start_scorer "$work/score4.log" "${r4[@]}" -X redis.url="$R4" -X scorer.retry.backoff.max.ms=1000; s4=$SCORER
produce "${r4[@]}" --events "$N4" --seed 5 --rate 3000 >"$work/produce4.out" 2>&1 &
p4=$!; pids+=("$p4")
n=$(tool wait-count "$base-t4.scores" 3000 --timeout 60)
kill -9 "$rpid"; wait "$rpid" 2>/dev/null
echo "  killed redis-server after $n score records; restarting it in 2 s"
sleep 2
n=$(tool count "$base-t4.scores")
redis-server "${redis_args[@]}" & rpid=$!; pids+=("$rpid")
echo "  redis-server restarted ($n score records while it was down)"
wait "$p4"
check "produced $N4 events" grep -q "$N4 delivered, 0 failed" "$work/produce4.out"
tool wait-committed --group "$base-t4" --topic "$base-t4.tel" --timeout 120 >/dev/null
check "scorer survived the outage" kill -0 "$s4"
stop_scorer "$s4"
check "SIGTERM: exit 0 within 10 s" test $? -eq 0
grep -E "pausing and retrying|Redis is back" "$work/score4.log" | sed 's/^/  log: /'
# whichever stage met the outage first: the features or the alert state
check "the pause was logged" grep -Eq "(features|alert state): .*pausing and retrying" "$work/score4.log"
check "the resume was logged" grep -Eq "(features|alert state): Redis is back after" "$work/score4.log"
tool coverage --telemetry "$base-t4.tel" --scores "$base-t4.scores" --expect "$N4"
check "Redis outage: every event scored" test $? -eq 0
run t4-clean
start_scorer "$work/score4c.log" "${RUN[@]}" -X topic.telemetry="$base-t4.tel" -X redis.url="$REDIS_URL"; s4c=$SCORER
tool wait-committed --group "$base-t4-clean" --topic "$base-t4.tel" --timeout 120 >/dev/null
stop_scorer "$s4c" >/dev/null
tool redis-dump "$R4" "$base-t4" "$work/state4.json" >/dev/null
tool redis-dump "$REDIS_URL" "$base-t4-clean" "$work/state4c.json" >/dev/null
tool redis-compare "$work/state4.json" "$work/state4c.json"
check "Redis feature state after the outage == uninterrupted run's (but 'v' and 'u')" test $? -eq 0
# SIGTERM while Redis is down: the batch in hand is given up, not committed
kill -9 "$rpid"; wait "$rpid" 2>/dev/null
start_scorer "$work/score4d.log" "${r4[@]}" -X redis.url="$R4" -X scorer.retry.backoff.max.ms=1000; s4=$SCORER
produce "${r4[@]}" --skip "$N4" --events 500 --seed 5 >"$work/produce4d.out"
for _ in $(seq 100); do grep -q "pausing and retrying" "$work/score4d.log" && break; sleep 0.1; done
check "a scorer started while Redis is down holds its batch and retries" \
  grep -q "pausing and retrying" "$work/score4d.log"
stop_scorer "$s4"
check "SIGTERM while Redis is down: exit 0 within 10 s" test $? -eq 0
redis-server "${redis_args[@]}" & rpid=$!; pids+=("$rpid")
start_scorer "$work/score4e.log" "${r4[@]}" -X redis.url="$R4"; s4=$SCORER
tool wait-committed --group "$base-t4" --topic "$base-t4.tel" --timeout 120 >/dev/null
stop_scorer "$s4" >/dev/null
tool coverage --telemetry "$base-t4.tel" --scores "$base-t4.scores" --expect $((N4 + 500))
check "the batch given up at SIGTERM was scored after the restart" test $? -eq 0
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null
t
fi

# ---- 5. the alias flipped 10 times during N5 events, twice to a corrupt version
if part 5; then
echo "5. alias flipped 10 times during $N5 events (5000/s), twice to a corrupt version"
vdir=$work/reg/sentinel/versions
mkdir -p "$vdir/.build-4"
head -c 4000 "$vdir/1/model.ubj" >"$vdir/.build-4/model.ubj" # truncated UBJSON
"$SN_PY" - "$vdir/1/card.json" "$vdir/.build-4" <<'PY'
import hashlib, json, sys
card = json.load(open(sys.argv[1]))
model = open(sys.argv[2] + "/model.ubj", "rb").read()
card["model"]["sha256"] = hashlib.sha256(model).hexdigest()  # the card vouches for it
card["model"]["bytes"] = len(model)
json.dump(card, open(sys.argv[2] + "/card.json", "w"), indent=2)
PY
mv "$vdir/.build-4" "$vdir/4"
mkdir -p "$vdir/.build-5" # version 1's card with version 2's model: the hash check refuses it
cp "$vdir/1/card.json" "$vdir/.build-5/card.json"
cp "$vdir/2/model.ubj" "$vdir/.build-5/model.ubj"
mv "$vdir/.build-5" "$vdir/5"
run t5; r5=("${RUN[@]}")
tool create-topics "$base-t5.tel" "$base-t5.scores" "$base-t5.alerts"
start_scorer "$work/score5.log" "${r5[@]}" -X redis.url="$REDIS_URL" -X scorer.poll.interval.s=1; s5=$SCORER
produce "${r5[@]}" --events "$N5" --seed 6 --rate 5000 >"$work/produce5.out" 2>&1 &
p5=$!; pids+=("$p5")
flips=(2 3 1 2 4 3 1 5 2 1) nflips=0 # 8 swaps; 4 refused while 2 serves, 5 while 1 serves
for v in "${flips[@]}"; do
  sleep 1.8
  "$SN_BIN" registry promote "$v" -X registry.url="$REG" >>"$work/flips.out" 2>&1 && nflips=$((nflips + 1))
done
# the last flip is seen within scorer.poll.interval.s: give it that before stopping
for _ in $(seq 50); do
  [ "$(grep -c "model sentinel: version .* replaces" "$work/score5.log")" -ge 8 ] && break
  sleep 0.1
done
wait "$p5"
check "produced $N5 events" grep -q "$N5 delivered, 0 failed" "$work/produce5.out"
check "alias moved ${#flips[@]} times while producing" test "$nflips" -eq "${#flips[@]}"
tool wait-committed --group "$base-t5" --topic "$base-t5.tel" --timeout 120 >/dev/null
check "scorer ran through every flip" kill -0 "$s5"
stop_scorer "$s5"
check "SIGTERM: exit 0 within 10 s" test $? -eq 0
for v in 1 2 3; do
  offline --version "$v" --events "$N5" --seed 6 >"$work/offline5.$v.csv" 2>/dev/null
done
tool coverage --telemetry "$base-t5.tel" --scores "$base-t5.scores" --expect "$N5" --exactly-once \
  --versions 1,2,3 --min-versions 3 --runs --offline 1="$work/offline5.1.csv" \
  --offline 2="$work/offline5.2.csv" --offline 3="$work/offline5.3.csv"
check "every event scored exactly once, by a registered version, with that version's score" test $? -eq 0
swaps=$(grep -c "model sentinel: version .* replaces" "$work/score5.log")
echo "  served: 1$(grep -oE "version [0-9]+ replaces|version [0-9]+ refused" "$work/score5.log" \
  | awk '{printf " -> %s%s", $2, $3 == "refused" ? " (refused)" : ""}')"
check "the 8 flips to good versions swapped in" test "$swaps" -eq 8
grep "refused" "$work/score5.log" | sed 's/^/  log: /'
check "version 4 (truncated model.ubj) refused, version 2 kept serving" \
  grep -q "model version 4 refused, version 2 keeps serving: .*model" "$work/score5.log"
check "version 5 (model.ubj not the card's) refused, version 1 kept serving" \
  grep -q "model version 5 refused, version 1 keeps serving" "$work/score5.log"
t
fi

sn_done
