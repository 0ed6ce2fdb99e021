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
const { startServer, sleep } = require('./server');
const { CollabClient } = require('./collab_client');

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

async function api(method, p, body) {
  const r = await fetch(server.baseUrl + p, {
    method, headers: { Authorization: `token ${server.token}`, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

async function until(pred, what, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function notebook(path, cells) {
  await api('PUT', `/api/contents/${path}`, {
    type: 'notebook', format: 'json',
    content: { cells: cells.map(([id, source]) => ({ cell_type: 'code', id, source, metadata: {}, outputs: [], execution_count: null })), metadata: {}, nbformat: 4, nbformat_minor: 5 },
  });
  return `${server.wsUrl}/api/skylab/collab/${encodeURIComponent(path)}`;
}

const once = (text, token) => text.split(token).length - 1;

// Everyone confirmed, the server's document and the file on disk equal each client's.
async function converged(path, clients, cell) {
  await until(() => clients.every(c => c.idle()), 'the clients to be confirmed');
  for (const c of clients) await c.ping();
  await until(() => clients.every(c => c.idle()), 'the clients to be confirmed again');
  const live = (await api('GET', `/api/contents/${path}`)).content;
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
