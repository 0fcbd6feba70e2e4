#!/usr/bin/env bash
# The GitOps manifests (deploy/argocd): the root Application (app of apps) and
# what it syncs, validated with the Argo CD CRD validator, plus their wiring:
# automated sync with prune and self-heal, paths and value files that exist in
# this repository, one repository URL, the namespace the IRSA roles trust.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

dir="$ROOT/deploy/argocd"
models="$SN_CACHE_DIR/crd-models"
need_tool node || finish
if [ -d "$models/node_modules/@kubernetes-models/argo-cd" ]; then
  check "Argo CD objects valid (Application, AppProject)" bash -c "python3 -c '
import json, sys, yaml, glob
for p in sorted(glob.glob(sys.argv[1] + \"/**/*.yaml\", recursive=True)):
    if \"/values/\" in p: continue
    for d in yaml.safe_load_all(open(p)):
        if d: print(json.dumps(d))' '$dir' | node '$DEPLOY_DIR/lib/crd_validate.mjs' '$models'"
else
  not_ok "Argo CD CRD validator in $models" "run scripts/deploy-tools"
fi

check "app of apps: automated prune + selfHeal, paths and value files exist" python3 - "$dir" "$ROOT" <<'PY'
import glob, os, sys, yaml
d, root = sys.argv[1], sys.argv[2]
objs = []
for p in sorted(glob.glob(d + "/**/*.yaml", recursive=True)):
    if "/values/" in p:
        continue
    objs += [(p, o) for o in yaml.safe_load_all(open(p)) if o]
apps = [(p, o) for p, o in objs if o["kind"] == "Application"]
projects = {o["metadata"]["name"] for _, o in objs if o["kind"] == "AppProject"} | {"default"}
errs, repos = [], set()
root_apps = [o for p, o in apps if os.path.basename(p) == "root.yaml"]
assert len(root_apps) == 1, "deploy/argocd/root.yaml must hold the root Application"
for p, o in apps:
    n, spec = o["metadata"]["name"], o["spec"]
    auto = spec.get("syncPolicy", {}).get("automated", {})
    if auto.get("prune") is not True or auto.get("selfHeal") is not True:
        errs.append(f"{n}: syncPolicy.automated needs prune and selfHeal true")
    src = spec["source"]
    repos.add(src["repoURL"])
    path = os.path.join(root, src["path"])
    if not os.path.isdir(path):
        errs.append(f"{n}: source.path {src['path']} is not a directory of this repository")
    if spec["project"] not in projects:
        errs.append(f"{n}: project {spec['project']} is not declared")
    if "helm" in src:
        if not os.path.exists(os.path.join(path, "Chart.yaml")):
            errs.append(f"{n}: {src['path']} is not a chart")
        for vf in src["helm"].get("valueFiles", []):
            full = os.path.normpath(os.path.join(path, vf))
            if not full.startswith(root + os.sep) or not os.path.exists(full):
                errs.append(f"{n}: value file {vf} is not a file inside the repository")
        if spec["destination"].get("namespace") != "sentinel":
            errs.append(f"{n}: destination namespace must be sentinel (the IRSA roles trust sentinel/*)")
rootsrc = root_apps[0]["spec"]["source"]
children = glob.glob(os.path.join(root, rootsrc["path"]) + "/**/*.yaml", recursive=True)
if not any(yaml.safe_load(open(c)).get("kind") == "Application" for c in children):
    errs.append("the root Application's path holds no Application")
for _, o in objs:
    if o["kind"] == "AppProject":
        repos |= set(o["spec"].get("sourceRepos", []))
if len(repos) != 1:
    errs.append(f"more than one repository URL: {sorted(repos)}")
for e in errs:
    print(e)
sys.exit(1 if errs else 0)
PY
finish
