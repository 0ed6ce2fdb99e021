'use strict';
// The app over HTTPS (issue 16): Skylab serves TLS itself ([server] tls_cert);
// a user signs in in Chromium, the session cookie is __Host- and Secure, and a
// cell runs over the kernel channels' WSS.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { startServer, launchBrowser, cellAt, runCell, testHook } = require('./harness');

// The harness's own requests (readiness, REST) to the self-signed server.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

describe('the app over HTTPS', { timeout: 180000 }, () => {
  let server, browser, context, page, dir;
  const wsUrls = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skylab-tls-'));
    const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert,
      '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    server = await startServer({ https: true, config: `[server]\ntls_cert = "${cert}"\ntls_key = "${key}"\n` });
    server.addUser('tess', 'tls browser password');
    browser = await launchBrowser();
    context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 860 } });
    await testHook(context);
    page = await context.newPage();
    page.on('websocket', ws => wsUrls.push(ws.url()));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('signs in over HTTPS with a Secure __Host- session cookie', async () => {
    await page.goto(server.url('/'));
    await page.waitForURL(/\/login/);
    await page.fill('#username', 'tess');
    await page.fill('#password', 'tls browser password');
    await Promise.all([page.waitForURL(u => !u.pathname.startsWith('/login')), page.click('button[type=submit]')]);
    await page.waitForSelector('.drive-page');
    assert.equal(await page.evaluate(() => location.protocol), 'https:');
    const session = (await context.cookies()).find(c => c.name === '__Host-skylab_session');
    assert.ok(session, 'the session cookie is __Host-skylab_session');
    assert.equal(session.secure, true);
    assert.equal(session.httpOnly, true);
    assert.ok(!(await page.evaluate(() => document.cookie)).includes('skylab_session'));
  });

  it('runs a cell over WSS', async () => {
    await page.click('.new-btn');
    await Promise.all([page.waitForURL(/\/notebooks\/Untitled.*\.ipynb$/), page.click('[data-id=new-notebook]')]);
    await page.waitForSelector('body[data-ready=true]');
    await runCell(page, 0, 'print("over " + "tls")');
    await cellAt(page, 0).locator('.output.stream').filter({ hasText: 'over tls' }).waitFor({ timeout: 60000 });
    assert.ok(wsUrls.some(u => u.startsWith('wss://127.0.0.1') && u.includes('/channels')), wsUrls.join(' '));
    assert.ok(!wsUrls.some(u => u.startsWith('ws://')), wsUrls.join(' '));
  });
});
