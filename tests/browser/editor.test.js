'use strict';
// The editor beyond the first steps: kernel completion and tooltips, the
// command palette, cell undo, table of contents, renaming, clear_output and
// display updates, tracebacks, the runtime warning banner, the GPU queue,
// and a notebook shared as viewer (read-only banner, Save a copy).
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, sleep, cellAt, runCell: runCellIn, waitIdle: waitIdleIn } = require('./harness');

const CONFIG = `
[runtimes]
idle_timeout = "25s"
warning = "20s"
[runtime_types.cpu]
display_name = "CPU"
memory = "3G"
[runtime_types.gpu]
display_name = "GPU"
gpus = 1
[gpus]
fake = 1
`;

describe('editor', { timeout: 240000 }, () => {
  let server, browser, context, page, tokenA, tokenB;

  before(async () => {
    server = await startServer({ config: CONFIG });
    server.addUser('ann', 'password of ann');
    server.addUser('bob', 'password of bob');
    tokenA = server.userToken('ann');
    tokenB = server.userToken('bob');
    const nb = { cells: [
      { cell_type: 'markdown', metadata: {}, source: '# Intro\n\ntext' },
      { cell_type: 'code', metadata: {}, source: 'import os\nx = 41', outputs: [], execution_count: null },
      { cell_type: 'markdown', metadata: {}, source: '## Details' },
    ], metadata: {}, nbformat: 4, nbformat_minor: 5 };
    const r = await server.api('PUT', '/api/contents/lab.ipynb', { type: 'notebook', format: 'json', content: nb }, tokenA);
    assert.equal(r.status, 201);
    browser = await launchBrowser();
    ({ context, page } = await signIn(browser, server, 'ann', 'password of ann', '/notebooks/lab.ipynb'));
    await page.waitForSelector('body[data-ready=true]');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const cell = i => cellAt(page, i);
  const count = () => page.locator('.cells > .cell').count();
  const runCell = (index, source) => runCellIn(page, index, source);
  const waitIdle = (i, timeout = 60000) => waitIdleIn(page, i, timeout);

  it('completes from the kernel (Tab) and shows documentation (Shift+Tab)', async () => {
    await cell(1).locator('.run-btn').click();
    await waitIdle(1);
    const i = await count();
    await page.evaluate(() => window.skylab.insertAt('code', window.skylab.cells.length, true));
    await page.keyboard.type('os.getpi');
    await page.keyboard.press('Tab');
    const option = page.locator('.cm-tooltip-autocomplete li', { hasText: /^getpid/ }).first();
    await option.waitFor({ timeout: 15000 });
    await option.click();
    await page.waitForFunction(j => window.skylab.cells[j].getSource() === 'os.getpid', i, { timeout: 5000 }).catch(async e => {
      console.log('sources', JSON.stringify(await page.evaluate(() => window.skylab.cells.map(c => c.getSource()))), i, await option.innerText());
      throw e;
    });
    await page.keyboard.press('Control+a');
    await page.keyboard.type('print(');
    await page.keyboard.press('Shift+Tab');
    const tip = page.locator('.inspect-float');
    await tip.waitFor({ timeout: 15000 });
    assert.match(await tip.innerText(), /print\(/);
    await page.keyboard.press('Escape');
  });

  it('runs commands from the palette', async () => {
    const before = await count();
    await page.keyboard.press('Control+Shift+P');
    await page.fill('.palette-input', 'text cell');
    await page.keyboard.press('Enter');
    await page.waitForFunction(n => document.querySelectorAll('.cells > .cell').length === n + 1, before);
    assert.equal(await page.evaluate(() => window.skylab.cells[window.skylab.active].type), 'markdown');
  });

  it('deletes a cell and undoes it (D D, Z)', async () => {
    await page.evaluate(() => window.skylab.select(1));
    await cell(1).click({ position: { x: 20, y: 60 } });
    await page.keyboard.press('Escape');
    const before = await count();
    const src = await page.evaluate(() => window.skylab.cells[1].getSource());
    await page.keyboard.press('d');
    await page.keyboard.press('d');
    await page.waitForFunction(n => document.querySelectorAll('.cells > .cell').length === n - 1, before);
    await page.keyboard.press('z');
    await page.waitForFunction(n => document.querySelectorAll('.cells > .cell').length === n, before);
    assert.equal(await page.evaluate(() => window.skylab.cells[1].getSource()), src);
  });

  it('lists headings in the table of contents', async () => {
    await page.click('.side-icon[data-panel=toc]');
    const items = page.locator('.toc-item');
    await items.first().waitFor();
    assert.deepEqual(await items.allInnerTexts(), ['Intro', 'Details']);
  });

  it('clears outputs on request and updates displays in place; colours tracebacks', async () => {
    let i = await count();
    await runCell(i, 'from IPython.display import clear_output, display\nimport time\nfor k in range(5):\n    clear_output(wait=True)\n    print("step", k)\n    time.sleep(0.05)');
    await waitIdle(i);
    assert.equal((await cell(i).locator('.outputs').innerText()).trim(), 'step 4');
    i += 1;
    await runCell(i, 'h = display("first", display_id=True)\nh.update("second")');
    await waitIdle(i);
    assert.equal((await cell(i).locator('.outputs').innerText()).trim(), "'second'");
    i += 1;
    await runCell(i, '1/0');
    await waitIdle(i);
    const err = cell(i).locator('.output.error');
    assert.match(await err.innerText(), /ZeroDivisionError/);
    assert.ok(await err.locator('span[style*=color]').count() > 0, 'traceback keeps its colours');
    assert.doesNotMatch(await err.innerText(), /\x1b\[/);
  });

  it('renames the notebook from its title', async () => {
    await page.fill('.title', 'renamed lab');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/notebooks\/renamed%20lab\.ipynb$/);
    const r = await server.api('GET', '/api/contents/renamed%20lab.ipynb?content=0', undefined, tokenA);
    assert.equal(r.status, 200);
    assert.equal((await server.api('GET', '/api/contents/lab.ipynb?content=0', undefined, tokenA)).status, 404);
    await page.waitForFunction(() => document.title.startsWith('renamed lab.ipynb'));
  });

  it("meters this runtime's own RAM against its type's limit", async () => {
    await runCell(1, 'import os\nx = 41');
    await page.waitForFunction(() => /RAM .* \/ 3\.0 GB/.test(document.querySelector('.runtime-status')?.firstElementChild?.title ?? ''),
      null, { timeout: 30000 });
    const title = await page.evaluate(() => document.querySelector('.runtime-status').firstElementChild.title);
    const used = /RAM ([\d.]+) (KB|MB|GB)/.exec(title);
    assert.ok(used && used[2] !== 'GB', title);  // an idle kernel's cgroup, not the machine's memory
  });

  it('warns before the idle shutdown with a live countdown', async () => {
    const banner = page.locator('.banner.runtime-warning');
    await banner.waitFor({ timeout: 30000 });
    const t1 = await banner.innerText();
    assert.match(t1, /disconnected in 0:\d\d because it has been idle/);
    await sleep(2100);
    assert.notEqual(await banner.innerText(), t1, 'the countdown moves');
    await screenshot(page, 'runtime-warning');
  });

  it('changes the runtime type to GPU, waiting in the queue while the GPU is taken', async () => {
    const held = await server.api('POST', '/api/skylab/runtimes', { type: 'gpu', kernel_name: 'python3' }, tokenB);
    assert.equal(held.status, 201, JSON.stringify(held.json));
    await page.click('.menubar-item[data-menu=Runtime]');
    await page.click('.menu [data-id=change-type]');
    await page.selectOption('.dialog select', 'gpu');
    await page.click('.dialog .btn.primary');
    const status = page.locator('.status-btn');
    await status.filter({ hasText: 'Waiting for a GPU — position 1 in queue' }).waitFor({ timeout: 15000 });
    await screenshot(page, 'gpu-queue');
    await server.api('DELETE', `/api/skylab/runtimes/${held.json.id}`, undefined, tokenB);
    await status.filter({ hasText: 'Connected' }).waitFor({ timeout: 60000 });
    const i = await count();
    await runCell(i, 'import os; print(os.environ.get("CUDA_VISIBLE_DEVICES"))');
    await waitIdle(i).catch(async e => {
      console.log(await page.evaluate(() => { const nb = window.skylab; const k = nb.runtime.kernel; return JSON.stringify({ id: k?.id, st: k?.status, cs: k?.connectionStatus, disposed: k?.isDisposed, q: nb.queue.length, pumping: nb.pumping, runs: nb.runs.size, rs: nb.cells.map(c => c.runState), state: nb.runtime.state }); }));
      throw e;
    });
    assert.equal(await page.evaluate(() => window.skylab.runtime.type), 'gpu');
  });

  it('opens a notebook shared as viewer read-only, with Save a copy', async () => {
    const share = await server.api('POST', '/api/skylab/shares', { path: 'renamed lab.ipynb', user: 'bob', role: 'viewer' }, tokenA);
    assert.equal(share.status, 201, JSON.stringify(share.json));
    const b = await signIn(browser, server, 'bob', 'password of bob', '/shared');
    await b.page.locator('.rows .row', { hasText: 'renamed lab.ipynb' }).waitFor();
    await Promise.all([b.page.waitForURL(/\/shared\/[0-9a-f]+$/), b.page.locator('.rows .row .name', { hasText: 'renamed lab.ipynb' }).click()]);
    await b.page.waitForSelector('body[data-ready=true]');
    await b.page.locator('.readonly-banner', { hasText: 'View only' }).waitFor();
    await b.page.locator('.markdown.rendered h1', { hasText: 'Intro' }).waitFor();
    assert.equal(await b.page.locator('.title').getAttribute('readonly'), '');
    await screenshot(b.page, 'viewer');
    await b.page.click('.readonly-banner .btn.primary');
    await b.page.locator('.toast', { hasText: 'Saved a copy' }).waitFor();
    const mine = await server.api('GET', '/api/contents', undefined, tokenB);
    assert.ok(mine.json.content.some(c => c.name === 'Copy of renamed lab.ipynb'), JSON.stringify(mine.json.content.map(c => c.name)));
    // A shared folder is browsed through the share.
    await server.api('PUT', '/api/contents/course', { type: 'directory' }, tokenA);
    await server.api('PUT', '/api/contents/course/hw.ipynb', { type: 'notebook', format: 'json', content: { cells: [{ cell_type: 'markdown', metadata: {}, source: '# Homework' }], metadata: {}, nbformat: 4, nbformat_minor: 5 } }, tokenA);
    assert.equal((await server.api('POST', '/api/skylab/shares', { path: 'course', user: 'bob', role: 'viewer' }, tokenA)).status, 201);
    await b.page.goto(server.url('/shared'));
    await b.page.locator('.rows .row .name', { hasText: /^course$/ }).click();
    await b.page.locator('.crumbs', { hasText: 'course' }).waitFor();
    await Promise.all([b.page.waitForURL(/\/shared\/[0-9a-f]+\/hw\.ipynb$/), b.page.locator('.rows .row .name', { hasText: 'hw.ipynb' }).click()]);
    await b.page.locator('.markdown.rendered h1', { hasText: 'Homework' }).waitFor();
    await b.page.locator('.readonly-banner').waitFor();
    await b.context.close();
  });
});
