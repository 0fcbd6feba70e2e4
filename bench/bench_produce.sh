#!/usr/bin/env bash
# Producer throughput against the real broker, as a ratio to a baseline in the
# same run: kcat (librdkafka alone) producing the same number of messages of the
# same size from a file. Not a test: it prints figures for docs/benchmarks.md.
#
#   infra/local/stack up && bench/bench_produce.sh [EVENTS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(infra/local/stack env)"
N=${1:-200000}
RUNS=${2:-3}
BIN=${SN_BIN:-build/sentinel}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# Baseline payloads: printable, 89 bytes (the size of an encoded fleet event).
python3 - "$work/payloads" "$N" <<'PY'
import random, string, sys
rng = random.Random(1)
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write("".join(rng.choice(string.ascii_letters) for _ in range(89)) + "\n")
PY

best_base=0 best_sn=0
for r in $(seq 1 "$RUNS"); do
  t=bench-produce-$(date +%s%N)
  # warm the topic so creation is not measured
  echo warm | kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$t-k" -q
  "$BIN" produce --fleet 1 --events 1 -q --topic "$t-s" -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" >/dev/null
  s=$(date +%s.%N)
  kcat -P -b "$KAFKA_BOOTSTRAP_SERVERS" -t "$t-k" -X enable.idempotence=true -X linger.ms=5 -l "$work/payloads"
  e=$(date +%s.%N)
  base=$(python3 -c "print(int($N/($e-$s)))")
  out=$("$BIN" produce --fleet 100 --events "$N" --seed "$r" -q --topic "$t-s" \
        -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS")
  sn=$(sed -n 's/.*s (\([0-9]*\) events\/s).*/\1/p' <<<"$out")
  echo "run $r: kcat baseline $base msg/s, sentinel produce (fleet, Avro) $sn events/s, ratio $(python3 -c "print(round($sn/$base, 2))")"
  [ "$base" -gt "$best_base" ] && best_base=$base
  [ "$sn" -gt "$best_sn" ] && best_sn=$sn
done
echo "best: kcat $best_base msg/s, sentinel produce $best_sn events/s, ratio $(python3 -c "print(round($best_sn/$best_base, 2))")"
