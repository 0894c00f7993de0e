// Validates every object of rendered Kubernetes manifests against the Kubernetes OpenAPI
// schemas bundled in the npm package kubernetes-models (offline: no cluster needed).
//
//   node validate.mjs FILE...                  exit 0 when every object is valid
//   node validate.mjs --expect-invalid FILE    exit 0 only when some object is invalid
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

const args = process.argv.slice(2);
const expectInvalid = args[0] === '--expect-invalid';
const files = expectInvalid ? args.slice(1) : args;

async function modelFor(apiVersion, kind) {
  const module = await import(`kubernetes-models/${apiVersion}`).catch(() => null);
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
