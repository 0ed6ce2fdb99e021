'use strict';
// Starts the server under test (Skylab, or Jupyter Server as the reference)
// on a free 127.0.0.1 port with a throw-away data directory, and stops it.
//
//   SKYLAB_TEST_SERVER=skylab (default) -> $SKYLAB_BIN or <repo>/build/skylab
//   SKYLAB_TEST_SERVER=jupyter          -> /usr/bin/python3 -m jupyter_server
//   SKYLAB_TEST_PYTHON                  -> python for Jupyter (default /usr/bin/python3)

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const REPO = path.resolve(__dirname, '..', '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

/** Polls `pred` every `every` ms until it returns a truthy value, which it
 *  returns; throws "timed out waiting for <what>" after `ms`. */
async function until(pred, what, ms = 60000, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/** An nbformat 4.5 notebook of code cells, each given as [id, source]. */
const codeNotebook = (...cells) => ({
  cells: cells.map(([id, source]) => ({ cell_type: 'code', id, metadata: {}, source, outputs: [], execution_count: null })),
  metadata: {}, nbformat: 4, nbformat_minor: 5,
});

async function startServer() {
  const kind = (process.env.SKYLAB_TEST_SERVER || 'skylab').toLowerCase();
  const port = await freePort();
  const token = crypto.randomBytes(16).toString('hex');
  const skylabBin = process.env.SKYLAB_BIN || path.join(REPO, 'build', 'skylab');
  if (kind === 'skylab' && !fs.existsSync(skylabBin)) {
    throw new Error(`server binary not found: ${skylabBin} (build it, or set SKYLAB_BIN)`);
  }
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'skylab-node-test-'));
  const env = { ...process.env };
  let cmd;
  let args;
  if (kind === 'jupyter') {
    cmd = process.env.SKYLAB_TEST_PYTHON || '/usr/bin/python3';
    args = [
      '-m', 'jupyter_server',
      `--ServerApp.token=${token}`,
      `--ServerApp.port=${port}`,
      '--ServerApp.port_retries=0',
      '--ServerApp.ip=127.0.0.1',
      '--ServerApp.open_browser=False',
      `--ServerApp.root_dir=${dataDir}`,
    ];
    if (process.getuid && process.getuid() === 0) args.push('--allow-root');
    // Keep the user's own Jupyter config and runtime files out of the test.
    for (const d of ['config', 'runtime']) {
      fs.mkdirSync(path.join(dataDir, '.jupyter', d), { recursive: true });
    }
    env.JUPYTER_CONFIG_DIR = path.join(dataDir, '.jupyter', 'config');
    env.JUPYTER_RUNTIME_DIR = path.join(dataDir, '.jupyter', 'runtime');
  } else if (kind === 'skylab') {
    cmd = skylabBin;
    args = ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir];
    env.SKYLAB_ADMIN_TOKEN = token;
  } else {
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`SKYLAB_TEST_SERVER must be skylab or jupyter, not ${kind}`);
  }

  const logPath = path.join(dataDir, 'server.log');
  const baseUrl = `http://127.0.0.1:${port}`;
  let child = null;
  let exited = null;
  const fail = msg => {
    const tail = fs.readFileSync(logPath, 'utf8').slice(-4000);
    if (!process.env.SKYLAB_TEST_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
    return new Error(`${msg}:\n${tail}`);
  };
  // Starts the server (again: same port, same data) and waits until it answers.
  async function launch() {
    const log = fs.openSync(logPath, 'a');
    // detached: own process group, so stop() can also reach kernels the
    // server started should the server itself fail to stop them.
    const c = spawn(cmd, args, { env, cwd: dataDir, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    child = c;
    exited = null;
    c.on('exit', (code, signal) => { if (child === c) exited = { code, signal }; });
    const deadline = Date.now() + 30000;
    for (;;) {
      if (exited) {
        throw fail(`${kind} server exited during start-up (${JSON.stringify(exited)})`);
      }
      try {
        const r = await fetch(`${baseUrl}/api`, { headers: { Authorization: `token ${token}` } });
        if (r.status === 200) break;
      } catch (e) { /* not listening yet */ }
      if (Date.now() > deadline) {
        await stopProcess(child, () => exited);
        throw fail(`${kind} server did not answer GET /api within 30 s`);
      }
      await sleep(100);
    }
  }
  await launch();

  return {
    kind,
    baseUrl,
    wsUrl: `ws://127.0.0.1:${port}`,
    token,
    dataDir,
    logPath,
    log: () => fs.readFileSync(logPath, 'utf8'),
    /** A REST call with the admin token: the JSON answer (null when empty);
     *  throws on a status other than 2xx. */
    async api(method, p, body) {
      const r = await fetch(baseUrl + p, {
        method, headers: { Authorization: `token ${token}`, 'Content-Type': 'application/json' },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    // Stops the server (SIGTERM: it saves what it holds) and starts it again
    // on the same port and data directory.
    async restart() {
      await stopProcess(child, () => exited);
      await launch();
    },
    async stop() {
      // Politely shut down kernels first, then the server, then sweep the group.
      try {
        const r = await fetch(`${baseUrl}/api/kernels`, { headers: { Authorization: `token ${token}` } });
        if (r.ok) {
          for (const k of await r.json()) {
            await fetch(`${baseUrl}/api/kernels/${k.id}`, {
              method: 'DELETE', headers: { Authorization: `token ${token}` },
            }).catch(() => {});
          }
        }
      } catch (e) { /* server already gone */ }
      await stopProcess(child, () => exited);
      if (!process.env.SKYLAB_TEST_KEEP) {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

async function stopProcess(child, exitedFn) {
  const group = -child.pid;
  const kill = sig => { try { process.kill(group, sig); } catch (e) { /* gone */ } };
  if (!exitedFn()) {
    try { process.kill(child.pid, 'SIGTERM'); } catch (e) { /* gone */ }
    for (let i = 0; i < 100 && !exitedFn(); i++) await sleep(100);
    if (!exitedFn()) {
      // Jupyter Server asks for confirmation on the first SIGINT; SIGTERM
      // normally suffices. Whatever is left gets SIGKILL.
      kill('SIGKILL');
      for (let i = 0; i < 50 && !exitedFn(); i++) await sleep(100);
    }
  }
  // Kernels (same process group) that outlived their server.
  kill('SIGKILL');
}

module.exports = { startServer, freePort, sleep, until, codeNotebook, REPO };
