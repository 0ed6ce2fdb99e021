'use strict';
// The Drive page in Chromium: upload (a large file goes in chunks), new
// folder, rename, move, trash with undo, search, and the examples gallery.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { startServer, launchBrowser, signIn, screenshot } = require('./harness');

describe('drive', { timeout: 120000 }, () => {
  let server, browser, page;
  const big = crypto.randomBytes(2_500_000); // 3 chunks of 1 MiB

  before(async () => {
    server = await startServer();
    server.addUser('grace', 'another long password');
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, 'grace', 'another long password', '/drive'));
    await page.waitForSelector('.drive-page');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const row = name => page.locator('.rows .row').filter({ has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });
  async function rowAction(name, id) {
    await row(name).locator('.more').click();
    await page.click(`.menu [data-id=${id}]`);
  }

  it('uploads files, a large one in chunks, with the bytes intact', async () => {
    let puts = 0;
    page.on('request', r => {
      if (r.method() === 'PUT' && new URL(r.url()).pathname === '/api/contents/big.bin') puts++;
    });
    await page.setInputFiles('input[type=file]', [
      { name: 'big.bin', mimeType: 'application/octet-stream', buffer: big },
      { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hello drive\n') },
    ]);
    await row('big.bin').waitFor({ timeout: 30000 });
    await row('notes.txt').waitFor();
    assert.equal(puts, 3, '2.5 MB goes up in three 1 MiB chunks');
    const got = await page.evaluate(async () => {
      const r = await fetch('/files/big.bin');
      return Array.from(new Uint8Array(await r.arrayBuffer()).slice(0, 64)).concat([(await (await fetch('/files/big.bin')).arrayBuffer()).byteLength]);
    });
    assert.equal(got[got.length - 1], big.length);
    assert.deepEqual(got.slice(0, 64), Array.from(big.subarray(0, 64)));
    // The gallery lists the course notebooks shipped beside the binary (course.test.js opens one).
    await page.locator('.examples .example-card').first().waitFor();
    const cards = await page.locator('.examples .example-card').evaluateAll(els => els.map(e => e.dataset.example));
    assert.deepEqual(cards.sort(), ['cifar10_cnn', 'house_prices_regression', 'mnist_dense']);
  });

  it('creates a folder, renames and moves a file into it', async () => {
    await page.click('.new-btn');
    await page.click('[data-id=new-folder]');
    await page.fill('.dialog input', 'data');
    await page.keyboard.press('Enter');
    await row('data').waitFor();
    await rowAction('notes.txt', 'rename');
    await page.fill('.dialog input', 'readme.txt');
    await page.keyboard.press('Enter');
    await row('readme.txt').waitFor();
    await rowAction('readme.txt', 'move');
    await page.locator('.dialog .pick', { hasText: 'data' }).click();
    await page.locator('.dialog .pick-here', { hasText: 'data' }).waitFor();
    await page.click('.dialog .btn.primary');
    await row('readme.txt').waitFor({ state: 'detached' });
    await row('data').locator('.name').click();
    await row('readme.txt').waitFor();
    assert.match(await page.locator('.crumbs').innerText(), /My Drive\s*›\s*data/);
    await page.locator('.crumb', { hasText: 'My Drive' }).click();
    await row('data').waitFor();
  });

  it('finds files by name in every folder', async () => {
    await page.fill('.search', 'readme');
    await row('readme.txt').waitFor();
    assert.equal(await page.locator('.rows .row').count(), 1);
    await page.fill('.search', '');
    await row('big.bin').waitFor();
  });

  it('deletes with undo (a folder with its files too)', async () => {
    await rowAction('big.bin', 'delete');
    await row('big.bin').waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(async () => (await fetch('/files/big.bin')).status), 404);
    await page.locator('.toast', { hasText: 'big.bin” deleted' }).locator('.btn.link', { hasText: 'Undo' }).click();
    await row('big.bin').waitFor();
    const size = await page.evaluate(async () => (await (await fetch('/files/big.bin')).arrayBuffer()).byteLength);
    assert.equal(size, big.length);
    await rowAction('data', 'delete');
    await row('data').waitFor({ state: 'detached' });
    await page.locator('.toast', { hasText: 'data” deleted' }).locator('.btn.link', { hasText: 'Undo' }).click();
    await row('data').waitFor();
    assert.equal(await page.evaluate(async () => (await fetch('/files/data/readme.txt')).text()), 'hello drive\n');
    await screenshot(page, 'drive');
  });
});
