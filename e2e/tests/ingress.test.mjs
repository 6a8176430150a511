// End to end against real software nobody here wrote: two anvil nodes (source and destination
// chains), a contract compiled by solc emitting real logs, access lists built by OP's own
// @eth-optimism/viem, transactions signed by viem. The gateway runs as the real binary with two
// independent backends: the light backend on the source node, and as its "indexed" backend a
// second interop-gate process serving the light-mode supervisor endpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keccak256, parseEther, toHex } from 'viem';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import {
  startAnvil, startGate, deployEmitter, wallet, messageOf, sleep, rpc, KEYS, OBSERVABILITY_TOML,
} from '../lib/harness.mjs';

const SOURCE = 901;
const DEST = 902;
const DAY = 86_400n;

let source; let dest; let supervisorGate; let gate; let emit;
let expiredLog; // a log from ~10 days ago
let sender;     // viem wallet client sending through the gateway
let gatewayUrl;

function lightChainsToml() {
  return `[[light.chains]]\nchain_id = ${SOURCE}\nendpoints = [{ name = "source", url = "${source.url}" }]\n`;
}

before(async () => {
  const now = BigInt(Math.floor(Date.now() / 1000));
  // The source chain starts 10 days in the past so that one message is expired.
  source = await startAnvil({ chainId: SOURCE, args: ['--timestamp', String(now - 10n * DAY)] });
  dest = await startAnvil({ chainId: DEST });
  ({ emit } = await deployEmitter(source));
  [expiredLog] = await emit(0);
  // Back to the present.
  await source.client.request({ method: 'evm_setNextBlockTimestamp', params: [toHex(now)] });
  await source.client.request({ method: 'evm_mine', params: [] });

  supervisorGate = await startGate(`
[ingress]
enabled = false
[light_server]
enabled = true
listen = "127.0.0.1:0"
${OBSERVABILITY_TOML}
${lightChainsToml()}`);
  assert.ok(supervisorGate.addrs.light_server, `light server address: ${JSON.stringify(supervisorGate.addrs)}`);

  gate = await startGate(`
[server]
listen = "127.0.0.1:0"
[upstream]
url = "${dest.url}"
[ingress]
chain_id = ${DEST}
[validation]
policy = "both"
retry_delay_ms = 1000
[supervisor]
endpoints = [{ name = "light-sup", url = "${supervisorGate.addrs.light_server}" }]
${OBSERVABILITY_TOML}
${lightChainsToml()}`);
  gatewayUrl = gate.addrs.ingress;
  sender = wallet(dest, KEYS[2], gatewayUrl);
});

after(async () => {
  for (const p of [gate, supervisorGate]) if (p) await p.stop();
  for (const n of [source, dest]) if (n) n.stop();
});

/** Signs a tx executing `accessList` on DEST, sends it through the gateway, returns the outcome. */
async function submit(accessList) {
  const request = await sender.prepareTransactionRequest({ to: '0x1111111111111111111111111111111111111111', value: 1n, accessList, type: 'eip1559', gas: 100_000n });
  const serialized = await sender.signTransaction(request);
  const hash = keccak256(serialized);
  try {
    const got = await sender.sendRawTransaction({ serializedTransaction: serialized });
    assert.equal(got, hash);
    return { ok: true, hash };
  } catch (err) {
    return { ok: false, hash, err };
  }
}

async function onDest(hash) {
  try { await dest.client.getTransaction({ hash }); return true; } catch { return false; }
}

function rpcCode(err) {
  for (let e = err; e; e = e.cause) if (typeof e.code === 'number' && e.code < -32000) return e.code;
  return undefined;
}

async function expectRefused(accessList, code, words) {
  const r = await submit(accessList);
  assert.equal(r.ok, false, 'must be refused');
  assert.equal(rpcCode(r.err), code, String(r.err));
  // viem's own error surface shows our message.
  assert.match(r.err.message, words);
  assert.equal(await onDest(r.hash), false, 'a refused tx never reaches the destination node');
}

test('a valid message is accepted and reaches the destination node', async () => {
  const [log] = await emit(1);
  await sleep(1100); // the message must be older than the executing timestamp
  const { id, payload } = await messageOf(source, log);
  const r = await submit(encodeAccessList(id, payload));
  assert.equal(r.ok, true, String(r.err));
  assert.equal(await onDest(r.hash), true);
});

test('messages at block-level log indices above 0, several per tx', async () => {
  const logs = await emit(2, 3);
  await sleep(1100);
  const entries = [];
  for (const log of logs) {
    const { id, payload } = await messageOf(source, log);
    entries.push(...encodeAccessList(id, payload)[0].storageKeys);
  }
  const r = await submit([{ address: '0x4200000000000000000000000000000000000022', storageKeys: entries }]);
  assert.equal(r.ok, true, String(r.err));
});

test('a wrong checksum is refused with conflicting data', async () => {
  const [log] = await emit(3);
  await sleep(1100);
  const { id, payload } = await messageOf(source, log);
  const al = encodeAccessList(id, payload);
  const keys = al[0].storageKeys;
  keys[keys.length - 1] = `0x03${'ab'.repeat(31)}`;
  await expectRefused(al, -320600, /checksum/i);
});

test('a wrong log index, a wrong origin and a wrong timestamp are refused', async () => {
  const [log] = await emit(4);
  await sleep(1100);
  const { id, payload } = await messageOf(source, log);
  await expectRefused(encodeAccessList({ ...id, logIndex: id.logIndex + 5n }, payload), -320600, /log/i);
  await expectRefused(encodeAccessList({ ...id, origin: '0x00000000000000000000000000000000000000aa' }, payload), -320600, /checksum/i);
  await expectRefused(encodeAccessList({ ...id, timestamp: id.timestamp - 1n }, payload), -320600, /timestamp/i);
});

test('an unknown source chain is refused', async () => {
  const [log] = await emit(5);
  await sleep(1100);
  const { id, payload } = await messageOf(source, log);
  await expectRefused(encodeAccessList({ ...id, chainId: 12345n }, payload), -320501, /chain/i);
});

test('a block in the future is not known yet, after one re-test', async () => {
  const [log] = await emit(8);
  await sleep(1100);
  const head = await source.client.getBlockNumber({ cacheTime: 0 });
  const { id, payload } = await messageOf(source, log);
  const t0 = Date.now();
  await expectRefused(encodeAccessList({ ...id, blockNumber: head + 1000n }, payload), -321401, /retry/i);
  assert.ok(Date.now() - t0 >= 900, 'held for the re-test delay');
});

test('an expired message is refused', async () => {
  const { id, payload } = await messageOf(source, expiredLog);
  await expectRefused(encodeAccessList(id, payload), -320600, /expire/i);
});

test('a reorg that removes a message turns a later check into a rejection, no restart', async () => {
  const [log] = await emit(6);
  await sleep(1100);
  const { id, payload } = await messageOf(source, log);
  const ok = await submit(encodeAccessList(id, payload));
  assert.equal(ok.ok, true, String(ok.err));
  const head = await source.client.getBlockNumber({ cacheTime: 0 });
  const depth = Number(head - log.blockNumber + 1n);
  await source.client.request({ method: 'anvil_reorg', params: [depth, []] });
  const replaced = await source.client.getBlock({ blockNumber: log.blockNumber });
  assert.notEqual(replaced.hash, log.blockHash, 'the block was replaced');
  await sleep(2500); // longer than the valid-verdict cache and the head TTL
  const r = await submit(encodeAccessList(id, payload));
  assert.equal(r.ok, false, 'the reorged-out message must be refused');
  assert.equal(rpcCode(r.err), -320600, String(r.err));
});

test('the light-mode endpoint answers checkAccessList on the wire', async () => {
  const [log] = await emit(7);
  await sleep(1100);
  const { id, payload } = await messageOf(source, log);
  const entries = encodeAccessList(id, payload)[0].storageKeys;
  const now = Math.floor(Date.now() / 1000);
  const desc = { timestamp: toHex(now), timeout: toHex(0), chainID: String(DEST) };
  const url = supervisorGate.addrs.light_server;
  for (const method of ['interop_checkAccessList', 'supervisor_checkAccessList']) {
    const ok = await rpc(url, method, [entries, 'unsafe', desc]);
    assert.deepEqual(ok.body, { jsonrpc: '2.0', result: null, id: 1 }, method);
  }
  const bad = [...entries]; bad[bad.length - 1] = `0x03${'cd'.repeat(31)}`;
  const r = await rpc(url, 'interop_checkAccessList', [bad, 'unsafe', desc]);
  assert.equal(r.body.error.code, -320600);
  const fut = encodeAccessList({ ...id, blockNumber: id.blockNumber + 10_000n }, payload)[0].storageKeys;
  const f = await rpc(url, 'interop_checkAccessList', [fut, 'unsafe', desc]);
  assert.equal(f.body.error.code, -321401, 'future data, never out-of-scope');
  const fs = await rpc(url, 'admin_getFailsafeEnabled', []);
  assert.equal(fs.body.result, false);
});

test('non-interop traffic passes with zero backend calls', async () => {
  const before = await rpc(supervisorGate.addrs.light_server, 'interop_getBlockHashByNumber', [toHex(SOURCE), 'latest']);
  assert.ok(before.body.result, JSON.stringify(before.body));
  const hash = await sender.sendTransaction({ to: '0x2222222222222222222222222222222222222222', value: parseEther('0.001') });
  assert.equal(await onDest(hash), true);
  const metrics = await (await fetch(`${gate.addrs.metrics}/metrics`)).text();
  assert.match(metrics, /interop_gate_ingress_transactions_total\{outcome="forwarded",reason="non_interop"\} [1-9]/);
});
