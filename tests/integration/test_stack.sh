#!/usr/bin/env bash
# tests/integration/test_stack.sh — checks that the local stack (infra/local/stack) really works.
# Needs the stack up:  infra/local/stack up && tests/integration/test_stack.sh
# Checks: Kafka produce+consume (kcat, idempotent producer), Kafka transactions through librdkafka (the product's
# client; skipped when no C compiler/librdkafka headers), redis PING, S3 PUT+GET with the right credentials, and
# a PUT signed with a wrong secret rejected with 403 (and not stored).
# Prints `test_stack: N passed, M failed` last; exits non-zero when anything failed.
set -uo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STACK=$REPO_DIR/infra/local/stack

passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }
finish() {
  if [ $skipped -gt 0 ]; then
    echo "test_stack: $passed passed, $failed failed, $skipped skipped"
  else
    echo "test_stack: $passed passed, $failed failed"
  fi
  [ $failed -eq 0 ]
  exit
}

if ! "$STACK" status; then
  fail stack "the local stack is not (entirely) up: run infra/local/stack up"
  finish
fi
eval "$("$STACK" env)"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
RUN_ID="$$-$RANDOM-$(date +%s)"

# --- 1. Kafka: produce + consume with kcat -------------------------------------------------------------------
test_kafka_roundtrip() {
  local topic="test-stack-$RUN_ID" msg="hello-sentinel-$RUN_ID" got
  if ! printf '%s\n' "$msg" | timeout 30 kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -P -t "$topic" -k key1 \
    -X enable.idempotence=true 2>"$TMP/kp.err"; then
    fail kafka_produce_consume "kcat produce failed: $(tail -n 3 "$TMP/kp.err")"
    return
  fi
  got=$(timeout 30 kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -C -t "$topic" -o beginning -c 1 -e -q 2>"$TMP/kc.err")
  if [ "$got" = "$msg" ]; then
    pass kafka_produce_consume
  else
    fail kafka_produce_consume "consumed '${got}' instead of '$msg' ($(tail -n 3 "$TMP/kc.err"))"
  fi
}

# --- 2. Kafka: a committed transaction through librdkafka, read back read_committed ---------------------------
test_kafka_transaction() {
  if ! command -v cc >/dev/null 2>&1 || [ ! -f /usr/include/librdkafka/rdkafka.h ]; then
    skip kafka_transaction "needs cc and librdkafka-dev (scripts/setup)"
    return
  fi
  cat >"$TMP/tx.c" <<'EOF'
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
static int check(rd_kafka_error_t *e, const char *what) {
  if (!e) return 0;
  fprintf(stderr, "%s: %s\n", what, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return 1;
}
int main(int argc, char **argv) {
  const char *brokers = argv[1], *topic = argv[2], *payload = argv[3], *txid = argv[4];
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
      rd_kafka_conf_set(conf, "transactional.id", txid, err, sizeof err)) {
    fprintf(stderr, "conf: %s\n", err);
    return 1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) { fprintf(stderr, "new: %s\n", err); return 1; }
  if (check(rd_kafka_init_transactions(rk, 30000), "init_transactions")) return 1;
  /* an aborted transaction first: its record must stay invisible to a read_committed consumer */
  if (check(rd_kafka_begin_transaction(rk), "begin(abort)")) return 1;
  if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE("aborted", 7), RD_KAFKA_V_END)) return 1;
  rd_kafka_flush(rk, 10000);
  if (check(rd_kafka_abort_transaction(rk, 30000), "abort_transaction")) return 1;
  if (check(rd_kafka_begin_transaction(rk), "begin")) return 1;
  if (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE((void *)payload, strlen(payload)),
                        RD_KAFKA_V_END)) return 1;
  if (check(rd_kafka_commit_transaction(rk, 30000), "commit_transaction")) return 1;
  rd_kafka_destroy(rk);
  return 0;
}
EOF
  if ! cc -o "$TMP/tx" "$TMP/tx.c" -lrdkafka 2>"$TMP/cc.err"; then
    fail kafka_transaction "could not build the librdkafka probe: $(tail -n 3 "$TMP/cc.err")"
    return
  fi
  local topic="test-stack-tx-$RUN_ID" msg="committed-$RUN_ID" got
  if ! timeout 60 "$TMP/tx" "$KAFKA_BOOTSTRAP_SERVERS" "$topic" "$msg" "test-stack-$RUN_ID" 2>"$TMP/tx.err"; then
    fail kafka_transaction "transactional produce failed: $(tail -n 3 "$TMP/tx.err")"
    return
  fi
  got=$(timeout 30 kcat -b "$KAFKA_BOOTSTRAP_SERVERS" -C -t "$topic" -o beginning -e -q \
    -X isolation.level=read_committed 2>"$TMP/txc.err")
  if [ "$got" = "$msg" ]; then
    pass kafka_transaction
  else
    fail kafka_transaction "read_committed consumer saw '${got}' instead of only '$msg'"
  fi
}

# --- 3. redis PING ---------------------------------------------------------------------------------------------
test_redis_ping() {
  local got
  got=$(timeout 10 redis-cli -u "$REDIS_URL" ping 2>&1)
  if [ "$got" = PONG ]; then pass redis_ping; else fail redis_ping "got '$got'"; fi
}

# --- 4. S3 PUT + GET with the right credentials ----------------------------------------------------------------
s3() { # s3 KEY SECRET CURL-ARGS...
  local key=$1 secret=$2
  shift 2
  curl -sS --max-time 20 --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$key:$secret" "$@"
}
test_s3_put_get() {
  local obj="$S3_ENDPOINT/$S3_BUCKET/test-stack/ok-$RUN_ID.txt" body="payload $RUN_ID" code hash
  printf '%s' "$body" >"$TMP/body"
  hash=$(sha256sum "$TMP/body" | cut -d' ' -f1)
  code=$(s3 "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -o "$TMP/put.out" -w '%{http_code}' -X PUT \
    -H "x-amz-content-sha256: $hash" --data-binary @"$TMP/body" "$obj") || code=000
  if [ "$code" != 200 ]; then fail s3_put_get "PUT gave HTTP $code: $(cat "$TMP/put.out")"; return; fi
  code=$(s3 "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -o "$TMP/get.out" -w '%{http_code}' \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$obj") || code=000
  if [ "$code" = 200 ] && cmp -s "$TMP/body" "$TMP/get.out"; then
    pass s3_put_get
  else
    fail s3_put_get "GET gave HTTP $code: $(head -c 300 "$TMP/get.out")"
  fi
  s3 "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -o /dev/null -X DELETE \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$obj" || true
}

# --- 5. S3 PUT signed with a wrong secret is rejected ----------------------------------------------------------
test_s3_wrong_secret() {
  local obj="$S3_ENDPOINT/$S3_BUCKET/test-stack/forged-$RUN_ID.txt" code
  code=$(s3 "$AWS_ACCESS_KEY_ID" "not-the-secret" -o "$TMP/bad.out" -w '%{http_code}' -X PUT \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --data-binary "forged" "$obj") || code=000
  if [ "$code" != 403 ]; then
    fail s3_wrong_secret_rejected "PUT with a wrong secret gave HTTP $code, expected 403: $(cat "$TMP/bad.out")"
    return
  fi
  code=$(s3 "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" -o /dev/null -w '%{http_code}' -I \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$obj") || code=000
  if [ "$code" = 404 ]; then
    pass s3_wrong_secret_rejected
  else
    fail s3_wrong_secret_rejected "the forged object exists after the 403 (HEAD gave $code)"
  fi
}

test_kafka_roundtrip
test_kafka_transaction
test_redis_ping
test_s3_put_get
test_s3_wrong_secret
finish
