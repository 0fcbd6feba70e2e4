#!/usr/bin/env bash
# sentinel demo, the README's first command: runs to the end with no broker and
# no Java, scores and archives every replayed event, reports alerts with
# precision and recall, and leaves nothing behind, also when interrupted.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$SN_ROOT"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
before=$(ls -d /tmp/sentinel-demo-* 2>/dev/null | sort)

start=$SECONDS
timeout 120 "$SN_BIN" demo >"$work/out" 2>"$work/err"
rc=$?
took=$((SECONDS - start))
echo "  demo took ${took}s"
check "demo exits 0" test $rc -eq 0
check "demo finishes in under 2 minutes" test $took -lt 120
check "all 2000 replayed events delivered" grep -q "events produced      2000 (2000 delivered)" "$work/out"
check "all 2000 scored" grep -q "events scored        2000 in" "$work/out"
check "alerts printed as they happen" grep -q "^alert .* OPEN .*ai4i-mill score" "$work/out"
check "summary has precision and recall" grep -Eq "precision 0\.[0-9]+, recall 0\.[0-9]+" "$work/out"
check "every event and score archived" grep -q "4000 records (events and scores)" "$work/out"
check "working folder removed" test "$(ls -d /tmp/sentinel-demo-* 2>/dev/null | sort)" = "$before"

# Ctrl-C in the middle: exits, and stops the redis-server it started.
"$SN_BIN" demo --rate 200 >"$work/out2" 2>&1 &
pid=$!
for _ in $(seq 1 100); do grep -q "^\[3/4\]" "$work/out2" && break; sleep 0.2; done
sleep 2
dir=$(sed -n 's/^sentinel demo: working folder //p' "$work/out2")
kill -INT $pid
t0=$SECONDS
wait $pid
check "interrupted demo exits within 10 s" test $((SECONDS - t0)) -le 10
check "interrupted demo removed its folder" test ! -e "$dir"
check "interrupted demo stopped its redis-server" bash -c "! pgrep -f 'redis-serve[r].*$dir' >/dev/null"

sn_done
