#!/usr/bin/env bash
# sentinel produce against the real broker: 100,000 events from JSON lines are
# read back by an independent consumer (kcat) and decoded by an independent Avro
# implementation (Python's avro): every event present exactly once, keyed by its
# machine, values equal. Also: the AI4I preset and a fleet; delivery failures
# give exit 1; bad config gives exit 2.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
sn_venv || { echo "test_produce: venv failed"; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
N=${SN_PRODUCE_EVENTS:-100000}

"$SN_PY" - "$work/events.jsonl" "$N" <<'PY'
import json, random, sys
path, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
with open(path, "w") as f:
    for i in range(n):
        m = i % 50
        ev = {"machine_id": f"m-{m:03d}", "ts": 1767225600000 + i * 10,
              "air_temperature_k": rng.uniform(295, 305), "process_temperature_k": rng.uniform(305, 315),
              "rotational_speed_rpm": float(rng.randint(1100, 2900)), "torque_nm": rng.uniform(3, 77),
              "tool_wear_min": float(rng.randint(0, 250)), "product_type": rng.choice("LMH")}
        if i % 3 == 0:
            ev["tags"] = {"line": str(m % 4), "seq": str(i)}
        f.write(json.dumps(ev) + "\n")
PY

topic=$(sn_topic produce)
out=$("$SN_BIN" produce --jsonl "$work/events.jsonl" --topic "$topic" -q \
      -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" 2>"$work/produce.err")
rc=$?
echo "  $out"
check "produce of $N events exits 0" test $rc -eq 0
check "summary reports $N delivered" grep -q "$N delivered, 0 failed" <<<"$out"

timeout 120 kcat -C -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$topic" -e -q -f '%p %o %K\n%k%R%s' >"$work/consumed.bin" 2>"$work/kcat.err"
check "kcat read the topic" test -s "$work/consumed.bin"

"$SN_PY" - "$work/events.jsonl" "$work/consumed.bin" "$SN_ROOT/schemas/telemetry.avsc" <<'PY'
import io, json, struct, sys
import avro.schema, avro.io
events_path, consumed_path, schema_path = sys.argv[1:4]
schema = avro.schema.parse(open(schema_path).read())
reader = avro.io.DatumReader(schema)
want = {}
for line in open(events_path):
    ev = json.loads(line)
    want[(ev["machine_id"], ev["ts"])] = ev
data = open(consumed_path, "rb").read()
pos, seen, errors, part_of = 0, set(), [], {}
while pos < len(data):
    nl = data.index(b"\n", pos)
    p, o, klen = (int(x) for x in data[pos:nl].split())
    pos = nl + 1
    key = data[pos:pos + klen].decode(); pos += klen
    (vlen,) = struct.unpack(">i", data[pos:pos + 4]); pos += 4
    value = data[pos:pos + vlen]; pos += vlen
    if value[0] != 0 or struct.unpack(">I", value[1:5])[0] != 1:
        errors.append(f"bad frame header at {p}/{o}"); continue
    rec = reader.read(avro.io.BinaryDecoder(io.BytesIO(value[5:])))
    ts = rec["ts"]
    if not isinstance(ts, int):  # timestamp-millis decodes to datetime
        import datetime
        ts = int(round(ts.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)) if ts.tzinfo is None else int(round(ts.timestamp() * 1000))
    k = (rec["machine_id"], ts)
    if key != rec["machine_id"]: errors.append(f"key {key} != machine_id {rec['machine_id']}")
    if part_of.setdefault(key, p) != p: errors.append(f"machine {key} in two partitions")
    if k in seen: errors.append(f"duplicate {k}")
    seen.add(k)
    ev = want.get(k)
    if ev is None: errors.append(f"unexpected {k}"); continue
    for f in ("air_temperature_k", "process_temperature_k", "rotational_speed_rpm", "torque_nm", "tool_wear_min", "product_type"):
        if rec[f] != ev[f]: errors.append(f"{k} {f}: {rec[f]!r} != {ev[f]!r}")
    if (rec.get("tags") or None) != ev.get("tags"): errors.append(f"{k} tags {rec.get('tags')} != {ev.get('tags')}")
missing = len(want) - len(seen & set(want))
print(f"  decoded {len(seen)} events, {missing} missing, {len(errors)} errors")
for e in errors[:10]: print("   ", e)
sys.exit(1 if errors or missing else 0)
PY
check "every event consumed once, decoded by Python avro, values equal" test $? -eq 0

# The bundled AI4I data through the preset.
topic2=$(sn_topic ai4i)
out=$("$SN_BIN" produce --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i --skip 8000 --topic "$topic2" -q \
      -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" 2>&1)
check "AI4I preset: last 2,000 rows delivered" grep -q "2000 delivered, 0 failed" <<<"$out"

# A fleet, and its failures file.
topic3=$(sn_topic fleet)
out=$("$SN_BIN" produce --fleet 20 --events 5000 --seed 3 --failures-out "$work/failures.csv" \
      --topic "$topic3" -q -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" 2>&1)
check "fleet: 5000 events delivered" grep -q "5000 delivered, 0 failed" <<<"$out"
check "fleet: failures were labelled" test -s "$work/failures.csv"

# Nothing listens on port 1: every delivery fails, and the exit code says so.
"$SN_BIN" produce --fleet 2 --events 10 -q -X kafka.bootstrap.servers=127.0.0.1:1 \
  -X kafka.message.timeout.ms=2000 >"$work/fail.out" 2>&1
rc=$?
check "undeliverable events: exit 1" test $rc -eq 1
check "undeliverable events: counted as failed" grep -q "10 failed" "$work/fail.out"

"$SN_BIN" produce --fleet 2 --events 10 -X kafka.no.such=1 >"$work/bad.out" 2>&1
rc=$?
check "unknown kafka key: exit 2" test $rc -eq 2
check "unknown kafka key: named with librdkafka's message" grep -q "kafka.no.such.*No such configuration property" "$work/bad.out"

sn_done
