'use strict';
// Client-compatibility test for terminals: JupyterLab's own TerminalManager /
// TerminalConnection (@jupyterlab/services) start a terminal in a runtime,
// type into it, read its output and shut it down, over the Jupyter Server
// terminals API and terminado's WebSocket messages.
//
//   node --test terminal.test.js      (as root, with bubblewrap: the shell runs in a runtime sandbox)

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const { PageConfig } = require('@jupyterlab/coreutils');
const { ServerConnection, TerminalManager } = require('@jupyterlab/services');
const { startServer } = require('./server');

if (!process.env.SKYLAB_TEST_VERBOSE) console.debug = () => {};

let server;
let settings;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

before(async () => {
  // As Jupyter Server's page config says when terminals are enabled.
  PageConfig.setOption('terminalsAvailable', 'true');
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
});

after(async () => {
  if (server) await server.stop();
});

test('TerminalManager starts a terminal in a runtime, echoes, and shuts it down', async () => {
  const manager = new TerminalManager({ serverSettings: settings });
  await withTimeout(manager.ready, 20000, 'TerminalManager ready');
  // No body names a runtime: the server starts one of the default type.
  const term = await withTimeout(manager.startNew(), 120000, 'startNew');
  assert.ok(term.name);
  let out = '';
  const seen = (wanted) => withTimeout(new Promise(resolve => {
    const check = () => { if (out.includes(wanted)) { term.messageReceived.disconnect(onMsg); resolve(); } };
    const onMsg = (_t, msg) => { if (msg.type === 'stdout') out += msg.content[0]; check(); };
    term.messageReceived.connect(onMsg);
    check();
  }), 60000, `terminal output ${JSON.stringify(wanted)} (got ${JSON.stringify(out.slice(-500))})`);

  term.send({ type: 'set_size', content: [30, 100, 300, 1000] });
  term.send({ type: 'stdin', content: ['echo hello-$((6*7)) from $(pwd) as $(id -u)\r'] });
  await seen('hello-42 from /content as ');
  assert.match(out, /hello-42 from \/content as [1-9][0-9]*/);
  term.send({ type: 'stdin', content: ['stty size\r'] });
  await seen('30 100');

  // Listed as JupyterLab lists running terminals.
  await manager.refreshRunning();
  assert.ok([...manager.running()].some(m => m.name === term.name));

  const disposed = new Promise(resolve => term.disposed.connect(() => resolve()));
  await manager.shutdown(term.name);
  await withTimeout(disposed, 20000, 'terminal connection disposed');
  await manager.refreshRunning();
  assert.ok(![...manager.running()].some(m => m.name === term.name));
  const r = await fetch(`${server.baseUrl}/api/terminals/${term.name}`, {
    headers: { Authorization: `token ${server.token}` },
  });
  assert.equal(r.status, 404);
  manager.dispose();
});
