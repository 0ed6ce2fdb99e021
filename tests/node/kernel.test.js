'use strict';
// Client-compatibility test: an independent Jupyter client library,
// @jupyterlab/services (the one JupyterLab itself uses), drives the server
// through KernelManager / KernelConnection over REST + WebSocket.
//
//   cd tests/node && npm ci && npm test                     # Skylab (build/skylab)
//   node --test kernel.test.js                              # this file only
//   SKYLAB_BIN=/path/to/skylab npm test
//   SKYLAB_TEST_SERVER=jupyter npm test                     # the reference server
//
// Every scenario asserts on what the kernel sent back, so it fails when the
// server does not carry the feature (stdin, interrupt, restart, ...).

const { describe, test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const WebSocket = require('ws');
const {
  KernelAPI, KernelManager, KernelSpecAPI, ServerConnection,
} = require('@jupyterlab/services');
const { startServer, sleep } = require('./server');

const V1 = 'v1.kernel.websocket.jupyter.org';
// Quiet the library's per-message debug logging unless asked for.
if (!process.env.SKYLAB_TEST_VERBOSE) console.debug = () => {};

// A `ws` WebSocket that remembers which subprotocol each connection got.
const negotiated = [];
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols, opts) {
    super(url, protocols, opts);
    this.on('open', () => negotiated.push(this.protocol));
  }
}
// A `ws` WebSocket that offers no subprotocol: forces the legacy JSON framing.
class LegacyWebSocket extends WebSocket {
  constructor(url, _protocols, opts) {
    super(url, [], opts);
  }
}

let server;
let settings;
let manager;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// Runs code and collects everything the kernel sends for it.
async function run(kernel, code, { timeout = 20000, allowStdin = false, onStdin, onIOPub } = {}) {
  const future = kernel.requestExecute({ code, allow_stdin: allowStdin, stop_on_error: false });
  const iopub = [];
  future.onIOPub = msg => { iopub.push(msg); if (onIOPub) onIOPub(msg, future); };
  if (onStdin) future.onStdin = msg => onStdin(msg, future);
  const reply = await withTimeout(future.done, timeout, `execute ${JSON.stringify(code)}`);
  const stream = name => iopub
    .filter(m => m.header.msg_type === 'stream' && m.content.name === name)
    .map(m => m.content.text).join('');
  return {
    reply: reply.content,
    iopub,
    stdout: stream('stdout'),
    stderr: stream('stderr'),
    results: iopub.filter(m => m.header.msg_type === 'execute_result'),
    displays: iopub.filter(m => m.header.msg_type === 'display_data'),
    errors: iopub.filter(m => m.header.msg_type === 'error'),
    states: iopub.filter(m => m.header.msg_type === 'status').map(m => m.content.execution_state),
  };
}

async function value(kernel, expr) {
  const r = await run(kernel, expr);
  assert.equal(r.reply.status, 'ok', `evaluating ${expr}: ${JSON.stringify(r.reply)}`);
  assert.equal(r.results.length, 1, `one execute_result for ${expr}`);
  return r.results[0].content.data['text/plain'];
}

function waitForStatus(kernel, wanted, ms) {
  return withTimeout(new Promise(resolve => {
    if (wanted.includes(kernel.status)) return resolve(kernel.status);
    const seen = (_k, status) => {
      if (wanted.includes(status)) { kernel.statusChanged.disconnect(seen); resolve(status); }
    };
    kernel.statusChanged.connect(seen);
  }), ms, `kernel status in ${wanted}`);
}

before(async () => {
  server = await startServer();
  settings = ServerConnection.makeSettings({
    baseUrl: server.baseUrl,
    wsUrl: server.wsUrl,
    token: server.token,
    appendToken: true,
    WebSocket: RecordingWebSocket,
    fetch: (...a) => fetch(...a),
    Request,
    Headers,
  });
  manager = new KernelManager({ serverSettings: settings });
  await withTimeout(manager.ready, 10000, 'KernelManager ready');
});

after(async () => {
  if (manager) manager.dispose();
  if (server) {
    if (process.env.SKYLAB_TEST_VERBOSE) process.stderr.write(server.log());
    await server.stop();
  }
});

describe(`@jupyterlab/services against ${process.env.SKYLAB_TEST_SERVER || 'skylab'}`, () => {
  test('REST: kernelspecs list python3 and an unauthenticated request is refused', async () => {
    const specs = await KernelSpecAPI.getSpecs(settings);
    assert.ok(specs.kernelspecs.python3, `python3 in ${Object.keys(specs.kernelspecs)}`);
    assert.ok(specs.default in specs.kernelspecs, 'default names a listed spec');
    assert.equal(specs.kernelspecs.python3.language, 'python');
    const anon = await fetch(`${server.baseUrl}/api/kernels`);
    assert.ok([401, 403].includes(anon.status), `no token -> 401/403, got ${anon.status}`);
  });

  describe('one kernel through KernelManager.startNew', () => {
    let kernel;

    before(async () => {
      kernel = await withTimeout(manager.startNew({ name: 'python3' }), 30000, 'startNew');
    });
    after(async () => {
      if (kernel && !kernel.isDisposed) {
        await withTimeout(kernel.shutdown(), 10000, 'shutdown').catch(() => {});
      }
    });

    test('kernel model, websocket and kernel_info', async t => {
      assert.match(kernel.id, /^[0-9a-f-]{8,}$/i);
      assert.equal(kernel.name, 'python3');
      const info = await withTimeout(kernel.info, 20000, 'kernel_info');
      assert.equal(info.status, 'ok');
      assert.equal(info.language_info.name, 'python');
      assert.equal(kernel.connectionStatus, 'connected');
      const model = await KernelAPI.getKernelModel(kernel.id, settings);
      assert.equal(model.id, kernel.id);
      assert.ok(['idle', 'busy', 'starting'].includes(model.execution_state), model.execution_state);
      assert.ok(model.connections >= 1, `connections=${model.connections}`);
      assert.ok(!Number.isNaN(Date.parse(model.last_activity)), `last_activity ${model.last_activity}`);
      const running = await KernelAPI.listRunning(settings);
      assert.ok(running.some(k => k.id === kernel.id), 'kernel listed in /api/kernels');
      t.diagnostic(`websocket subprotocol: ${JSON.stringify(negotiated[negotiated.length - 1])}`);
      // Both Skylab and Jupyter Server (>= 1.2x) accept the v1 binary
      // framing that the library offers first.
      assert.equal(negotiated[negotiated.length - 1], V1, 'v1 kernel websocket subprotocol');
    });

    test('1+1 -> execute_result 2, busy/idle status', async () => {
      const r = await run(kernel, '1+1');
      assert.equal(r.reply.status, 'ok');
      assert.equal(r.results.length, 1);
      assert.equal(r.results[0].content.data['text/plain'], '2');
      assert.equal(r.results[0].content.execution_count, r.reply.execution_count);
      assert.ok(r.states.includes('busy') && r.states.includes('idle'), `states ${r.states}`);
    });

    test('!echo hi -> stream stdout "hi"', async () => {
      const r = await run(kernel, '!echo hi');
      assert.equal(r.reply.status, 'ok');
      assert.equal(r.stdout.trim(), 'hi');
    });

    test('print to stdout and stderr, and an exception -> error message', async () => {
      const r = await run(kernel, 'import sys\nprint("out")\nprint("err", file=sys.stderr)\n1/0');
      assert.equal(r.stdout, 'out\n');
      assert.equal(r.stderr, 'err\n');
      assert.equal(r.reply.status, 'error');
      assert.equal(r.reply.ename, 'ZeroDivisionError');
      assert.equal(r.errors.length, 1);
      assert.equal(r.errors[0].content.ename, 'ZeroDivisionError');
    });

    test('matplotlib inline plot -> display_data image/png', async () => {
      const r = await run(kernel,
        '%matplotlib inline\nimport matplotlib.pyplot as plt\n' +
        'plt.plot([1, 3, 2])\nplt.show()', { timeout: 30000 });
      assert.equal(r.reply.status, 'ok', JSON.stringify(r.reply));
      const pngs = r.displays.filter(m => m.content.data['image/png']);
      assert.equal(pngs.length, 1, `display_data with image/png (got ${r.iopub.map(m => m.header.msg_type)})`);
      const png = Buffer.from(pngs[0].content.data['image/png'], 'base64');
      assert.ok(png.length > 1000, `png of ${png.length} bytes`);
      assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    });

    test('input() via onStdin / sendInputReply', async () => {
      let prompts = 0;
      const r = await run(kernel, 'name = input("Your name? ")\nprint("hello " + name)', {
        allowStdin: true,
        onStdin: (msg, future) => {
          assert.equal(msg.header.msg_type, 'input_request');
          assert.equal(msg.content.prompt, 'Your name? ');
          prompts += 1;
          future.sendInputReply({ status: 'ok', value: 'skylab' }, msg.header);
        },
      });
      assert.equal(prompts, 1, 'one input_request');
      assert.equal(r.reply.status, 'ok', JSON.stringify(r.reply));
      assert.match(r.stdout, /hello skylab\n$/);
      assert.equal(await value(kernel, 'name'), "'skylab'");
    });

    test('interrupt stops time.sleep(100) within 2 s', async () => {
      let busy;
      const isBusy = new Promise(resolve => { busy = resolve; });
      const future = kernel.requestExecute({ code: 'import time\ntime.sleep(100)' });
      future.onIOPub = msg => {
        if (msg.header.msg_type === 'status' && msg.content.execution_state === 'busy') busy();
      };
      await withTimeout(isBusy, 10000, 'kernel busy with sleep');
      await sleep(300); // let the kernel get into time.sleep
      const t0 = Date.now();
      await kernel.interrupt();
      const reply = await withTimeout(future.done, 2000, 'execute_reply after interrupt');
      const elapsed = Date.now() - t0;
      assert.ok(elapsed < 2000, `interrupt took ${elapsed} ms`);
      assert.equal(reply.content.status, 'error');
      assert.equal(reply.content.ename, 'KeyboardInterrupt');
      assert.equal(await value(kernel, '6*7'), '42', 'kernel usable after interrupt');
    });

    test('restart resets state (new process, variables gone)', async () => {
      // A marker on the sys module survives %reset but not a new interpreter
      // (pids do not tell: a sandboxed kernel can be pid 2 every time).
      await value(kernel, 'x = 1234; x');
      await value(kernel, 'import sys; sys._skylab_restart_marker = "old"; sys._skylab_restart_marker');
      await withTimeout(kernel.restart(), 30000, 'restart');
      await waitForStatus(kernel, ['idle'], 30000);
      assert.equal(await value(kernel, 'import sys; hasattr(sys, "_skylab_restart_marker")'),
        'False', 'a new kernel process after restart');
      const r = await run(kernel, 'x');
      assert.equal(r.reply.status, 'error');
      assert.equal(r.reply.ename, 'NameError');
      assert.equal(await value(kernel, '1+1'), '2');
    });

    test('legacy JSON framing (no subprotocol) drives the same kernel', async () => {
      const legacySettings = ServerConnection.makeSettings({ ...settings, WebSocket: LegacyWebSocket });
      const legacyManager = new KernelManager({ serverSettings: legacySettings });
      try {
        const conn = legacyManager.connectTo({ model: { id: kernel.id, name: kernel.name } });
        const info = await withTimeout(conn.info, 20000, 'kernel_info over legacy framing');
        assert.equal(info.language_info.name, 'python');
        assert.equal(await value(conn, '[i*i for i in range(4)]'), '[0, 1, 4, 9]');
        conn.dispose();
      } finally {
        legacyManager.dispose();
      }
    });

    test('shutdown removes the kernel', async () => {
      const id = kernel.id;
      await withTimeout(kernel.shutdown(), 15000, 'shutdown');
      assert.equal(kernel.status, 'dead');
      const running = await KernelAPI.listRunning(settings);
      assert.ok(!running.some(k => k.id === id), 'kernel gone from /api/kernels');
      const r = await fetch(`${server.baseUrl}/api/kernels/${id}`, {
        headers: { Authorization: `token ${server.token}` },
      });
      assert.equal(r.status, 404);
    });
  });

  test('fresh kernels, one after another: kernel_info answered, first execute complete', async () => {
    // What a user does: open a notebook and press Run at once. The library
    // sends kernel_info_request as soon as the websocket opens (often while
    // the kernel is still starting), then the queued execute_request right
    // after the reply. A server must neither lose that kernel_info_request
    // nor let the execute through before the kernel's iopub reaches it
    // (Jupyter Server "nudges" the kernel first). Start-up races show only
    // sometimes, so this starts 6 kernels, two lanes of three.
    const lane = async (laneNo) => {
      for (let i = 0; i < 3; i++) {
        const k = await withTimeout(manager.startNew({ name: 'python3' }), 30000, 'startNew');
        const where = `lane ${laneNo} kernel ${i} (${k.id})`;
        try {
          await withTimeout(k.info, 10000, `${where}: kernel_info_reply on a fresh kernel`);
          const r = await run(k, 'print("first")', { timeout: 10000 });
          assert.equal(r.reply.status, 'ok', where);
          assert.equal(r.stdout, 'first\n', `${where}: stdout of the first execute`);
          assert.ok(r.states.includes('busy') && r.states.includes('idle'), `${where}: states ${r.states}`);
        } finally {
          await withTimeout(k.shutdown(), 15000, 'shutdown').catch(() => {});
        }
      }
    };
    const results = await Promise.allSettled([lane(0), lane(1)]);
    const failed = results.filter(r => r.status === 'rejected').map(r => r.reason.message);
    assert.deepEqual(failed, [], failed.join('; '));
  });

  test('kernel death (os._exit) is reported, restart brings a fresh kernel', async t => {
    const kernel = await withTimeout(manager.startNew({ name: 'python3' }), 30000, 'startNew');
    const id = kernel.id;
    const statuses = [];
    kernel.statusChanged.connect((_k, s) => statuses.push(s));
    try {
      await value(kernel, 'y = 99; y');
      const died = waitForStatus(kernel, ['dead', 'autorestarting', 'restarting'], 20000);
      // No reply will come for this one: the process exits.
      kernel.requestExecute({ code: 'import os; os._exit(1)' }).done.catch(() => {});
      const how = await died;
      t.diagnostic(`status after os._exit: ${how}`);
      // The client must learn of the death: 'dead' (a server that leaves the
      // restart to the user) or 'autorestarting' (Jupyter's auto-restarter).
      assert.ok(['dead', 'autorestarting', 'restarting'].includes(how), `status ${how}`);

      let conn = kernel;
      if (how === 'dead' || kernel.isDisposed) {
        // A dead KernelConnection disposes itself: restart through REST
        // and attach a new connection, as JupyterLab's "Restart" does.
        await withTimeout(KernelAPI.restartKernel(id, settings), 30000, 'restart dead kernel');
        conn = manager.connectTo({ model: { id, name: 'python3' } });
        await withTimeout(conn.info, 30000, 'kernel_info after restart');
      } else {
        await waitForStatus(kernel, ['idle'], 30000);
      }
      // Either way: a fresh kernel process, the dead one's state is gone.
      const r = await run(conn, 'y');
      assert.equal(r.reply.status, 'error', 'state of the dead kernel is gone');
      assert.equal(r.reply.ename, 'NameError');
      // And an explicit restart of the revived kernel works.
      await value(conn, 'z = 5; z');
      await withTimeout(conn.restart(), 30000, 'restart');
      await waitForStatus(conn, ['idle'], 30000);
      const r2 = await run(conn, 'z');
      assert.equal(r2.reply.ename, 'NameError', 'restart after death resets state');
      assert.equal(await value(conn, '1+1'), '2');
      await withTimeout(conn.shutdown(), 15000, 'shutdown');
    } catch (e) {
      e.message += ` (statuses seen: ${statuses.join(',')})`;
      throw e;
    } finally {
      await fetch(`${server.baseUrl}/api/kernels/${id}`, {
        method: 'DELETE', headers: { Authorization: `token ${server.token}` },
      }).catch(() => {});
    }
  });
});
