#!/usr/bin/env node
// Co-editing benchmark (issue 14, part 2): keystroke -> collaborator latency
// with 2 and 10 editors on loopback, server CPU per edit, memory per open
// co-edited document. No peer in Debian (JupyterLab's collaboration extension
// is not packaged), so the figures are absolute.
//
//   node bench/collab_bench.mjs [--keys 300] [--interval 50] [--docs 50] [--json OUT]
//
// Method. A real `skylab serve` (build/skylab, or $SKYLAB_BIN) on 127.0.0.1
// with a fresh data dir. Clients are tests/node/collab_client.js: the real
// @codemirror/collab + @codemirror/state over the real WebSocket, in this one
// Node process (one clock). For N editors, every editor types into the SAME
// cell (the contended case: stale pushes, pulls and rebases happen) one
// character every --interval ms (staggered), --keys keystrokes in all per N.
// The latency of a keystroke at each other editor is the time from the local
// transaction to the moment that editor has applied the update (the k-th
// update of client X is X's k-th keystroke); p50/p95/max over all pairs.
// Server CPU per edit: utime+stime of the server process (/proc/PID/stat)
// over the typing phase divided by the keystrokes. Memory per open document:
// server RSS before and after --docs notebooks (20 cells, ~2 KB of source)
// were each joined by one co-editing client, divided by --docs.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(REPO, 'tests', 'node', 'x.js'));
const { CollabClient } = require('./collab_client.js');

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? a.concat([[v.slice(2), all[i + 1]]]) : a), []));
const KEYS = Number(args.keys ?? 300);
const INTERVAL = Number(args.interval ?? 50);
const DOCS = Number(args.docs ?? 50);
const sleep = ms => new Promise(r => setTimeout(r, ms));

function freePort() {
  return new Promise(res => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
}
function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 1000 / 100; // utime+stime in clock ticks (USER_HZ=100)
}
function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}
const { getSyncedVersion } = require(path.join(REPO, 'web', 'node_modules', '@codemirror/collab'));
const m0 = c => getSyncedVersion(c.cells.get('c0').state);
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };

const port = await freePort();
const token = crypto.randomBytes(16).toString('hex');
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'skylab-collab-bench-'));
const bin = process.env.SKYLAB_BIN || path.join(REPO, 'build', 'skylab');
const child = spawn(bin, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir],
  { env: { ...process.env, SKYLAB_ADMIN_TOKEN: token }, stdio: 'ignore', detached: true });
const base = `http://127.0.0.1:${port}`;
const api = async (method, p, body) => {
  const r = await fetch(base + p, { method, headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${await r.text()}`);
  return r.json();
};
const results = { method: 'see header of bench/collab_bench.mjs', keys: KEYS, interval_ms: INTERVAL };
try {
  for (let i = 0; i < 100; i++) { try { await api('GET', '/api'); break; } catch { await sleep(100); } }
  const notebook = n => ({ cells: Array.from({ length: n }, (_, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, outputs: [], execution_count: null,
    source: Array.from({ length: 5 }, (_, j) => `value_${i}_${j} = compute(${i}, ${j})  # a line`).join('\n') })), metadata: {}, nbformat: 4, nbformat_minor: 5 });

  for (const N of [2, 10]) {
    const p = `lat-${N}.ipynb`;
    await api('PUT', `/api/contents/${p}`, { type: 'notebook', format: 'json', content: notebook(20) });
    const url = `ws://127.0.0.1:${port}/api/skylab/collab/${p}`;
    const clients = Array.from({ length: N }, (_, i) => new CollabClient(url, token, `e${i}`));
    for (const c of clients) await c.connect();
    const sent = new Map(clients.map(c => [c.clientID, []]));
    const lat = [];
    // Receivers: count per-sender updates applied.
    for (const c of clients) {
      const seen = new Map();
      let next = c.cells.get('c0') ? m0(c) : 0; // the cell's version: updates before it are known
      c.listeners.push(m => {
        if (m.t !== 'updates' || m.cell !== 'c0') return;
        const now = performance.now();
        for (let i = 0; i < m.updates.length; i++) {
          const u = m.updates[i];
          if (m.version + i < next) continue; // a replay (pull after a stale push)
          next = m.version + i + 1;
          if (u.clientID === c.clientID || !sent.has(u.clientID)) continue;
          const k = seen.get(u.clientID) ?? 0;
          seen.set(u.clientID, k + 1);
          const t0 = sent.get(u.clientID)[k];
          if (t0 !== undefined) lat.push(now - t0);
        }
      });
    }
    await sleep(200);
    const cpu0 = cpuMs(child.pid);
    const t0 = performance.now();
    const per = Math.ceil(KEYS / N);
    await Promise.all(clients.map(async (c, i) => {
      await sleep((INTERVAL / N) * i);
      for (let k = 0; k < per; k++) {
        const len = c.cells.get('c0').state.doc.length;
        sent.get(c.clientID).push(performance.now());
        c.edit('c0', { from: Math.floor(len / 2), insert: String.fromCharCode(97 + (k % 26)) });
        await sleep(INTERVAL);
      }
    }));
    for (let i = 0; i < 400 && !clients.every(c => c.idle()); i++) await sleep(25);
    for (const c of clients) await c.ping();
    const cpu = cpuMs(child.pid) - cpu0;
    const wall = (performance.now() - t0) / 1000;
    const texts = new Set(clients.map(c => c.text('c0')));
    const edits = per * N;
    results[`editors_${N}`] = {
      keystrokes: edits, pairs: lat.length, expected_pairs: edits * (N - 1),
      p50_ms: +pct(lat, 0.5).toFixed(2), p95_ms: +pct(lat, 0.95).toFixed(2), max_ms: +Math.max(...lat).toFixed(2),
      server_cpu_ms_total: cpu, server_cpu_us_per_edit: +((cpu * 1000) / edits).toFixed(1), wall_s: +wall.toFixed(1),
      converged: texts.size === 1,
    };
    console.log(`${N} editors:`, JSON.stringify(results[`editors_${N}`]));
    for (const c of clients) c.disconnect();
  }

  // Memory per open co-edited document.
  const nb = notebook(20);
  const size = JSON.stringify(nb).length;
  for (let i = 0; i < DOCS; i++) await api('PUT', `/api/contents/mem-${i}.ipynb`, { type: 'notebook', format: 'json', content: nb });
  await sleep(500);
  const rss0 = rssKiB(child.pid);
  const held = [];
  for (let i = 0; i < DOCS; i++) {
    const c = new CollabClient(`ws://127.0.0.1:${port}/api/skylab/collab/mem-${i}.ipynb`, token, `m${i}`);
    await c.connect();
    held.push(c);
  }
  await sleep(500);
  const rss1 = rssKiB(child.pid);
  results.memory = { docs: DOCS, notebook_json_bytes: size, rss_before_kib: rss0, rss_after_kib: rss1, kib_per_document: +((rss1 - rss0) / DOCS).toFixed(1) };
  console.log('memory:', JSON.stringify(results.memory));
  for (const c of held) c.disconnect();
  if (args.json) fs.writeFileSync(args.json, JSON.stringify(results, null, 2));
} finally {
  try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
  for (let i = 0; i < 50; i++) { try { process.kill(child.pid, 0); await sleep(100); } catch { break; } }
  fs.rmSync(dataDir, { recursive: true, force: true });
}
