#!/usr/bin/env bash
# test_archive_read.sh: train and drift from the archive, on the real stack
# (Kafka, Redis, the S3 server).
#
# Three days of one synthetic fleet go to a fresh topic: window A (two days)
# then window B (the next day): whole days so that the fleet's daily
# temperature cycle is not mistaken for drift, and long next to the feature
# spec's 1 h windows; one fleet, since another seed is other machines (other
# product types and speeds), which KS rightly calls drift. They are produced now, so they are a backfill: Kafka
# times (the archive's hour folders) are up to 3 days after the event times,
# and the readers run with archive.read.lateness.ms = 4 days.
# `sentinel archive` writes the topic to a fresh s3:// prefix;
# `sentinel train --input s3://...` trains on window A only (the fleet's
# failures as labels) and promotes; `sentinel score` scores both windows with
# that model, and its score topic is archived too. Then
# `sentinel drift --input s3://...` on window B (events the model never saw,
# of the same machines) says no drift, features and score alike, with every
# event and every score of the window counted; a window without data says
# not enough data.
# Environment: SN_BIN and the stack's (eval "$(infra/local/stack env)").
set -uo pipefail
source "$(dirname "$0")/lib.sh"
: "${KAFKA_BOOTSTRAP_SERVERS:?run with the stack environment: eval \"\$(infra/local/stack env)\"}"
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}" "${REDIS_URL:?}"

sn_venv || { not_ok "python venv"; sn_done; exit 1; }
cd "$SN_ROOT" || exit 1 # the default schema.dir is ./schemas
RUN=$(sn_topic archread)
WORK=$(mktemp -d /tmp/sn-archive-read-XXXXXX)
PREFIX="it-$RUN"
URL="s3://$S3_BUCKET/$PREFIX"
PIDS=()
atool() { "$SN_PY" "$SN_ROOT/tests/integration/archive_tool.py" "$@"; }
stool() { "$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" "$@"; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  atool rmprefix --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" --prefix "$PREFIX/" >/dev/null 2>&1
  stool redis-del "$REDIS_URL" "$RUN*" >/dev/null 2>&1
  if [ "$sn_fail" -gt 0 ]; then echo "test_archive_read: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

TEL=$RUN.tel SCORES=$RUN.scores
MACHINES=60 STEP=300000 STEPS_A=576 STEPS_B=288 # 2 days and 1 day of 5-minute steps
NA=$((MACHINES * STEPS_A)) NB=$((MACHINES * STEPS_B))
DAY=86400000
NOW=$(($(date +%s) * 1000))
B1=$((NOW / DAY * DAY)) # window B ends at the last midnight (UTC): whole days
B0=$((B1 - DAY))
A0=$((B0 - 2 * DAY))
COMMON=(-X "kafka.bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" -X "s3.endpoint=$S3_ENDPOINT"
  -X "registry.url=file://$WORK/reg" -X "topic.telemetry=$TEL" -X "topic.scores=$SCORES"
  -X "topic.alerts=$RUN.alerts" -X "topic.dlq=$RUN.dlq" -X metrics.port=0 -X log.format=text
  -X archive.read.lateness.ms=$((4 * DAY)))

echo "test_archive_read: windows of $NA and $NB events ($MACHINES machines, steps of $STEP ms)"
atool mktopics --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$TEL,$SCORES,$RUN.alerts,$RUN.dlq" --partitions 3
"$SN_BIN" produce -q "${COMMON[@]}" --fleet "$MACHINES" --events $((NA + NB)) --seed 1 --start "$A0" \
  --step "$STEP" --failures-out "$WORK/failures.csv" >"$WORK/produce.out" 2>&1
check "produced both windows" grep -q "$((NA + NB)) delivered, 0 failed" "$WORK/produce.out"

# archive TOPICS NAME: `sentinel archive` to the run's prefix until idle
archive() {
  "$SN_BIN" archive "${COMMON[@]}" -X "archive.spool.dir=$WORK/spool" -X "archive.group.id=$RUN-$2" \
    -X archive.file.max.bytes=262144 --url "$URL" --topics "$1" --exit-when-idle 5000 \
    >"$WORK/archive_$2.out" 2>"$WORK/archive_$2.log"
}
archive "$TEL" tel
check "archiver: telemetry archived, exit 0" test $? -eq 0

# ---- train from the archive, window A only
t0=$SECONDS
"$SN_BIN" train "${COMMON[@]}" --input "$URL" --from "$A0" --to "$B0" --failures "$WORK/failures.csv" \
  -X label.horizon.ms=7200000 --promote -q >"$WORK/train.out" 2>"$WORK/train.log"
rc=$?
echo "  train: $((SECONDS - t0)) s; $(grep -o 'archive s3://.*dropped' "$WORK/train.log" | head -n 1)"
check "train --input s3://: exit 0, promoted" test $rc -eq 0
if [ $rc -ne 0 ]; then tail -n 5 "$WORK/train.log"; sn_done; exit 1; fi
check "train read exactly window A's $NA events from the archive" \
  grep -q "$NA in range, 0 late, 0 duplicates dropped" "$WORK/train.log"
check "the card has a score profile from the holdout" "$SN_PY" - "$WORK/reg/sentinel/versions/1/card.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
s = c["profile"]["score"]
assert s["split"] == "holdout" and len(s["edges"]) == c["profile"]["bins"] + 1, s.keys()
assert sum(s["counts"]) + s["missing"] == c["data"]["split"]["holdout"]["events"]
assert c["data"]["format"] == "archive" and c["data"]["path"].startswith("s3://"), c["data"]
PY

# ---- the scorer scores both windows; its score topic is archived too
"$SN_BIN" score "${COMMON[@]}" -X "redis.url=$REDIS_URL" -X "redis.key.prefix=$RUN" \
  -X "scorer.group.id=$RUN-score" >"$WORK/score.log" 2>&1 &
SCORER=$!
PIDS+=("$SCORER")
n=$(stool wait-count "$SCORES" $((NA + NB)) --timeout 300)
check "the scorer scored both windows ($n of $((NA + NB)))" test "${n:-0}" -ge $((NA + NB))
kill -TERM "$SCORER"
wait "$SCORER"
archive "$SCORES" scores
check "archiver: scores archived, exit 0" test $? -eq 0

# ---- drift on window B: the same machines, a day the model never saw
t0=$SECONDS
"$SN_BIN" drift "${COMMON[@]}" --model production --input "$URL" --from "$B0" --to "$B1" \
  --json-out "$WORK/drift.json" --html-out "$WORK/drift.html" >"$WORK/drift.out" 2>"$WORK/drift.log"
rc=$?
echo "  drift: $((SECONDS - t0)) s"
grep -v '  no drift$' "$WORK/drift.out" | sed 's/^/    /'
grep -E '^score ' "$WORK/drift.out" | sed 's/^/    /'
check "drift --input s3:// on window B: exit 0 (no drift)" test $rc -eq 0
check "drift report: every event and every score of window B, a score row with no drift" \
  "$SN_PY" - "$WORK/drift.json" "$NB" <<'PY'
import json, sys
r, n = json.load(open(sys.argv[1])), int(sys.argv[2])
assert r["verdict"] == "no drift", r["verdict"]
assert r["events"] == n, (r["events"], n)
s = r["score"]
assert s["name"] == "score" and s["verdict"] == "no drift", s
assert s["scores"] == n, (s["scores"], n)
t = r["thresholds"]  # the score is one more test of the Bonferroni family
assert abs(t["ks_alpha_per_feature"] * (len(r["features"]) + 1) - t["ks_alpha"]) < 1e-12, t
PY
check "HTML report has the score row" grep -q '<td>score</td>' "$WORK/drift.html"

# a window before any data: nothing to compare
"$SN_BIN" drift "${COMMON[@]}" --model production --input "$URL" --from $((A0 - DAY)) \
  --to $((A0 - DAY / 2)) -q >/dev/null 2>"$WORK/drift_empty.log"
check "drift on an empty window: exit 4 (not enough data)" test $? -eq 4
"$SN_BIN" drift "${COMMON[@]}" --model production --input "$URL" -q 2>"$WORK/drift_usage.log"
check "drift --input URL without --from/--to: exit 2" test $? -eq 2
sn_done
