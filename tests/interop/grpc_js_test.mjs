// Interop test: Node's pure-JavaScript gRPC implementation (@grpc/grpc-js) against the real
// stockd, proving the contract holds for a second, independent gRPC stack.
//
// Goal: a refusal's google.rpc details decode from grpc-status-details-bin, a Decrement
// works, and Watch delivers committed ledger entries live, in order, without gaps.
// Method: start stockd on 127.0.0.1:0 with a temporary data directory (STOCKD_BIN), load the
// .proto files from the repository with @grpc/proto-loader, decode details with protobufjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

const here = dirname(fileURLToPath(import.meta.url));
const protoRoot = join(here, '..', '..', 'proto');
const stockdBin = process.env.STOCKD_BIN;
let daemon, dataDir, client;

function startStockd() {
  return new Promise((resolve, reject) => {
    dataDir = mkdtempSync(join(tmpdir(), 'stockd-js-'));
    daemon = spawn(stockdBin, ['--listen', '127.0.0.1:0', '--data-dir', join(dataDir, 'data')],
                   { stdio: ['ignore', 'ignore', 'pipe'] });
    let buffered = '';
    daemon.stderr.on('data', (chunk) => {
      buffered += chunk;
      const m = buffered.match(/"event":"listening","address":"(127\.0\.0\.1:\d+)"/);
      if (m) { clearTimeout(timer); resolve(m[1]); buffered = ''; }
    });
    daemon.on('exit', (code) => reject(new Error(`stockd exited with ${code}`)));
    const timer = setTimeout(() => reject(new Error('stockd did not start')), 15000);
  });
}

before(async () => {
  const address = await startStockd();
  const definition = protoLoader.loadSync(join(protoRoot, 'stockd/v1/inventory.proto'), {
    includeDirs: [protoRoot, '/usr/include'], keepCase: true, longs: String, enums: String,
    defaults: true,
  });
  const { Inventory } = grpc.loadPackageDefinition(definition).stockd.v1;
  client = new Inventory(address, grpc.credentials.createInsecure());
});

after(async () => {
  client.close();
  const exited = new Promise((resolve) => daemon.once('exit', resolve));
  daemon.removeAllListeners('exit');
  daemon.kill('SIGTERM');
  const code = await exited;
  rmSync(dataDir, { recursive: true, force: true });
  assert.equal(code, 0, 'stockd exits 0 after SIGTERM');
});

const call = (method, request) => new Promise((resolve, reject) => {
  client[method](request, { deadline: Date.now() + 10000 }, (error, response) =>
    (error ? reject(error) : resolve(response)));
});

// google.rpc.Any is resolved from protobufjs's bundled google/protobuf descriptors.
const loadRpcProtos = () => {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) =>
    (target.startsWith('google/protobuf/') ? join('/usr/include', target) : join(protoRoot, target));
  return root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto'],
                       { keepCase: true });
};

const item = (sku) => ({ app_id: 'app', catalog_item_id: sku });

test('Decrement applies and a refusal carries google.rpc.PreconditionFailure', async () => {
  await call('SetStock', { tenant_id: 'js', lines: [{ item: item('mug'), available: 3 }] });
  const ok = await call('Decrement', {
    tenant_id: 'js', restrict_inventory: true, lines: [{ item: item('mug'), quantity: 2 }],
  });
  assert.equal(ok.levels[0].available, '1');
  const error = await call('Decrement', {
    tenant_id: 'js', restrict_inventory: true, lines: [{ item: item('mug'), quantity: 2 }],
  }).then(() => null, (e) => e);
  assert.ok(error, 'the second decrement must be refused');
  assert.equal(error.code, grpc.status.FAILED_PRECONDITION);
  const [raw] = error.metadata.get('grpc-status-details-bin');
  assert.ok(Buffer.isBuffer(raw), 'grpc-status-details-bin is present');
  const root = loadRpcProtos();
  const status = root.lookupType('google.rpc.Status').decode(raw);
  assert.equal(status.code, grpc.status.FAILED_PRECONDITION);
  assert.equal(status.details[0].type_url, 'type.googleapis.com/google.rpc.PreconditionFailure');
  const failure = root.lookupType('google.rpc.PreconditionFailure').decode(status.details[0].value);
  assert.equal(failure.violations[0].type, 'INSUFFICIENT_STOCK');
  assert.match(failure.violations[0].subject, /"catalog_item_id":"mug"/);
  assert.match(failure.violations[0].description, /requested 2, available 1/);
});

test('INVALID_ARGUMENT names the field in google.rpc.BadRequest', async () => {
  const error = await call('Increment', { tenant_id: 'js', lines: [{ item: item('x'), quantity: 0 }] })
    .then(() => null, (e) => e);
  assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
  const root = loadRpcProtos();
  const status = root.lookupType('google.rpc.Status').decode(error.metadata.get('grpc-status-details-bin')[0]);
  const bad = root.lookupType('google.rpc.BadRequest').decode(status.details[0].value);
  assert.equal(bad.field_violations[0].field, 'lines[0].quantity');
});

test('Watch follows the ledger live, in order, without gaps', async () => {
  await call('SetStock', { tenant_id: 'jsw', lines: [{ item: item('live'), available: 0 }] });
  const stream = client.Watch({ tenant_id: 'jsw', after_seq: 0 });
  const received = [];
  const done = new Promise((resolve, reject) => {
    stream.on('data', (entry) => { received.push(entry); if (received.length === 11) resolve(); });
    stream.on('error', (e) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
  });
  for (let i = 0; i < 10; i++) {
    await call('Increment', { tenant_id: 'jsw', lines: [{ item: item('live'), quantity: 1 }] });
  }
  await done;
  stream.cancel();
  assert.equal(received[0].op, 'OP_SET');
  assert.deepEqual(received.slice(1).map((e) => e.available_after), ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
  const seqs = received.map((e) => BigInt(e.seq));
  for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], 'seqs increase');
  assert.ok(received.every((e) => e.tenant_id === 'jsw'));
});
