'use strict';
// Files between the browser and the runtime, and sharing, in Debian's
// Chromium: files.download() triggers a browser download with the right
// bytes; files.upload() takes a file chosen in the page and the cell gets
// its bytes (skylab.files and google.colab.files); the Files panel lists,
// uploads, downloads and deletes in /content; the Share dialog shares a
// notebook with a second user who then finds it in "Shared with me";
// revision history shows a past version and restores it.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const { startServer, launchBrowser, signIn, screenshot, cellAt, runCell: runCellIn, waitIdle: waitIdleIn } = require('./harness');

const ADA = ['ada', 'correct horse battery'];
const BOB = ['bob', 'battery staple horse'];

describe('files, sharing and history', { timeout: 300000 }, () => {
  let server, browser, page, kernelId;

  before(async () => {
    server = await startServer();
    server.addUser(...ADA);
    server.addUser(...BOB);
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, ...ADA, '/'));
    page.on('dialog', d => d.accept());
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const runCell = (index, source) => runCellIn(page, index, source);
  const cell = i => cellAt(page, i);
  const waitIdle = (i, timeout = 90000) => waitIdleIn(page, i, timeout);

  it('creates a notebook', async () => {
    await page.waitForSelector('.drive-page');
    await page.click('.new-btn');
    await Promise.all([page.waitForURL(/\/notebooks\/Untitled.*\.ipynb$/), page.click('[data-id=new-notebook]')]);
    await page.waitForSelector('body[data-ready=true]');
  });

  it('the Files panel offers to connect a runtime, then shows /content', async () => {
    await page.click('.side-icon[data-panel=files]');
    const panel = page.locator('.files-panel');
    const connect = panel.getByRole('button', { name: 'Connect to a runtime' });
    await connect.waitFor({ timeout: 10000 });
    await screenshot(page, 'files-panel-connect');
    await connect.click();
    await panel.locator('.files-item.drive').waitFor({ timeout: 90000 });
    assert.match(await panel.locator('.files-none').innerText(), /This folder is empty/);
    await page.click('.side-icon[data-panel=files]'); // closed again
  });

  for (const [i, mod] of [[0, 'from skylab import files'], [2, 'from google.colab import files']]) {
    it(`files.download() saves the file in the browser (${mod})`, async () => {
      const payload = `hello download ${i}\n` + 'a line of text\n'.repeat(64);
      const [download] = await Promise.all([
        page.waitForEvent('download', { timeout: 90000 }),
        runCell(i, `open('x${i}.txt', 'w').write(${JSON.stringify(payload)})\n${mod}\nfiles.download('x${i}.txt')`),
      ]);
      assert.equal(download.suggestedFilename(), `x${i}.txt`);
      assert.equal(fs.readFileSync(await download.path(), 'utf8'), payload);
      await cell(i).locator('.skylab-download.done').waitFor({ timeout: 10000 });
      assert.match(await cell(i).locator('.skylab-download').innerText(), new RegExp(`Downloaded\\s*x${i}\\.txt`));
      await waitIdle(i);
      kernelId = await page.evaluate(() => window.skylab.kernel()?.id);
      assert.ok(kernelId);
    });

    it(`files.upload() takes a file chosen in the page (${mod})`, async () => {
      const bytes = Buffer.from(`uploaded bytes ${i} \u00e9\n`);
      await runCell(i + 1, `${mod}\nup = files.upload()\nprint({k: v.decode() for k, v in up.items()})\nprint(open('up${i}.txt').read() == up['up${i}.txt'].decode())`);
      const input = cell(i + 1).locator('.skylab-upload input[type=file]');
      await input.waitFor({ state: 'attached', timeout: 90000 });
      if (i === 0) await screenshot(page, 'files-upload-picker');
      await input.setInputFiles({ name: `up${i}.txt`, mimeType: 'text/plain', buffer: bytes });
      await waitIdle(i + 1);
      const out = await cell(i + 1).locator('.output.stream').allInnerTexts();
      const text = out.join('\n');
      assert.match(text, new RegExp(`Saving up${i}\\.txt to up${i}\\.txt`));
      assert.ok(text.includes(`{'up${i}.txt': 'uploaded bytes ${i} \u00e9\\n'}`), text);
      assert.match(text, /\nTrue/);
      assert.match(await cell(i + 1).locator('.skylab-upload').innerText(), /100% done/);
    });
  }

  it('a download output seen again (reload) is a link and does not download by itself', async () => {
    await page.waitForFunction(() => document.querySelector('.save-state')?.textContent === 'All changes saved', null, { timeout: 15000 });
    let downloads = 0;
    const count = () => downloads++;
    page.on('download', count);
    await page.reload();
    await page.waitForSelector('body[data-ready=true]');
    await cell(0).locator('.skylab-download').waitFor();
    await page.waitForTimeout(1500);
    page.off('download', count);
    assert.equal(downloads, 0);
    assert.match(await cell(0).locator('.skylab-download').innerText(), /^\s*Download\s+x0\.txt/);
    const [download] = await Promise.all([page.waitForEvent('download'), cell(0).locator('.download-link').click()]);
    assert.equal(download.suggestedFilename(), 'x0.txt');
    assert.match(fs.readFileSync(await download.path(), 'utf8'), /^hello download 0\n/);
    // The runtime stays connected across the reload (same kernel).
    await page.waitForFunction(id => window.skylab.kernel()?.id === id, kernelId, { timeout: 30000 });
  });

  it('uploads a large file in chunks through files.upload()', async () => {
    const big = Buffer.alloc((20 << 20) + 5, 7);
    big.write('start', 0);
    big.write('end', big.length - 3);
    await runCell(4, "from skylab import files\nimport hashlib\nup = files.upload()\nprint(len(up['big.bin']), hashlib.sha256(up['big.bin']).hexdigest())");
    const input = cell(4).locator('.skylab-upload input[type=file]');
    await input.waitFor({ state: 'attached', timeout: 60000 });
    await input.setInputFiles({ name: 'big.bin', mimeType: 'application/octet-stream', buffer: big });
    await waitIdle(4, 120000);
    const text = (await cell(4).locator('.output.stream').allInnerTexts()).join('\n');
    const sha = require('node:crypto').createHash('sha256').update(big).digest('hex');
    assert.ok(text.includes(`${big.length} ${sha}`), text);
  });

  it('the Files panel lists, uploads, downloads and deletes in /content', async () => {
    await page.click('.side-icon[data-panel=files]');
    const panel = page.locator('.files-panel');
    await panel.locator('.files-item[data-name="x0.txt"]').waitFor({ timeout: 30000 });
    const names = await panel.locator('.files-item').evaluateAll(els => els.map(e => e.dataset.name).filter(Boolean));
    for (const n of ['x0.txt', 'up0.txt', 'x2.txt', 'up2.txt', 'big.bin']) assert.ok(names.includes(n), names.join(','));
    // Upload from the computer into a new folder.
    await page.evaluate(() => fetch(`/api/skylab/runtimes/${window.skylab.kernel().id}/files/results`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', 'X-XSRFToken': document.cookie.match(/_xsrf=([^;]+)/)[1] },
      body: JSON.stringify({ type: 'directory' }),
    }));
    await panel.locator('button[aria-label=Refresh]').click();
    await panel.locator('.files-item.dir[data-name=results] .files-name').click();
    await panel.locator('.files-crumbs').filter({ hasText: 'results' }).waitFor();
    await panel.locator('input[type=file]').setInputFiles({ name: 'panel.csv', mimeType: 'text/csv', buffer: Buffer.from('a,b\n1,2\n') });
    await panel.locator('.files-item[data-name="panel.csv"]').waitFor({ timeout: 30000 });
    await runCell(5, "print(open('/content/results/panel.csv').read())");
    await waitIdle(5);
    assert.equal((await cell(5).locator('.output.stream').innerText()).trim(), 'a,b\n1,2');
    // Download from the panel.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      panel.locator('.files-item[data-name="panel.csv"] button[aria-label="Download panel.csv"]').click({ force: true }),
    ]);
    assert.equal(fs.readFileSync(await download.path(), 'utf8'), 'a,b\n1,2\n');
    // Delete (confirm in the app's dialog).
    await panel.locator('.files-item[data-name="panel.csv"] button[aria-label="Delete panel.csv"]').click({ force: true });
    await page.locator('.dialog .btn.primary', { hasText: 'Delete' }).click();
    await panel.locator('.files-item[data-name="panel.csv"]').waitFor({ state: 'detached', timeout: 10000 });
    const r = await page.evaluate(() => fetch(`/api/skylab/runtimes/${window.skylab.kernel().id}/files/results`).then(r => r.json()));
    assert.deepEqual(r.content, []);
    await panel.locator('.files-crumbs .crumb', { hasText: 'content' }).click();
    await panel.locator('.files-item[data-name="big.bin"]').waitFor();
    await panel.locator('.files-item[data-name="x0.txt"]').hover();
    await screenshot(page, 'files-panel');
  });

  it('an upload picker whose cell is interrupted says the request ended', async () => {
    await runCell(6, 'from skylab import files\nfiles.upload()');
    await cell(6).locator('.skylab-upload input[type=file]').waitFor({ state: 'attached', timeout: 60000 });
    await page.evaluate(id => fetch(`/api/kernels/${id}/interrupt`, {
      method: 'POST', headers: { 'X-XSRFToken': document.cookie.match(/_xsrf=([^;]+)/)[1] },
    }), kernelId);
    await cell(6).locator('.skylab-upload.finished').waitFor({ timeout: 30000 });
    assert.match(await cell(6).locator('.skylab-upload').innerText(), /The cell stopped before files were chosen/);
    assert.equal(await cell(6).locator('.skylab-upload button').count(), 0);
    await cell(6).locator('.output.error').filter({ hasText: 'KeyboardInterrupt' }).waitFor({ timeout: 30000 });
  });

  it('shares the notebook with bob, who finds it in Shared with me', async () => {
    const path = await page.evaluate(() => window.skylab.doc.path);
    await page.click('.share-btn');
    const dialog = page.locator('.dialog', { has: page.locator('.share-dialog') });
    await dialog.waitFor();
    await dialog.locator('.share-user').fill('nobody-here');
    await dialog.locator('.share-add').click();
    await dialog.locator('.share-error').filter({ hasText: 'No such user' }).waitFor();
    await dialog.locator('.share-user').fill('bob');
    await dialog.locator('.share-role').selectOption('editor');
    await dialog.locator('.share-add').click();
    await dialog.locator('.share-item[data-user=bob]').waitFor();
    assert.equal(await dialog.locator('.share-item[data-user=bob] select').inputValue(), 'editor');
    await dialog.locator('.share-link-toggle').check();
    await dialog.locator('.share-link-url').waitFor();
    assert.match(await dialog.locator('.share-link-url').inputValue(), /\/shared\/[0-9a-f]{48}$/);
    await screenshot(page, 'share-dialog-with-people');
    await dialog.locator('.dialog-buttons .btn.primary').click();

    const { page: bobPage, context: bobContext } = await signIn(browser, server, ...BOB, '/shared');
    try {
      await bobPage.waitForSelector('.drive-page');
      const name = path.split('/').pop();
      await bobPage.getByText(name, { exact: true }).first().waitFor({ timeout: 15000 });
      const shared = await bobPage.evaluate(() => fetch('/api/skylab/shared').then(r => r.json()));
      assert.ok(shared.some(s => s.path === path && s.role === 'editor' && s.owner === 'ada'), JSON.stringify(shared));
    } finally {
      await bobContext.close();
    }
    // Revoke: bob loses it.
    await page.click('.share-btn');
    await dialog.locator('.share-item[data-user=bob] .share-revoke').click();
    await dialog.locator('.share-item[data-user=bob]').waitFor({ state: 'detached' });
    await dialog.locator('.dialog-buttons .btn.primary').click();
    const left = await page.evaluate(p => fetch('/api/skylab/shares?path=' + encodeURIComponent(p)).then(r => r.json()), path);
    assert.deepEqual(left.map(s => s.user), [null]);
  });

  it('a download link whose runtime is gone says so', async () => {
    const status = await page.evaluate(id => fetch('/api/kernels/' + id, {
      method: 'DELETE', headers: { 'X-XSRFToken': document.cookie.match(/_xsrf=([^;]+)/)[1] },
    }).then(r => r.status), kernelId);
    assert.equal(status, 204);
    await cell(0).locator('.download-link').click();
    await cell(0).locator('.skylab-download.failed').waitFor({ timeout: 10000 });
    assert.match(await cell(0).locator('.skylab-download').innerText(), /Download failed \(No such runtime/);
  });

  it('revision history compares a past version and restores it', async () => {
    // A notebook saved twice (as the app saves, through the Contents API), then opened.
    const path = 'history.ipynb';
    const save = src => page.evaluate(([p, s]) => {
      const xsrf = document.cookie.match(/_xsrf=([^;]+)/)[1];
      const nb = { nbformat: 4, nbformat_minor: 5, metadata: {}, cells: [{ id: 'c1', cell_type: 'code', source: s, metadata: {}, outputs: [], execution_count: null }] };
      return fetch('/api/contents/' + p, {
        method: 'PUT', headers: { 'Content-Type': 'application/json', 'X-XSRFToken': xsrf },
        body: JSON.stringify({ type: 'notebook', format: 'json', content: nb }),
      }).then(r => r.status);
    }, [path, src]);
    assert.equal(await save('print("old version")\nshared = 1'), 201);
    assert.equal(await save('print("new version")\nshared = 1'), 200);
    await page.goto(server.url('/notebooks/' + path));
    await page.waitForSelector('body[data-ready=true]');
    await page.evaluate(() => window.skylab.commands.get('history').run());
    const dialog = page.locator('.dialog.history');
    await dialog.locator('.history-item').first().waitFor();
    // Find the revision that holds the old text.
    const items = dialog.locator('.history-item');
    const n = await items.count();
    let found = false;
    for (let k = 0; k < n && !found; k++) {
      await items.nth(k).click();
      await dialog.locator('.history-summary, .history-view .error').first().waitFor();
      found = (await dialog.locator('.history-view').innerText()).includes('old version');
    }
    assert.ok(found, 'a revision shows the old version');
    assert.match(await dialog.locator('.history-cell .line.del').first().innerText(), /old version/);
    assert.match(await dialog.locator('.history-cell .line.add').first().innerText(), /new version/);
    assert.equal(await dialog.locator('.history-cell .line:not(.add):not(.del)', { hasText: 'shared = 1' }).count(), 2);
    await screenshot(page, 'revision-history');
    await dialog.locator('.history-restore').click();
    await Promise.all([
      page.waitForEvent('load'),
      page.getByRole('button', { name: 'Restore', exact: true }).click(),
    ]);
    const now = await page.evaluate(p => fetch('/api/contents/' + p).then(r => r.json()), path);
    assert.equal(now.content.cells[0].source, 'print("old version")\nshared = 1');
  });
});
