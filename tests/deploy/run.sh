#!/usr/bin/env bash
# Runs every deployment check (tests/deploy/check_*.sh) and prints, last,
#   deploy: N passed, M failed, K skipped
# Exits non-zero when any check failed. Installs the pinned tools first
# (scripts/deploy-tools; quick when they are cached) unless SN_DEPLOY_TOOLS=skip.
#
#   tests/deploy/run.sh                 all checks
#   tests/deploy/run.sh helm terraform  only check_helm.sh and check_terraform.sh
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ "${SN_DEPLOY_TOOLS:-}" != "skip" ]; then
  if ! "$root/scripts/deploy-tools"; then
    echo "deploy: scripts/deploy-tools failed; the checks that need a missing tool will fail" >&2
  fi
fi

SN_DEPLOY_WORK="$(mktemp -d)"
export SN_DEPLOY_WORK
trap 'rm -rf "$SN_DEPLOY_WORK"' EXIT

if [ $# -gt 0 ]; then
  scripts=()
  for n in "$@"; do scripts+=("$here/check_$n.sh"); done
else
  # check_helm renders the manifests the later checks read.
  scripts=("$here/check_helm.sh")
  for s in "$here"/check_*.sh; do [ "$s" = "$here/check_helm.sh" ] || scripts+=("$s"); done
fi

passed=0 failed=0 skipped=0
for s in "${scripts[@]}"; do
  name="$(basename "$s" .sh)"
  echo "# $name"
  start=$(date +%s)
  out="$SN_DEPLOY_WORK/$name.out"
  bash "$s" 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^ok - ' "$out")
  f=$(grep -c '^not ok - ' "$out")
  k=$(grep -c '^skip - ' "$out")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "not ok - $name exited $rc without naming a failed check"
    f=1
  fi
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + k))
  echo "# $name: $p passed, $f failed, $k skipped ($(($(date +%s) - start)) s)"
done

echo "deploy: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
