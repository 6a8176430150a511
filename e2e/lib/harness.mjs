// Processes and clients for the end-to-end suite: real anvil nodes, the real interop-gate binary,
// solc-compiled contracts, viem clients. Everything listens on 127.0.0.1 with OS-chosen ports.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import {
  createPublicClient, createWalletClient, http, defineChain, concat, keccak256, toHex,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
export const ROOT = join(here, '..', '..');
const ANVIL = join(here, '..', 'node_modules', '@foundry-rs', 'anvil-linux-amd64', 'bin', 'anvil');

// anvil's well-known dev keys (public test mnemonic).
export const KEYS = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
];

const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } });

function waitForLine(proc, pattern, what, timeoutMs = 60_000) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`${what}: no ${pattern} within ${timeoutMs} ms:\n${seen}`)), timeoutMs);
    const onData = (buf) => {
      seen += buf.toString();
      const lines = seen.split('\n');
      for (const line of lines) {
        const m = line.match(pattern);
        if (m) { clearTimeout(timer); resolve(m); return; }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', (b) => { seen += b.toString(); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${what} exited (${code}):\n${seen}`)); });
  });
}

/** Starts an anvil node. */
export async function startAnvil({ chainId, args = [] }) {
  if (!existsSync(ANVIL)) throw new Error(`anvil not installed at ${ANVIL}: run npm ci in e2e/`);
  const proc = spawn(ANVIL, ['--port', '0', '--host', '127.0.0.1', '--chain-id', String(chainId), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  const m = await waitForLine(proc, /Listening on (127\.0\.0\.1:\d+)/, `anvil ${chainId}`);
  const url = `http://${m[1]}`;
  const chain = defineChain({
    id: chainId, name: `anvil-${chainId}`, nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
    rpcUrls: { default: { http: [url] } },
  });
  const client = createPublicClient({ chain, transport: http(url) });
  return { url, chain, client, proc, stop: () => { proc.kill('SIGTERM'); children.delete(proc); } };
}

/** The interop-gate binary built by cargo (release preferred when present). */
export function gateBinary() {
  if (process.env.INTEROP_GATE_BIN) return process.env.INTEROP_GATE_BIN;
  for (const p of ['release', 'debug']) {
    const f = join(ROOT, 'target', p, 'interop-gate');
    if (existsSync(f)) return f;
  }
  throw new Error('interop-gate binary not built: run cargo build first');
}

/** Starts interop-gate with `toml` as its config; resolves with the bound addresses by listener. */
export async function startGate(toml) {
  const dir = mkdtempSync(join(tmpdir(), 'igate-'));
  const cfg = join(dir, 'config.toml');
  writeFileSync(cfg, toml);
  const proc = spawn(gateBinary(), ['--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.GATE_LOG ?? 'info' } });
  children.add(proc);
  const addrs = {};
  const logs = [];
  await new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`interop-gate did not start:\n${logs.join('\n')}`)), 30_000);
    proc.stdout.on('data', (b) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line);
          if (j.message === 'listening' && j.listener && j.addr) addrs[j.listener] = `http://${j.addr}`;
          if (j.message === 'started') { clearTimeout(timer); resolve(); }
        } catch { /* not JSON */ }
      }
    });
    proc.stderr.on('data', (b) => logs.push(b.toString()));
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`interop-gate exited (${code}):\n${logs.join('\n')}`)); });
  });
  return {
    addrs, logs, proc,
    stop: () => new Promise((resolve) => { proc.once('exit', (code, sig) => { children.delete(proc); resolve({ code, sig }); }); proc.kill('SIGTERM'); }),
  };
}

/** Compiles contracts/Emitter.sol with solc from npm. */
export function compileEmitter() {
  const solc = require('solc');
  const source = readFileSync(join(here, '..', 'contracts', 'Emitter.sol'), 'utf8');
  const input = {
    language: 'Solidity',
    sources: { 'Emitter.sol': { content: source } },
    settings: { evmVersion: 'cancun', outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } } },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors ?? []).filter((e) => e.severity === 'error');
  if (errors.length) throw new Error(errors.map((e) => e.formattedMessage).join('\n'));
  const c = out.contracts['Emitter.sol'].Emitter;
  return { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
}

/** The listeners every test gate exposes beside its role: metrics and admin on loopback ports,
 * JSON logs (startGate reads the bound addresses from them). */
export const OBSERVABILITY_TOML = `[metrics]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[log]
format = "json"
`;

/** Deploys the emitter on `node`; `emit(n, count)` sends one tx emitting `count` logs (ping or
 * pingMany) and resolves with its receipt's logs. */
export async function deployEmitter(node, key = KEYS[1]) {
  const { abi, bytecode } = compileEmitter();
  const w = wallet(node, key);
  const hash = await w.deployContract({ abi, bytecode });
  const address = (await node.client.waitForTransactionReceipt({ hash })).contractAddress;
  const emit = async (n, count = 1) => {
    const tx = await w.writeContract({ address, abi, functionName: count > 1 ? 'pingMany' : 'ping', args: [BigInt(count > 1 ? count : n), toHex(`msg-${n}`)] });
    const receipt = await node.client.waitForTransactionReceipt({ hash: tx });
    if (receipt.status !== 'success') throw new Error(`emit ${n}: ${receipt.status}`);
    return receipt.logs;
  };
  return { address, abi, emit };
}

export function wallet(node, key = KEYS[0], url = node.url) {
  return createWalletClient({ account: privateKeyToAccount(key), chain: node.chain, transport: http(url, { retryCount: 0 }) });
}

/** Everything needed to execute one log as a message: the viem identifier and payload. */
export async function messageOf(node, log) {
  const block = await node.client.getBlock({ blockNumber: log.blockNumber });
  return {
    id: {
      origin: log.address,
      blockNumber: log.blockNumber,
      logIndex: BigInt(log.logIndex),
      timestamp: block.timestamp,
      chainId: BigInt(node.chain.id),
    },
    payload: concat([...log.topics, log.data]),
  };
}

export const payloadHash = (payload) => keccak256(payload);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A raw JSON-RPC call (for methods viem has no action for). */
export async function rpc(url, method, params = []) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Starts `interop-gate dev` (two simulated chains, light supervisor endpoint, ingress,
 * revalidator, traffic generator); resolves with the addresses it prints, by label. */
export async function startDev(args = []) {
  const proc = spawn(gateBinary(), ['dev', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  const addrs = {};
  const wanted = { ingress: /ingress \(send txs here\)\s+(\S+)/, chainA: /chain A \(\d+\) RPC\s+(\S+)/, chainB: /chain B \(\d+\) RPC \(upstream\)\s+(\S+)/ };
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`interop-gate dev printed no addresses:\n${out}`)), 30_000);
    proc.stdout.on('data', (b) => {
      out += b.toString();
      for (const [k, re] of Object.entries(wanted)) { const m = out.match(re); if (m) addrs[k] = m[1]; }
      if (Object.keys(wanted).every((k) => addrs[k])) { clearTimeout(timer); resolve(); }
    });
    proc.stderr.on('data', (b) => { out += b.toString(); });
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`interop-gate dev exited (${code}):\n${out}`)); });
  });
  return {
    addrs, proc,
    stop: () => new Promise((resolve) => { proc.once('exit', (code, sig) => { children.delete(proc); resolve({ code, sig }); }); proc.kill('SIGINT'); }),
  };
}
