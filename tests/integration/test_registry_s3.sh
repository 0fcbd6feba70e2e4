#!/usr/bin/env bash
# The S3 registry backend (registry.url=s3://BUCKET/PREFIX) against the local
# stack's S3 server (s3s-fs), under a prefix of its own that is deleted at the
# end. boto3 is the independent peer that looks at the bucket.
#
#   0. what the server does with If-None-Match: * : a second PUT of a key is
#      refused with 412 (asserted); 8 writers racing on one key (measured and
#      printed: s3s-fs checks and then writes, so several may win, which is why
#      registry_s3.c does not rely on it alone);
#   1. the registry_s3 Criterion tests on this server: the round trip of the
#      file backend (register, fetch, aliases, history, rollback, list), a
#      binary model byte for byte, model names kept apart, 4 processes x 10
#      concurrent registrations getting
#      distinct numbers, and errors naming the URL (403, missing bucket, no
#      server);
#   2. the commands: train --promote (exit 0), train on shuffled labels with
#      --promote (exit 4, challenger), two trainings at once (distinct
#      versions), list, show, download with the hash checked, promote,
#      alias, rollback; boto3 sees the documented layout;
#   3. the scorer follows the production alias in S3: it loads it, swaps to a
#      promoted version, and refuses a version whose model.ubj was corrupted
#      in the bucket (registry download refuses it too);
#   4. a wrong secret: a clear 403 error naming the URL, exit 1; no server:
#      exit 1, "retry later".
# Environment: SN_BIN, SN_UNIT_DIR (default build/tests/unit), the stack's
# (S3_ENDPOINT, S3_BUCKET, AWS_*, KAFKA_BOOTSTRAP_SERVERS, REDIS_URL).
set -uo pipefail
. "$(dirname "$0")/lib.sh"

SN_UNIT_DIR=${SN_UNIT_DIR:-$SN_ROOT/build/tests/unit}
: "${S3_ENDPOINT:?run with the stack environment: eval \"\$(infra/local/stack env)\"}"
BUCKET=${S3_BUCKET:-sentinel}
sn_venv || { echo "test_registry_s3: venv setup failed"; exit 1; }
cd "$SN_ROOT" || exit 1 # the scorer's default schema.dir is ./schemas

run_id="regs3-it-$(date +%s)-$$"
PREFIX="test/$run_id"
URL="s3://$BUCKET/$PREFIX"
tmp=$(mktemp -d /tmp/sn_regs3.XXXXXX)
pids=()
peer() { "$SN_PY" - "$S3_ENDPOINT" "$BUCKET" "$PREFIX" "$@"; }
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  peer <<'EOF' >/dev/null 2>&1
import sys, boto3
ep, bucket, prefix = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=ep)
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for o in page.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
EOF
  "$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" redis-del "$REDIS_URL" "$run_id*" >/dev/null 2>&1
  if [ "${SN_KEEP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
echo "test_registry_s3: $URL on $S3_ENDPOINT"

# ---- 0. the server's conditional writes
peer >"$tmp/probe.out" 2>&1 <<'EOF'
import sys, threading, boto3, botocore
from botocore.config import Config
ep, bucket, prefix = sys.argv[1:4]
cfg = Config(response_checksum_validation="when_required", request_checksum_calculation="when_required")
s3 = boto3.client("s3", endpoint_url=ep, config=cfg)
k = prefix + "/probe/seq"
s3.put_object(Bucket=bucket, Key=k, Body=b"one", IfNoneMatch="*")
try:
    s3.put_object(Bucket=bucket, Key=k, Body=b"two", IfNoneMatch="*")
    print("sequential: second PUT accepted")
except botocore.exceptions.ClientError as e:
    print("sequential: second PUT", e.response["ResponseMetadata"]["HTTPStatusCode"])
trials, multi, writers = 20, 0, 8
for t in range(trials):
    key, wins, gate = f"{prefix}/probe/race-{t}", [], threading.Barrier(writers)
    cs = [boto3.client("s3", endpoint_url=ep, config=cfg) for _ in range(writers)]
    def go(i):
        gate.wait()
        try:
            cs[i].put_object(Bucket=bucket, Key=key, Body=b"w%d" % i, IfNoneMatch="*")
            wins.append(i)
        except botocore.exceptions.ClientError:
            pass
    ts = [threading.Thread(target=go, args=(i,)) for i in range(writers)]
    [x.start() for x in ts]; [x.join() for x in ts]
    multi += len(wins) > 1
print(f"race: {multi} of {trials} trials of {writers} concurrent If-None-Match PUTs had more than one winner")
EOF
sed 's/^/  /' "$tmp/probe.out"
check "a second If-None-Match: * PUT of a key gets 412" grep -q "sequential: second PUT 412" "$tmp/probe.out"

# ---- 1. the registry's own round trips
if [ -x "$SN_UNIT_DIR/test_registry" ]; then
  SN_S3_REGISTRY_URL="$URL/unit" SN_S3_ENDPOINT="$S3_ENDPOINT" \
    "$SN_UNIT_DIR/test_registry" --jobs 1 --filter 'registry_s3*/*' >"$tmp/unit.out" 2>&1
  rc=$?
  grep -E "race:|Synthesis|FAIL|Assert" "$tmp/unit.out" | sed 's/^/  /'
  echo "  writers that got past If-None-Match together and were split by the claims:" \
    "$(grep -c "passed the conditional PUT too" "$tmp/unit.out")"
  check "registry_s3 Criterion tests on $S3_ENDPOINT" test "$rc" = 0
  check "the live tests ran (not skipped)" grep -q "race: 40 registrations" "$tmp/unit.out"
else
  not_ok "no $SN_UNIT_DIR/test_registry: build the unit tests first"
fi

# ---- 2. the commands
X=(-X "registry.url=$URL" -X "s3.endpoint=$S3_ENDPOINT" -X log.format=text)
sentinel() { "$SN_BIN" "$@"; }
"$SN_PY" - "$SN_ROOT/data/ai4i2020.csv" "$tmp/shuffled.csv" <<'EOF'
import random, sys
rows = open(sys.argv[1]).read().splitlines()
head, body = rows[0], rows[1:]
labels = [r.rsplit(",", 1)[1] for r in body[:8000]]
random.Random(1).shuffle(labels)
body[:8000] = [r.rsplit(",", 1)[0] + "," + l for r, l in zip(body[:8000], labels)]
open(sys.argv[2], "w").write("\n".join([head] + body) + "\n")
EOF
sentinel train --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i --promote -q "${X[@]}" \
  >"$tmp/train1.out" 2>"$tmp/train1.err"
rc=$?
check "train --promote into $URL: exit 0 (got $rc)" test "$rc" = 0
check "version 1 registered in the s3 registry and promoted" \
  grep -q "version 1: no production model: promoting version 1" "$tmp/train1.out"
sentinel train --csv "$tmp/shuffled.csv" --preset ai4i --promote -q "${X[@]}" \
  >"$tmp/train2.out" 2>"$tmp/train2.err"
rc=$?
check "train --promote on shuffled labels: exit 4 (got $rc)" test "$rc" = 4
check "the gate logged both scores" \
  grep -Eq "challenger PR-AUC 0\.[0-9]+ < production 0\.[0-9]+ \+ 0\.005: not promoting" "$tmp/train2.err"
# two registrations at once, by two trainers
sentinel train --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i -q "${X[@]}" >"$tmp/train3.out" 2>&1 &
t3=$!
sentinel train --csv "$SN_ROOT/data/ai4i2020.csv" --preset ai4i -q "${X[@]}" >"$tmp/train4.out" 2>&1 &
t4=$!
wait "$t3"; r3=$?
wait "$t4"; r4=$?
v3=$(grep -oE "registered sentinel version [0-9]+|sentinel version [0-9]+" "$tmp/train3.out" | grep -oE "[0-9]+$" | head -1)
v4=$(grep -oE "registered sentinel version [0-9]+|sentinel version [0-9]+" "$tmp/train4.out" | grep -oE "[0-9]+$" | head -1)
echo "  concurrent trainings registered versions ${v3:-?} and ${v4:-?}"
check "two concurrent trainings both registered (exit $r3, $r4)" test "$r3" = 0 -a "$r4" = 0
check "... with distinct versions (${v3:-?} != ${v4:-?}), both above 2" \
  test -n "$v3" -a -n "$v4" -a "${v3:-0}" != "${v4:-0}" -a "${v3:-0}" -gt 2 -a "${v4:-0}" -gt 2
# Colliding writers may skip a number (README): name the two by what they got.
lo=$v3 hi=$v4
[ "${v3:-0}" -gt "${v4:-0}" ] && lo=$v4 hi=$v3
sentinel registry list "${X[@]}" >"$tmp/list.out" 2>&1
sed 's/^/  /' "$tmp/list.out"
check "registry list shows production on 1" grep -Eq '^1 .*production' "$tmp/list.out"
check "registry list shows challenger on 2" grep -Eq '^2 .*challenger' "$tmp/list.out"
check "registry list shows 4 versions with their registration time" \
  test "$(grep -cE '^[0-9]+ +20[0-9]{2}-' "$tmp/list.out")" = 4
check "registry show 2" sentinel registry show 2 "${X[@]}"
sentinel registry show production --json "${X[@]}" >"$tmp/card1.json" 2>"$tmp/card1.err"
check "registry show production --json is version 1's card" \
  "$SN_PY" -c 'import json,sys; c=json.load(open(sys.argv[1])); assert c["model"]["sha256"] == sys.argv[2]' \
  "$tmp/card1.json" "$(grep -oE "model sha256 [0-9a-f]+" "$tmp/train1.out" | cut -d' ' -f3)"
check "registry download production" sentinel registry download production "$tmp/dl" "${X[@]}"
want=$("$SN_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["sha256"])' "$tmp/dl/card.json" 2>/dev/null)
got=$(sha256sum "$tmp/dl/model.ubj" 2>/dev/null | cut -d' ' -f1)
check "downloaded model.ubj matches its card's sha256" test -n "$want" -a "$want" = "$got"
check "registry promote $lo (by hand)" sentinel registry promote "$lo" "${X[@]}"
sentinel registry alias production "${X[@]}" >"$tmp/alias.out" 2>&1
check "alias production -> $lo (before: 1)" grep -q "^production -> $lo  (before: 1)" "$tmp/alias.out"
sentinel registry rollback "${X[@]}" >"$tmp/rb.out" 2>&1
check "registry rollback: production back on 1" grep -q "production rolled back to version 1" "$tmp/rb.out"
sentinel registry rollback "${X[@]}" >"$tmp/rb2.out" 2>&1
rc=$?
check "a second rollback has nowhere to go: exit 1 (got $rc)" test "$rc" = 1
check "... and says so" grep -q "alias production has no earlier version" "$tmp/rb2.out"
sentinel registry show 99 "${X[@]}" >"$tmp/show99.out" 2>&1
rc=$?
check "registry show 99: exit 1 (got $rc), naming the URL" \
  test "$rc" = 1 -a -n "$(grep -F "$URL: no version 99" "$tmp/show99.out")"
check "boto3 sees the documented layout (versions, claims, aliases, append-only history)" peer "$lo" "$hi" <<'EOF'
import sys, boto3
ep, bucket, prefix = sys.argv[1:4]
lo, hi = int(sys.argv[4]), int(sys.argv[5])
s3 = boto3.client("s3", endpoint_url=ep)
keys = {o["Key"][len(prefix) + 1:]: o for p in s3.get_paginator("list_objects_v2").paginate(
    Bucket=bucket, Prefix=prefix + "/sentinel/") for o in p.get("Contents", [])}
for v in (1, 2, lo, hi):
    for f in ("model.ubj", "card.json", "claim"):
        assert f"sentinel/versions/{v}/{f}" in keys, (v, f, sorted(keys))
    assert any(k.startswith(f"sentinel/versions/{v}/claims/") for k in keys), v
get = lambda k: s3.get_object(Bucket=bucket, Key=f"{prefix}/{k}")["Body"].read().decode()
assert get("sentinel/aliases/production") == "1\n", get("sentinel/aliases/production")
assert get("sentinel/aliases/challenger") == "2\n"
hist = sorted(k for k in keys if k.startswith("sentinel/aliases/production.history/"))
# set 1, set lo (pushes 1), rollback (pops): three moves, three objects
assert len(hist) == 3, hist
assert [get(k) for k in hist] == ["", "1\n", ""], [get(k) for k in hist]
print("  layout ok:", len(keys), "keys;", "production history", [h.rsplit("/", 1)[1] for h in hist])
EOF

# ---- 3. the scorer follows the alias in S3, and refuses a corrupted model
peer "$hi" <<'EOF'
import sys, boto3
ep, bucket, prefix, hi = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=ep)
k = f"{prefix}/sentinel/versions/{hi}/model.ubj"
body = bytearray(s3.get_object(Bucket=bucket, Key=k)["Body"].read())
body[len(body) // 2] ^= 0xFF  # one flipped byte; the card still has the old sha256
s3.put_object(Bucket=bucket, Key=k, Body=bytes(body))
EOF
sentinel registry download "$hi" "$tmp/dl4" "${X[@]}" >"$tmp/dl4.out" 2>&1
rc=$?
check "registry download of the corrupted version $hi: exit 1 (got $rc)" test "$rc" = 1
sed 's/^/  /' "$tmp/dl4.out"
check "... naming the SHA-256 mismatch" grep -q "model.ubj has SHA-256 .*the card expects" "$tmp/dl4.out"
check "... and nothing written" test ! -e "$tmp/dl4/model.ubj"
tel="$run_id.tel"
"$SN_PY" "$SN_ROOT/tests/integration/score_tool.py" create-topics "$tel" "$run_id.scores" "$run_id.alerts" >/dev/null 2>&1
"$SN_BIN" score "${X[@]}" -X kafka.bootstrap.servers="$KAFKA_BOOTSTRAP_SERVERS" -X redis.url="$REDIS_URL" \
  -X topic.telemetry="$tel" -X topic.scores="$run_id.scores" -X topic.alerts="$run_id.alerts" \
  -X topic.dlq="$run_id.dlq" -X scorer.group.id="$run_id" -X redis.key.prefix="$run_id" \
  -X metrics.port=0 -X scorer.poll.interval.s=1 >"$tmp/score.log" 2>&1 &
scorer=$!
pids+=("$scorer")
wait_log() { # PATTERN: up to 30 s
  for _ in $(seq 300); do grep -q "$1" "$tmp/score.log" && return 0; kill -0 "$scorer" 2>/dev/null || return 1; sleep 0.1; done
  return 1
}
check "the scorer resolved production in S3 and loaded version 1" wait_log "model sentinel version 1 "
sentinel registry promote "$lo" "${X[@]}" >/dev/null 2>&1
check "promote $lo: the scorer swapped to version $lo" wait_log "model sentinel: version $lo replaces 1"
sentinel registry promote "$hi" "${X[@]}" >/dev/null 2>&1
check "promote the corrupted $hi: refused, version $lo keeps serving" \
  wait_log "model version $hi refused, version $lo keeps serving"
grep -E "version $lo replaces|refused" "$tmp/score.log" | sed 's/^/  log: /'
kill -TERM "$scorer" 2>/dev/null
wait "$scorer"
rc=$?
check "the scorer exits 0 on SIGTERM (got $rc)" test "$rc" = 0

# ---- 4. credentials refused, server down
sentinel registry list "${X[@]}" -X s3.access.key.id=sentinel -X s3.secret.access.key=not-the-secret \
  >"$tmp/403.out" 2>&1
rc=$?
sed 's/^/  /' "$tmp/403.out"
check "a wrong secret: exit 1 (got $rc)" test "$rc" = 1
check "... with a clear error naming the URL and the 403" \
  test -n "$(grep -F "$URL" "$tmp/403.out" | grep "access denied.*403")"
check "... and the secret is not printed" test -z "$(grep -F not-the-secret "$tmp/403.out")"
sentinel registry alias production "${X[@]}" -X s3.endpoint=http://127.0.0.1:1 -X s3.max.retries=0 \
  >"$tmp/down.out" 2>&1
rc=$?
sed 's/^/  /' "$tmp/down.out"
check "no S3 server: exit 1 (got $rc), transient, naming the URL" \
  test "$rc" = 1 -a -n "$(grep -F "$URL: S3 unreachable" "$tmp/down.out")"
sentinel registry list -X "registry.url=s3://no-such-bucket-$$" -X "s3.endpoint=$S3_ENDPOINT" >"$tmp/nob.out" 2>&1
rc=$?
check "a missing bucket: exit 1 (got $rc), 'no such bucket'" \
  test "$rc" = 1 -a -n "$(grep "no such bucket" "$tmp/nob.out")"

sn_done
