'use strict';
// The terminal panel (xterm.js on the Jupyter terminals API, a shell inside
// the notebook's runtime) and the Variables panel (the kernel's variables,
// asked for silently only while it is open).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, runCell, waitIdle } = require('./harness');

const nb = source => ({ cells: [{ cell_type: 'code', metadata: {}, source, outputs: [], execution_count: null }],
  metadata: {}, nbformat: 4, nbformat_minor: 5 });

describe('terminal and variables panels', { timeout: 240000 }, () => {
  let server, browser, page, token;
  let queries = 0;  // the Variables panel's requests seen on the kernel WebSocket

  before(async () => {
    server = await startServer();
    server.addUser('tess', 'password of tess');
    token = server.userToken('tess');
    const r = await server.api('PUT', '/api/contents/t.ipynb', { type: 'notebook', format: 'json', content: nb('') }, token);
    assert.equal(r.status, 201);
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, 'tess', 'password of tess', '/notebooks/t.ipynb'));
    await page.waitForSelector('body[data-ready=true]');
    page.on('websocket', ws => ws.on('framesent', f => {
      if (String(f.payload).includes('skylab.variables')) queries++;
    }));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('lists the kernel variables with type and shape, refreshed after each run', async () => {
    await runCell(page, 0, 'import numpy\nx = numpy.zeros((3, 4))');
    await waitIdle(page, 0);
    assert.equal(queries, 0, 'a closed panel asks the kernel nothing');
    await page.click('.side-icon[data-panel=variables]');
    const x = page.locator('tr.var[data-name=x]');
    await x.waitFor({ timeout: 30000 });
    assert.equal(await x.locator('.var-type').innerText(), 'ndarray');
    assert.equal(await x.locator('.var-shape').innerText(), '(3, 4)');
    assert.equal(await x.locator('.var-size').innerText(), '96 B');
    assert.equal(await page.locator('tr.var[data-name=numpy]').count(), 0, 'modules are not variables');
    // The next run refreshes the open panel.
    await runCell(page, 1, 'y = 7');
    await waitIdle(page, 1);
    await page.locator('tr.var[data-name=y] .var-value').filter({ hasText: '7' }).waitFor({ timeout: 30000 });
    await screenshot(page, 'variables-panel');
    // The panel's queries are silent: no execution count of their own, nothing in the notebook.
    const counts = await page.evaluate(() => window.skylab.cells.map(c => c.executionCount));
    assert.deepEqual(counts, [1, 2]);
    const saved = await server.api('GET', '/api/contents/t.ipynb?content=1', undefined, token);
    assert.ok(!JSON.stringify(saved.json.content).includes('skylab.variables'));
    // Closed again: runs cost nothing.
    await page.click('.side-icon[data-panel=variables]');
    const before = queries;
    assert.ok(before >= 2);
    await runCell(page, 2, 'z = 1');
    await waitIdle(page, 2);
    await new Promise(res => setTimeout(res, 500));
    assert.equal(queries, before);
  });

  it('opens a terminal in the runtime and shows the output of a typed command', async () => {
    await page.click('.menubar-item[data-menu=Runtime]');
    await page.click('.menu [data-id=terminal]');
    await page.waitForSelector('.term-panel[data-name] .xterm');
    await page.waitForFunction(() => document.querySelector('.term-panel .term-status')?.textContent === '', null, { timeout: 30000 });
    await page.click('.term-panel .xterm');
    await page.keyboard.type('echo sum=$((40+2)) in $(pwd) for $SKYLAB_USER\n');
    await page.waitForFunction(() => /sum=42 in \/content for tess/.test(document.querySelector('.term-panel .xterm-rows')?.textContent ?? ''),
      null, { timeout: 30000 });
    await screenshot(page, 'terminal-panel');
    // The terminal runs in this notebook's runtime.
    const kernelId = await page.evaluate(() => window.skylab.runtime.kernel.id);
    await page.keyboard.type('echo kid=$SKYLAB_KERNEL_ID\n');
    await page.waitForFunction(id => (document.querySelector('.term-panel .xterm-rows')?.textContent ?? '').includes('kid=' + id),
      kernelId, { timeout: 30000 });
    // Closing the panel ends the terminal on the server.
    const name = await page.getAttribute('.term-panel', 'data-name');
    await page.click('.term-panel button[aria-label="Close terminal"]');
    await page.waitForSelector('.term-panel', { state: 'detached' });
    for (let i = 0; i < 100; i++) {
      const r = await server.api('GET', '/api/terminals/' + name, undefined, token);
      if (r.status === 404) return;
      await new Promise(res => setTimeout(res, 100));
    }
    assert.fail('terminal still on the server after closing its panel');
  });
});
