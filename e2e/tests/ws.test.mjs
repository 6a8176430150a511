// WebSocket on the gateway's ingress, end to end: anvil as the upstream (it serves WebSocket on
// its HTTP port, which the gateway derives upstream.ws_url from), the real gateway binary, and
// viem's webSocket transport as the client. Submissions over WebSocket take the HTTP pipeline;
// everything else, eth_subscribe included, is proxied to anvil's WebSocket.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, createWalletClient, keccak256, webSocket } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import WebSocket from 'ws';
import {
  startAnvil, startGate, deployEmitter, messageOf, sleep, rpc, KEYS, OBSERVABILITY_TOML,
} from '../lib/harness.mjs';

const SOURCE = 901;
const DEST = 902;

let source; let dest; let gate; let emit;
let wsUrl; let httpUrl;

before(async () => {
  source = await startAnvil({ chainId: SOURCE });
  dest = await startAnvil({ chainId: DEST });
  ({ emit } = await deployEmitter(source));
  gate = await startGate(`
[server]
listen = "127.0.0.1:0"
[upstream]
url = "${dest.url}"
[ingress]
chain_id = ${DEST}
[validation]
policy = "light"
[[light.chains]]
chain_id = ${SOURCE}
endpoints = [{ name = "source", url = "${source.url}" }]
${OBSERVABILITY_TOML}`);
  httpUrl = gate.addrs.ingress;
  wsUrl = httpUrl.replace('http://', 'ws://');
});

after(async () => {
  if (gate) await gate.stop();
  for (const n of [source, dest]) if (n) n.stop();
});

const senderAccount = privateKeyToAccount(KEYS[2]);

function wsClients() {
  const transport = webSocket(wsUrl, { retryCount: 0, reconnect: false });
  return {
    pub: createPublicClient({ chain: dest.chain, transport }),
    wallet: createWalletClient({ account: senderAccount, chain: dest.chain, transport }),
  };
}

/** Signs a tx executing `accessList` on DEST (nonce read through the gateway's WebSocket). */
async function signed(wallet, accessList) {
  const request = await wallet.prepareTransactionRequest({ to: '0x1111111111111111111111111111111111111111', value: 1n, accessList, type: 'eip1559', gas: 100_000n });
  return wallet.signTransaction(request);
}

/** One raw JSON-RPC request over a fresh WebSocket; resolves with the answer object. */
function wsCall(method, params) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('no answer')); }, 20_000);
    ws.on('open', () => ws.send(JSON.stringify({ jsonrpc: '2.0', id: 42, method, params })));
    ws.on('message', (m) => { clearTimeout(timer); ws.close(); resolve(JSON.parse(m.toString())); });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

async function metric(name) {
  const text = await (await fetch(`${gate.addrs.metrics}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.split(' ').pop());
  return sum;
}

async function eventually(what, f) {
  for (let i = 0; i < 200; i++) { if (await f()) return; await sleep(50); }
  assert.fail(`never happened: ${what}`);
}

async function message() {
  const [log] = await emit(Date.now() % 1000);
  await sleep(1100); // the message must be older than the executing timestamp
  return messageOf(source, log);
}

test('a valid interop tx over WebSocket is accepted and reaches anvil', async () => {
  const { pub, wallet } = wsClients();
  const { id, payload } = await message();
  const raw = await signed(wallet, encodeAccessList(id, payload));
  const hash = await wallet.sendRawTransaction({ serializedTransaction: raw });
  assert.equal(hash, keccak256(raw));
  const receipt = await pub.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, 'success');
  await pub.transport.getRpcClient().then((c) => c.close());
});

test('an invalid interop tx over WebSocket gets the same code and data as over HTTP', async () => {
  const { wallet } = wsClients();
  const { id, payload } = await message();
  const al = encodeAccessList(id, payload);
  const keys = al[0].storageKeys;
  keys[keys.length - 1] = `0x03${'ab'.repeat(31)}`; // wrong checksum
  const raw = await signed(wallet, al);
  // viem surfaces the gateway's code.
  await assert.rejects(wallet.sendRawTransaction({ serializedTransaction: raw }), (err) => {
    let code;
    for (let e = err; e; e = e.cause) if (typeof e.code === 'number' && e.code < -32000) code = e.code;
    assert.equal(code, -320600, String(err));
    return true;
  });
  const overWs = await wsCall('eth_sendRawTransaction', [raw]);
  const overHttp = await rpc(httpUrl, 'eth_sendRawTransaction', [raw]);
  assert.equal(overWs.id, 42, 'the client id is kept');
  assert.equal(overWs.error.code, -320600);
  assert.deepEqual(overWs.error, overHttp.body.error, 'same code, message and data');
  assert.equal(overWs.error.data.txHash, keccak256(raw));
  await assert.rejects(dest.client.getTransaction({ hash: keccak256(raw) }), 'never reached anvil');
});

test('newHeads is relayed through the gateway while txs are sent over the same socket', async () => {
  const { pub, wallet } = wsClients();
  const heads = [];
  const unwatch = pub.watchBlocks({ onBlock: (b) => heads.push(b.number), emitOnBegin: false });
  await eventually('subscribed at anvil through the gateway', async () => (await metric('interop_gate_ws_subscriptions')) >= 1);
  const sent = [];
  for (let i = 0; i < 3; i++) {
    const raw = await signed(wallet, []);
    sent.push(await wallet.sendRawTransaction({ serializedTransaction: raw }));
  }
  const receipts = await Promise.all(sent.map((hash) => pub.waitForTransactionReceipt({ hash })));
  const mined = receipts.map((r) => r.blockNumber);
  await eventually('a head for every block with our txs', async () => mined.every((n) => heads.includes(n)));
  unwatch();
  await (await pub.transport.getRpcClient()).close();
});

test('a client disconnect closes its upstream WebSocket and subscription', async () => {
  const upstreamLinks = () => metric('interop_gate_ws_connections{side="upstream"}');
  await eventually('earlier clients\' links are closed', async () => (await upstreamLinks()) === 0);
  const ws = new WebSocket(wsUrl);
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  const subId = await new Promise((resolve) => {
    ws.once('message', (m) => resolve(JSON.parse(m.toString()).result));
    ws.send(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_subscribe', params: ['newHeads'] }));
  });
  assert.match(subId, /^0x/);
  // A head reaches this client.
  const head = new Promise((resolve) => ws.on('message', (m) => {
    const j = JSON.parse(m.toString());
    if (j.method === 'eth_subscription' && j.params.subscription === subId) resolve(j.params.result);
  }));
  await dest.client.request({ method: 'evm_mine', params: [] });
  assert.ok((await head).number);
  assert.equal(await upstreamLinks(), 1, 'one upstream link, this client\'s');
  ws.terminate();
  await eventually('the gateway closed its upstream link', async () => (await upstreamLinks()) === 0);
  assert.equal(await metric('interop_gate_ws_subscriptions'), 0);
});
