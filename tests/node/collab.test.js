'use strict';
// Randomized co-editing (issue 14): three @codemirror/collab clients over
// the real collab WebSocket make concurrent edits (text and structure), one
// goes offline, keeps editing and comes back, while a kernel streams output
// into a cell. Everything converges: the three clients, the server's live
// document and the file on disk hold the same notebook, every token typed
// into a cell that still exists is there exactly once, and every streamed
// line is in the cell. The seed is printed on failure (COLLAB_SEED=N reruns it).
//
//   cd tests/node && node --test collab.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const { startServer, sleep, until, codeNotebook } = require('./server');
const { CollabClient } = require('./collab_client');
const { mulberry32, textEdit } = require('./random_edits');

const SEED = Number(process.env.COLLAB_SEED || crypto.randomInt(1, 2 ** 31));
const STEPS = Number(process.env.COLLAB_STEPS || 600);
const LINES = 400;

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

function runCell(kernelId, cellId, code) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${server.wsUrl}/api/kernels/${kernelId}/channels?session_id=x&token=${server.token}`);
    ws.on('open', () => {
      const msgId = crypto.randomUUID();
      ws.send(JSON.stringify({
        channel: 'shell',
        header: { msg_id: msgId, msg_type: 'execute_request', username: 'test', session: 'x', date: new Date().toISOString(), version: '5.3' },
        parent_header: {}, metadata: { cellId },
        content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
      }));
      // Leave at once: the server records the rest.
      setTimeout(() => { ws.close(); resolve(msgId); }, 200);
    });
    ws.on('error', reject);
  });
}

test(`three clients converge (seed ${SEED})`, { timeout: 600000 }, async t => {
  t.diagnostic(`COLLAB_SEED=${SEED}`);
  const rnd = mulberry32(SEED);
  try {
    const path = `rand-${SEED}.ipynb`;
    const content = codeNotebook(...['a', 'b', 'c'].map(id => [id, `# ${id}\n`]), ['k', 'stream']);
    await server.api('PUT', `/api/contents/${path}`, { type: 'notebook', format: 'json', content });
    const url = `${server.wsUrl}/api/skylab/collab/${encodeURIComponent(path)}`;
    const clients = ['p', 'q', 'r'].map(n => new CollabClient(url, server.token, n));
    for (const c of clients) await c.connect();

    // The kernel streams into cell k meanwhile (no client runs it).
    const sess = await server.api('POST', '/api/sessions', { path, type: 'notebook', name: path, kernel: { name: 'python3' } });
    const code = `import time\nfor i in range(${LINES}):\n    print(f"line {i}", flush=True)\n    time.sleep(0.01)\n`;
    const streaming = clients[0].waitFor(m => m.t === 'outputs' && m.cell === 'k' && m.outputs.length > 0, 120000);
    await runCell(sess.kernel.id, 'k', code);
    await streaming; // the edits below race the stream
    const framesBefore = clients[0].received;
    let outputFramesDuringEdits = 0;
    clients[0].listeners.push(m => { if (m.t === 'outputs' && m.running) outputFramesDuringEdits++; });

    const typed = [];
    const offline = clients[2];
    let ids = 0;
    for (let step = 0; step < STEPS; step++) {
      if (step === Math.floor(STEPS / 4)) offline.disconnect();
      if (step === Math.floor((3 * STEPS) / 4)) await offline.connect();
      const c = clients[Math.floor(rnd() * clients.length)];
      const known = c.order.filter(id => c.cells.has(id));
      const r = rnd();
      if (r < 0.78 && known.length) {
        // Half the text edits go to one hot cell: concurrent pushes on one
        // cell (stale, pull, rebase) happen all the time there.
        const hot = known.includes('a') && rnd() < 0.5 ? 'a' : known[Math.floor(rnd() * known.length)];
        textEdit(rnd, c, hot, typed);
      } else if (r < 0.86) {
        const id = `${c.name}${ids++}`;
        const after = rnd() < 0.2 || !known.length ? null : known[Math.floor(rnd() * known.length)];
        const token = `<${c.name}.${typed.length}>`;
        typed.push({ token, cell: id });
        c.op({ kind: 'insert', after, cell: { id, cell_type: rnd() < 0.7 ? 'code' : 'markdown', source: token } });
      } else if (r < 0.90 && known.length > 4) {
        const id = known[Math.floor(rnd() * known.length)];
        if (id !== 'k' && id !== 'a') c.op({ kind: 'delete', id });
      } else if (r < 0.95 && known.length > 1) {
        const id = known[Math.floor(rnd() * known.length)];
        const after = rnd() < 0.2 ? null : known[Math.floor(rnd() * known.length)];
        if (after !== id) c.op({ kind: 'move', id, after });
      } else if (known.length) {
        const id = known[Math.floor(rnd() * known.length)];
        if (id !== 'k') c.op({ kind: 'type', id, cell_type: ['code', 'markdown', 'raw'][Math.floor(rnd() * 3)] });
      }
      if (rnd() < 0.3) await sleep(Math.floor(rnd() * 4));
    }

    assert.ok(outputFramesDuringEdits > 0, 'the kernel was not streaming during the edits');
    assert.ok(clients[0].received > framesBefore);
    // Quiesce: nothing unsent, nothing unconfirmed, then a round trip each.
    try {
      await until(() => clients.every(c => c.idle()), 'every client to be confirmed', 60000);
    } catch (e) {
      for (const c of clients) {
        const busy = [...c.cells].filter(([, x]) => x.inflight || require(require('node:path').join(__dirname, '../../web/node_modules/@codemirror/collab')).sendableUpdates(x.state).length).map(([id]) => id);
        console.error(c.name, 'online', c.online, 'ops', [...c.pendingOps.values()], 'busy', busy, 'errors', c.errors.slice(-5));
      }
      throw e;
    }
    for (const c of clients) await c.ping();
    await until(() => clients.every(c => c.idle()), 'every client to be confirmed again', 120000);
    for (const c of clients) await c.ping();

    const live = (await server.api('GET', `/api/contents/${path}`)).content;
    const server_view = live.cells.map(c => ({ id: c.id, type: c.cell_type, source: c.source }));
    for (const c of clients) assert.deepEqual(c.snapshot(), server_view, `client ${c.name} differs from the server`);
    for (const c of clients) if (c.errors.length) t.diagnostic(`${c.name} errors: ${JSON.stringify(c.errors.filter(e => e.code !== "no_cell"))}`);
    // Nothing typed into a surviving cell is lost or doubled.
    const byId = new Map(server_view.map(c => [c.id, c.source]));
    let checked = 0;
    for (const { token, cell } of typed) {
      if (!byId.has(cell)) continue;
      const src = byId.get(cell);
      assert.equal(src.split(token).length - 1, 1, `token ${token} in cell ${cell}: ${JSON.stringify(src)}`);
      checked++;
    }
    assert.ok(checked > STEPS / 10, `too few tokens checked: ${checked}`);
    const offlineTokens = typed.filter(x => x.token.startsWith('<r.')).length;
    assert.ok(offlineTokens > 0);

    // The stream reached the cell, every line once, and the clients saw it.
    const streamed = await until(async () => {
      const model = await server.api('GET', `/api/contents/${path}`);
      const k = model.content.cells.find(c => c.id === 'k');
      const running = (model.skylab && model.skylab.running_cells) || [];
      return k.execution_count != null && running.length === 0 ? k : null;
    }, 'the streamed cell to finish', 120000);
    const text = streamed.outputs.filter(o => o.output_type === 'stream').map(o => o.text).join('');
    const want = Array.from({ length: LINES }, (_, i) => `line ${i}\n`).join('');
    assert.equal(text, want);
    for (const c of clients) await c.ping();
    for (const c of clients) {
      const got = c.outputs.get('k');
      assert.ok(got, `client ${c.name} saw no outputs`);
      assert.deepEqual(got.outputs, streamed.outputs, `client ${c.name}'s outputs differ`);
    }

    // The file on disk equals what everybody converged to (the debounced save).
    await until(async () => {
      const r = await fetch(`${server.baseUrl}/files/${path}`, { headers: { Authorization: `token ${server.token}` } });
      const disk = JSON.parse(await r.text());
      const src = s => (Array.isArray(s) ? s.join('') : s);
      return JSON.stringify(disk.cells.map(c => ({ id: c.id, type: c.cell_type, source: src(c.source) }))) === JSON.stringify(server_view) &&
        JSON.stringify(disk.cells.find(c => c.id === 'k').outputs.map(o => src(o.text)).join('')) === JSON.stringify(want);
    }, 'the file on disk to equal the converged notebook', 120000);
    for (const c of clients) c.disconnect();
  } catch (e) {
    console.error(`FAILED with COLLAB_SEED=${SEED}`);
    throw e;
  }
});
