'use strict';
// The login URL (issue 15): a first-time operator opens the URL that
// `skylab serve` prints; the browser is signed in, the token is gone from the
// address bar and from history, the Drive shows, and the operator creates the
// first account from there, then signs in with it.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const { launchBrowser, screenshot, sleep, REPO } = require('./harness');

const BIN = process.env.SKYLAB_BIN || path.join(REPO, 'build', 'skylab');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

describe('the login URL', { timeout: 120000 }, () => {
  let child, dataDir, logPath, loginUrl, browser;

  before(async () => {
    const port = await freePort();
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'skylab-login-test-'));
    logPath = path.join(dataDir, 'server.log');
    const log = fs.openSync(logPath, 'a');
    const env = { ...process.env };
    delete env.SKYLAB_ADMIN_TOKEN; // as `make run`: the server makes one and prints the URL
    child = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir],
      { env, cwd: dataDir, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    for (let i = 0; i < 300 && !loginUrl; i++) {
      const m = /Log in with this URL: (\S+)/.exec(fs.readFileSync(logPath, 'utf8'));
      if (m) loginUrl = m[1];
      else await sleep(100);
    }
    assert.ok(loginUrl, fs.readFileSync(logPath, 'utf8'));
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    if (child) {
      try { process.kill(child.pid, 'SIGTERM'); } catch { /* gone */ }
      for (let i = 0; i < 100 && child.exitCode === null && child.signalCode === null; i++) await sleep(100);
      if (child.exitCode === null && child.signalCode === null) try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
    }
    if (dataDir && !process.env.SKYLAB_TEST_KEEP) fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('signs in, drops the token, lands in the Drive; the first account is made from there', async () => {
    const token = new URL(loginUrl).searchParams.get('token');
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await context.newPage();
    page.on('pageerror', e => console.log('[pageerror]', e.message));
    await page.goto(loginUrl);
    await page.waitForSelector('.drive-page');
    assert.equal(new URL(page.url()).search, '', page.url());
    assert.ok(!page.url().includes(token));
    // Nothing of the token in this tab's history or what the page can read.
    assert.ok(!(await page.evaluate(() => location.href + document.referrer + document.cookie)).includes(token));
    // The operator is told to create the first account, and does.
    const banner = page.locator('.first-account');
    await banner.waitFor();
    await screenshot(page, 'login-url-drive');
    await banner.locator('button', { hasText: 'Add account' }).click();
    const dialog = page.locator('.dialog', { has: page.locator('.account-form') });
    await dialog.waitFor();
    assert.match(await dialog.locator('.account-list').innerText(), /No accounts yet/);
    await dialog.locator('input[name=username]').fill('teacher');
    await dialog.locator('input[name=password]').fill('short');
    await dialog.locator('button[type=submit]').click();
    await dialog.locator('.form-error').waitFor();
    assert.match(await dialog.locator('.form-error').innerText(), /8/); // the password rule, from the server
    await dialog.locator('input[name=password]').fill('teacher-password');
    assert.ok(await dialog.locator('input[name=admin]').isChecked(), 'the first account is an administrator');
    await dialog.locator('button[type=submit]').click();
    await dialog.locator('.account-list li', { hasText: 'teacher' }).waitFor();
    assert.match(await dialog.locator('.account-list').innerText(), /teacher\s*administrator/);
    await screenshot(page, 'login-url-accounts');
    await dialog.locator('button', { hasText: 'Close' }).click();
    await page.locator('.first-account').waitFor({ state: 'detached' });
    // Back goes to where the tab was before (a blank tab), never to the token URL.
    await page.goBack();
    assert.equal(page.url(), 'about:blank');

    // The new account signs in on the (styled) sign-in page.
    const fresh = await browser.newContext();
    const p2 = await fresh.newPage();
    await p2.goto(new URL('/drive', loginUrl).href);
    await p2.waitForURL(/\/login/);
    assert.equal(await p2.evaluate(() => getComputedStyle(document.querySelector('button[type=submit]')).backgroundColor), 'rgb(26, 115, 232)');
    await screenshot(p2, 'login-page');
    await p2.fill('#username', 'teacher');
    await p2.fill('#password', 'teacher-password');
    await Promise.all([p2.waitForURL(u => !u.pathname.startsWith('/login')), p2.click('button[type=submit]')]);
    await p2.waitForSelector('.drive-page');
    await fresh.close();
    await context.close();
  });

  it('a wrong token signs nobody in and says why', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(new URL('/?token=' + '0'.repeat(48), loginUrl).href);
    await page.waitForURL(/\/login/);
    assert.ok(!page.url().includes('0'.repeat(48)));
    assert.match(await page.locator('.err').innerText(), /login URL is not valid/);
    await context.close();
  });
});
