#!/usr/bin/env bash
# test_archive.sh: `sentinel archive` against the real local stack (Kafka, S3).
#
# Every scenario produces telemetry and score frames (in Kafka transactions, so
# offsets have gaps, plus a few records that are not Avro) while the archiver
# runs, then lists and decodes the archive with Python's avro and checks that
# every (topic, partition, offset) in Kafka is archived exactly once with the
# value Kafka holds (tests/integration/archive_tool.py check).
#
#   1. normal run to the stack's S3, 200,000 events
#   2. S3 down for 60 s mid-run (a private s3s-fs instance, stopped by its pid
#      and started again the same way): partitions pause, retries, bounded
#      memory, nothing lost
#   3. kill -9 of the archiver mid-run, twice, and restarts
#   4. the file backend with kill -9 and SIGTERM: same layout, no partial file
#      visible, SIGTERM uploads and commits the open files
#   5. web identity credentials from moto's STS, renewed before expiry, the
#      token file read again
#
# Small file size and age limits force many objects. Environment:
# SN_ARCHIVE_EVENTS (default 200000), SN_ARCHIVE_OUTAGE_S (default 60).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

N=${SN_ARCHIVE_EVENTS:-200000}
OUTAGE=${SN_ARCHIVE_OUTAGE_S:-60}
# Production is paced so that the faults land mid-run whatever N is.
MINOBJ=$((N >= 40000 ? 10 : 3))
RATE_OUTAGE=$((N / 25 > 500 ? N / 25 : 500))
RATE_KILL=$((N / 20 > 500 ? N / 20 : 500))
: "${KAFKA_BOOTSTRAP_SERVERS:?run with the stack environment: eval \"\$(infra/local/stack env)\"}"
: "${S3_ENDPOINT:?}" "${S3_BUCKET:?}"

sentinel() { "$SN_BIN" "$@"; }

echo "test_archive: $N events per scenario"
sn_venv || { not_ok "python venv"; sn_done; exit 1; }
if ! sentinel archive --help >/dev/null 2>&1; then
  not_ok "$SN_BIN has no archive command"
  sn_done
  exit 1
fi

TOOL=("$SN_PY" "$SN_ROOT/tests/integration/archive_tool.py")
RUN=$(sn_topic arch)
WORK=$(mktemp -d /tmp/sn-archive-it-XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  # the stack's bucket is shared: leave nothing there
  "${TOOL[@]}" rmprefix --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" --prefix "it-$RUN/" >/dev/null 2>&1
  if [ "$sn_fail" -gt 0 ]; then echo "test_archive: logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { "$SN_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_exit PID SECONDS: waits for a background job; its status, or 124 on timeout
wait_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 124; fi
    sleep 0.5
  done
  wait "$pid"
}

metric() { "${TOOL[@]}" metric --url "http://127.0.0.1:$1/metrics" --name "$2" 2>/dev/null; }

# until_metric PORT NAME MIN SECONDS: waits until the metric is at least MIN
until_metric() {
  local deadline=$((SECONDS + $4)) v
  while [ $SECONDS -lt $deadline ]; do
    v=$(metric "$1" "$2")
    if [ -n "$v" ] && awk -v v="$v" -v m="$3" 'BEGIN{exit !(v+0 >= m+0)}'; then return 0; fi
    sleep 0.3
  done
  return 1
}

COMMON=(-X "kafka.bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" -X "archive.spool.dir=$WORK/spool"
  -X archive.file.max.bytes=262144 -X archive.file.max.age.ms=2000 -X metrics.bind=127.0.0.1
  -X log.format=json)

# archiver NAME PORT ARGS...: starts `sentinel archive` in the background; pid in $APID
archiver() {
  local name=$1 port=$2
  shift 2
  (exec "$SN_BIN" archive "${COMMON[@]}" -X "metrics.port=$port" "$@") \
    >>"$WORK/$name.out" 2>>"$WORK/$name.log" &
  APID=$!
  PIDS+=("$APID")
}

producer() { # producer NAME TOPIC RATE EVENTS: background; pid in $PPID_
  "${TOOL[@]}" produce --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topic "$2" --scores-topic "$2.scores" \
    --events "$4" --rate "$3" --bad-every 20000 --seed "$RANDOM" >"$WORK/$1.produced" 2>"$WORK/$1.producer.log" &
  PPID_=$!
  PIDS+=("$PPID_")
}

topics() { "${TOOL[@]}" mktopics --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$1,$1.scores" --partitions 4; }

check_s3() { # check_s3 NAME TOPIC ENDPOINT BUCKET PREFIX MIN_OBJECTS
  "${TOOL[@]}" check --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$2,$2.scores" --endpoint "$3" \
    --bucket "$4" --prefix "$5" --min-objects "$6" --min-objects-topic "$2" >"$WORK/$1.check" 2>&1
  local rc=$?
  sed 's/^/    /' "$WORK/$1.check" | head -n 12
  return $rc
}

show_log() { echo "    --- $1 (last lines) ---"; tail -n "${2:-15}" "$WORK/$1" | sed 's/^/    /'; }

# ---------------------------------------------------------------------------- 1. normal
echo "1. normal run, $N events"
T1=$RUN-normal
P1=$(free_port)
topics "$T1"
archiver normal "$P1" -X "archive.url=s3://$S3_BUCKET/it-$RUN/normal" -X "s3.endpoint=$S3_ENDPOINT" \
  -X "archive.group.id=$RUN-normal" --topics "$T1,$T1.scores" --exit-when-idle 6000
A1=$APID
producer normal "$T1" 0 "$N"
check "producer finished" wait_exit "$PPID_" 120
check "/readyz answers 200 once partitions are assigned" \
  bash -c "for i in \$(seq 1 40); do curl -fs http://127.0.0.1:$P1/readyz >/dev/null && exit 0; sleep 0.25; done; exit 1"
check "uploads counted in sentinel_archive_objects_total" until_metric "$P1" sentinel_archive_objects_total 1 30
if wait_exit "$A1" 180; then ok "archiver exits 0 when idle"; else not_ok "archiver exit"; show_log normal.log; fi
cat "$WORK/normal.out" | sed 's/^/    /'
if check_s3 normal "$T1" "$S3_ENDPOINT" "$S3_BUCKET" "it-$RUN/normal" "$MINOBJ"; then
  ok "S3 archive holds every offset exactly once, values equal to Kafka's"
else not_ok "normal run archive check"; fi

# --------------------------------------------------------------------- 2. S3 down 60 s
echo "2. S3 (a private s3s-fs) stopped for $OUTAGE s mid-run"
S3S=$(ls "$SN_CACHE_DIR"/s3s-fs-*/bin/s3s-fs 2>/dev/null | head -n 1)
T2=$RUN-outage
P2=$(free_port)
S3P=$(free_port)
EP2=http://127.0.0.1:$S3P
mkdir -p "$WORK/s3data"
start_s3() {
  "$S3S" --host 127.0.0.1 --port "$S3P" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
    "$WORK/s3data" >>"$WORK/s3s.log" 2>&1 &
  S3PID=$!
  PIDS+=("$S3PID")
  for _ in $(seq 1 50); do curl -s -o /dev/null "$EP2/" && return 0; sleep 0.1; done
  return 1
}
if [ -z "$S3S" ] || ! start_s3; then
  not_ok "private s3s-fs ($S3S) did not start"
else
  "${TOOL[@]}" mkbucket --endpoint "$EP2" --bucket arch
  topics "$T2"
  archiver outage "$P2" -X "archive.url=s3://arch/out" -X "s3.endpoint=$EP2" -X "archive.group.id=$RUN-outage" \
    -X s3.max.retries=2 -X s3.retry.backoff.max.ms=500 -X s3.connect.timeout.ms=1000 \
    -X archive.retry.backoff.ms=500 -X archive.retry.backoff.max.ms=4000 \
    --topics "$T2,$T2.scores" --exit-when-idle 6000
  A2=$APID
  producer outage "$T2" "$RATE_OUTAGE" "$N"
  PR2=$PPID_
  check "some objects uploaded before the outage" until_metric "$P2" sentinel_archive_objects_total 3 60
  rss0=$(awk '/VmRSS/{print $2}' "/proc/$A2/status")
  kill -TERM "$S3PID"; wait "$S3PID" 2>/dev/null
  t_down=$SECONDS
  echo "    s3s-fs stopped (RSS of the archiver ${rss0} kB)"
  check "failed uploads counted while S3 is down" until_metric "$P2" sentinel_archive_failures_total 1 30
  check "retries counted while S3 is down" until_metric "$P2" sentinel_archive_retries_total 1 30
  sleep 8
  check "oldest unarchived age grows while S3 is down" until_metric "$P2" sentinel_archive_oldest_unarchived_seconds 5 20
  objs_down=$(metric "$P2" sentinel_archive_objects_total)
  sleep $((OUTAGE - (SECONDS - t_down) > 0 ? OUTAGE - (SECONDS - t_down) : 0))
  rss1=$(awk '/VmRSS/{print $2}' "/proc/$A2/status")
  nspool=$(find "$WORK/spool" -type f | wc -l)
  echo "    after ${OUTAGE}s down: RSS ${rss1} kB, $nspool files in the spool, objects still $objs_down"
  check "memory bounded while S3 is down (RSS grew < 64 MB)" test $((rss1 - rss0)) -lt 65536
  check "spool bounded while S3 is down (<= one closed + one open file per partition)" test "$nspool" -le 16
  check "archiver still alive after the outage" kill -0 "$A2" 2>/dev/null
  start_s3 && echo "    s3s-fs started again"
  check "producer finished" wait_exit "$PR2" 60
  if wait_exit "$A2" 240; then ok "archiver catches up and exits 0"; else not_ok "archiver exit after outage"; show_log outage.log; fi
  sed 's/^/    /' "$WORK/outage.out"
  grep -c '"pausing consumption' "$WORK/outage.log" | sed 's/^/    pause events: /'
  if check_s3 outage "$T2" "$EP2" arch out "$MINOBJ"; then
    ok "archive after a ${OUTAGE}s S3 outage holds every offset exactly once"
  else not_ok "outage archive check"; show_log outage.log; fi
  kill "$S3PID" 2>/dev/null
fi

# ---------------------------------------------------------------------- 3. kill -9
echo "3. kill -9 of the archiver mid-run, twice"
# A killed member holds its partitions until its session times out: keep that
# short, and the idle exit longer, so the last run gets every partition.
KILLX=(-X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=1000)
# The killed runs upload a file every 2 s but commit only once a minute: the
# kill always leaves objects uploaded and not committed (the crash window of
# the design, made wide), which the restarts must not archive twice.
NOCOMMIT=(-X kafka.auto.commit.interval.ms=60000)
T3=$RUN-kill
topics "$T3"
producer kill "$T3" "$RATE_KILL" "$N"
PR3=$PPID_
for round in 1 2; do
  archiver kill "$(free_port)" "${KILLX[@]}" "${NOCOMMIT[@]}" -X "archive.url=s3://$S3_BUCKET/it-$RUN/kill" \
    -X "s3.endpoint=$S3_ENDPOINT" -X "archive.group.id=$RUN-kill" --topics "$T3,$T3.scores"
  sleep $((round == 1 ? 4 : 10))
  kill -9 "$APID"; wait "$APID" 2>/dev/null
  echo "    round $round: killed -9"
done
archiver kill "$(free_port)" "${KILLX[@]}" -X "archive.url=s3://$S3_BUCKET/it-$RUN/kill" \
  -X "s3.endpoint=$S3_ENDPOINT" -X "archive.group.id=$RUN-kill" --topics "$T3,$T3.scores" --exit-when-idle 15000
A3=$APID
check "producer finished" wait_exit "$PR3" 90
if wait_exit "$A3" 180; then ok "restarted archiver finishes"; else not_ok "restarted archiver"; show_log kill.log; fi
tail -n 1 "$WORK/kill.out" | sed 's/^/    last run: /'
nskip=$(tail -n 1 "$WORK/kill.out" | sed -nE 's/.*raw, ([0-9]+) found already archived.*/\1/p')
check "restarts found objects uploaded before the kill but not committed (${nskip:-0} records), and skipped them" \
  test "${nskip:-0}" -ge 1
if check_s3 kill "$T3" "$S3_ENDPOINT" "$S3_BUCKET" "it-$RUN/kill" "$MINOBJ"; then
  ok "archive after kill -9 and restarts holds every offset exactly once"
else not_ok "kill -9 archive check"; fi

# ------------------------------------------------------------------ 4. file backend
echo "4. file backend with kill -9 and SIGTERM"
T4=$RUN-file
NF=$((N / 4))
topics "$T4"
producer file "$T4" 20000 "$NF"
PR4=$PPID_
FILEX=(-X "archive.url=file://$WORK/files" -X "archive.group.id=$RUN-file" -X archive.file.max.bytes=32768
  -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=1000)
archiver file "$(free_port)" "${FILEX[@]}" --topics "$T4,$T4.scores"
sleep 2
kill -9 "$APID"; wait "$APID" 2>/dev/null
# the second run keeps its files open (60 s age) until SIGTERM, which must close,
# upload and commit them before exiting
PF=$(free_port)
archiver file "$PF" "${FILEX[@]}" -X archive.file.max.age.ms=60000 -X archive.file.max.bytes=1048576 \
  --topics "$T4,$T4.scores"
A4=$APID
check "producer finished" wait_exit "$PR4" 60
sleep 10 # past the killed member's session timeout (6 s), and caught up
check "records consumed but not uploaded before SIGTERM" until_metric "$PF" sentinel_archive_oldest_unarchived_seconds 0.001 20
kill -TERM "$A4"
if wait_exit "$A4" 60; then ok "SIGTERM: exits 0"; else not_ok "SIGTERM exit"; show_log file.log; fi
archiver file "$(free_port)" "${FILEX[@]}" --topics "$T4,$T4.scores" --exit-when-idle 5000
A4=$APID
if wait_exit "$A4" 60; then ok "file archiver restarts and finishes"; else not_ok "file archiver"; show_log file.log; fi
tail -n 1 "$WORK/file.out" | sed 's/^/    after SIGTERM, a new run: /'
check "SIGTERM committed what it uploaded (a new run finds nothing to archive)" \
  grep -q '^archived 0 records (0 raw, 0 found' <(tail -n 1 "$WORK/file.out")
visible_other=$(find "$WORK/files" -type f ! -name '.*' ! -name '*.avro' | wc -l)
hidden=$(find "$WORK/files" -type f -name '.*' | wc -l)
echo "    $(find "$WORK/files" -type f -name '*.avro' | wc -l) files, $hidden hidden temporaries"
check "no partial or foreign file visible in the folder" test "$visible_other" -eq 0
if "${TOOL[@]}" check --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$T4,$T4.scores" --dir "$WORK/files" \
  --min-objects "$MINOBJ" --min-objects-topic "$T4" >"$WORK/file.check" 2>&1; then
  sed 's/^/    /' "$WORK/file.check"
  ok "file archive: same layout, every offset exactly once, every visible file complete"
else sed 's/^/    /' "$WORK/file.check" | head -n 15; not_ok "file archive check"; fi

# -------------------------------------------------------------- 5. web identity (moto)
echo "5. web identity credentials from moto's STS, renewed before expiry"
MP=$(free_port)
# in $WORK: moto's request recorder writes its file into the current folder
(cd "$WORK" && MOTO_RECORDER_FILEPATH="$WORK/moto_recording" exec "$SN_CACHE_DIR/venv/bin/moto_server" \
  -H 127.0.0.1 -p "$MP") >"$WORK/moto.log" 2>&1 &
MOTO=$!
PIDS+=("$MOTO")
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$MP/moto-api/" && break; sleep 0.2; done
curl -s -X POST "http://127.0.0.1:$MP/moto-api/recorder/start-recording" >/dev/null
AWS_ACCESS_KEY_ID=moto AWS_SECRET_ACCESS_KEY=moto "${TOOL[@]}" mkbucket --endpoint "http://127.0.0.1:$MP" --bucket wibucket
T5=$RUN-wi
topics "$T5"
echo "token-one" >"$WORK/token"
producer wi "$T5" 2000 16000
PR5=$PPID_
(
  bin=$SN_BIN
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
  export AWS_ROLE_ARN=arn:aws:iam::123456789012:role/sentinel-archiver
  export AWS_WEB_IDENTITY_TOKEN_FILE=$WORK/token AWS_ROLE_SESSION_NAME=archiver-test
  # 900 s credentials renewed 896 s before expiry: a renewal every ~4 s
  exec "$bin" archive "${COMMON[@]}" -X metrics.port=0 -X "archive.url=s3://wibucket/p" \
    -X "s3.endpoint=http://127.0.0.1:$MP" -X "s3.sts.endpoint=http://127.0.0.1:$MP" \
    -X s3.sts.duration.s=900 -X s3.credentials.refresh.s=896 -X archive.file.max.age.ms=1000 \
    -X "archive.group.id=$RUN-wi" --topics "$T5,$T5.scores" --exit-when-idle 4000
) >"$WORK/wi.out" 2>"$WORK/wi.log" &
A5=$!
PIDS+=("$A5")
sleep 5
echo "token-two" >"$WORK/token"
check "producer finished" wait_exit "$PR5" 60
if wait_exit "$A5" 120; then ok "archiver with web identity finishes"; else not_ok "web identity archiver"; show_log wi.log; fi
nweb=$(grep -c 'credentials from web identity' "$WORK/wi.log")
tokens=$("${TOOL[@]}" recorded-tokens --url "http://127.0.0.1:$MP")
echo "    $nweb STS exchanges; tokens sent: $(echo "$tokens" | tr ' ' '\n' | sort | uniq -c | tr '\n' ' ')"
check "credentials renewed before expiry (>= 2 STS exchanges)" test "$nweb" -ge 2
check "the token file is read again at renewal" grep -q token-two <<<"$tokens"
check "no secret in the log" bash -c "! grep -qiE 'SecretAccessKey|SessionToken|token-one|token-two' '$WORK/wi.log'"
if AWS_ACCESS_KEY_ID=moto AWS_SECRET_ACCESS_KEY=moto "${TOOL[@]}" check --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" \
  --topics "$T5,$T5.scores" --endpoint "http://127.0.0.1:$MP" --bucket wibucket --prefix p >"$WORK/wi.check" 2>&1; then
  sed 's/^/    /' "$WORK/wi.check"
  ok "archive written with web identity credentials is complete"
else sed 's/^/    /' "$WORK/wi.check" | head; not_ok "web identity archive check"; fi
kill "$MOTO" 2>/dev/null
wait "$MOTO" 2>/dev/null

sn_done
