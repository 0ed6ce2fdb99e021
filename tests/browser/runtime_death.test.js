'use strict';
// A runtime that dies says why (issue 15): a cell on a CPU runtime with a
// small memory limit allocates past it; the runtime is OOM-killed; the page
// says "Your session crashed after using all available RAM", marks the cell
// that was running, offers a runtime type with more memory and Reconnect,
// which gives a working runtime. An administrator stopping the runtime is
// said as such.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, cellAt, runCell: runCellIn, waitIdle: waitIdleIn } = require('./harness');

const CONFIG = `
[runtimes]
max_per_user = 1         # Reconnect must not be refused because of the dead runtime
[runtime_types.cpu]
display_name = "CPU"
memory = "300M"
[runtime_types.highmem]
display_name = "High-RAM"
memory = "2G"
`;

describe('a runtime that dies says why', { timeout: 240000 }, () => {
  let server, browser, page, token;

  before(async () => {
    server = await startServer({ config: CONFIG });
    server.addUser('olga', 'password of olga');
    token = server.userToken('olga');
    const cells = [
      { cell_type: 'code', metadata: {}, id: 'big', source: "x = b'\\x01' * (3 * 1024 ** 3)\nprint('never')", outputs: [], execution_count: null },
      { cell_type: 'code', metadata: {}, id: 'after', source: 'print(6 * 7)', outputs: [], execution_count: null },
    ];
    const r = await server.api('PUT', '/api/contents/oom.ipynb', { type: 'notebook', format: 'json',
      content: { cells, metadata: {}, nbformat: 4, nbformat_minor: 5 } }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.json));
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, 'olga', 'password of olga', '/notebooks/oom.ipynb'));
    await page.waitForFunction(() => window.skylab && window.skylab.cells.length === 2);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('out of memory: the reason, the marked cell, a bigger type, Reconnect', async () => {
    await page.evaluate(() => {
      const nb = window.skylab;
      nb.cells[0].materialize();
      nb.select(0);
      nb.run([nb.cells[0]]);
    });
    const notice = page.locator('.runtime-death');
    await notice.waitFor({ state: 'visible', timeout: 120000 });
    assert.match(await notice.innerText(), /Your session crashed after using all available RAM \(300 MiB\)/);
    assert.equal(await notice.getAttribute('data-kind'), 'oom');
    assert.ok(await cellAt(page, 0).evaluate(el => el.classList.contains('crashed')));
    assert.match(await cellAt(page, 0).locator('.cell-crash').innerText(), /ran out of memory/);
    assert.equal(await cellAt(page, 1).locator('.cell-crash').count(), 0);
    await page.locator('.death-bigger').waitFor();
    assert.match(await page.locator('.death-bigger').innerText(), /High-RAM \(2\.0 GB\)/);
    await screenshot(page, 'runtime-death-oom');

    await page.click('.death-reconnect');
    await page.waitForFunction(() => document.querySelector('.status-btn')?.dataset.state === 'idle', null, { timeout: 120000 });
    assert.ok(await notice.isHidden());
    await runCellIn(page, 1, 'print(6 * 7)');
    await waitIdleIn(page, 1, 90000);
    assert.match(await cellAt(page, 1).locator('.outputs').innerText(), /42/);
    assert.equal(await cellAt(page, 0).locator('.cell-crash').count(), 0, 'marks stay until something runs');
  });

  it('out of memory again: the offered type with more memory replaces the runtime', async () => {
    await page.evaluate(() => {
      const nb = window.skylab;
      nb.select(0);
      nb.run([nb.cells[0]]);
    });
    const bigger = page.locator('.runtime-death:not([hidden]) .death-bigger');
    await bigger.waitFor({ timeout: 120000 });
    await bigger.click();
    await page.waitForFunction(() => window.skylab.runtime.type === 'highmem' &&
      document.querySelector('.status-btn')?.dataset.state === 'idle', null, { timeout: 120000 });
    await runCellIn(page, 1, 'print(6 * 7)');
    await waitIdleIn(page, 1, 90000);
  });

  it('an administrator stops the runtime: said so', async () => {
    const kid = await page.evaluate(() => window.skylab.kernel().id);
    const r = await fetch(server.url(`/api/kernels/${kid}`), { method: 'DELETE', headers: { Authorization: `token ${server.token}` } });
    assert.equal(r.status, 204);
    const notice = page.locator('.runtime-death[data-kind=operator]');
    await notice.waitFor({ state: 'visible', timeout: 60000 });
    assert.match(await notice.innerText(), /stopped by an administrator/);
    await screenshot(page, 'runtime-death-operator');
  });
});

describe('a runtime that reaches its maximum lifetime says so', { timeout: 180000 }, () => {
  let server, browser, page;

  before(async () => {
    server = await startServer({ config: '[runtimes]\nmax_lifetime = "20s"\nwarning = "5s"\ngrace = "2s"\n' });
    server.addUser('lena', 'password of lena');
    const token = server.userToken('lena');
    const r = await server.api('PUT', '/api/contents/life.ipynb', { type: 'notebook', format: 'json',
      content: { cells: [{ cell_type: 'code', metadata: {}, id: 'c', source: 'print(1)', outputs: [], execution_count: null }],
        metadata: {}, nbformat: 4, nbformat_minor: 5 } }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.json));
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, 'lena', 'password of lena', '/notebooks/life.ipynb'));
    await page.waitForFunction(() => window.skylab && window.skylab.cells.length === 1);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('the notice names the lifetime and Reconnect is offered', async () => {
    await runCellIn(page, 0, 'print(1)');
    await waitIdleIn(page, 0, 90000);
    const notice = page.locator('.runtime-death[data-kind=lifetime]');
    await notice.waitFor({ state: 'visible', timeout: 120000 });
    assert.match(await notice.innerText(), /maximum lifetime/);
    assert.equal(await page.locator('.runtime-death .death-reconnect').count(), 1);
    assert.equal(await page.locator('.runtime-death .death-bigger').count(), 0);
  });
});
