#!/usr/bin/env bash
# test_drift_e2e.sh: the drift loop end to end on the real stack (Kafka, S3).
#
#   1. a synthetic fleet (40 machines, 1000 steps of 1 s) goes to Kafka and
#      `sentinel archive` writes it to S3; a model is trained from the archive
#      and promoted
#   2. the same machines replayed later (the same seed), unchanged: `sentinel
#      drift` on that stretch of the archive finds no drift, sends no event
#   3. a second stretch of the same machines whose tool-wear sensor reads 40
#      minutes high (a calibration fault: about 0.7 standard deviations, and
#      tools now seem to fail later than they do) is archived; drift on it
#      finds tool wear and the strain built from it, the other sensors
#      untouched, and a drift event lands on the drift-events topic
#   4. --retrain-on-drift with a deliberately worse configuration (one round
#      of depth-1 trees): the gate refuses it, production stays, the retrain
#      event says so
#   5. --retrain-on-drift with the normal configuration on the shifted stretch
#      (drift.retrain.window.ms): the production model misreads the new wear
#      values, the retrained one does not, the gate promotes it and the retrain
#      event names the new version
#
# The model uses the AI4I feature spec (current values, no windows): the
# stretches are minutes long, and windows of up to an hour would spend them
# warming up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

: "${KAFKA_BOOTSTRAP_SERVERS:?run with the stack environment: eval \"\$(infra/local/stack env)\"}"
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}"

sn_venv || { not_ok "python venv"; sn_done; exit 1; }
TOOL=("$SN_PY" "$SN_ROOT/tests/integration/archive_tool.py")
RUN=$(sn_topic drift)
T=$RUN-telemetry
EV=$RUN-drift-events
PREFIX=it-$RUN
URL=s3://$S3_BUCKET/$PREFIX
WORK=$(mktemp -d /tmp/sn-drift-e2e-XXXXXX)
MACHINES=40
cleanup() {
  "${TOOL[@]}" rmprefix --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" --prefix "$PREFIX/" >/dev/null 2>&1
  if [ "$sn_fail" -gt 0 ]; then echo "test_drift_e2e: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

X=(-X "kafka.bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" -X "s3.endpoint=$S3_ENDPOINT"
  -X "registry.url=file://$WORK/registry" -X "drift.events.topic=$EV" -X log.format=json
  -X label.horizon.ms=20000 # the fleet fails every few dozen steps of 1 s: label the last 20
  -X "train.feature.spec=$SN_ROOT/tests/data/model/ai4i_features.json")

# The event times start on a whole minute shortly before now, so that the
# archive's hour folders (Kafka timestamps, i.e. now) and the event times agree
# within the reader's look-back.
NOW=$(($(date +%s) * 1000))
A0=$((NOW - NOW % 60000 - 2250000))
A1=$((A0 + 1000 * 1000)) # A: steps 0..999, training
C0=$A1
C1=$((C0 + 500 * 1000)) # C: the replay, unchanged
B0=$C1
B1=$((B0 + 750 * 1000)) # B: the replay with the faulty sensor

"${TOOL[@]}" mktopics --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$T,$EV" --partitions 4 >/dev/null

production_is() { # production_is VERSION: model.alias points at VERSION
  "$SN_BIN" registry "${X[@]}" show production 2>/dev/null | grep -Eq "^version +$1\$"
}

# archive_until_idle: archives what the topic holds, exits when idle
archive_until_idle() {
  "$SN_BIN" archive "${X[@]}" -X "archive.url=$URL" -X "archive.group.id=$RUN-archiver" \
    -X archive.file.max.age.ms=2000 -X "archive.spool.dir=$WORK/spool" -X metrics.port=0 \
    --topics "$T" --exit-when-idle 5000 >>"$WORK/archive.out" 2>>"$WORK/archive.log"
}

echo "1. fleet stretch A to Kafka and S3, a model trained from the archive"
"$SN_BIN" produce "${X[@]}" --fleet $MACHINES --events $((MACHINES * 1000)) --seed 11 --start "$A0" \
  --topic "$T" --failures-out "$WORK/failures-a.csv" -q >"$WORK/produce-a.out" 2>&1
check "stretch A produced (40,000 events)" grep -q "40000 delivered, 0 failed" "$WORK/produce-a.out"
archive_until_idle
check "archiver exits 0 when idle" test $? -eq 0
"$SN_BIN" train "${X[@]}" --input "$URL" --topic "$T" --from "$A0" --to "$A1" \
  --failures "$WORK/failures-a.csv" --promote -q >"$WORK/train.out" 2>"$WORK/train.log"
check "train from the archive: exit 0, version 1 promoted" test $? -eq 0
check "registry: production is version 1" \
  production_is 1

echo "2. stretch C, the same machines replayed unchanged: no drift"
"$SN_BIN" produce "${X[@]}" --fleet $MACHINES --events $((MACHINES * 500)) --seed 11 --start "$C0" \
  --topic "$T" -q >"$WORK/produce-c.out" 2>&1
check "stretch C produced (20,000 events)" grep -q "20000 delivered, 0 failed" "$WORK/produce-c.out"
archive_until_idle
"$SN_BIN" drift "${X[@]}" --model production --input "$URL" --topic "$T" --from "$C0" --to "$C1" \
  --json-out "$WORK/c.json" -q 2>"$WORK/drift-c.log"
rc=$?
check "unchanged stretch: exit 0 (no drift)" test $rc -eq 0
[ $rc -eq 0 ] || "$SN_PY" -c 'import json,sys
for f in json.load(open(sys.argv[1]))["features"]: print("   ", f["name"], f["verdict"], f["psi"], f["ks"]["p"])' "$WORK/c.json"

echo "3. stretch B, the tool-wear sensor 40 min high, archived; drift found"
# the same seed: the same machines, replayed later with the faulty sensor
"$SN_BIN" produce "${X[@]}" --fleet $MACHINES --events $((MACHINES * 750)) --seed 11 --start "$B0" \
  --topic "$T" --shift tool_wear_min=40 --failures-out "$WORK/failures-b.csv" -q >"$WORK/produce-b.out" 2>&1
check "stretch B produced (30,000 events)" grep -q "30000 delivered, 0 failed" "$WORK/produce-b.out"
archive_until_idle
cat "$WORK/failures-a.csv" "$WORK/failures-b.csv" >"$WORK/failures.csv"
"$SN_BIN" drift "${X[@]}" --model production --input "$URL" --topic "$T" --from "$B0" --to "$B1" \
  --json-out "$WORK/b.json" -q 2>"$WORK/drift-b.log"
check "shifted stretch: exit 3 (drift)" test $? -eq 3
check "tool wear and strain drifted, nothing else" "$SN_PY" - "$WORK/b.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = {f["name"]: f["verdict"] for f in r["features"]}
print("    drifted:", sorted(k for k, x in v.items() if x == "drift"))
assert r["verdict"] == "drift", r["verdict"]
assert v["tool_wear_min"] == "drift" and v["strain"] == "drift", v
assert sorted(k for k, x in v.items() if x == "drift") == ["strain", "tool_wear_min"], v
PY

# events: the drift-events topic's values, one per line, in offset order per partition
events() {
  "$SN_PY" - "$KAFKA_BOOTSTRAP_SERVERS" "$EV" <<'PY'
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": "drift-e2e-check-%d" % time.time(),
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([sys.argv[2]])
got, idle = [], time.time()
while time.time() - idle < 5:
    m = c.poll(0.5)
    if m is None or m.error():
        continue
    got.append((m.timestamp()[1], m.value().decode()))
    idle = time.time()
c.close()
for _, v in sorted(got):
    print(v)
PY
}

echo "4. --retrain-on-drift with a deliberately worse model: refused"
"$SN_BIN" drift "${X[@]}" --model production --input "$URL" --topic "$T" --from "$B0" --to "$B1" -q \
  --retrain-on-drift -X "drift.retrain.window.ms=$((B1 - B0))" -X "drift.retrain.failures=$WORK/failures.csv" \
  -X train.rounds=1 -X train.max.depth=1 -X train.early.stopping.rounds=0 2>"$WORK/retrain-bad.log"
check "exit 3 (drift; the refusal is an answer, not an error)" test $? -eq 3
check "the gate's refusal is logged" grep -q "kept the production model" "$WORK/retrain-bad.log"
check "production is still version 1" \
  production_is 1

echo "5. --retrain-on-drift on the shifted stretch: promoted"
"$SN_BIN" drift "${X[@]}" --model production --input "$URL" --topic "$T" --from "$B0" --to "$B1" -q \
  --retrain-on-drift -X "drift.retrain.window.ms=$((B1 - B0))" -X "drift.retrain.failures=$WORK/failures.csv" \
  2>"$WORK/retrain-good.log"
check "exit 3 (drift), the retrain succeeded" test $? -eq 3
check "the gate's promotion is logged" grep -q "promoted the new version" "$WORK/retrain-good.log"
events >"$WORK/events.jsonl"
check "drift-events: three drift events (B only) and two retrain outcomes, refused then promoted" \
  "$SN_PY" - "$WORK/events.jsonl" <<'PY'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
drift = [e for e in evs if e["type"] == "drift"]
retrain = [e for e in evs if e["type"] == "retrain"]
assert len(drift) == 3, [e["type"] for e in evs]
assert all("tool_wear_min" in [f["name"] for f in e["drifted"]] for e in drift)
assert [r["promoted"] for r in retrain] == [False, True], retrain
assert retrain[0]["train_exit"] == 4 and retrain[0]["production_after"] == "1", retrain[0]
assert retrain[1]["train_exit"] == 0 and retrain[1]["production_after"] not in ("", "1"), retrain[1]
print("    retrain outcomes:", [(r["train_exit"], r["production_before"], r["production_after"]) for r in retrain])
PY
sn_done
