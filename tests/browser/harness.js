'use strict';
// Starts a real `skylab serve` (free 127.0.0.1 port, temporary data dir, a
// real user created with `skylab user add`) and Debian's Chromium through
// playwright-core (never downloads a browser). Each test signs in through
// the login page like a new user.

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.SKYLAB_BIN || path.join(REPO, 'build', 'skylab');
const CHROMIUM = process.env.SKYLAB_CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.join(REPO, 'build', 'screenshots');
// Waiting, free ports and notebooks are the node tests' (one copy of each).
const { sleep, freePort, until, codeNotebook } = require('../node/server');

// `https`: the config serves TLS ([server] tls_cert); the harness then talks HTTPS.
async function startServer({ extraArgs = [], config = null, https = false } = {}) {
  if (!fs.existsSync(BIN)) throw new Error(`server binary not found: ${BIN} (run make)`);
  const port = await freePort();
  const token = crypto.randomBytes(16).toString('hex');
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'skylab-browser-test-'));
  const logPath = path.join(dataDir, 'server.log');
  if (config) {
    fs.writeFileSync(path.join(dataDir, 'skylab.toml'), config);
    extraArgs = ['--config', path.join(dataDir, 'skylab.toml'), ...extraArgs];
  }
  const baseUrl = `${https ? 'https' : 'http'}://127.0.0.1:${port}`;
  let child = null;
  let exited = null;
  // Starts the server (again: same port, same data) and waits until it answers.
  const launch = async () => {
    const log = fs.openSync(logPath, 'a');
    const c = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, ...extraArgs],
      { env: { ...process.env, SKYLAB_ADMIN_TOKEN: token }, cwd: dataDir, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    child = c;
    exited = null;
    c.on('exit', (code, signal) => { if (child === c) exited = { code, signal }; });
    const deadline = Date.now() + 30000;
    for (;;) {
      if (exited) throw new Error(`server exited: ${fs.readFileSync(logPath, 'utf8').slice(-3000)}`);
      try {
        const r = await fetch(`${baseUrl}/api`);
        if (r.status === 200) break;
      } catch { /* not yet */ }
      if (Date.now() > deadline) throw new Error('server did not start');
      await sleep(100);
    }
  };
  const halt = async () => {
    if (!exited) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 100 && !exited; i++) await sleep(100);
      if (!exited) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  };
  await launch();
  const server = {
    baseUrl, token, dataDir, logPath,
    url: p => baseUrl + p,
    addUser(name, password) {
      const r = spawnSync(BIN, ['user', 'add', name, '--password-stdin', '--data-dir', dataDir], { input: password + '\n' });
      if (r.status !== 0) throw new Error(`user add failed: ${r.stderr}`);
    },
    userToken(name) {
      const r = spawnSync(BIN, ['user', 'token', name, '--data-dir', dataDir]);
      if (r.status !== 0) throw new Error(`user token failed: ${r.stderr}`);
      return r.stdout.toString().trim();
    },
    /** A REST call with the admin token, or with `as` (a user's API token). */
    async api(method, p, body, as = token) {
      const r = await fetch(baseUrl + p, {
        method, headers: { Authorization: `token ${as}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, json: r.headers.get('content-type')?.includes('json') ? await r.json() : null };
    },
    /** Stops the server (SIGTERM: it saves what it holds) and starts it again on the same port and data. */
    async restart() {
      await halt();
      await launch();
    },
    /** SIGKILLs the server: no save, no cleanup (restart() starts it again). */
    async kill() {
      if (!exited) {
        try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
        for (let i = 0; i < 100 && !exited; i++) await sleep(50);
      }
    },
    async stop() {
      try {
        const r = await fetch(`${baseUrl}/api/kernels`, { headers: { Authorization: `token ${token}` } });
        if (r.ok) for (const k of await r.json()) await fetch(`${baseUrl}/api/kernels/${k.id}`, { method: 'DELETE', headers: { Authorization: `token ${token}` } }).catch(() => {});
      } catch { /* gone */ }
      await halt();
      if (!process.env.SKYLAB_TEST_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return server;
}

async function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
}

/** Pages of this context publish the notebook page's object as window.skylab (a user's page never does). */
async function testHook(context) {
  await context.addInitScript(() => { window.__skylabTestHook = true; });
}

/**
 * A new browser context signed in through the login page as a new user would.
 * With hook (the default) the notebook page publishes its object as
 * window.skylab for the test to drive; a user's page never does.
 */
async function signIn(browser, server, user, password, next = '/', { hook = true } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  if (hook) await testHook(context);
  if (process.env.SKYLAB_TEST_CONSOLE) {
    await context.addInitScript(() => {
      const W = window.WebSocket;
      window.WebSocket = function (url, p) {
        localStorage.setItem('skylab.debug', '1');
        const ws = new W(url, p);
        ws.addEventListener('close', e => console.log('ws closed', e.code, e.reason, e.wasClean, url.slice(-60)));
        return ws;
      };
      window.WebSocket.prototype = W.prototype;
      Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
    });
  }
  const page = await context.newPage();
  page.on('pageerror', e => console.log('[pageerror]', e.message));
  if (process.env.SKYLAB_TEST_CONSOLE) {
    page.on('console', m => console.log('[console]', m.text()));
    page.on('websocket', ws => {
      console.log('[ws open]', ws.url());
      ws.on('close', () => console.log('[ws close]', ws.url()));
      ws.on('socketerror', e => console.log('[ws error]', ws.url(), e));
    });
  }
  await page.goto(server.url(next));
  await page.waitForURL(/\/login/);
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL(u => !u.pathname.startsWith('/login')), page.click('button[type=submit]')]);
  return { context, page };
}

/** The password a user made by serverAndBrowser() signs in with. */
const passwordOf = user => `password of ${user}`;

/**
 * The set-up of a browser test with users of its own: a server with `users`
 * (each signs in with passwordOf(user)), their API tokens by name, and a
 * Chromium. Call it in before(); stop() (for after()) closes the browser and
 * stops the server.
 */
async function serverAndBrowser(users = []) {
  const server = await startServer();
  try {
    const tokens = {};
    for (const u of users) {
      server.addUser(u, passwordOf(u));
      tokens[u] = server.userToken(u);
    }
    const browser = await launchBrowser();
    return {
      server, browser, tokens,
      async stop() {
        await browser.close();
        await server.stop();
      },
    };
  } catch (e) {
    await server.stop();
    throw e;
  }
}

async function screenshot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name + '.png');
  await page.screenshot({ path: file });
  return file;
}

// The notebook page's cells, for tests that drive window.skylab (the page's
// notebook object).
const cellAt = (page, i) => page.locator('.cells > .cell').nth(i);

// Sets cell `index`'s source the way a paste would (typing multi-line code
// through auto-indent and bracket closing would change it), appending code
// cells up to it, then runs it.
async function runCell(page, index, source) {
  await page.evaluate(([i, src]) => {
    const nb = window.skylab;
    while (nb.cells.length <= i) nb.insertAt('code', nb.cells.length, false);
    nb.cells[i].materialize();
    nb.cells[i].setSource(src);
    nb.select(i);
    nb.run([nb.cells[i]]);
  }, [index, source]);
}

// Until cell `i` ran and is idle again.
async function waitIdle(page, i, timeout = 60000) {
  await page.waitForFunction(j => window.skylab.cells[j].runState === 'idle' && window.skylab.cells[j].executionCount != null,
    i, { timeout });
}

module.exports = {
  startServer, launchBrowser, serverAndBrowser, passwordOf, signIn, testHook, screenshot, sleep, until,
  codeNotebook, REPO, cellAt, runCell, waitIdle,
};
