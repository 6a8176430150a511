// The interop activation boundary on a real chain: anvil mines the source chain's blocks at
// chosen timestamps (evm_setNextBlockTimestamp), so that one log sits before the fork time, one in
// the activation block (the first block at or after `interop_time`) and one in the block after.
// The gateway (ingress + light endpoint, light backend on the source node) must refuse the first
// two with -320600 and accept the third; a gate without `interop_time` accepts the activation
// block's message, so the refusal is the rule's doing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keccak256, toHex } from 'viem';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import {
  startAnvil, startGate, deployEmitter, wallet, messageOf, rpc, KEYS, OBSERVABILITY_TOML,
} from '../lib/harness.mjs';

const SOURCE = 901;
const DEST = 902;

let source; let dest; let gate; let plainGate;
let preLog; let activationLog; let afterLog;
let interopTime;

function gateToml(interopTimeLine) {
  return `
[server]
listen = "127.0.0.1:0"
[upstream]
url = "${dest.url}"
[ingress]
chain_id = ${DEST}
[validation]
policy = "light"
[light_server]
enabled = true
listen = "127.0.0.1:0"
${OBSERVABILITY_TOML}
[[light.chains]]
chain_id = ${SOURCE}
endpoints = [{ name = "source", url = "${source.url}" }]
${interopTimeLine}
`;
}

async function emitAt(emit, timestamp, n) {
  await source.client.request({ method: 'evm_setNextBlockTimestamp', params: [toHex(timestamp)] });
  const [log] = await emit(n);
  return log;
}

before(async () => {
  const base = BigInt(Math.floor(Date.now() / 1000)) - 600n;
  source = await startAnvil({ chainId: SOURCE, args: ['--timestamp', String(base)] });
  dest = await startAnvil({ chainId: DEST });
  const { emit } = await deployEmitter(source);
  interopTime = base + 100n;
  preLog = await emitAt(emit, base + 50n, 1);
  // Unaligned on purpose: the activation block is the first block at or after the fork time.
  activationLog = await emitAt(emit, interopTime + 1n, 2);
  afterLog = await emitAt(emit, interopTime + 3n, 3);
  gate = await startGate(gateToml(`interop_time = ${interopTime}`));
  plainGate = await startGate(gateToml(''));
});

after(async () => {
  for (const g of [gate, plainGate]) if (g) await g.stop();
  for (const n of [source, dest]) if (n) n.stop();
});

let nonce = 0;
async function submit(log) {
  const { id, payload } = await messageOf(source, log);
  const sender = wallet(dest, KEYS[2], gate.addrs.ingress);
  const request = await sender.prepareTransactionRequest({
    to: '0x1111111111111111111111111111111111111111', value: 1n, type: 'eip1559', gas: 100_000n,
    accessList: encodeAccessList(id, payload), nonce: nonce,
  });
  const serialized = await sender.signTransaction(request);
  try {
    const hash = await sender.sendRawTransaction({ serializedTransaction: serialized });
    nonce += 1;
    return { ok: true, hash };
  } catch (err) {
    return { ok: false, hash: keccak256(serialized), err };
  }
}

function rpcCode(err) {
  for (let e = err; e; e = e.cause) if (typeof e.code === 'number' && e.code < -32000) return e.code;
  return undefined;
}

async function check(url, log) {
  const { id, payload } = await messageOf(source, log);
  const entries = encodeAccessList(id, payload)[0].storageKeys;
  const desc = { timestamp: toHex(Math.floor(Date.now() / 1000)), timeout: toHex(7200), chainID: String(DEST) };
  return (await rpc(url, 'interop_checkAccessList', [entries, 'cross-unsafe', desc])).body;
}

test('the blocks are where the test put them', async () => {
  const ts = async (log) => (await source.client.getBlock({ blockNumber: log.blockNumber })).timestamp;
  assert.ok(await ts(preLog) < interopTime);
  assert.ok(await ts(activationLog) >= interopTime);
  assert.equal(afterLog.blockNumber, activationLog.blockNumber + 1n);
});

test('a message before the fork time is refused with conflicting data', async () => {
  const r = await submit(preLog);
  assert.equal(r.ok, false);
  assert.equal(rpcCode(r.err), -320600, String(r.err));
  assert.match(r.err.message, /before chain 901's interop activation/);
});

test('a message in the activation block is refused with conflicting data', async () => {
  const r = await submit(activationLog);
  assert.equal(r.ok, false);
  assert.equal(rpcCode(r.err), -320600, String(r.err));
  assert.match(r.err.message, new RegExp(`activation block ${activationLog.blockNumber}`));
  const body = await check(gate.addrs.light_server, activationLog);
  assert.equal(body.error.code, -320600, JSON.stringify(body));
});

test('a message in the block after the activation block is accepted and forwarded', async () => {
  const r = await submit(afterLog);
  assert.equal(r.ok, true, String(r.err));
  const tx = await dest.client.getTransaction({ hash: r.hash });
  assert.equal(tx.hash, r.hash);
  const body = await check(gate.addrs.light_server, afterLog);
  assert.deepEqual(body, { jsonrpc: '2.0', result: null, id: 1 });
});

test('without interop_time the activation block is not special', async () => {
  const body = await check(plainGate.addrs.light_server, activationLog);
  assert.deepEqual(body, { jsonrpc: '2.0', result: null, id: 1 });
});
