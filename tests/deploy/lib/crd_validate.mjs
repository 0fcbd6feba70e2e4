// Validates custom resources (KEDA, Prometheus Operator, Argo Workflows, Argo CD)
// against the validators that the @kubernetes-models/* npm packages generate from
// the projects' CRD schemas. Types, enums and required fields are checked;
// unknown fields are not (CRD schemas allow them).
//
// usage: node crd_validate.mjs MODELS_DIR < objects.jsonl
// One JSON object per input line; prints "ok|fail|nomodel <apiVersion>/<kind> <name> [why]".
import { pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';

const models = process.argv[2];
const packages = {
  'keda.sh': '@kubernetes-models/keda',
  'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  'argoproj.io': null, // Workflows or CD, by kind
};
const argoCD = new Set(['Application', 'AppProject', 'ApplicationSet']);

let input = '';
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const line of input.split('\n').filter(Boolean)) {
  const o = JSON.parse(line);
  const [group, version] = o.apiVersion.split('/');
  let pkg = packages[group];
  if (group === 'argoproj.io') pkg = argoCD.has(o.kind) ? '@kubernetes-models/argo-cd' : '@kubernetes-models/argo-workflows';
  const id = `${o.apiVersion}/${o.kind} ${o.metadata?.name}`;
  const file = pkg && `${models}/node_modules/${pkg}/${group}/${version}/${o.kind}.js`;
  if (!file || !existsSync(file)) {
    console.log(`nomodel ${id}`);
    failed++;
    continue;
  }
  const mod = await import(pathToFileURL(file).href);
  try {
    new mod[o.kind](o).validate();
    console.log(`ok ${id}`);
  } catch (e) {
    console.log(`fail ${id} ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
