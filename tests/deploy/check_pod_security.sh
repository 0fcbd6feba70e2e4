#!/usr/bin/env bash
# Every pod template the chart renders (Deployments, CronJob, Job, Argo
# WorkflowTemplate), for every value set, meets the "restricted" Pod Security
# Standard and the project's read-only-root rules (lib/pod_security.py). A
# deliberately loosened pod must be caught, so the checker is known to bite.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

need_tool helm || finish
render_all || true
while IFS='|' read -r name _; do
  f="$WORK/rendered/$name.yaml"
  if [ ! -s "$f" ]; then
    not_ok "restricted pod security ($name values)" "not rendered: see check_helm"
    continue
  fi
  check "restricted pod security ($name values, $(python3 - "$f" <<'PY'
import sys, yaml
kinds = [d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d]
print(", ".join(f"{kinds.count(k)} {k}" for k in ("Deployment", "CronJob", "Job", "WorkflowTemplate") if k in kinds))
PY
))" python3 "$DEPLOY_DIR/lib/pod_security.py" "$f"
done < <(render_sets)

# Negative control: privilege escalation, a root user and a writable root must be found.
loose="$WORK/loose.yaml"
if helm template sentinel "$CHART" --kube-version "$KUBE_VERSION" \
  --set securityContext.allowPrivilegeEscalation=true --set securityContext.readOnlyRootFilesystem=false \
  --set podSecurityContext.runAsNonRoot=false --set securityContext.runAsNonRoot=false \
  --set 'securityContext.capabilities.drop={}' >"$loose" 2>&1; then
  out="$(python3 "$DEPLOY_DIR/lib/pod_security.py" "$loose")"
  if grep -q allowPrivilegeEscalation <<<"$out" && grep -q readOnlyRootFilesystem <<<"$out" &&
    grep -q runAsNonRoot <<<"$out" && grep -q 'drop ALL' <<<"$out"; then
    ok "a loosened pod is reported (negative control)"
  else
    not_ok "a loosened pod is reported (negative control)" "$out"
  fi
else
  not_ok "a loosened pod renders for the negative control" "$(cat "$loose")"
fi
finish
