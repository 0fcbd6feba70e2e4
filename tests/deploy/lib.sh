# Shared by the tests/deploy/check_*.sh scripts (sourced, not run).
#
# Each check prints one line per assertion, TAP-like:
#   ok - <what>
#   not ok - <what>      (followed by indented details)
#   skip - <what> (<why>)
# and exits non-zero when any assertion failed. run.sh counts the lines.

set -uo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DEPLOY_DIR/../.." && pwd)"
CHART="$ROOT/helm/sentinel"
SN_CACHE_DIR="${SN_CACHE_DIR:-$HOME/.cache/sentinel}"
TOOLS_BIN="$SN_CACHE_DIR/bin"
export PATH="$TOOLS_BIN:$PATH"
# The Kubernetes version the chart is rendered for and validated against (EKS,
# infra/terraform variable kubernetes_version).
KUBE_VERSION="${SN_KUBE_VERSION:-1.34.0}"
# Where the rendered manifests and the binary go; run.sh shares one between checks.
WORK="${SN_DEPLOY_WORK:-}"
if [ -z "$WORK" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
fi
BUILD_DIR="${SN_BUILD_DIR:-$ROOT/build-deploy}"

_failed=0
ok() { printf 'ok - %s\n' "$1"; }
not_ok() {
  printf 'not ok - %s\n' "$1"
  shift
  if [ $# -gt 0 ]; then printf '%s\n' "$@" | sed 's/^/    /'; fi
  _failed=1
}
skip() { printf 'skip - %s (%s)\n' "$1" "$2"; }
# check "what" command...: ok when the command succeeds; its output is shown on failure.
check() {
  local what="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$what"; else not_ok "$what" "$(printf '%s\n' "$out" | tail -n 25)"; fi
}
finish() { exit "$_failed"; }

need_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  not_ok "$1 is installed" "not on PATH ($TOOLS_BIN first): run scripts/deploy-tools"
  return 1
}

# The value sets the chart is rendered with: name|helm arguments.
render_sets() {
  cat <<SETS
default|
production|-f $CHART/ci/production-values.yaml
argocd|-f $ROOT/deploy/argocd/values/production.yaml
fallback|-f $CHART/ci/production-values.yaml --set keda.enabled=false --set train.job.enabled=true --set serviceMonitor.enabled=false --set scorer.autoscaling.enabled=false
retrain|-f $CHART/ci/production-values.yaml -f $CHART/ci/retrain-values.yaml
SETS
}

# Renders every value set into $WORK/rendered/<name>.yaml once (helm template).
# Returns non-zero (having said why) when one does not render.
render_all() {
  local name args rc=0
  mkdir -p "$WORK/rendered"
  while IFS='|' read -r name args; do
    [ -s "$WORK/rendered/$name.yaml" ] && continue
    # shellcheck disable=SC2086
    if ! helm template sentinel "$CHART" --namespace sentinel --kube-version "$KUBE_VERSION" \
      $args >"$WORK/rendered/$name.yaml" 2>"$WORK/rendered/$name.err"; then
      rm -f "$WORK/rendered/$name.yaml"
      rc=1
    fi
  done < <(render_sets)
  return $rc
}

# Builds the sentinel binary (the project's own build, in its own build dir) once.
build_sentinel() {
  [ -x "$BUILD_DIR/sentinel" ] && [ -n "${SN_DEPLOY_NO_REBUILD:-}" ] && return 0
  local gen=()
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" "${gen[@]}" -DSN_TESTS=OFF >"$WORK/cmake-configure.log" 2>&1 || {
      cat "$WORK/cmake-configure.log"
      return 1
    }
  fi
  cmake --build "$BUILD_DIR" --target sentinel >"$WORK/cmake-build.log" 2>&1 || {
    tail -n 40 "$WORK/cmake-build.log"
    return 1
  }
  export SN_DEPLOY_NO_REBUILD=1
}
