// Freshness of the revalidator on real nodes: N trials of `anvil_reorg` on the source chain
// while a dependent interop tx waits in the destination node's pool (it does not mine). Each
// trial times, from the reorg call, until the tx is in `interop_invalidTransactions` and until
// the revalidator's drop-in `supervisor_checkAccessList` refuses its access list. Gate settings
// are the defaults except what the anvil setup needs (light backend only, min_safety "unsafe").
//
// Run (after `npm ci --prefix e2e` and a cargo build):
//   INTEROP_GATE_BIN=$PWD/target/release/interop-gate node e2e/bench/freshness.mjs [trials=10]
// `FRESHNESS_TOML` is appended to the gate's config (e.g. "[light]\nreorg_watch_ms = 500").
import { keccak256, toHex } from 'viem';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import {
  startAnvil, startGate, deployEmitter, wallet, messageOf, sleep, rpc, KEYS, OBSERVABILITY_TOML,
} from '../lib/harness.mjs';

const SOURCE = 921;
const DEST = 922;
const TRIALS = Number(process.argv[2] ?? 10);
const POLL_MS = 10;
const LIMIT_MS = 15_000;

const source = await startAnvil({ chainId: SOURCE });
const dest = await startAnvil({ chainId: DEST, args: ['--no-mining'] });
const { emit } = await deployEmitter(source);
const gate = await startGate(`
[ingress]
enabled = false
[validation]
policy = "light"
[[light.chains]]
chain_id = ${SOURCE}
endpoints = [{ name = "source", url = "${source.url}" }]
[revalidator]
enabled = true
listen = "127.0.0.1:0"
el_url = "${dest.url}"
chain_id = ${DEST}
min_safety = "unsafe"
${OBSERVABILITY_TOML}
${process.env.FRESHNESS_TOML ?? ''}`);
const api = gate.addrs.revalidator;

const w = wallet(dest, KEYS[2]);
async function pool(accessList, nonce) {
  const request = await w.prepareTransactionRequest({ to: '0x1111111111111111111111111111111111111111', value: 1n, accessList, type: 'eip1559', gas: 100_000n, nonce });
  const serialized = await w.signTransaction(request);
  await w.sendRawTransaction({ serializedTransaction: serialized });
  return keccak256(serialized);
}

async function until(pred, from) {
  while (Date.now() - from < LIMIT_MS) {
    if (await pred()) return Date.now() - from;
    await sleep(POLL_MS);
  }
  return Infinity;
}

let cursor = '0x0';
const published = new Set();
async function inFeed(hash) {
  const r = await rpc(api, 'interop_invalidTransactions', [cursor]);
  for (const e of r.body.result?.entries ?? []) published.add(e.hash);
  cursor = r.body.result?.cursor ?? cursor;
  return published.has(hash);
}

const feedMs = [];
const refuseMs = [];
try {
  for (let i = 0; i < TRIALS; i++) {
    const log = (await emit(1))[0];
    await sleep(1_100);
    const m = await messageOf(source, log);
    await dest.client.request({ method: 'evm_mine', params: [] });
    const list = encodeAccessList(m.id, m.payload);
    const hash = await pool(list, i);
    const valid = await until(async () => (await rpc(api, 'interop_transactionStatus', [hash])).body.result?.status === 'valid', Date.now());
    if (valid === Infinity) throw new Error(`trial ${i}: the tx was never judged valid`);
    // A random phase against the pass interval, as in production.
    await sleep(Math.floor(Math.random() * 2_000));
    const head = await source.client.getBlockNumber({ cacheTime: 0 });
    const t0 = Date.now();
    await source.client.request({ method: 'anvil_reorg', params: [Number(head - log.blockNumber + 1n), []] });
    const entries = list[0].storageKeys;
    let feed = null; let refuse = null;
    await until(async () => {
      const now = Math.floor(Date.now() / 1000);
      const [f, r] = await Promise.all([
        feed === null ? inFeed(hash) : true,
        refuse === null ? rpc(api, 'supervisor_checkAccessList', [entries, 'unsafe', { timestamp: toHex(now), timeout: toHex(0) }]).then((x) => Boolean(x.body.error)) : true,
      ]);
      if (f && feed === null) feed = Date.now() - t0;
      if (r && refuse === null) refuse = Date.now() - t0;
      return feed !== null && refuse !== null;
    }, t0);
    feedMs.push(feed ?? Infinity);
    refuseMs.push(refuse ?? Infinity);
    console.log(`trial ${i + 1}/${TRIALS}: in the invalid feed after ${feed} ms, drop-in refuses after ${refuse} ms`);
  }
} finally {
  await gate.stop();
  source.stop();
  dest.stop();
}
const stats = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return `median ${mid} ms, max ${s[s.length - 1]} ms`;
};
console.log(`${TRIALS} trials: invalid feed ${stats(feedMs)}; drop-in refusal ${stats(refuseMs)}`);
