#!/usr/bin/env python3
"""What the rendered chart must do, beyond being valid Kubernetes.

usage: chart_contract.py RENDERED_DIR CHART_DIR
RENDERED_DIR has default.yaml, production.yaml, argocd.yaml, fallback.yaml and
retrain.yaml (tests/deploy/lib.sh render_sets). Prints every broken rule; exits 1 if any.
"""
import json
import os
import sys

import yaml

errors = []
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def err(where, msg):
    errors.append(f"{where}: {msg}")


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind, name_suffix, where):
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(name_suffix)]
    if len(found) != 1:
        err(where, f"expected one {kind} *{name_suffix}, found {len(found)}")
        return None
    return found[0]


def pod_spec(obj):
    k = obj["kind"]
    if k in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    if k == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    raise KeyError(k)


def check_consumer(docs, values, comp, subcommand, where):
    d = one(docs, "Deployment", f"-{comp}", where)
    if not d:
        return
    spec = pod_spec(d)
    c = spec["containers"][0]
    args = c.get("args", [])
    if args[:3] != [subcommand, "-c", "/etc/sentinel/sentinel.conf"]:
        err(where, f"{comp}: args {args[:3]} should start with {subcommand} -c /etc/sentinel/sentinel.conf")
    if c.get("command"):
        err(where, f"{comp}: must use the image's entrypoint (sentinel), not a command")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    if ports.get("metrics") != values["metrics"]["port"]:
        err(where, f"{comp}: metrics containerPort {ports.get('metrics')} != metrics.port {values['metrics']['port']}")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
        p = c.get(probe, {}).get("httpGet", {})
        if p.get("path") != path or p.get("port") != "metrics":
            err(where, f"{comp}: {probe} should be GET {path} on port metrics, is {p}")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not 10 < grace <= 60:
        err(where, f"{comp}: terminationGracePeriodSeconds {grace}: the scorer needs > 10 s to finish, flush and commit")
    res = c.get("resources", {})
    if "memory" not in res.get("requests", {}) or "memory" not in res.get("limits", {}) or "cpu" not in res.get("requests", {}):
        err(where, f"{comp}: needs cpu/memory requests and a memory limit, has {res}")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if "/etc/sentinel" not in mounts:
        err(where, f"{comp}: config not mounted at /etc/sentinel")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    cfg = vols.get(mounts.get("/etc/sentinel", {}).get("name", ""), {}).get("configMap", {})
    if {"key": f"{comp}.conf", "path": "sentinel.conf"} not in cfg.get("items", []):
        err(where, f"{comp}: /etc/sentinel/sentinel.conf should be the ConfigMap key {comp}.conf")
    auto = values[comp]["autoscaling"]["enabled"]
    if auto and "replicas" in d["spec"]:
        err(where, f"{comp}: replicas set although the autoscaler owns them")
    if not auto and d["spec"].get("replicas") != values[comp]["replicas"]:
        err(where, f"{comp}: replicas {d['spec'].get('replicas')} != {values[comp]['replicas']}")
    pdb = one(docs, "PodDisruptionBudget", f"-{comp}", where)
    if pdb and pdb["spec"]["selector"]["matchLabels"] != d["spec"]["selector"]["matchLabels"]:
        err(where, f"{comp}: the PodDisruptionBudget selects other pods than the Deployment")
    sa = spec.get("serviceAccountName", "")
    if not sa.endswith(f"-{comp}"):
        err(where, f"{comp}: should run as its own service account, runs as {sa!r}")

    # Scaling: KEDA on consumer lag, else the CPU HPA; never above the partitions.
    parts = values["kafka"]["partitions"]
    so = [s for s in by_kind(docs, "ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]]
    hpa = [h for h in by_kind(docs, "HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == d["metadata"]["name"]]
    if auto and values["keda"]["enabled"]:
        if len(so) != 1 or hpa:
            err(where, f"{comp}: expected one ScaledObject and no HPA, found {len(so)} and {len(hpa)}")
        else:
            so = so[0]["spec"]
            trig = so["triggers"][0]
            m = trig["metadata"]
            if trig["type"] != "kafka":
                err(where, f"{comp}: trigger type {trig['type']}")
            if m.get("consumerGroup") != f"sentinel-{comp}":
                err(where, f"{comp}: consumerGroup {m.get('consumerGroup')} != sentinel-{comp}")
            if m.get("topic") != values["kafka"]["topic"] or m.get("bootstrapServers") != values["kafka"]["bootstrapServers"]:
                err(where, f"{comp}: the trigger's topic/brokers differ from kafka.*")
            if so["maxReplicaCount"] > parts or m.get("allowIdleConsumers") != "false":
                err(where, f"{comp}: maxReplicaCount {so['maxReplicaCount']} must be capped at {parts} partitions")
            if values["keda"]["auth"]["secretName"] and "authenticationRef" not in trig:
                err(where, f"{comp}: SASL credentials configured but no authenticationRef")
    elif auto:
        if len(hpa) != 1 or so:
            err(where, f"{comp}: expected one HPA (KEDA off) and no ScaledObject, found {len(hpa)} and {len(so)}")
        elif hpa[0]["spec"]["maxReplicas"] > parts:
            err(where, f"{comp}: HPA maxReplicas {hpa[0]['spec']['maxReplicas']} above {parts} partitions")
    elif so or hpa:
        err(where, f"{comp}: autoscaling off but an autoscaler is rendered")


def cv(v):
    """A value as the chart writes it into sentinel.conf."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    return str(v)


def confs(docs):
    """Each role's rendered sentinel.conf as a dict (role -> {key: value})."""
    out = {}
    for cm in by_kind(docs, "ConfigMap"):
        if not cm["metadata"]["name"].endswith("-config"):
            continue
        for key, text in cm["data"].items():
            kv = {}
            for line in text.splitlines():
                if line.strip() and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    kv[k] = v
            out[key[: -len(".conf")]] = kv
    return out


def selects(np, labels):
    want = np["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


def check_storage(docs, values, where):
    """Each role gets the archive and registry URLs it uses, never a pod-local file://."""
    conf = confs(docs)
    uses = {"archiver": ["archive.url"], "scorer": ["registry.url"],
            "drift": ["archive.url", "registry.url"], "train": ["archive.url", "registry.url"]}
    for role, keys in uses.items():
        for k in keys:
            got = conf.get(role, {}).get(k)
            want = values[role]["config"].get(k) or values["config"].get(k) or values[k.split(".")[0]]["url"]
            if got != want:
                err(where, f"{role}.conf: {k}={got!r}, expected {want!r}")
            if not got or got.startswith("file:"):
                err(where, f"{role}.conf: {k}={got!r} is not shared storage")
    # The schemas: the image installs them where schema.dir points (the default,
    # ./schemas, would be under WORKDIR: an empty volume in the pods).
    for role, kv in conf.items():
        for k in ("dir", "reader"):
            if kv.get(f"schema.{k}") != values["schema"][k]:
                err(where, f"{role}.conf: schema.{k}={kv.get(f'schema.{k}')!r}, expected {values['schema'][k]!r}")
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    if f"/out{values['schema']['dir']}" not in dockerfile:
        err(where, f"the Dockerfile does not install the schemas into {values['schema']['dir']} (schema.dir)")
    for k in ("region", "endpoint"):
        v = values["s3"][k]
        for role, kv in conf.items():
            if v and kv.get(f"s3.{k}") != v:
                err(where, f"{role}.conf: s3.{k}={kv.get(f's3.{k}')!r}, expected {v!r}")


def check_scorer_modes(docs, values, where):
    s = values["scorer"]
    kv = confs(docs).get("scorer", {})
    want = {"scorer.challenger": s["challenger"], "scorer.exactly.once": cv(s["exactlyOnce"]),
            "scorer.canary.fraction": cv(s["canaryFraction"])}
    if s["sessionTimeoutMs"]:
        want["kafka.session.timeout.ms"] = cv(s["sessionTimeoutMs"])
    want.update({k: cv(v) for k, v in values["config"].items() if k in want})
    want.update({k: cv(v) for k, v in s["config"].items()})
    for k, v in want.items():
        if kv.get(k) != v:
            err(where, f"scorer.conf: {k}={kv.get(k)!r}, expected {v!r}")
    if not s["sessionTimeoutMs"] and "kafka.session.timeout.ms" in kv and "kafka.session.timeout.ms" not in s["config"]:
        err(where, "scorer.conf: kafka.session.timeout.ms written although sessionTimeoutMs is 0")
    d = one(docs, "Deployment", "-scorer", where)
    if d:
        env = {e["name"]: e for e in pod_spec(d)["containers"][0].get("env", [])}
        ref = env.get("SENTINEL_SCORER_TRANSACTIONAL_ID", {}).get("valueFrom", {}).get("fieldRef", {})
        if ref.get("fieldPath") != "metadata.name":
            err(where, "scorer: SENTINEL_SCORER_TRANSACTIONAL_ID should be the pod name (exactly-once fencing)")


def check_batch(docs, values, where):
    if values["drift"]["enabled"]:
        cj = one(docs, "CronJob", "-drift", where)
        if cj:
            c = pod_spec(cj)["containers"][0]
            script = " ".join(c.get("command", []))
            for word in ("sentinel drift", "--model", "--from", "--to", "-c /etc/sentinel/sentinel.conf"):
                if word not in script:
                    err(where, f"drift CronJob: command lacks {word!r}: {script}")
            for word in ("--input", "--csv", "--jsonl"):
                if word in script or word in c.get("args", []):
                    err(where, f"drift CronJob: {word} given: the audit reads archive.url")
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if env.get("DRIFT_MODEL") != values["drift"]["model"]:
                err(where, f"drift CronJob: DRIFT_MODEL {env.get('DRIFT_MODEL')} != drift.model")
            if cj["spec"]["concurrencyPolicy"] != "Forbid":
                err(where, "drift CronJob: runs must not overlap (concurrencyPolicy Forbid)")
            if cj["spec"]["jobTemplate"]["spec"].get("backoffLimit") != 0:
                err(where, "drift CronJob: exit 3 (drift) must fail the Job once, not be retried (backoffLimit 0)")
            check_drift_retrain(docs, values, c, where)
            # Drift events go to Kafka: brokers in its config, SASL secret in its env,
            # and the NetworkPolicy lets the pod out to Kafka and S3.
            kv = confs(docs).get("drift", {})
            if kv.get("kafka.bootstrap.servers") != values["kafka"]["bootstrapServers"]:
                err(where, "drift.conf: kafka.bootstrap.servers missing (drift events)")
            envs = {e["name"]: e for e in c.get("env", [])}
            for ref in values["secretEnv"].values():
                n = "SENTINEL_" + ref["configKey"].upper().replace(".", "_").replace("-", "_")
                if ref["secretName"] and n not in envs:
                    err(where, f"drift CronJob: {n} missing")
            labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            nps = by_kind(docs, "NetworkPolicy")
            if values["networkPolicy"]["enabled"]:
                np = [n for n in nps if selects(n, labels)]
                if not np:
                    err(where, "drift pod: no NetworkPolicy selects it")
                else:
                    ports = {p["port"] for r in np[0]["spec"]["egress"] for p in r.get("ports", [])}
                    for k in ("kafka", "s3", "sts"):
                        if not set(values["networkPolicy"]["egress"][k]["ports"]) <= ports:
                            err(where, f"drift pod: NetworkPolicy egress lacks the {k} ports")


def check_drift_retrain(docs, values, c, where):
    d = values["drift"]
    args = c.get("args", [])
    kv = confs(docs).get("drift", {})
    if d["retrainOnDrift"]:
        if args[:1] != ["--retrain-on-drift"]:
            err(where, f"drift CronJob: args {args} should start with --retrain-on-drift")
        if kv.get("drift.retrain.window.ms") != cv(d["retrainWindowMs"]):
            err(where, f"drift.conf: drift.retrain.window.ms={kv.get('drift.retrain.window.ms')!r}, expected {d['retrainWindowMs']}")
        for k, v in values["train"]["config"].items():
            want = cv(d["config"].get(k, v))
            if kv.get(k) != want:
                err(where, f"drift.conf: the retrain's {k}={kv.get(k)!r}, expected train.config's {want!r}")
    else:
        if "--retrain-on-drift" in args or "drift.retrain.window.ms" in kv:
            err(where, "drift CronJob: retrains although drift.retrainOnDrift is false")
    if values["train"]["job"]["enabled"]:
        job = [j for j in by_kind(docs, "Job") if "-train-" in j["metadata"]["name"]]
        if len(job) != 1:
            err(where, f"train Job: expected one, found {len(job)}")
        else:
            args = pod_spec(job[0])["containers"][0].get("args", [])
            if args[:1] != ["train"] or "--promote" not in args:
                err(where, f"train Job: args {args} should be train ... --promote")
    if values["train"]["workflowTemplate"]["enabled"]:
        wt = one(docs, "WorkflowTemplate", "-train", where)
        if wt:
            tpl = {t["name"]: t for t in wt["spec"]["templates"]}[wt["spec"]["entrypoint"]]
            args = tpl["container"].get("args", [])
            if args[:1] != ["train"] or "--promote" not in args:
                err(where, f"WorkflowTemplate: args {args} should be train ... --promote")
            if not wt["spec"].get("serviceAccountName", "").endswith("-train"):
                err(where, "WorkflowTemplate: should run as the trainer's service account")


def check_config_and_secrets(docs, values, where):
    cms = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    if len(cms) != 1:
        err(where, f"expected one -config ConfigMap, found {len(cms)}")
        return
    for key, text in cms[0]["data"].items():
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            k, sep, v = line.partition("=")
            if not sep:
                err(where, f"{key}: not a key=value line: {line!r}")
            if any(s in k for s in ("password", "secret")):
                err(where, f"{key}: secret key {k} in the ConfigMap")
    if by_kind(docs, "Secret"):
        err(where, "the chart must not create Secrets: it references existing ones")
    for obj in docs:
        if obj["kind"] not in ("Deployment", "CronJob", "Job"):
            continue
        for c in pod_spec(obj)["containers"]:
            for e in c.get("env", []):
                n = e["name"]
                if n.startswith("SENTINEL_") and any(s in n for s in ("PASSWORD", "SECRET", "TOKEN")):
                    if "value" in e or "secretKeyRef" not in e.get("valueFrom", {}):
                        err(where, f"{obj['metadata']['name']}: {n} must come from a secretKeyRef")
    for name, ref in values["secretEnv"].items():
        if not ref["secretName"]:
            continue
        want = "SENTINEL_" + ref["configKey"].upper().replace(".", "_").replace("-", "_")
        for obj in by_kind(docs, "Deployment"):
            env = {e["name"]: e for e in pod_spec(obj)["containers"][0].get("env", [])}
            got = env.get(want, {}).get("valueFrom", {}).get("secretKeyRef")
            if got != {"name": ref["secretName"], "key": ref["secretKey"]}:
                err(where, f"{obj['metadata']['name']}: {want} should be secretKeyRef {ref['secretName']}/{ref['secretKey']}, is {got}")


def check_accounts_and_monitoring(docs, values, where):
    sas = {s["metadata"]["name"]: s for s in by_kind(docs, "ServiceAccount")}
    for comp in ("scorer", "archiver", "drift", "train"):
        arn = values[comp]["serviceAccount"]["roleArn"]
        if not arn:
            continue
        sa = [s for n, s in sas.items() if n.endswith(f"-{comp}")]
        if not sa or sa[0]["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn") != arn:
            err(where, f"{comp}: service account lacks eks.amazonaws.com/role-arn {arn}")
    if values["serviceMonitor"]["enabled"]:
        sm = by_kind(docs, "ServiceMonitor")
        if len(sm) != 1:
            err(where, f"expected one ServiceMonitor, found {len(sm)}")
        else:
            ep = sm[0]["spec"]["endpoints"][0]
            if ep.get("port") != "metrics" or ep.get("path") != "/metrics":
                err(where, f"ServiceMonitor endpoint {ep}")
            sel = sm[0]["spec"]["selector"]["matchLabels"]
            svcs = [s for s in by_kind(docs, "Service") if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
            if len(svcs) != 2:
                err(where, f"ServiceMonitor selects {len(svcs)} Services, expected the scorer's and the archiver's")
    if values["dashboard"]["enabled"]:
        db = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
        if len(db) != 1 or db[0]["metadata"]["labels"].get("grafana_dashboard") != "1":
            err(where, "dashboard ConfigMap with label grafana_dashboard: \"1\" missing")
        else:
            try:
                json.loads(next(iter(db[0]["data"].values())))
            except ValueError as e:
                err(where, f"dashboard JSON: {e}")
    np = by_kind(docs, "NetworkPolicy")
    if np:
        spec = np[0]["spec"]
        if sorted(spec.get("policyTypes", [])) != ["Egress", "Ingress"]:
            err(where, "NetworkPolicy must restrict both ingress and egress")
        ports = sorted({p["port"] for r in spec.get("egress", []) for p in r.get("ports", [])})
        eg = values["networkPolicy"]["egress"]
        allowed = set(values["networkPolicy"]["dns"]["ports"])
        for k in ("kafka", "redis", "s3", "sts"):
            allowed |= set(eg[k]["ports"])
        for r in eg["extra"]:
            allowed |= set(r["ports"])
        if set(ports) - allowed:
            err(where, f"NetworkPolicy opens ports {sorted(set(ports) - allowed)} not configured")
        if any(not r.get("ports") for r in spec.get("egress", [])):
            err(where, "NetworkPolicy has an egress rule without ports (all ports open)")


def values_for(name, chart):
    import copy
    with open(os.path.join(chart, "values.yaml")) as f:
        v = yaml.safe_load(f)

    def merge(a, b):
        for k, x in b.items():
            if isinstance(x, dict) and isinstance(a.get(k), dict):
                merge(a[k], x)
            else:
                a[k] = copy.deepcopy(x)

    root = os.path.dirname(os.path.dirname(chart))
    files = {"production": [os.path.join(chart, "ci/production-values.yaml")],
             "argocd": [os.path.join(root, "deploy/argocd/values/production.yaml")],
             "fallback": [os.path.join(chart, "ci/production-values.yaml")],
             "retrain": [os.path.join(chart, "ci/production-values.yaml"),
                         os.path.join(chart, "ci/retrain-values.yaml")]}.get(name, [])
    for path in files:
        with open(path) as f:
            merge(v, yaml.safe_load(f) or {})
    if name == "fallback":
        merge(v, {"keda": {"enabled": False}, "train": {"job": {"enabled": True}},
                  "serviceMonitor": {"enabled": False}, "scorer": {"autoscaling": {"enabled": False}}})
    return v


def main():
    rendered, chart = sys.argv[1:3]
    names = sorted(f[:-5] for f in os.listdir(rendered) if f.endswith(".yaml"))
    if not names:
        sys.exit("chart_contract: nothing rendered")
    for name in names:
        docs = load(os.path.join(rendered, f"{name}.yaml"))
        values = values_for(name, chart)
        where = f"{name} values"
        for comp, sub in (("scorer", "score"), ("archiver", "archive")):
            if values[comp]["enabled"]:
                check_consumer(docs, values, comp, sub, where)
        check_batch(docs, values, where)
        check_storage(docs, values, where)
        if values["scorer"]["enabled"]:
            check_scorer_modes(docs, values, where)
        check_config_and_secrets(docs, values, where)
        check_accounts_and_monitoring(docs, values, where)
    for e in errors:
        print(e)
    print(f"chart_contract: {len(names)} value sets, {len(errors)} problems")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
