// A first contact: `interop-gate dev` and a plain viem wallet client, unchanged. The wallet asks the
// gateway (and through it the simulated chain B) for everything `sendTransaction` needs (chain id,
// nonce, block, fees, gas), sends, and waits for the receipt; once for a plain transfer and once for
// an interop tx executing a real message from simulated chain A (access list built by OP's own
// @eth-optimism/viem). A method off the allow-list is refused by the gateway, saying so.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicClient, createWalletClient, defineChain, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { encodeAccessList } from '@eth-optimism/viem/utils/interop';
import { startDev, messageOf, rpc, sleep, KEYS } from '../lib/harness.mjs';

const CHAIN_A = 901;
const CHAIN_B = 902;
let dev; let wallet; let gatewayClient; let chainA;

const chain = (id, url) => defineChain({
  id, name: `sim-${id}`, nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 }, rpcUrls: { default: { http: [url] } },
});

before(async () => {
  dev = await startDev(['--tx-per-sec', '1']);
  const b = chain(CHAIN_B, dev.addrs.ingress);
  wallet = createWalletClient({ account: privateKeyToAccount(KEYS[0]), chain: b, transport: http(dev.addrs.ingress, { retryCount: 0 }), pollingInterval: 250 });
  gatewayClient = createPublicClient({ chain: b, transport: http(dev.addrs.ingress, { retryCount: 0 }), pollingInterval: 250 });
  const a = chain(CHAIN_A, dev.addrs.chainA);
  chainA = { chain: a, client: createPublicClient({ chain: a, transport: http(dev.addrs.chainA) }) };
});

after(async () => { if (dev) await dev.stop(); });

test('a viem wallet sends a plain transfer through dev and gets its receipt', async () => {
  const to = '0x1111111111111111111111111111111111111111';
  const hash = await wallet.sendTransaction({ to, value: 1n });
  const receipt = await gatewayClient.waitForTransactionReceipt({ hash, timeout: 20_000 });
  assert.equal(receipt.status, 'success');
  assert.equal(receipt.to, to);
  assert.equal(receipt.from.toLowerCase(), wallet.account.address.toLowerCase());
  const tx = await gatewayClient.getTransaction({ hash });
  assert.equal(tx.nonce, 0);
  assert.equal(await gatewayClient.getTransactionCount({ address: wallet.account.address }), 1);
});

test('a viem wallet sends an interop tx executing a chain A message through dev', async () => {
  // A log of a block that is at least a second old (the message must predate the executing time).
  // Chain A mines a block with logs every 2 s (the genesis block has none).
  let logs = [];
  for (let i = 0; i < 40 && logs.length === 0; i++) {
    const head = await chainA.client.getBlockNumber();
    if (head >= 1n) logs = await chainA.client.getLogs({ fromBlock: head, toBlock: head });
    if (logs.length === 0) await sleep(250);
  }
  assert.ok(logs.length > 0, 'simulated chain A emits logs in its mined blocks');
  await sleep(1100);
  const { id, payload } = await messageOf(chainA, logs[0]);
  const hash = await wallet.sendTransaction({ to: '0x2222222222222222222222222222222222222222', value: 0n, accessList: encodeAccessList(id, payload) });
  const receipt = await gatewayClient.waitForTransactionReceipt({ hash, timeout: 20_000 });
  assert.equal(receipt.status, 'success');
  const tx = await gatewayClient.getTransaction({ hash });
  assert.equal(tx.accessList[0].address.toLowerCase(), '0x4200000000000000000000000000000000000022');
});

test("the gateway's own allow-list refusal says it comes from the gateway", async () => {
  const r = await rpc(dev.addrs.ingress, 'debug_traceTransaction', ['0x00']);
  assert.equal(r.status, 403);
  assert.equal(r.body.error.code, -32601);
  assert.match(r.body.error.message, /debug_traceTransaction.*not served by this gateway/);
});
