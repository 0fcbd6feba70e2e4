#!/usr/bin/env bash
# The Dockerfile, checked without a Docker engine: stages, bases, user and
# entrypoint, and the runtime stage's packages against what the binary built
# from this tree links (ldd + dpkg -S; lib/dockerfile_check.py).
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

for t in ldd readelf dpkg pkg-config cmake; do need_tool "$t" || finish; done
if out="$(build_sentinel 2>&1)"; then
  ok "sentinel binary built ($BUILD_DIR/sentinel)"
else
  not_ok "sentinel binary built ($BUILD_DIR)" "$out"
  finish
fi
python3 "$DEPLOY_DIR/lib/dockerfile_check.py" "$ROOT" "$BUILD_DIR/sentinel" || _failed=1

# Negative control: a runtime stage without libxgboost0 (linked directly) and
# libjansson4 (linked through pkg-config) must be refused, naming both.
sed -E 's/ libxgboost0 / /; s/ libjansson4 / /' "$ROOT/Dockerfile" >"$WORK/Dockerfile.missing"
out="$(python3 "$DEPLOY_DIR/lib/dockerfile_check.py" "$ROOT" "$BUILD_DIR/sentinel" "$WORK/Dockerfile.missing")"
if grep -q '^not ok' <<<"$out" && grep -q 'libxgboost0' <<<"$out" && grep -q 'libjansson4' <<<"$out"; then
  ok "a runtime stage missing libxgboost0 and libjansson4 is refused (negative control)"
else
  not_ok "a runtime stage missing libxgboost0 and libjansson4 is refused (negative control)" "$out"
fi
finish
