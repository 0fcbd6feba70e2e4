#!/usr/bin/env bash
# sentinel drift end to end, no services: train the AI4I model into a file
# registry, then check the exit codes and reports on the training rows (no
# drift), on the later rows with torque shifted by +10 Nm (about one standard
# deviation: drift on torque and the features built from it), on 499 rows
# (not enough data), and for bad usage and a missing version.
# SN_BIN must be a sentinel with the drift subcommand wired in cli/main.c.
set -u
. "$(dirname "$0")/lib.sh"

work=$(mktemp -d /tmp/sn_drift_it.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=(-X "registry.url=file://$work/reg" -X drift.events.topic=) # no broker here: no drift events
cd "$SN_ROOT" || exit 1

if ! "$SN_BIN" drift --help >/dev/null 2>&1; then
  echo "test_drift: $SN_BIN has no drift subcommand (cli/main.c): skipped"
  exit 77
fi
"$SN_BIN" train --csv data/ai4i2020.csv --preset ai4i "${R[@]}" --promote -q >"$work/train.log" 2>&1 ||
  { cat "$work/train.log"; exit 1; }

head -6001 data/ai4i2020.csv >"$work/train_rows.csv"
head -500 data/ai4i2020.csv >"$work/small.csv"
# rows 6001.. with Torque [Nm] (column 7) + 10
awk -F, -v OFS=, 'NR == 1 { print; next } NR > 6001 { $7 = sprintf("%.1f", $7 + 10); print }' \
  data/ai4i2020.csv >"$work/shift.csv"

"$SN_BIN" drift "${R[@]}" --model production --csv "$work/train_rows.csv" --preset ai4i -q
check "training rows: exit 0 (no drift)" test $? -eq 0

"$SN_BIN" drift "${R[@]}" --model production --input "$work/shift.csv" --preset ai4i -q \
  --json-out "$work/r.json" --html-out "$work/r.html"
check "torque +1 sd: exit 3 (drift)" test $? -eq 3
check "JSON report: verdict drift, torque_nm and power_w drifted, rpm not" "$SN_PY" - "$work/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v = {f["name"]: f["verdict"] for f in r["features"]}
assert r["verdict"] == "drift", r["verdict"]
assert v["torque_nm"] == "drift" and v["power_w"] == "drift", v
assert v["rotational_speed_rpm"] == "no drift", v
PY
check "HTML report: one inline SVG per drifted feature" \
  test "$(grep -c '<svg' "$work/r.html")" -eq "$("$SN_PY" -c 'import json,sys; print(sum(f["verdict"] == "drift" for f in json.load(open(sys.argv[1]))["features"]))' "$work/r.json")"

"$SN_BIN" drift "${R[@]}" --csv "$work/small.csv" --preset ai4i -q
check "499 events: exit 4 (not enough data)" test $? -eq 4
"$SN_BIN" drift "${R[@]}" --csv "$work/small.csv" --jsonl "$work/small.csv" 2>/dev/null
check "two inputs: exit 2" test $? -eq 2
"$SN_BIN" drift "${R[@]}" --model 99 --csv "$work/shift.csv" --preset ai4i -q 2>/dev/null
check "unknown version: exit 1" test $? -eq 1
sn_done
