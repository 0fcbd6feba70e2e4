#!/usr/bin/env bash
# Every config key the chart writes exists in the binary's config table: each
# rendered sentinel.conf (one per role and value set) goes through
# `sentinel config --check -c FILE` of the binary built from this tree, with the
# SENTINEL_* variables the pods get (secret references) set to dummies, so the
# keys behind them are checked too. Exit 2 from the binary names the bad key.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

need_tool helm || finish
if out="$(build_sentinel 2>&1)"; then
  ok "sentinel binary built ($BUILD_DIR/sentinel)"
else
  not_ok "sentinel binary built ($BUILD_DIR)" "$out"
  finish
fi
bin="$BUILD_DIR/sentinel"
render_all || true

# Extracts <role>.conf files and the SENTINEL_* names used by each role's pods.
split() { # RENDERED OUTDIR
  python3 - "$1" "$2" <<'PY'
import os, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-config"):
        for key, text in d["data"].items():
            open(os.path.join(out, key), "w").write(text)
def containers(d):
    s = d.get("spec") or {}
    if d["kind"] == "CronJob": return s["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    if d["kind"] in ("Deployment", "Job"): return s["template"]["spec"]["containers"]
    if d["kind"] == "WorkflowTemplate": return [t["container"] for t in s["templates"] if "container" in t]
    return []
for d in docs:
    for c in containers(d):
        role = d["metadata"]["labels"]["app.kubernetes.io/component"]
        names = sorted(e["name"] for e in c.get("env", []) if e["name"].startswith("SENTINEL_"))
        with open(os.path.join(out, role + ".env"), "a") as f:
            f.writelines(n + "\n" for n in names)
PY
}

while IFS='|' read -r name _; do
  f="$WORK/rendered/$name.yaml"
  [ -s "$f" ] || { not_ok "config keys ($name values)" "not rendered: see check_helm"; continue; }
  dir="$WORK/conf/$name"
  if ! out="$(split "$f" "$dir" 2>&1)"; then
    not_ok "config files extracted ($name values)" "$out"
    continue
  fi
  for conf in "$dir"/*.conf; do
    role="$(basename "$conf" .conf)"
    envs=(PATH=/usr/bin:/bin)
    if [ -f "$dir/$role.env" ]; then
      while read -r v; do envs+=("$v=dummy-for-check"); done < <(sort -u "$dir/$role.env")
    fi
    keys="$(grep -vc '^#' "$conf")"
    # env -i: only the chart's variables, none of the caller's SENTINEL_*.
    check "$name/$role.conf: $keys keys and $((${#envs[@]} - 1)) SENTINEL_* variables known to the binary" \
      env -i "${envs[@]}" "$bin" config --check -c "$conf"
  done
done < <(render_sets)

# Negative control: an unknown key is refused with exit 2, naming the key.
printf 'log.level=info\nno.such.key=1\n' >"$WORK/bad.conf"
out="$(env -i PATH=/usr/bin:/bin "$bin" config --check -c "$WORK/bad.conf" 2>&1)"
rc=$?
if [ $rc -eq 2 ] && grep -q 'no.such.key' <<<"$out"; then
  ok "an unknown key is refused (exit 2, named)"
else
  not_ok "an unknown key is refused (exit 2, named)" "exit $rc: $out"
fi
finish
