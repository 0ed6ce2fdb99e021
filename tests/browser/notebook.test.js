'use strict';
// The notebook app as a new user meets it, in Debian's Chromium: sign in,
// Drive, a notebook with text, plot, Markdown+LaTeX and tqdm outputs that
// survive a reload; HTML outputs that cannot reach the app's cookies or API;
// input(); a tab closed while a cell runs gets the output when reopened; a
// cell running on another computer shows as running, with its output.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, sleep, cellAt, runCell: runCellIn, waitIdle: waitIdleIn } = require('./harness');

const USER = 'ada';
const PASSWORD = 'correct horse battery';

describe('notebook app', { timeout: 240000 }, () => {
  let server, browser, context, page;

  before(async () => {
    server = await startServer();
    server.addUser(USER, PASSWORD);
    browser = await launchBrowser();
    ({ context, page } = await signIn(browser, server, USER, PASSWORD, '/'));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const runCell = (index, source) => runCellIn(page, index, source);
  const cell = i => cellAt(page, i);
  const waitIdle = (i, timeout = 60000) => waitIdleIn(page, i, timeout);
  async function waitSaved() {
    await page.waitForFunction(() => document.querySelector('.save-state')?.textContent === 'All changes saved', null, { timeout: 15000 });
  }

  it('signs in to the Drive and creates a notebook', async () => {
    await page.waitForSelector('.drive-page');
    assert.match(await page.locator('.nav-item.active').innerText(), /My Drive/);
    assert.match(await page.locator('.crumbs').innerText(), /My Drive/);
    await screenshot(page, 'drive-empty');
    await page.click('.new-btn');
    await Promise.all([page.waitForURL(/\/notebooks\/Untitled.*\.ipynb$/), page.click('[data-id=new-notebook]')]);
    await page.waitForSelector('body[data-ready=true]');
    assert.match(await page.locator('.title').inputValue(), /^Untitled.*\.ipynb$/);
  });

  it('runs print("hi") typed with the keyboard (Shift+Enter)', async () => {
    await cell(0).locator('.cm-content').click();
    await page.keyboard.type('print("hi")');
    await page.keyboard.press('Shift+Enter');
    await cell(0).locator('.output.stream').filter({ hasText: 'hi' }).waitFor({ timeout: 60000 });
    assert.equal((await cell(0).locator('.output.stream').innerText()).trim(), 'hi');
    assert.equal(await page.locator('.cells > .cell').count(), 2, 'Shift+Enter on the last cell adds one');
    await waitIdle(0);
    assert.equal(await cell(0).locator('.exec-count').innerText(), '[1]');
  });

  it('shows a matplotlib plot as an image', async () => {
    await runCell(1, 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()');
    const img = cell(1).locator('.output img');
    await img.waitFor({ timeout: 60000 });
    const size = await img.evaluate(i => i.complete && [i.naturalWidth, i.naturalHeight]);
    assert.ok(size && size[0] > 100 && size[1] > 100, `plot image decoded: ${size}`);
  });

  it('renders Markdown with KaTeX', async () => {
    await page.evaluate(() => {
      const nb = window.skylab;
      nb.insert('markdown', 1, false);
    });
    const i = await page.evaluate(() => window.skylab.cells.findIndex(c => c.type === 'markdown'));
    await cell(i).locator('.markdown.rendered').dblclick();
    await cell(i).locator('.cm-content').waitFor();
    await page.keyboard.type('## Euler\n\nThe identity $e^{i\\pi} + 1 = 0$');
    await page.keyboard.press('Shift+Enter');
    await cell(i).locator('.markdown.rendered .katex').waitFor();
    assert.match(await cell(i).locator('.markdown.rendered h2').innerText(), /Euler/);
  });

  it('redraws a tqdm bar in place (one line, not 100)', async () => {
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, 'from tqdm import tqdm\nimport time\nfor _ in tqdm(range(100)):\n    time.sleep(0.01)');
    await waitIdle(i);
    const txt = await cell(i).locator('.output.stream').innerText();
    const lines = txt.split('\n').filter(l => l.trim());
    assert.equal(lines.length, 1, `one bar line, got: ${JSON.stringify(lines)}`);
    assert.match(lines[0], /100%.*100\/100/);
  });

  it('keeps everything after a reload', async () => {
    await waitSaved();
    await page.evaluate(() => document.querySelector('.cell[data-type=markdown]').scrollIntoView({ block: 'start' }));
    await screenshot(page, 'notebook-outputs');
    await page.reload();
    await page.waitForSelector('body[data-ready=true]');
    await cell(0).locator('.output.stream').filter({ hasText: 'hi' }).waitFor();
    await cell(1).locator('.output img').waitFor();
    await page.locator('.markdown.rendered .katex').first().waitFor();
    const bar = page.locator('.output.stream').filter({ hasText: '100/100' });
    assert.equal((await bar.innerText()).split('\n').filter(l => l.trim()).length, 1);
    assert.equal(await cell(0).locator('.exec-count').innerText(), '[1]');
  });

  it('opens the runtime menu', async () => {
    await page.click('.status-more');
    await page.waitForSelector('.menu [data-id=interrupt]');
    await page.waitForFunction(() => !/loading/.test(document.querySelector('.menu-resources')?.textContent ?? 'x'));
    await screenshot(page, 'runtime-menu');
    await page.keyboard.press('Escape');
  });

  it('keeps HTML output scripts away from the app cookies and API', async t => {
    await page.evaluate(() => {
      window.__probe = new Promise(resolve => window.addEventListener('message', e => {
        if (e.data && e.data.skylabProbe) resolve(e.data.skylabProbe);
      }));
    });
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, [
      'from IPython.display import HTML',
      'HTML("""<p id=probe>probe</p><script>',
      'var r = {};',
      'try { r.cookie = "read:" + document.cookie; } catch (e) { r.cookie = "error:" + e.name; }',
      'try { r.storage = typeof localStorage.getItem("x"); } catch (e) { r.storage = "error:" + e.name; }',
      'try { r.parentDoc = String(parent.document.cookie); } catch (e) { r.parentDoc = "error:" + e.name; }',
      'fetch("/api/contents", {credentials: "include"})',
      '  .then(x => x.text().then(t => { r.status = x.status; r.body = t.slice(0, 300); }))',
      '  .catch(e => { r.fetch = "failed:" + e.name; })',
      '  .then(() => parent.postMessage({skylabProbe: r}, "*"));',
      '</script>""")',
    ].join('\n'));
    const r = await page.evaluate(() => Promise.race([window.__probe, new Promise(res => setTimeout(() => res(null), 30000))]));
    assert.ok(r, 'the output script ran and reported');
    t.diagnostic(`output frame probe: ${JSON.stringify(r)}`);
    const appCookie = await page.evaluate(() => document.cookie);
    assert.ok(appCookie.includes('_xsrf='), 'the app itself sees its cookie');
    assert.ok(r.cookie.startsWith('error:') || r.cookie === 'read:', `cookie not readable: ${r.cookie}`);
    assert.ok(r.parentDoc.startsWith('error:'), `parent document unreachable: ${r.parentDoc}`);
    assert.ok(r.fetch || r.status === 401 || r.status === 403, `API refused: ${JSON.stringify(r)}`);
    assert.ok(!r.body || !/Untitled|"content"/.test(r.body), 'no Drive data leaked');
    // The frame is sandboxed without allow-same-origin.
    const sandbox = await cell(i).locator('iframe.output-frame').getAttribute('sandbox');
    assert.ok(sandbox.includes('allow-scripts') && !sandbox.includes('allow-same-origin'));
  });

  it('input() shows an input box whose value reaches the kernel', async () => {
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, "x = input('name?')\nprint('hello', x.upper())");
    const box = cell(i).locator('input.stdin-input');
    await box.waitFor({ timeout: 60000 });
    assert.match(await cell(i).locator('.stdin-prompt').innerText(), /name\?/);
    await box.fill('ada');
    await box.press('Enter');
    await cell(i).locator('.output.stream').filter({ hasText: 'hello ADA' }).waitFor({ timeout: 30000 });
  });

  it('keeps the last lines of a huge stream, with Show all', async () => {
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, 'for k in range(5000):\n    print("line", k)');
    await waitIdle(i);
    const out = cell(i).locator('.output.stream');
    await out.locator('.truncated', { hasText: 'earlier lines hidden' }).waitFor();
    const shown = (await out.locator('pre').innerText()).trim().split('\n');
    assert.ok(shown.length <= 2100, `at most ~2000 lines in the page, got ${shown.length}`);
    assert.equal(shown[shown.length - 1], 'line 4999');
    await out.locator('.truncated .btn').click();
    const all = (await out.locator('pre').innerText()).trim().split('\n');
    assert.equal(all.length, 5000);
    assert.equal(all[0], 'line 0');
  });

  it('shows the share dialog', async () => {
    await page.click('.share-btn');
    await page.waitForSelector('.dialog');
    await screenshot(page, 'share-dialog');
    await page.keyboard.press('Escape');
  });

  it('shows the output of a cell that finished while its tab was closed', async () => {
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, "import time\nprint('started', flush=True)\ntime.sleep(20)\nprint('done')");
    await cell(i).locator('.output.stream').filter({ hasText: 'started' }).waitFor({ timeout: 60000 });
    await waitSaved();
    const url = page.url();
    await page.close();
    await sleep(3000);
    page = await context.newPage();
    await page.goto(url);
    await page.waitForSelector('body[data-ready=true]');
    const out = cell(i).locator('.output.stream').filter({ hasText: 'done' });
    await out.waitFor({ timeout: 45000 });
    assert.match(await out.innerText(), /started\s+done/);
    await waitIdle(i);
    // And it was saved to the Drive: a reload shows it.
    await waitSaved();
    await page.reload();
    await page.waitForSelector('body[data-ready=true]');
    await cell(i).locator('.output.stream').filter({ hasText: 'done' }).waitFor();
  });

  it('shows a cell still running on another computer, with its output so far and what follows', async () => {
    const i = await page.evaluate(() => window.skylab.cells.length);
    await runCell(i, "import time\nprint('from the first computer', flush=True)\ntime.sleep(10)\nprint('finished elsewhere')");
    await cell(i).locator('.output.stream').filter({ hasText: 'from the first computer' }).waitFor({ timeout: 60000 });
    // Another computer: a browser context of its own (no shared storage), same user.
    const other = await signIn(browser, server, USER, PASSWORD, new URL(page.url()).pathname);
    try {
      await other.page.waitForSelector('body[data-ready=true]');
      const there = cellAt(other.page, i);
      await there.locator('.output.stream').filter({ hasText: 'from the first computer' }).waitFor();
      await other.page.waitForFunction(n => document.querySelectorAll('.cell')[n]?.classList.contains('running'), i);
      await there.locator('.output.stream').filter({ hasText: 'finished elsewhere' }).waitFor({ timeout: 45000 });
      await other.page.waitForFunction(n => !document.querySelectorAll('.cell')[n]?.classList.contains('running'), i,
        { timeout: 30000 });
    } finally {
      await other.context.close();
    }
    await waitIdle(i);
  });
});
