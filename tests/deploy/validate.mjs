// Validates every object of rendered Kubernetes manifests against the Kubernetes OpenAPI
// schemas bundled in the npm package kubernetes-models, and cert-manager's objects
// (Certificate, Issuer: the optional component) against the CRD schemas bundled in
// @kubernetes-models/cert-manager (offline: no cluster needed). An object of any other
// apiVersion/kind counts as invalid.
//
//   node validate.mjs FILE...                  exit 0 when every object is valid
//   node validate.mjs --expect-invalid FILE    exit 0 only when some object is invalid
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const args = process.argv.slice(2);
const expectInvalid = args[0] === '--expect-invalid';
const files = expectInvalid ? args.slice(1) : args;

// API groups of custom resources -> the npm package holding their CRD schemas
const crdPackages = { 'cert-manager.io': '@kubernetes-models/cert-manager' };

async function modelFor(apiVersion, kind) {
  const group = apiVersion.includes('/') ? apiVersion.split('/')[0] : '';
  const source = crdPackages[group] ?? 'kubernetes-models';
  const module = await import(`${source}/${apiVersion}`).catch(() => null);
  return module?.[kind] ?? null;
}

let invalid = 0;
let checked = 0;
for (const file of files) {
  for (const document of parseAllDocuments(readFileSync(file, 'utf8'))) {
    if (document.errors.length > 0) {
      console.log(`${file}: YAML error: ${document.errors[0].message}`);
      invalid++;
      continue;
    }
    const object = document.toJS();
    if (object === null) continue;
    const name = `${object.kind}/${object.metadata?.name}`;
    const Model = await modelFor(object.apiVersion, object.kind);
    if (Model === null) {
      console.log(`${file}: ${name}: unknown apiVersion/kind ${object.apiVersion} ${object.kind}`);
      invalid++;
      continue;
    }
    try {
      new Model(object).validate();
      checked++;
    } catch (error) {
      console.log(`${file}: ${name}: ${error.message.split('\n').slice(0, 5).join(' | ')}`);
      invalid++;
    }
  }
}
console.log(`${checked} valid, ${invalid} invalid`);
process.exit(expectInvalid ? (invalid > 0 ? 0 : 1) : (invalid === 0 && checked > 0 ? 0 : 1));
