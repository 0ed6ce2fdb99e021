'use strict';
// Client-compatibility test for the Drive: JupyterLab's own client library,
// @jupyterlab/services, drives the Contents API (ContentsManager) and the
// Sessions API (SessionManager) against the server.
//
//   cd tests/node && npm ci && node --test contents.test.js     # Skylab (build/skylab)
//   SKYLAB_TEST_SERVER=jupyter node --test contents.test.js     # the reference server
//
// Uploads follow JupyterLab's file browser: files are sent in 1 MiB chunks
// (chunk 1, 2, ..., -1 for the last), base64-encoded.

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const WebSocket = require('ws');
const {
  ContentsManager, KernelManager, ServerConnection, SessionManager,
} = require('@jupyterlab/services');
const { startServer } = require('./server');

if (!process.env.SKYLAB_TEST_VERBOSE) console.debug = () => {};

const CHUNK = 1024 * 1024;

let server;
let settings;
let contents;
let kernels;
let sessions;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function emptyNotebook(marker) {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'python3', display_name: 'Python 3' } },
    cells: [
      { id: 'a1', cell_type: 'markdown', metadata: {}, source: `# ${marker}` },
      {
        id: 'b2', cell_type: 'code', metadata: {}, execution_count: 1, source: 'print(1)',
        outputs: [{ output_type: 'stream', name: 'stdout', text: `${marker}\n` }],
      },
    ],
  };
}

// JupyterLab's file browser upload: 1 MiB base64 chunks numbered 1..n, -1 last.
async function uploadChunked(path, data) {
  let model;
  const n = Math.max(1, Math.ceil(data.length / CHUNK));
  for (let i = 0; i < n; i++) {
    const chunk = i === n - 1 ? -1 : i + 1;
    model = await contents.save(path, {
      type: 'file', format: 'base64', chunk,
      content: data.subarray(i * CHUNK, (i + 1) * CHUNK).toString('base64'),
    });
  }
  return model;
}

async function names(dir) {
  const m = await contents.get(dir, { content: true });
  return m.content.map(c => c.name).sort();
}

before(async () => {
  server = await startServer();
  settings = ServerConnection.makeSettings({
    baseUrl: server.baseUrl,
    wsUrl: server.wsUrl,
    token: server.token,
    appendToken: true,
    WebSocket,
    fetch: (...a) => fetch(...a),
    Request,
    Headers,
  });
  contents = new ContentsManager({ serverSettings: settings });
  kernels = new KernelManager({ serverSettings: settings });
  sessions = new SessionManager({ serverSettings: settings, kernelManager: kernels });
  await withTimeout(Promise.all([kernels.ready, sessions.ready]), 10000, 'managers ready');
});

after(async () => {
  if (sessions) sessions.dispose();
  if (kernels) kernels.dispose();
  if (contents) contents.dispose();
  if (server) {
    if (process.env.SKYLAB_TEST_VERBOSE) process.stderr.write(server.log());
    await server.stop();
  }
});

describe(`ContentsManager against ${process.env.SKYLAB_TEST_SERVER || 'skylab'}`, () => {
  const dir = `node-${crypto.randomBytes(4).toString('hex')}`;

  before(async () => {
    const d = await contents.newUntitled({ type: 'directory' });
    await contents.rename(d.path, dir);
  });

  test('newUntitled names notebooks, files and folders as Jupyter does', async () => {
    const a = await contents.newUntitled({ path: dir, type: 'notebook' });
    const b = await contents.newUntitled({ path: dir, type: 'notebook' });
    const f = await contents.newUntitled({ path: dir, type: 'file', ext: '.txt' });
    const d = await contents.newUntitled({ path: dir, type: 'directory' });
    assert.equal(a.name, 'Untitled.ipynb');
    assert.equal(b.name, 'Untitled1.ipynb');
    assert.equal(f.name, 'untitled.txt');
    assert.equal(d.name, 'Untitled Folder');
    assert.equal(a.type, 'notebook');
    assert.equal(d.type, 'directory');
    const nb = await contents.get(a.path);
    assert.equal(nb.content.nbformat, 4);
    assert.deepEqual(nb.content.cells, []);
  });

  test('save, get and list a notebook and a text file', async () => {
    const saved = await contents.save(`${dir}/n.ipynb`, {
      type: 'notebook', format: 'json', content: emptyNotebook('hello'),
    });
    assert.equal(saved.type, 'notebook');
    assert.equal(saved.content, null);
    const got = await contents.get(`${dir}/n.ipynb`);
    assert.equal(got.format, 'json');
    assert.equal(got.content.cells[0].source, '# hello');
    assert.equal(got.content.cells[1].outputs[0].text, 'hello\n');
    await contents.save(`${dir}/t.txt`, { type: 'file', format: 'text', content: 'some text' });
    const t = await contents.get(`${dir}/t.txt`, { type: 'file', format: 'text', content: true });
    assert.equal(t.content, 'some text');
    assert.equal(t.mimetype, 'text/plain');
    const listed = await contents.get(dir);
    assert.equal(listed.type, 'directory');
    assert.ok(listed.content.some(c => c.name === 'n.ipynb' && c.type === 'notebook'));
    const meta = await contents.get(`${dir}/t.txt`, { content: false });
    assert.equal(meta.content, null);
    assert.equal(meta.size, 9);
  });

  test('rename, copy and delete', async () => {
    await contents.save(`${dir}/r.txt`, { type: 'file', format: 'text', content: 'R' });
    const moved = await contents.rename(`${dir}/r.txt`, `${dir}/r2.txt`);
    assert.equal(moved.path, `${dir}/r2.txt`);
    await assert.rejects(contents.get(`${dir}/r.txt`));
    const copy = await contents.copy(`${dir}/r2.txt`, dir);
    assert.equal(copy.name, 'r2-Copy1.txt');
    assert.equal((await contents.get(copy.path)).content, 'R');
    await contents.delete(copy.path);
    await contents.delete(`${dir}/r2.txt`);
    const left = await names(dir);
    assert.ok(!left.includes('r2.txt') && !left.includes('r2-Copy1.txt'), left.join(','));
    // rename onto an existing file is refused and changes nothing
    await contents.save(`${dir}/x.txt`, { type: 'file', format: 'text', content: 'X' });
    await contents.save(`${dir}/y.txt`, { type: 'file', format: 'text', content: 'Y' });
    await assert.rejects(contents.rename(`${dir}/x.txt`, `${dir}/y.txt`));
    assert.equal((await contents.get(`${dir}/y.txt`)).content, 'Y');
  });

  test('checkpoints: create, list, restore, delete', async () => {
    const path = `${dir}/cp.ipynb`;
    await contents.save(path, { type: 'notebook', format: 'json', content: emptyNotebook('one') });
    const cp = await contents.createCheckpoint(path);
    assert.ok(cp.id && cp.last_modified);
    await contents.save(path, { type: 'notebook', format: 'json', content: emptyNotebook('two') });
    const list = await contents.listCheckpoints(path);
    assert.ok(list.some(c => c.id === cp.id));
    await contents.restoreCheckpoint(path, cp.id);
    assert.equal((await contents.get(path)).content.cells[0].source, '# one');
    await contents.deleteCheckpoint(path, cp.id);
    assert.ok(!(await contents.listCheckpoints(path)).some(c => c.id === cp.id));
  });

  test('chunked upload of a 100 MB file, downloaded back identical', async () => {
    const data = crypto.randomBytes(100 * 1000 * 1000);
    const path = `${dir}/big.bin`;
    const model = await withTimeout(uploadChunked(path, data), 300000, 'upload');
    assert.equal(model.size, data.length);
    assert.equal(model.name, 'big.bin');
    const meta = await contents.get(path, { content: false });
    assert.equal(meta.size, data.length);
    const url = await contents.getDownloadUrl(path);
    const res = await fetch(url, { headers: { Authorization: `token ${server.token}` } });
    assert.equal(res.status, 200);
    const hash = crypto.createHash('sha256');
    for await (const part of res.body) hash.update(part);
    assert.equal(hash.digest('hex'), crypto.createHash('sha256').update(data).digest('hex'));
    await contents.delete(path);
  });

  test('a partial chunked upload is not a file', { skip: process.env.SKYLAB_TEST_SERVER === 'jupyter' }, async () => {
    const path = `${dir}/partial.bin`;
    await contents.save(path, { type: 'file', format: 'base64', chunk: 1, content: Buffer.alloc(10).toString('base64') });
    await contents.save(path, { type: 'file', format: 'base64', chunk: 2, content: Buffer.alloc(10).toString('base64') });
    assert.ok(!(await names(dir)).includes('partial.bin'));
    await assert.rejects(contents.get(path, { content: false }));
  });
});

describe(`SessionManager against ${process.env.SKYLAB_TEST_SERVER || 'skylab'}`, () => {
  test('session create, rename, rename of the notebook, kernel change, delete', async () => {
    const path = `sess-${crypto.randomBytes(4).toString('hex')}.ipynb`;
    await contents.save(path, { type: 'notebook', format: 'json', content: emptyNotebook('s') });
    const session = await withTimeout(
      sessions.startNew({ path, type: 'notebook', name: path, kernel: { name: 'python3' } }),
      60000, 'session startNew');
    try {
      assert.equal(session.path, path);
      assert.equal(session.type, 'notebook');
      assert.ok(session.kernel, 'the session has a kernel');
      const kernelId = session.kernel.id;
      await kernels.refreshRunning();
      assert.ok(Array.from(kernels.running()).some(k => k.id === kernelId));
      const found = await sessions.findByPath(path);
      assert.equal(found.id, session.id);

      // Rename the session (as JupyterLab does after renaming a notebook)...
      const renamed = `renamed-${path}`;
      await session.setPath(renamed);
      assert.equal((await sessions.findByPath(renamed)).id, session.id);

      // ...and, on Skylab, renaming the notebook itself moves its session.
      if ((process.env.SKYLAB_TEST_SERVER || 'skylab') === 'skylab') {
        await contents.rename(path, `moved-${path}`);
        const other = await sessions.findByPath(renamed);
        assert.equal(other.id, session.id);  // the session path was not the file's: unchanged
        await session.setPath(`moved-${path}`);
        await contents.rename(`moved-${path}`, `moved-again-${path}`);
        const moved = await sessions.findByPath(`moved-again-${path}`);
        assert.ok(moved, 'the session followed its notebook');
        assert.equal(moved.id, session.id);
        assert.equal(moved.kernel.id, kernelId);
      }

      // Change the kernel: a new one, the old one shut down.
      const newKernel = await withTimeout(session.changeKernel({ name: 'python3' }), 60000, 'changeKernel');
      assert.notEqual(newKernel.id, kernelId);
      await kernels.refreshRunning();
      const ids = Array.from(kernels.running()).map(k => k.id);
      assert.ok(ids.includes(newKernel.id) && !ids.includes(kernelId), ids.join(','));

      // Shut the session down: the kernel goes too.
      const sessionId = session.id;
      await session.shutdown();
      await sessions.refreshRunning();
      assert.ok(!Array.from(sessions.running()).some(s => s.id === sessionId));
      await kernels.refreshRunning();
      assert.ok(!Array.from(kernels.running()).some(k => k.id === newKernel.id));
    } finally {
      if (!session.isDisposed) session.dispose();
    }
  });
});
