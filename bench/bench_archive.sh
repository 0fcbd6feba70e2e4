#!/usr/bin/env bash
# bench/bench_archive.sh: archive throughput against raw PUT throughput to the
# same S3 server in the same run.
#
#   eval "$(infra/local/stack env)"; bench/bench_archive.sh [EVENTS] [OBJECT_BYTES]
#
# 1. produces EVENTS telemetry events (and a score per 10) to fresh topics first,
#    so the archiver is measured, not the producer;
# 2. archives them with `sentinel archive` (objects of about OBJECT_BYTES,
#    default 8 MiB) and reads its summary: records, value bytes in, object
#    bytes out, busy time (first record consumed to last upload);
# 3. uploads objects of the same average size with `sentinel archive
#    --put-bench` through the same S3 client to the same server: raw PUT MB/s.
# Prints one Markdown table row per measure. SENTINEL_BIN defaults to
# build/sentinel.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/integration/lib.sh
EVENTS=${1:-500000}
OBJ=${2:-8388608}
: "${KAFKA_BOOTSTRAP_SERVERS:?eval \"\$(infra/local/stack env)\" first}"
sn_venv >/dev/null
sentinel() { env -u SENTINEL_BIN "$SENTINEL_BIN" "$@"; }
TOOL=("$SN_PY" tests/integration/archive_tool.py)
T=$(sn_topic bench-archive)
WORK=$(mktemp -d /tmp/sn-bench-archive-XXXXXX)
trap 'rm -rf "$WORK"; "${TOOL[@]}" rmprefix --endpoint "$S3_ENDPOINT" --bucket "$S3_BUCKET" --prefix "bench/$T/" >/dev/null' EXIT
X=(-X "kafka.bootstrap.servers=$KAFKA_BOOTSTRAP_SERVERS" -X "s3.endpoint=$S3_ENDPOINT"
  -X "archive.url=s3://$S3_BUCKET/bench/$T" -X "archive.group.id=$T" -X metrics.port=0
  -X "archive.file.max.bytes=$OBJ" -X archive.file.max.age.ms=60000 -X archive.batch.max.records=10000
  -X "archive.spool.dir=$WORK" -X log.level=warn)

"${TOOL[@]}" mktopics --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topics "$T,$T.scores" --partitions 4
echo "producing $EVENTS events to $T ..." >&2
"${TOOL[@]}" produce --bootstrap "$KAFKA_BOOTSTRAP_SERVERS" --topic "$T" --scores-topic "$T.scores" \
  --events "$EVENTS" --bad-every 0 --txn-size 10000 --step-ms 1 >&2

echo "archiving ..." >&2
summary=$(sentinel archive "${X[@]}" --topics "$T,$T.scores" --exit-when-idle 3000)
echo "$summary" >&2
read -r records objects bytes in_bytes busy < <(echo "$summary" |
  sed -E 's/^archived ([0-9]+) records .* in ([0-9]+) objects, ([0-9]+) bytes \(from ([0-9]+) bytes of values\), busy ([0-9.]+) s.*/\1 \2 \3 \4 \5/')
avg=$((bytes / objects))
n=$((objects < 40 ? objects : 40))
[ "$n" -ge 5 ] || n=5

echo "raw PUT of $n objects of $avg bytes ..." >&2
put=$(sentinel archive "${X[@]}" --put-bench "$n,$avg")
echo "$put" >&2
put_s=$(echo "$put" | sed -E 's/.* in ([0-9.]+) s.*/\1/')

awk -v r="$records" -v o="$objects" -v b="$bytes" -v i="$in_bytes" -v s="$busy" -v n="$n" -v a="$avg" -v ps="$put_s" 'BEGIN {
  printf "| measure | objects | object size | seconds | events/s | MB/s in (values) | MB/s out (objects) |\n"
  printf "|---|---|---|---|---|---|---|\n"
  printf "| archive (consume, encode, snappy, PUT, commit) | %d | %.2f MiB | %.2f | %.0f | %.1f | %.1f |\n", o, a/1048576, s, r/s, i/1e6/s, b/1e6/s
  printf "| raw PUT, same client and server | %d | %.2f MiB | %.2f | - | - | %.1f |\n", n, a/1048576, ps, n*a/1e6/ps
  printf "\narchive/raw PUT (object bytes per second): %.0f%%; snappy ratio %.2f\n", 100*(b/s)/(n*a/ps), i/b
}'
