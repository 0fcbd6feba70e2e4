#!/usr/bin/env python3
"""What infra/terraform must hold, asserted on its HCL (as JSON from hcl2json),
since `terraform validate` and `plan` need the AWS provider, which cannot be
downloaded here.

usage: terraform_policy.py TF_JSON_DIR VALUES_SCHEMA RENDERED_PRODUCTION.yaml
TF_JSON_DIR holds one <file>.json per .tf file. Prints problems; exits 1 if any.
"""
import json
import os
import re
import sys

import yaml

problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v


def first(x):
    return x[0] if isinstance(x, list) and x else (x if isinstance(x, dict) else {})


def res(tf, rtype, name=None):
    """The blocks of a resource type (all names, or one), as dicts."""
    blocks = tf.get("resource", {}).get(rtype, {})
    if name is not None:
        return first(blocks.get(name))
    return {n: first(b) for n, b in blocks.items()}


def data(tf, dtype, name):
    return first(tf.get("data", {}).get(dtype, {}).get(name))


def s(x):
    return json.dumps(x)


def schema_paths(schema, prefix=""):
    """Every dotted property path the chart's values schema defines."""
    out = set()
    for k, v in (schema.get("properties") or {}).items():
        p = f"{prefix}{k}"
        out.add(p)
        out |= schema_paths(v, p + ".")
    return out


def value_paths(v, prefix=""):
    out = set()
    if isinstance(v, dict):
        for k, x in v.items():
            p = f"{prefix}{k}"
            out.add(p)
            out |= value_paths(x, p + ".")
    return out


def variables_of(tf):
    return tf.get("variable", {})


def binary_topics(config_md):
    """The default topic names in the binary's config reference (topic.*, drift.events.topic)."""
    out = {}
    for line in open(config_md):
        m = re.match(r"\| `(topic\.[a-z.]+|drift\.events\.topic)` \| string \| `([^`]*)` \|", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def main():
    tfdir, schema_path, rendered = sys.argv[1:4]
    tf, local_blocks = {}, []
    for f in sorted(os.listdir(tfdir)):
        if f.endswith(".json"):
            doc = json.load(open(os.path.join(tfdir, f)))
            blocks = doc.pop("locals", [])
            local_blocks += blocks if isinstance(blocks, list) else [blocks]
            merge(tf, doc)

    need("module" not in tf, "uses modules: they cannot be downloaded here; use plain resources")
    prov = first(tf.get("terraform")).get("required_providers")
    need("hashicorp/aws" in s(prov), "required_providers lacks hashicorp/aws")

    # S3: SSE-KMS with the customer-managed key, versioning, lifecycle, no public access.
    sse = res(tf, "aws_s3_bucket_server_side_encryption_configuration")
    need(any('"aws:kms"' in s(b) and "aws_kms_key." in s(b) for b in sse.values()),
         "the bucket is not encrypted with SSE-KMS and the stack's customer-managed key")
    need(any('"Enabled"' in s(b) for b in res(tf, "aws_s3_bucket_versioning").values()),
         "bucket versioning is not Enabled")
    pab = list(res(tf, "aws_s3_bucket_public_access_block").values())
    need(pab and all(pab[0].get(k) is True for k in ("block_public_acls", "block_public_policy",
                                                     "ignore_public_acls", "restrict_public_buckets")),
         "public access is not blocked (all four settings true)")
    lc = s(res(tf, "aws_s3_bucket_lifecycle_configuration"))
    need("transition" in lc and ("STANDARD_IA" in lc or "GLACIER" in lc),
         "no lifecycle transition to cheaper storage")
    need("aws:SecureTransport" in s(tf.get("data", {}).get("aws_iam_policy_document", {}).get("bucket")),
         "the bucket policy does not deny insecure transport")
    keys = res(tf, "aws_kms_key")
    need(keys and all(k.get("enable_key_rotation") is True for k in keys.values()), "KMS key rotation off")

    # IRSA: one role per sentinel role, least privilege on the two prefixes.
    locs = {}
    for block in local_blocks:
        locs.update(block)
    roles = locs.get("roles", {})
    need(set(roles) == {"scorer", "archiver", "trainer", "drift"}, f"IRSA roles {sorted(roles)}")
    A, R = "${local.archive_objects}", "${local.registry_objects}"
    AP, RP = "${var.archive_prefix}", "${var.registry_prefix}"
    # The drift role writes the registry only when it retrains on drift.
    drift_writes = "${var.drift_retrain_on_drift ? [local.registry_objects] : []}"
    want = {
        "scorer": ([R], [], [RP]),
        # The archiver lists its prefix (start-up probe, files already uploaded).
        "archiver": ([], [A], [AP]),
        "trainer": ([A, R], [R], [AP, RP]),
        "drift": ([A, R], drift_writes, [AP, RP]),
    }
    for role, (reads, writes, lists) in want.items():
        r = roles.get(role, {})
        need(sorted(r.get("read_objects", [])) == sorted(reads),
             f"{role}: reads {r.get('read_objects')} should be {reads}")
        w = r.get("write_objects", [])
        need(w == writes if isinstance(writes, str) else (isinstance(w, list) and sorted(w) == sorted(writes)),
             f"{role}: writes {w} should be {writes}")
        need(sorted(r.get("list_prefixes", [])) == sorted(lists),
             f"{role}: lists {r.get('list_prefixes')} should be {lists}")
    need(first(variables_of(tf).get("drift_retrain_on_drift")).get("default") is False,
         "var.drift_retrain_on_drift should default to false (least privilege, as the chart's drift.retrainOnDrift)")
    need(locs.get("archive_objects", "").endswith("/${var.archive_prefix}*") and
         locs.get("registry_objects", "").endswith("/${var.registry_prefix}*"),
         "object ARNs are not limited to the archive/registry prefixes")
    pol = s(tf.get("data", {}).get("aws_iam_policy_document", {}).get("irsa"))
    for action in re.findall(r'"(s3:[A-Za-z*]+|kms:[A-Za-z*]+)"', pol):
        need("*" not in action, f"IRSA policy grants a wildcard action {action}")
    need("kms:ViaService" in pol, "IRSA KMS permissions are not limited to use through S3")
    trust = s(tf.get("data", {}).get("aws_iam_policy_document", {}).get("irsa_assume"))
    need(":sub" in trust and "system:serviceaccount:${var.namespace}:${each.value.service_account}" in trust,
         "IRSA trust is not bound to the service account (sub)")
    need(":aud" in trust and "sts.amazonaws.com" in trust, "IRSA trust does not check the audience")

    # The chart's service accounts are the ones the roles trust.
    variables = tf.get("variable", {})
    ns = first(variables.get("namespace")).get("default")
    sas = first(variables.get("service_accounts")).get("default", {})
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    chart_sas = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    for role, name in sas.items():
        need(name in chart_sas, f"service account {name} ({role}) is not one the chart creates: {sorted(chart_sas)}")
    need(ns == "sentinel", f"var.namespace default {ns!r}: the chart's checks render into namespace sentinel")

    # Data services: encrypted, authenticated.
    msk = s(res(tf, "aws_msk_cluster"))
    need('"client_broker": "TLS"' in msk and '"scram": true' in msk and '"unauthenticated": false' in msk,
         "MSK must require TLS and SASL/SCRAM")
    need("encryption_at_rest_kms_key_arn" in msk, "MSK at-rest encryption does not use the stack's key")
    redis = res(tf, "aws_elasticache_replication_group")
    need(redis and all(r.get("transit_encryption_enabled") is True and r.get("at_rest_encryption_enabled") is True
                       and "auth_token" in r for r in redis.values()),
         "ElastiCache must encrypt in transit and at rest and use an AUTH token")
    lt = s(res(tf, "aws_launch_template"))
    need('"http_tokens": "required"' in lt and '"http_put_response_hop_limit": 1' in lt,
         "nodes must require IMDSv2 with hop limit 1 (pods must not use the node role)")
    need("encryption_config" in s(res(tf, "aws_eks_cluster")), "EKS secrets are not encrypted with KMS")

    # Outputs that feed the chart: every key of helm_values is a chart value.
    hv = first(tf.get("output", {}).get("helm_values")).get("value", {})
    paths = schema_paths(json.load(open(schema_path)))
    bad = sorted(p for p in value_paths(hv) if p not in paths)
    need(hv and not bad, f"output helm_values has keys the chart does not define: {bad}")
    for p in ("archive.url", "registry.url", "s3.region", "drift.retrainOnDrift"):
        need(p in value_paths(hv), f"output helm_values lacks {p}")
    need("var.drift_retrain_on_drift" in s(hv.get("drift")),
         "helm_values drift.retrainOnDrift is not var.drift_retrain_on_drift (chart and role would disagree)")

    # Every topic the binary uses by default is declared (brokers do not auto-create).
    topics = locs.get("kafka_topics", {})
    config_md = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "CONFIG.md")
    wanted = binary_topics(config_md)
    need(len(wanted) >= 6, f"docs/CONFIG.md: found only topics {wanted}")
    for key, name in wanted.items():
        need(name in topics, f"kafka_topics lacks {name} ({key}'s default)")
    need("output" in tf and "kafka_topics" in tf["output"], "no output kafka_topics")

    for p in problems:
        print(p)
    print(f"terraform_policy: {len(problems)} problems")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
