#!/usr/bin/env bash
# sentinel score with a challenger (scorer.challenger), against the real broker
# and the real redis-server.
#
# Version 1 is trained and promoted; versions 2 and 3 are trained with
# --promote and a gate they cannot pass, so the gate points the challenger
# alias (model.challenger.alias) at them, as in production. Version 2 has the
# default feature spec (the same layout id as version 1: its state must still
# be its own), version 3 a spec with another bucket size and one window (its
# own layout, fewer features). The reference is tools/offline_score per
# version; challenger_tool.py reads the topics and /metrics independently.
#   1. shadow, challenger 2: every event has exactly one production score
#      record (version 1) and one shadow record (version 2), each equal to its
#      version's offline score; alerts are production's replay and name only
#      version 1; the agreement metrics on /metrics equal the topics'.
#   2. canary at 0.3, challenger 3: the machines served by version 3 are
#      exactly those the documented hash selects (about 30 %), every record
#      equals its serving version's offline score, the alerts equal each
#      machine's replay with its serving version's threshold and name it.
#   3. a bad mode stops startup naming the key; an unset challenger alias runs
#      without a challenger and says so.
# Environment: SN_BIN, KAFKA_BOOTSTRAP_SERVERS, REDIS_URL (scripts/test sets
# them); SN_OFFLINE_SCORE as in test_score.sh; SN_KEEP=1 keeps the working
# folder.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
sn_scorer_test test_score_challenger chal # $work, $pids, $base, cleanup on exit
tool() { "$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" "$@"; }
ctool() { "$SN_PY" "$SN_ROOT/tests/integration/challenger_tool.py" "$@"; }
BUILD=$(dirname "$SN_BIN")
# 20 s between a machine's events: three share a 60 s bucket, so a challenger that shared
# production's Redis hash would see them as redeliveries and get other vectors
START=1767225600000 STEP=20000 MACHINES=200 N=${SN_CHALLENGER_EVENTS:-20000}
COOLDOWN=600000 RESOLVE=5

OFFLINE=${SN_OFFLINE_SCORE:-$BUILD/tools/offline_score}
[ -x "$OFFLINE" ] || { echo "test_score_challenger: $OFFLINE missing (scripts/build)"; exit 1; }

REG="file://$work/reg"
common=(-X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X registry.url="$REG"
        -X metrics.port=0 -X log.format=text -X alert.cooldown.ms=$COOLDOWN
        -X alert.resolve.after=$RESOLVE -X feature.state.ttl.s=3600)
run() {
  RUN=(-X topic.telemetry="$base-$1.tel" -X topic.scores="$base-$1.scores"
       -X topic.alerts="$base-$1.alerts" -X topic.dlq="$base-$1.dlq"
       -X topic.shadow="$base-$1.shadow" -X scorer.group.id="$base-$1"
       -X redis.key.prefix="$base-$1" -X redis.url="$REDIS_URL")
  tool create-topics "$base-$1.tel" "$base-$1.scores" "$base-$1.alerts" "$base-$1.shadow" >/dev/null
}
start_scorer() {
  local log=$1; shift
  "$SN_BIN" score "${common[@]}" "$@" >"$log" 2>&1 &
  SCORER=$!
  pids+=("$SCORER")
}
# free_port: a port nobody listens on now, for a scorer's /metrics
free_port() {
  "$SN_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
stop_scorer() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
  wait "$pid"
}
produce() { "$SN_BIN" produce -q "${common[@]}" "$@" --fleet "$MACHINES" --start "$START" --step "$STEP"; }
offline() { "$OFFLINE" "${common[@]}" "$@" --fleet "$MACHINES" --start "$START" --step "$STEP"; }
t() { echo "  [$((SECONDS - t_start)) s]"; }
card() { echo "$work/reg/sentinel/versions/$1/card.json"; }

echo "setup: versions 1 (production), 2 and 3 (challengers by the gate)"
"$OFFLINE" --fleet "$MACHINES" --events 40000 --seed 1 --start "$START" --step "$STEP" \
  --jsonl-out "$work/train.jsonl" --failures-out "$work/train_failures.csv" 2>/dev/null
train=("$SN_BIN" train --jsonl "$work/train.jsonl" --failures "$work/train_failures.csv" -q
       -X registry.url="$REG" -X label.horizon.ms=600000 --promote)
"${train[@]}" >"$work/train1.out" 2>&1
check "version 1 trained and promoted" grep -q "version 1: .*promoting" "$work/train1.out"
# the gate cannot pass (an improvement of 1 in PR-AUC): the challenger alias moves
"${train[@]}" -X gate.min.improvement=1 -X train.max.depth=4 -X train.eta=0.1 -X train.rounds=30 \
  -X train.early.stopping.rounds=0 >"$work/train2.out" 2>&1
check "version 2 not promoted, challenger alias -> 2" \
  test "$(cat "$work/reg/sentinel/aliases/challenger")" = 2 -a "$(cat "$work/reg/sentinel/aliases/production")" = 1
"$SN_PY" - "$SN_ROOT/tests/data/features/default.json" "$work/spec3.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["bucket_ms"] = 120000          # another layout id: its own Redis keys anyway
spec["windows"] = spec["windows"][:1]  # and fewer features
json.dump(spec, open(sys.argv[2], "w"))
PY
t

# ---- 1. shadow
echo "1. shadow: $N events of $MACHINES machines, production 1, challenger 2"
run shadow; r1=("${RUN[@]}")
p1=$(free_port)
start_scorer "$work/score1.log" "${r1[@]}" -X scorer.challenger=shadow -X metrics.port="$p1"; s1=$SCORER
produce "${r1[@]}" --events "$N" --seed 2 >"$work/produce1.out"
check "produced $N events" grep -q "$N delivered, 0 failed" "$work/produce1.out"
tool wait-committed --group "$base-shadow" --topic "$base-shadow.tel" --timeout 120 >/dev/null
m1=http://127.0.0.1:$p1/metrics
offline --version 1 --events "$N" --seed 2 >"$work/offline.1.csv" 2>/dev/null
offline --version 2 --events "$N" --seed 2 >"$work/offline.2.csv" 2>/dev/null
ctool shadow --telemetry "$base-shadow.tel" --scores "$base-shadow.scores" --shadow "$base-shadow.shadow" \
  --alerts "$base-shadow.alerts" --offline-prod "$work/offline.1.csv" --offline-chal "$work/offline.2.csv" \
  --card-prod "$(card 1)" --card-chal "$(card 2)" --vprod 1 --vchal 2 --metrics "$m1" \
  --cooldown $COOLDOWN --resolve-after $RESOLVE
check "shadow: one production and one shadow record per event, each == its offline score; alerts production's only; agreement metrics == topics" test $? -eq 0
stop_scorer "$s1"
check "SIGTERM: exit 0" test $? -eq 0
check "the challenger's state is its own (<prefix>:challenger)" \
  test "$(redis-cli -u "$REDIS_URL" --scan --pattern "$base-shadow:challenger:{*" | wc -l)" -eq "$MACHINES"
grep -h "challenger" "$work/score1.log" | sed 's/^.*scorer: /  log: /' | head -3
t

# ---- 2. canary
echo "2. canary at 0.3: $N events, production 1, challenger 3 (its own spec)"
"${train[@]}" -X gate.min.improvement=1 -X train.feature.spec="$work/spec3.json" >"$work/train3.out" 2>&1
check "version 3 not promoted, challenger alias -> 3" test "$(cat "$work/reg/sentinel/aliases/challenger")" = 3
run canary; r2=("${RUN[@]}")
p2=$(free_port)
start_scorer "$work/score2.log" "${r2[@]}" -X scorer.challenger=canary -X scorer.canary.fraction=0.3 \
  -X metrics.port="$p2"; s2=$SCORER
produce "${r2[@]}" --events "$N" --seed 3 >"$work/produce2.out"
check "produced $N events" grep -q "$N delivered, 0 failed" "$work/produce2.out"
tool wait-committed --group "$base-canary" --topic "$base-canary.tel" --timeout 120 >/dev/null
m2=http://127.0.0.1:$p2/metrics
offline --version 1 --events "$N" --seed 3 >"$work/offline2.1.csv" 2>/dev/null
offline --version 3 --events "$N" --seed 3 >"$work/offline2.3.csv" 2>/dev/null
ctool canary --telemetry "$base-canary.tel" --scores "$base-canary.scores" --shadow "$base-canary.shadow" \
  --alerts "$base-canary.alerts" --offline-prod "$work/offline2.1.csv" --offline-chal "$work/offline2.3.csv" \
  --card-prod "$(card 1)" --card-chal "$(card 3)" --vprod 1 --vchal 3 --metrics "$m2" \
  --cooldown $COOLDOWN --resolve-after $RESOLVE --fraction 0.3
check "canary: the hash's machines served by version 3, scores and alerts naming the serving version" test $? -eq 0
stop_scorer "$s2"
check "SIGTERM: exit 0" test $? -eq 0
t

# ---- 3. configuration
echo "3. configuration"
"$SN_BIN" score "${common[@]}" -X scorer.challenger=shade >"$work/bad.log" 2>&1
check "scorer.challenger=shade: exit 2 naming the key" \
  test $? -eq 2 -a "$(grep -c "scorer.challenger" "$work/bad.log")" -ge 1
"$SN_BIN" score "${common[@]}" -X scorer.challenger=shadow -X model.challenger.alias= >"$work/bad2.log" 2>&1
check "shadow with an empty model.challenger.alias stops startup naming it" \
  grep -q "model.challenger.alias is empty" "$work/bad2.log"
run unset; r3=("${RUN[@]}")
start_scorer "$work/score3.log" "${r3[@]}" -X scorer.challenger=shadow -X model.challenger.alias=nobody; s3=$SCORER
produce "${r3[@]}" --events 400 --seed 4 >/dev/null
tool wait-committed --group "$base-unset" --topic "$base-unset.tel" --timeout 60 >/dev/null
check "unset challenger alias: every event scored by production, no shadow record" \
  test "$(tool count "$base-unset.scores")" -eq 400 -a "$(tool count "$base-unset.shadow")" -eq 0
check "... and the scorer says so once" test "$(grep -c "alias 'nobody' of model sentinel is not set" "$work/score3.log")" -eq 1
stop_scorer "$s3"
t

sn_done
