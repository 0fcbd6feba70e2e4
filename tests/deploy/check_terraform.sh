#!/usr/bin/env bash
# infra/terraform without a cloud account and without provider downloads:
#  * tofu fmt -check (formatting, and a full parse of the HCL);
#  * tflint with its bundled terraform ruleset (unused declarations, typed and
#    documented variables and outputs, naming, deprecated syntax);
#  * tofu init + validate: only with an AWS provider in a local mirror
#    (SN_TF_PLUGIN_DIR); the registry is unreachable here, so otherwise it is
#    tried, and reported as skipped when the download is what fails;
#  * the security and wiring rules (lib/terraform_policy.py) on the HCL as JSON.
# shellcheck source=tests/deploy/lib.sh
source "$(dirname "$0")/lib.sh"

tfdir="$ROOT/infra/terraform"
need_tool tofu || finish
check "tofu fmt -check -recursive infra/terraform" tofu fmt -check -recursive -diff "$tfdir"

if need_tool tflint; then
  check "tflint (bundled terraform ruleset, preset all)" \
    tflint --chdir="$tfdir" --config="$DEPLOY_DIR/tflint.hcl" --format=compact
fi

# init/validate in a copy: nothing (.terraform, lock file) is written to the repo.
copy="$WORK/tf"
rm -rf "$copy" && mkdir -p "$copy" && cp "$tfdir"/*.tf "$copy"/
export TF_IN_AUTOMATION=1 TF_CLI_CONFIG_FILE=/dev/null
init_args=(-backend=false -input=false -no-color)
[ -n "${SN_TF_PLUGIN_DIR:-}" ] && init_args+=(-plugin-dir="$SN_TF_PLUGIN_DIR")
if out="$(cd "$copy" && timeout 120 tofu init "${init_args[@]}" 2>&1)"; then
  ok "tofu init -backend=false"
  check "tofu validate" bash -c "cd '$copy' && tofu validate -no-color"
elif grep -qiE 'Failed to query available provider packages|could not connect|no such host|dial tcp|Failed to install provider|i/o timeout' <<<"$out"; then
  skip "tofu init and validate" "the AWS provider cannot be downloaded here; validate needs its schema"
else
  not_ok "tofu init -backend=false" "$out"
fi

if need_tool hcl2json; then
  mkdir -p "$WORK/tfjson"
  conv_ok=1
  for f in "$tfdir"/*.tf; do
    hcl2json "$f" >"$WORK/tfjson/$(basename "$f" .tf).json" 2>"$WORK/tfjson.err" || {
      conv_ok=0
      not_ok "hcl2json $(basename "$f")" "$(cat "$WORK/tfjson.err")"
    }
  done
  render_all || true
  if [ $conv_ok -eq 1 ] && [ -s "$WORK/rendered/production.yaml" ]; then
    check "terraform policy: SSE-KMS, versioning, lifecycle, public access, least-privilege IRSA, outputs = chart values, topics = the binary's" \
      python3 "$DEPLOY_DIR/lib/terraform_policy.py" "$WORK/tfjson" "$CHART/values.schema.json" "$WORK/rendered/production.yaml"
    # Negative control: a scorer that may write the registry, a drift role that
    # writes it without retraining, an unversioned bucket, a helm_values key the
    # chart lacks and an undeclared drift-events topic must all be reported.
    cp -r "$WORK/tfjson" "$WORK/tfjson-bad"
    python3 - "$WORK/tfjson-bad" <<'PY'
import json, os, sys
d = sys.argv[1]
irsa = json.load(open(f"{d}/irsa.json"))
irsa["locals"][0]["roles"]["scorer"]["write_objects"] = ["${local.registry_objects}"]
irsa["locals"][0]["roles"]["drift"]["write_objects"] = ["${local.registry_objects}"]
json.dump(irsa, open(f"{d}/irsa.json", "w"))
msk = json.load(open(f"{d}/msk.json"))
del msk["locals"][0]["kafka_topics"]["drift-events"]
json.dump(msk, open(f"{d}/msk.json", "w"))
s3 = json.load(open(f"{d}/s3.json"))
s3["resource"]["aws_s3_bucket_versioning"]["data"][0]["versioning_configuration"][0]["status"] = "Suspended"
json.dump(s3, open(f"{d}/s3.json", "w"))
out = json.load(open(f"{d}/outputs.json"))
out["output"]["helm_values"][0]["value"]["scorer"]["replicaz"] = 3
json.dump(out, open(f"{d}/outputs.json", "w"))
PY
    out="$(python3 "$DEPLOY_DIR/lib/terraform_policy.py" "$WORK/tfjson-bad" "$CHART/values.schema.json" "$WORK/rendered/production.yaml")"
    what="a writing scorer, a drift role that always writes, an unversioned bucket, a stray output key, a missing drift-events topic"
    if grep -q 'scorer: writes' <<<"$out" && grep -q 'drift: writes' <<<"$out" && grep -q 'versioning' <<<"$out" &&
      grep -q 'replicaz' <<<"$out" && grep -q 'lacks drift-events' <<<"$out"; then
      ok "terraform policy reports $what (negative control)"
    else
      not_ok "terraform policy reports $what (negative control)" "$out"
    fi
  fi
fi
finish
