'use strict';
// The notebook page's object (window.skylab, which the browser tests and
// benchmarks drive) is published only on a page the test harness opened with
// its init script; a user's notebook page does not hand its internals
// (cells, runtime, kernel connection, save controller) to the window.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn } = require('./harness');

describe('the test hook on window', { timeout: 120000 }, () => {
  let server, browser;

  before(async () => {
    server = await startServer();
    server.addUser('hana', 'password of hana');
    const token = server.userToken('hana');
    const cells = [{ cell_type: 'code', metadata: {}, id: 'one', source: 'print(1)', outputs: [], execution_count: null }];
    const r = await server.api('PUT', '/api/contents/hook.ipynb', { type: 'notebook', format: 'json',
      content: { cells, metadata: {}, nbformat: 4, nbformat_minor: 5 } }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.json));
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('a user\'s notebook page has no window.skylab', async () => {
    const { context, page } = await signIn(browser, server, 'hana', 'password of hana', '/notebooks/hook.ipynb', { hook: false });
    try {
      await page.waitForSelector('body[data-ready=true]');
      assert.equal(await page.locator('.cells > .cell').count(), 1); // the page is the real, working one
      // (the page would publish it right after it is ready: a moment later still nothing)
      assert.equal(await page.evaluate(() => new Promise(r => setTimeout(() => r(typeof window.skylab), 300))), 'undefined');
    } finally {
      await context.close();
    }
  });

  it('the harness\'s page publishes it', async () => {
    const { context, page } = await signIn(browser, server, 'hana', 'password of hana', '/notebooks/hook.ipynb');
    try {
      await page.waitForFunction(() => window.skylab && window.skylab.cells.length === 1);
      assert.equal(await page.evaluate(() => window.skylab.cells[0].id), 'one');
    } finally {
      await context.close();
    }
  });
});
