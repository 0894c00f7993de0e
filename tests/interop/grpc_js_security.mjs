// Interop test: Node's pure-JavaScript gRPC (@grpc/grpc-js) against a stockd serving TLS with
// client certificates and a policy (docs/api.md §6) — a second, independent TLS and gRPC stack.
//
// Goal: grpc-js connects with mutual TLS and with a bearer token (as call credentials, the way
// grpc-js users send tokens); no credentials, a wrong tenant and a wrong role are refused
// with UNAUTHENTICATED / PERMISSION_DENIED.
// Method: run from tests/integration/test_security.py, which starts stockd and makes the
// certificates; it passes STOCKD_ADDRESS, TLS_CA, TLS_CERT, TLS_KEY (identity "warehouse-a":
// tenant t1, read+write), OPS_TOKEN (every tenant, every role) and READER_TOKEN (read only).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, '..', '..', 'proto');
const env = process.env;
const definition = protoLoader.loadSync(join(protoRoot, 'stockd/v1/inventory.proto'), {
  includeDirs: [protoRoot, '/usr/include'], keepCase: true, longs: String, enums: String,
  defaults: true,
});
const { Inventory } = grpc.loadPackageDefinition(definition).stockd.v1;
const ca = readFileSync(env.TLS_CA);

const tokenCredentials = (token) => grpc.credentials.createFromMetadataGenerator(
  (_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.add('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });

const mtls = new Inventory(env.STOCKD_ADDRESS, grpc.credentials.createSsl(
  ca, readFileSync(env.TLS_KEY), readFileSync(env.TLS_CERT)));
const serverOnly = grpc.credentials.createSsl(ca);
const ops = new Inventory(env.STOCKD_ADDRESS, grpc.credentials.combineChannelCredentials(
  serverOnly, tokenCredentials(env.OPS_TOKEN)));
const reader = new Inventory(env.STOCKD_ADDRESS, grpc.credentials.combineChannelCredentials(
  serverOnly, tokenCredentials(env.READER_TOKEN)));
const anonymous = new Inventory(env.STOCKD_ADDRESS, serverOnly);

after(() => [mtls, ops, reader, anonymous].forEach((c) => c.close()));

const call = (client, method, request) => new Promise((resolve, reject) => {
  client[method](request, { deadline: Date.now() + 10000 }, (error, response) =>
    (error ? reject(error) : resolve(response)));
});
const item = (sku) => ({ app_id: 'app', catalog_item_id: sku });
const refusedWith = (code) => (error) => { assert.equal(error.code, code, error.details); return true; };

test('mutual TLS: the certificate is the identity, recorded as the actor', async () => {
  await call(mtls, 'SetStock', { tenant_id: 't1', lines: [{ item: item('js-mtls'), available: 2 }] });
  const done = await call(mtls, 'Decrement', {
    tenant_id: 't1', restrict_inventory: true, lines: [{ item: item('js-mtls'), quantity: 1 }],
  });
  assert.equal(done.levels[0].available, '1');
  const history = await call(mtls, 'History', { tenant_id: 't1', item: item('js-mtls') });
  assert.deepEqual(history.entries.map((e) => e.actor), ['warehouse-a', 'warehouse-a']);
});

test('bearer token as grpc-js call credentials', async () => {
  await call(ops, 'SetStock', { tenant_id: 'js-t', lines: [{ item: item('js-token'), available: 5 }] });
  const got = await call(reader, 'GetStock', { tenant_id: 't1', items: [item('js-mtls')] });
  assert.equal(got.levels[0].available, '1');
  const history = await call(ops, 'History', { tenant_id: 'js-t', item: item('js-token') });
  assert.equal(history.entries[0].actor, 'ops');
});

test('refusals: no credentials, wrong tenant, wrong role; nothing changes', async () => {
  await assert.rejects(call(anonymous, 'SetStock', {
    tenant_id: 't1', lines: [{ item: item('js-refused'), available: 9 }] }),
  refusedWith(grpc.status.UNAUTHENTICATED));
  await assert.rejects(call(mtls, 'SetStock', {
    tenant_id: 't2', lines: [{ item: item('js-refused'), available: 9 }] }),
  refusedWith(grpc.status.PERMISSION_DENIED));
  await assert.rejects(call(reader, 'Decrement', {
    tenant_id: 't1', lines: [{ item: item('js-mtls'), quantity: 1 }] }),
  refusedWith(grpc.status.PERMISSION_DENIED));
  const got = await call(ops, 'GetStock', {
    tenant_id: 't1', items: [item('js-refused'), item('js-mtls')] });
  assert.deepEqual(got.levels.map((l) => l.available), ['0', '1']);
  const other = await call(ops, 'GetStock', { tenant_id: 't2', items: [item('js-refused')] });
  assert.equal(other.levels[0].version, '0');
});
