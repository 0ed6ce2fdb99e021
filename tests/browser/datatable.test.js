'use strict';
// Interactive tables (Colab's data_table) in Chromium: a 1,000,000-row
// DataFrame is shown as a table that pages, sorts and filters by asking the
// kernel for one page at a time; the bytes that cross the kernel WebSocket
// stay small (counted frame by frame). Copy puts the rows shown on the
// clipboard as TSV. The saved notebook keeps pandas' HTML for other viewers.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, cellAt, runCell, waitIdle } = require('./harness');

const USER = 'edgar';
const PASSWORD = 'tables all the way';

describe('interactive tables', { timeout: 240000 }, () => {
  let server, browser, context, page;
  let received = 0;

  before(async () => {
    server = await startServer();
    server.addUser(USER, PASSWORD);
    const token = server.userToken(USER);
    const nb = { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'c1', cell_type: 'code', source: '', metadata: {}, outputs: [], execution_count: null }] };
    const r = await server.api('PUT', '/api/contents/tables.ipynb', { type: 'notebook', format: 'json', content: nb }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r));
    browser = await launchBrowser();
    ({ context, page } = await signIn(browser, server, USER, PASSWORD, '/notebooks/tables.ipynb'));
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.baseUrl });
    page.on('websocket', ws => {
      if (!/\/api\/kernels\/.*\/channels/.test(ws.url())) return;
      ws.on('framereceived', f => { received += typeof f.payload === 'string' ? Buffer.byteLength(f.payload) : f.payload.length; });
    });
    await page.waitForSelector('body[data-ready=true]');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const table = () => cellAt(page, 0).locator('.datatable');
  const status = () => table().locator('.dt-status').innerText();
  const firstIndex = () => table().locator('tbody tr').first().locator('th').innerText();
  async function waitStatus(re) {
    await page.waitForFunction(r => new RegExp(r).test(document.querySelector('.datatable .dt-status')?.textContent ?? ''), re.source, { timeout: 90000 });
  }

  it('shows a 1,000,000-row DataFrame as a table without shipping the frame', async () => {
    await runCell(page, 0, [
      'from google.colab import data_table',
      'import pandas as pd, numpy as np',
      "df = pd.DataFrame({'a': np.arange(1_000_000), 'b': np.arange(1_000_000) % 7, 's': ['x%d' % i for i in range(1_000_000)]})",
      'data_table.enable_dataframe_formatter()',
      'df',
    ].join('\n'));
    await waitIdle(page, 0, 120000);
    await table().waitFor();
    assert.equal(await status(), '1–25 of 1,000,000');
    assert.equal(await table().locator('tbody tr').count(), 25);
    assert.deepEqual(await table().locator('thead th').allInnerTexts(), ['', 'a', 'b', 's']);
    console.log(`kernel WebSocket bytes received up to the first page: ${received}`);
    assert.ok(received > 0 && received < 200_000, `bytes received so far: ${received}`);
  });

  it('pages, sorts and filters by asking the kernel for one page', async () => {
    const before = received;
    await table().locator('.dt-next').click();
    await waitStatus(/^26–50 of 1,000,000$/);
    assert.equal(await firstIndex(), '25');
    await table().locator('thead button', { hasText: /^a/ }).click();
    await waitStatus(/^1–25 of 1,000,000$/);
    await table().locator('thead button', { hasText: /^a/ }).click(); // descending
    await page.waitForFunction(() => document.querySelector('.datatable tbody th')?.textContent === '999999', null, { timeout: 90000 });
    assert.equal(await table().locator('thead th[aria-sort=descending]').innerText(), 'a ▼');
    await table().locator('.dt-filter').fill('x99999');
    await waitStatus(/^1–11 of 11 \(filtered from 1,000,000\)$/);
    assert.equal(await firstIndex(), '999999');
    assert.equal(await table().locator('tbody tr').last().locator('td').nth(2).innerText(), 'x99999');
    await screenshot(page, 'datatable');
    const shipped = received - before;
    // 1,000,000 rows are tens of MB; four pages are a few KB.
    console.log(`kernel WebSocket bytes for page 2 + 2 sorts + filter: ${shipped}`);
    assert.ok(shipped < 50_000, `bytes received for 4 page requests: ${shipped}`);
  });

  it('Copy puts the rows shown on the clipboard as TSV', async () => {
    await table().locator('.dt-copy').click();
    await page.waitForFunction(() => document.querySelector('.datatable')?.dataset.copied === '11');
    const tsv = await page.evaluate(() => navigator.clipboard.readText());
    const lines = tsv.trimEnd().split('\n');
    assert.equal(lines.length, 12);
    assert.equal(lines[0], '\ta\tb\ts');
    assert.equal(lines[1], `999999\t999999\t${999999 % 7}\tx999999`);
    assert.equal(lines[11], `99999\t99999\t${99999 % 7}\tx99999`);
  });

  it('switches to pandas\' HTML and keeps it in the saved notebook', async () => {
    await table().locator('.dt-plain').click();
    await table().locator('.dt-html iframe').waitFor();
    assert.equal(await table().locator('.dt-scroll').isVisible(), false);
    await page.keyboard.press('Control+s');
    await page.waitForFunction(() => document.querySelector('.save-state')?.textContent === 'All changes saved', null, { timeout: 15000 });
    const r = await server.api('GET', '/api/contents/tables.ipynb?content=1', undefined, server.userToken(USER));
    const out = r.json.content.cells[0].outputs.find(o => o.output_type === 'execute_result');
    assert.ok(out.data['text/html'].includes('<table'), 'HTML fallback saved');
    assert.equal(out.data['application/vnd.skylab.datatable+json'].total_rows, 1000000);
  });

  it('a plain DataFrame result switches to an interactive table (Colab\'s button)', async () => {
    await runCell(page, 1, 'data_table.disable_dataframe_formatter()\ndf.head(100)');
    await waitIdle(page, 1, 120000);
    const c = cellAt(page, 1);
    await c.locator('.output.execute_result iframe').waitFor();
    assert.equal(await c.locator('.datatable').count(), 0, 'plain pandas HTML first');
    await c.locator('.dt-convert').click();
    await c.locator('.datatable .dt-status').filter({ hasText: '1–25 of 100' }).waitFor({ timeout: 60000 });
    await c.locator('.datatable .dt-next').click();
    await c.locator('.datatable .dt-status').filter({ hasText: '26–50 of 100' }).waitFor({ timeout: 60000 });
    assert.equal(await c.locator('.datatable tbody th').first().innerText(), '25');
    const saved = await page.evaluate(() => window.skylab.cells[1].toJSON().outputs);
    assert.ok(!saved.some(o => 'application/vnd.skylab.datatable+json' in (o.data ?? {})), 'the stored output is left as it was');
  });

  it('renders a crafted saved table output as bounded text (no markup, capped rows and columns)', async () => {
    const evil = '<img src=x onerror="window.__pwned=1">';
    const columns = Array.from({ length: 300 }, (_, i) => (i === 0 ? evil : `c${i}`));
    const rows = Array.from({ length: 2000 }, (_, i) => [evil, `r${i}`, { toString: 1 }]);
    const outputs = [
      { output_type: 'display_data', metadata: {}, data: { 'application/vnd.skylab.datatable+json': { id: 'nope', columns, dtypes: ['int64'], rows, index: rows.map(() => evil), offset: -5, total: 1e300 }, 'text/plain': 'x' } },
      { output_type: 'display_data', metadata: {}, data: { 'application/vnd.skylab.datatable+json': { id: 7, columns: 'x' }, 'text/plain': 'x' } },
    ];
    const nb = { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'h1', cell_type: 'code', source: 'x', metadata: {}, outputs, execution_count: 1 }] };
    const token = server.userToken(USER);
    const r = await server.api('PUT', '/api/contents/hostile.ipynb', { type: 'notebook', format: 'json', content: nb }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r));
    await page.goto(server.url('/notebooks/hostile.ipynb'));
    await page.waitForSelector('body[data-ready=true]');
    const t = cellAt(page, 0).locator('.datatable');
    await t.waitFor();
    assert.equal(await t.locator('tbody tr').count(), 500);
    assert.equal(await t.locator('thead th').count(), 201);
    assert.equal(await page.locator('.cells img').count(), 0);
    assert.equal(await t.locator('thead th').nth(1).innerText(), evil);
    assert.equal(await t.locator('.dt-status').innerText(), '1–500 of 500');
    assert.match(await cellAt(page, 0).locator('.output').nth(1).innerText(), /Invalid table output/);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    // Paging a table the runtime does not have: a message, not an exception.
    await t.locator('.dt-filter').fill('r1');
    await t.locator('.dt-note').filter({ hasText: /no longer in the runtime|Connect to the runtime/ }).waitFor({ timeout: 60000 });
  });
});
