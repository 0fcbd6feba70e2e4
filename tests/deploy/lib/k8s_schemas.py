#!/usr/bin/env python3
"""Lays out the Kubernetes JSON schemas of one version for kubeconform, offline.

The PyPI package kubernetes-validate ships, per Kubernetes version, one JSON
schema per kind (strict: unknown fields rejected) that refers to a shared
_definitions.json by an absolute URL. kubeconform loads local schemas as files,
so the references are made relative to the file and the $id that would rebase
them onto the web is dropped. The result:
  OUT/v<version>-local-strict/<kind>-<group>-<version>.json
which kubeconform reads with
  -schema-location 'OUT/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json'

usage: k8s_schemas.py WHEEL K8S_VERSION OUT
"""
import json
import os
import sys
import zipfile


def main():
    wheel, version, out = sys.argv[1:4]
    flavours = ("local-strict", "local")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        count = 0
        for flavour in flavours:
            prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-{flavour}/"
            dest = os.path.join(out, f"v{version}-{flavour}")
            members = [n for n in names if n.startswith(prefix) and n.endswith(".json")]
            if not members:
                available = sorted({n.split("/")[2] for n in names if n.count("/") > 2})
                sys.exit(f"k8s_schemas: no v{version}-{flavour} in {wheel}; it has {available}")
            os.makedirs(dest, exist_ok=True)
            for name in members:
                text = z.read(name).decode()
                text = text.replace('"/api/_definitions.json#', '"_definitions.json#')
                doc = json.loads(text)
                doc.pop("$id", None)
                with open(os.path.join(dest, name[len(prefix):]), "w") as f:
                    json.dump(doc, f)
                count += 1
    print(f"k8s_schemas: {count} schemas for v{version} in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
