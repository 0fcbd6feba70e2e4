#!/usr/bin/env python3
"""Checks every pod the chart renders against the Kubernetes "restricted" Pod
Security Standard (the rules the restricted admission level enforces, as of
Kubernetes 1.34), plus this project's own rules: a read-only root filesystem
with writable emptyDir mounts at /tmp and /var/lib/sentinel, no service account
token in the pod, resources set.

Pods come from Deployments, StatefulSets, DaemonSets, Jobs, CronJobs and Argo
WorkflowTemplates. usage: pod_security.py RENDERED.yaml...   (exit 1 on a finding)
"""
import sys

import yaml

RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
WRITABLE = ("/tmp", "/var/lib/sentinel")


def pods(doc):
    """Yields (name, pod-level fields, containers, volumes)."""
    kind, name = doc.get("kind"), f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    spec = doc.get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        p = spec["template"]["spec"]
    elif kind == "CronJob":
        p = spec["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        p = spec
    elif kind in ("WorkflowTemplate", "Workflow", "CronWorkflow"):
        wf = spec.get("workflowSpec", spec)
        containers = []
        for t in wf.get("templates", []):
            for key in ("container", "script"):
                if key in t:
                    containers.append(t[key])
            containers += t.get("initContainers", []) + t.get("sidecars", [])
        pod = {"securityContext": wf.get("securityContext", {}),
               "automountServiceAccountToken": wf.get("automountServiceAccountToken"),
               "hostNetwork": wf.get("hostNetwork")}
        yield name, pod, containers, wf.get("volumes", [])
        return
    else:
        return
    containers = p.get("containers", []) + p.get("initContainers", []) + p.get("ephemeralContainers", [])
    yield name, p, containers, p.get("volumes", [])


def check_pod(name, pod, containers, volumes):
    f = []
    psc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            f.append(f"{host} is set")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        f.append("windowsOptions.hostProcess")
    for v in volumes:
        vtype = next((k for k in v if k != "name"), None)
        if vtype not in RESTRICTED_VOLUMES:
            f.append(f"volume {v.get('name')}: type {vtype} not allowed")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            f.append(f"unsafe sysctl {s.get('name')}")
    pod_nonroot = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if pod_seccomp == "Unconfined":
        f.append("pod seccompProfile Unconfined")
    if psc.get("runAsUser") == 0:
        f.append("pod runAsUser 0")
    if (psc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
        f.append("pod seLinuxOptions.type not allowed")
    if (psc.get("appArmorProfile") or {}).get("type") == "Unconfined":
        f.append("pod appArmorProfile Unconfined")
    if pod.get("automountServiceAccountToken") is not False:
        f.append("automountServiceAccountToken should be false (the binary does not use the API)")
    if not containers:
        f.append("no containers found")
    for c in containers:
        cn = c.get("name", "main")
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            f.append(f"{cn}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            f.append(f"{cn}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            f.append(f"{cn}: capabilities must drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            f.append(f"{cn}: capabilities.add {caps.get('add')}")
        nonroot = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if not (nonroot is True or (pod_nonroot and sc.get("runAsNonRoot") is not False)):
            f.append(f"{cn}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            f.append(f"{cn}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            f.append(f"{cn}: seccompProfile must be RuntimeDefault or Localhost (is {seccomp})")
        if sc.get("procMount", "Default") != "Default":
            f.append(f"{cn}: procMount {sc.get('procMount')}")
        if (sc.get("seLinuxOptions") or {}).get("type") not in SELINUX_TYPES:
            f.append(f"{cn}: seLinuxOptions.type not allowed")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            f.append(f"{cn}: appArmorProfile Unconfined")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                f.append(f"{cn}: hostPort {p['hostPort']}")
        # This project's rules.
        if sc.get("readOnlyRootFilesystem") is not True:
            f.append(f"{cn}: readOnlyRootFilesystem must be true")
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
        vols = {v.get("name"): v for v in volumes}
        for path in WRITABLE:
            m = mounts.get(path)
            if not m or m.get("readOnly") or "emptyDir" not in vols.get(m.get("name"), {}):
                f.append(f"{cn}: needs a writable emptyDir at {path}")
            elif "sizeLimit" not in vols[m["name"]]["emptyDir"]:
                f.append(f"{cn}: emptyDir at {path} has no sizeLimit")
        res = c.get("resources") or {}
        if not (res.get("requests") or {}).get("memory") or not (res.get("limits") or {}).get("memory"):
            f.append(f"{cn}: memory request and limit required")
    return [f"{name}: {x}" for x in f]


def main():
    findings, count = [], 0
    for path in sys.argv[1:]:
        with open(path) as fh:
            for doc in yaml.safe_load_all(fh):
                if not doc:
                    continue
                for name, pod, containers, volumes in pods(doc):
                    count += 1
                    findings += [f"{path}: {x}" for x in check_pod(name, pod, containers, volumes)]
    for x in findings:
        print(x)
    print(f"pod_security: {count} pod templates, {len(findings)} findings")
    if count == 0:
        print("pod_security: no pod templates found")
        sys.exit(1)
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
