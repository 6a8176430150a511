// The mempool revalidator against real nodes: the destination anvil does not mine, so interop
// txs sent to it (signed by viem, access lists by @eth-optimism/viem) stay in its pool; the
// revalidator reads that pool with `txpool_content`, checks the messages against the source anvil
// (light backend), publishes the invalid ones through its cursor feed, and turns a valid tx
// invalid after `anvil_reorg` removes its message on the source chain, with no restart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { keccak256, toHex } from 'viem';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import {
  startAnvil, startGate, deployEmitter, wallet, messageOf, sleep, rpc, KEYS, OBSERVABILITY_TOML,
} from '../lib/harness.mjs';

const SOURCE = 911;
const DEST = 912;

let source; let dest; let gate; let api; let emitLogs;

const emit = async (n) => (await emitLogs(n))[0];

/** Signs with viem and puts the tx straight into the destination node's pool. */
async function pool(accessList, nonce) {
  const w = wallet(dest, KEYS[2]);
  const request = await w.prepareTransactionRequest({ to: '0x1111111111111111111111111111111111111111', value: 1n, accessList, type: 'eip1559', gas: 100_000n, nonce });
  const serialized = await w.signTransaction(request);
  const hash = await w.sendRawTransaction({ serializedTransaction: serialized });
  assert.equal(hash, keccak256(serialized));
  return hash;
}

/** Follows the invalid feed from `cursor` until `pred(entries)` holds or time runs out. */
async function waitFeed(pred, timeoutMs = 15_000) {
  let cursor = '0x0';
  const seen = [];
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const r = await rpc(api, 'interop_invalidTransactions', [cursor]);
    assert.ok(r.body.result, JSON.stringify(r.body));
    seen.push(...r.body.result.entries);
    cursor = r.body.result.cursor;
    if (pred(seen)) return seen;
    await sleep(300);
  }
  return seen;
}

before(async () => {
  source = await startAnvil({ chainId: SOURCE });
  dest = await startAnvil({ chainId: DEST, args: ['--no-mining'] });
  ({ emit: emitLogs } = await deployEmitter(source));
  gate = await startGate(`
[ingress]
enabled = false
[validation]
policy = "light"
valid_cache_ttl_secs = 1
[[light.chains]]
chain_id = ${SOURCE}
endpoints = [{ name = "source", url = "${source.url}" }]
[light]
head_ttl_ms = 200
[revalidator]
enabled = true
listen = "127.0.0.1:0"
el_url = "${dest.url}"
chain_id = ${DEST}
min_safety = "unsafe"
interval_ms = 300
full_interval_ms = 600
${OBSERVABILITY_TOML}`);
  api = gate.addrs.revalidator;
  assert.ok(api, `revalidator address: ${JSON.stringify(gate.addrs)}`);
});

after(async () => {
  if (gate) await gate.stop();
  for (const n of [source, dest]) if (n) n.stop();
});

test('pooled txs are judged: the bad one once through the feed, the good one valid, then invalid after a reorg', async () => {
  const good = await emit(1);
  const other = await emit(2);
  await sleep(1100);
  const m1 = await messageOf(source, good);
  const m2 = await messageOf(source, other);
  const bad = encodeAccessList(m2.id, m2.payload);
  bad[0].storageKeys[bad[0].storageKeys.length - 1] = `0x03${'ab'.repeat(31)}`;
  // The destination's head must be current: the revalidator judges each presumed block at
  // head.timestamp + block time, exactly, and a node that has not mined since start-up would
  // place the fresh messages after its next block (not executable there yet).
  await dest.client.request({ method: 'evm_mine', params: [] });
  const goodHash = await pool(encodeAccessList(m1.id, m1.payload), 0);
  const badHash = await pool(bad, 1);
  const plainHash = await pool([], 2);

  const pending = await dest.client.request({ method: 'txpool_content', params: [] });
  assert.equal(Object.values(pending.pending).flatMap((s) => Object.values(s)).length, 3, 'the node keeps them pending');

  const feed = await waitFeed((e) => e.some((x) => x.hash === badHash));
  const badEntries = feed.filter((x) => x.hash === badHash);
  assert.equal(badEntries.length, 1, `exactly once through the cursor: ${JSON.stringify(feed)}`);
  assert.equal(badEntries[0].code, -320600);
  assert.match(badEntries[0].reason, /checksum/i);
  assert.ok(!feed.some((x) => x.hash === goodHash), 'the valid tx is not in the feed');

  const st = await rpc(api, 'interop_transactionStatus', [goodHash]);
  assert.equal(st.body.result.status, 'valid', JSON.stringify(st.body));
  const plain = await rpc(api, 'interop_transactionStatus', [plainHash]);
  assert.equal(plain.body.result.tracked, false, 'non-interop txs are not tracked');

  // Drop-in face: the unmodified-EL call answers from the same state.
  const entries = encodeAccessList(m1.id, m1.payload)[0].storageKeys;
  const now = Math.floor(Date.now() / 1000);
  const ok = await rpc(api, 'supervisor_checkAccessList', [entries, 'unsafe', { timestamp: toHex(now), timeout: toHex(0) }]);
  assert.deepEqual(ok.body, { jsonrpc: '2.0', result: null, id: 1 });
  const fs = await rpc(api, 'admin_getFailsafeEnabled', []);
  assert.equal(fs.body.result, false);

  // The message of the good tx leaves the source chain.
  const head = await source.client.getBlockNumber({ cacheTime: 0 });
  await source.client.request({ method: 'anvil_reorg', params: [Number(head - good.blockNumber + 1n), []] });
  const after = await waitFeed((e) => e.some((x) => x.hash === goodHash));
  const entry = after.find((x) => x.hash === goodHash);
  assert.ok(entry, `the reorged tx is published invalid: ${JSON.stringify(after)}`);
  assert.equal(entry.code, -320600);

  const status = await rpc(api, 'interop_revalidationStatus', []);
  assert.ok(status.body.result.passes > 0);
});
