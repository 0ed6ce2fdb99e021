'use strict';
// Merge on resync (issue 14): a co-editing client whose log position the
// server no longer knows (the server restarted: another epoch; or it is more
// than 2,000 updates behind: the log was compacted) gets the cell's whole
// text and rebases its unsent edits onto it. Edits made on both sides all
// survive, none twice, and the clients, the server and the file agree.
// @codemirror/collab clients (collab_client.js) with the app's resync.ts.
//
//   cd tests/node && node --test collab_resync.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, sleep, until, codeNotebook } = require('./server');
const { CollabClient } = require('./collab_client');
const crypto = require('node:crypto');
const { mulberry32, textEdit } = require('./random_edits');

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

async function notebook(path, cells) {
  await server.api('PUT', `/api/contents/${path}`, { type: 'notebook', format: 'json', content: codeNotebook(...cells) });
  return `${server.wsUrl}/api/skylab/collab/${encodeURIComponent(path)}`;
}

const once = (text, token) => text.split(token).length - 1;

// Everyone confirmed, the server's document and the file on disk equal each client's.
async function converged(path, clients, cell) {
  await until(() => clients.every(c => c.idle()), 'the clients to be confirmed');
  for (const c of clients) await c.ping();
  await until(() => clients.every(c => c.idle()), 'the clients to be confirmed again');
  const live = (await server.api('GET', `/api/contents/${path}`)).content;
  const src = live.cells.find(c => c.id === cell).source;
  for (const c of clients) assert.equal(c.text(cell), src, `client ${c.name} differs from the server`);
  await until(async () => {
    const r = await fetch(`${server.baseUrl}/files/${path}`, { headers: { Authorization: `token ${server.token}` } });
    const disk = JSON.parse(await r.text()).cells.find(c => c.id === cell).source;
    return (Array.isArray(disk) ? disk.join('') : disk) === src;
  }, 'the file on disk to follow');
  return src;
}

test('a server restart: unsent edits merge with a collaborator\'s in the same cell', { timeout: 180000 }, async () => {
  const path = 'restart.ipynb';
  const url = await notebook(path, [['m', 'first line\nsecond line\n']]);
  const a = new CollabClient(url, server.token, 'a');
  const b = new CollabClient(url, server.token, 'b');
  await a.connect();
  await b.connect();
  // a pushes <A1> and drops the connection before the confirmation can come:
  // the server applied it, a cannot know.
  a.edit('m', { from: 0, insert: '<A1>' });
  a.disconnect();
  // Offline, a keeps typing into the cell (never sent).
  a.edit('m', { from: 'first line'.length + 4, insert: ' <A2>' });
  a.edit('m', { from: a.text('m').length, insert: 'third <A3>\n' });
  // b edits the same cell meanwhile (confirmed, saved when the server stops).
  await until(() => b.text('m').includes('<A1>'), 'b to see <A1>');
  b.edit('m', { from: b.text('m').indexOf('second'), insert: '<B1> ' });
  await until(() => b.idle(), 'b to be confirmed');
  const epoch = a.epoch;

  await server.restart();
  b.disconnect();
  await b.connect();
  assert.notEqual(b.epoch, epoch, 'a restarted server starts a new epoch');
  b.edit('m', { from: 0, insert: '<B2>' });
  await a.connect();

  const src = await converged(path, [a, b], 'm');
  for (const t of ['<A1>', '<A2>', '<A3>', '<B1>', '<B2>']) assert.equal(once(src, t), 1, `${t} in ${JSON.stringify(src)}`);
  assert.equal(src, '<B2><A1>first line <A2>\n<B1> second line\nthird <A3>\n');
  a.disconnect();
  b.disconnect();
});

test('more than 2,000 updates behind: the whole text, and unsent edits merged', { timeout: 180000 }, async () => {
  const path = 'behind.ipynb';
  const url = await notebook(path, [['m', 'alpha\nomega\n'], ['n', 'other\n']]);
  const a = new CollabClient(url, server.token, 'a');
  const b = new CollabClient(url, server.token, 'b');
  await a.connect();
  await b.connect();
  a.disconnect();
  a.edit('m', { from: 'alpha'.length, insert: ' <A1>' });
  // b types 2,100 characters into the same cell (one update each): the log keeps 2,000.
  for (let i = 0; i < 2100; i++) b.edit('m', { from: 'alpha\n'.length + i, insert: String(i % 10) });
  await until(() => b.idle(), 'b to be confirmed', 120000);
  let reset = false;
  a.listeners.push(m => { if (m.t === 'reset') reset = true; });
  await a.connect(); // same epoch: a pulls from its old version, which is compacted away
  const src = await converged(path, [a, b], 'm');
  assert.ok(reset, 'the server answered with the whole text');
  assert.equal(a.epoch, b.epoch);
  assert.equal(once(src, '<A1>'), 1, src);
  assert.ok(src.startsWith('alpha <A1>\n0123456789'), src.slice(0, 40));
  assert.ok(src.endsWith('6789omega\n'), src.slice(-40));
  a.disconnect();
  b.disconnect();
});

// Randomized: three clients edit text and structure while the server
// restarts twice and two clients go offline (one across both restarts),
// with conflicting edits of the same cells. Every token typed into a cell
// that still exists is there exactly once; clients, server and file agree.
const SEED = Number(process.env.COLLAB_SEED || crypto.randomInt(1, 2 ** 31));
const STEPS = Number(process.env.COLLAB_STEPS || 500);

test(`three clients converge across restarts and offline periods (seed ${SEED})`, { timeout: 400000 }, async t => {
  t.diagnostic(`COLLAB_SEED=${SEED}`);
  const rnd = mulberry32(SEED);
  const path = `restarts-${SEED}.ipynb`;
  const url = await notebook(path, ['a', 'b', 'c', 'd'].map(id => [id, `# ${id}\n`]));
  const clients = ['p', 'q', 'r'].map(n => new CollabClient(url, server.token, n));
  for (const c of clients) await c.connect();
  const [p, q, r] = clients;
  const offline = new Set();
  const events = new Map([
    [Math.floor(STEPS * 0.2), async () => { r.disconnect(); offline.add(r); }],
    [Math.floor(STEPS * 0.35), 'restart'],
    [Math.floor(STEPS * 0.45), async () => { q.disconnect(); offline.add(q); }],
    [Math.floor(STEPS * 0.6), 'restart'],
    [Math.floor(STEPS * 0.75), async () => { offline.delete(r); await r.connect(); }],
    [Math.floor(STEPS * 0.85), async () => { offline.delete(q); await q.connect(); }],
  ]);
  const typed = [];
  let ids = 0, restarts = 0;
  try {
    for (let step = 0; step < STEPS; step++) {
      const ev = events.get(step);
      if (ev === 'restart') {
        await server.restart();
        restarts++;
        for (const c of clients) if (!offline.has(c)) await c.connect();
      } else if (ev) {
        await ev();
      }
      const c = clients[Math.floor(rnd() * clients.length)];
      const known = c.order.filter(id => c.cells.has(id));
      const x = rnd();
      if (x < 0.82 && known.length) {
        // Most edits go to two hot cells: conflicting edits on both sides of every resync.
        const hot = rnd() < 0.6 ? (rnd() < 0.5 ? 'a' : 'b') : known[Math.floor(rnd() * known.length)];
        textEdit(rnd, c, known.includes(hot) ? hot : known[0], typed);
      } else if (x < 0.9) {
        const id = `${c.name}${ids++}`;
        const after = rnd() < 0.2 || !known.length ? null : known[Math.floor(rnd() * known.length)];
        const token = `<${c.name}.${typed.length}>`;
        typed.push({ token, cell: id });
        c.op({ kind: 'insert', after, cell: { id, cell_type: 'code', source: token } });
      } else if (x < 0.93 && known.length > 5) {
        const id = known[Math.floor(rnd() * known.length)];
        if (id !== 'a' && id !== 'b') c.op({ kind: 'delete', id });
      } else if (known.length > 1) {
        const id = known[Math.floor(rnd() * known.length)];
        const after = rnd() < 0.2 ? null : known[Math.floor(rnd() * known.length)];
        if (after !== id) c.op({ kind: 'move', id, after });
      }
      if (rnd() < 0.3) await sleep(Math.floor(rnd() * 4));
    }
    assert.equal(restarts, 2);
    await until(() => clients.every(c => c.idle()), 'every client to be confirmed', 60000);
    for (const c of clients) await c.ping();
    await until(() => clients.every(c => c.idle()), 'every client to be confirmed again', 60000);
    for (const c of clients) await c.ping();
    const live = (await server.api('GET', `/api/contents/${path}`)).content;
    const view = live.cells.map(c => ({ id: c.id, type: c.cell_type, source: c.source }));
    for (const c of clients) assert.deepEqual(c.snapshot(), view, `client ${c.name} differs from the server`);
    const byId = new Map(view.map(c => [c.id, c.source]));
    let checked = 0;
    for (const { token, cell } of typed) {
      if (!byId.has(cell)) continue;
      assert.equal(byId.get(cell).split(token).length - 1, 1, `token ${token} in cell ${cell}: ${JSON.stringify(byId.get(cell))}`);
      checked++;
    }
    assert.ok(checked > STEPS / 10, `too few tokens checked: ${checked}`);
    for (const n of ['q', 'r']) assert.ok(typed.some(x => x.token.startsWith(`<${n}.`) && byId.has(x.cell)), `no token of ${n}`);
    await until(async () => {
      const res = await fetch(`${server.baseUrl}/files/${path}`, { headers: { Authorization: `token ${server.token}` } });
      const disk = JSON.parse(await res.text());
      const src = s => (Array.isArray(s) ? s.join('') : s);
      return JSON.stringify(disk.cells.map(c => ({ id: c.id, type: c.cell_type, source: src(c.source) }))) === JSON.stringify(view);
    }, 'the file on disk to equal the converged notebook');
    for (const c of clients) c.disconnect();
  } catch (e) {
    console.error(`FAILED with COLLAB_SEED=${SEED}`);
    for (const c of clients) console.error(c.name, 'online', c.online, 'ops', [...c.pendingOps.values()].length, 'errors', JSON.stringify(c.errors.slice(-5)));
    throw e;
  }
});
