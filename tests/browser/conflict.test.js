'use strict';
// Two writers of one notebook (another tab, or a collaborator with edit
// rights): a page whose notebook was saved elsewhere since it loaded never
// overwrites that version unasked. It asks: overwrite with mine, reload
// theirs, or save mine as a copy.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot } = require('./harness');

const nb = source => ({ cells: [{ cell_type: 'code', metadata: {}, source, outputs: [], execution_count: null }],
  metadata: {}, nbformat: 4, nbformat_minor: 5 });

describe('notebook changed elsewhere', { timeout: 180000 }, () => {
  let server, browser, page, token;

  before(async () => {
    server = await startServer();
    server.addUser('kim', 'password of kim');
    token = server.userToken('kim');
    const r = await server.api('PUT', '/api/contents/two.ipynb', { type: 'notebook', format: 'json', content: nb('a = 1') }, token);
    assert.equal(r.status, 201);
    browser = await launchBrowser();
    // ?collab=0: the page that saves by PUT (no live co-editing session, as
    // when the server has none); a live page gets outside writes merged in.
    ({ page } = await signIn(browser, server, 'kim', 'password of kim', '/notebooks/two.ipynb'));
    await page.goto(server.url('/notebooks/two.ipynb?collab=0'));
    await page.waitForSelector('body[data-ready=true]');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  // Another writer saves `source`, then the user types in the page.
  async function clash(source, typed) {
    await new Promise(r => setTimeout(r, 20));  // a later modification time than the page's
    const r = await server.api('PUT', '/api/contents/two.ipynb', { type: 'notebook', format: 'json', content: nb(source) }, token);
    assert.equal(r.status, 200);
    await page.locator('.cells > .cell').first().locator('.cm-content').click();
    await page.keyboard.press('End');
    await page.keyboard.type(typed);
    await page.waitForSelector('.dialog[aria-label="This notebook changed elsewhere"]', { timeout: 20000 });
  }
  async function onServer(path = 'two.ipynb') {
    const r = await server.api('GET', '/api/contents/' + encodeURIComponent(path) + '?content=1', undefined, token);
    return r.json.content.cells.map(c => c.source).join('\n');
  }

  it('asks before overwriting, and overwrites when told to', async () => {
    await clash('theirs = 2', ' # mine');
    assert.equal(await onServer(), 'theirs = 2', 'nothing is overwritten while the question is open');
    assert.match(await page.locator('.save-state').innerText(), /Changed elsewhere/);
    await screenshot(page, 'notebook-conflict');
    await page.click('.dialog button:has-text("Overwrite with mine")');
    await page.waitForFunction(() => document.querySelector('.save-state')?.textContent === 'All changes saved', null, { timeout: 20000 });
    assert.equal(await onServer(), 'a = 1 # mine');
  });

  it('reloads their version when told to', async () => {
    await clash('theirs = 3', ' # mine again');
    await Promise.all([page.waitForNavigation(), page.click('.dialog button:has-text("Reload theirs")')]);
    await page.waitForSelector('body[data-ready=true]');
    assert.equal(await page.evaluate(() => window.skylab.cells[0].getSource()), 'theirs = 3');
    assert.equal(await onServer(), 'theirs = 3');
  });

  it('saves my version as a copy next to theirs', async () => {
    await clash('theirs = 4', ' # keep me');
    await Promise.all([page.waitForNavigation(), page.click('.dialog button:has-text("Save mine as a copy")')]);
    await page.waitForSelector('body[data-ready=true]');
    assert.equal(await page.evaluate(() => window.skylab.cells[0].getSource()), 'theirs = 4');
    const list = await server.api('GET', '/api/contents/', undefined, token);
    const copy = list.json.content.find(e => /^two \(my changes .*\)\.ipynb$/.test(e.name));
    assert.ok(copy, JSON.stringify(list.json.content.map(e => e.name)));
    assert.equal(await onServer(copy.path), 'theirs = 3 # keep me');
  });
});
