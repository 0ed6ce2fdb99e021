'use strict';
// Colab forms in the app, in Chromium: a notebook written in Colab (cellView
// "form", #@title/#@markdown/#@param) opens with its form and code hidden;
// moving the slider and typing in a text field rewrite their lines; running
// uses the new values; "Show code" shows the editor and is saved as Colab's
// metadata. Markup in a title or a field stays text.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, cellAt, waitIdle } = require('./harness');

const USER = 'grace';
const PASSWORD = 'forms are nice';

const SOURCE = [
  '#@title Training <img src=x onerror="window.__pwned=1"> { display-mode: "form" }',
  '#@markdown Pick the **epochs** <script>window.__pwned=2</script>',
  'epochs = 5 #@param {type:"slider", min:1, max:50}',
  'name = "first" #@param {type:"string"}',
  'opt = "adam" #@param ["adam", "sgd"]',
  'print("RESULT", epochs * 2, repr(name), opt)',
].join('\n');

describe('Colab forms', { timeout: 180000 }, () => {
  let server, browser, page;

  before(async () => {
    server = await startServer();
    server.addUser(USER, PASSWORD);
    const token = server.userToken(USER);
    const nb = {
      nbformat: 4, nbformat_minor: 5, metadata: { colab: { provenance: [] }, kernelspec: { name: 'python3', display_name: 'Python 3' } },
      cells: [{ id: 'form1', cell_type: 'code', source: SOURCE, metadata: { cellView: 'form', id: 'form1' }, outputs: [], execution_count: null }],
    };
    const r = await server.api('PUT', '/api/contents/forms.ipynb', { type: 'notebook', format: 'json', content: nb }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r));
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, USER, PASSWORD, '/notebooks/forms.ipynb'));
    await page.waitForSelector('body[data-ready=true]');
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const cell = () => cellAt(page, 0);

  it('shows the form with the code hidden (Colab cellView "form"), markup as text', async () => {
    const form = cell().locator('.cell-form');
    await form.waitFor();
    assert.equal(await form.locator('.form-title').innerText(), 'Training <img src=x onerror="window.__pwned=1">');
    assert.match(await form.locator('.form-md').innerText(), /Pick the epochs/);
    assert.equal(await form.locator('.form-md script, .cell-form img').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.equal(await cell().locator('.editor').isVisible(), false, 'code hidden');
    assert.equal(await cell().locator('.static-code').isVisible(), false, 'code hidden');
    assert.equal(await form.locator('input[type=range]').inputValue(), '5');
    assert.equal(await form.locator('input[type=text]').inputValue(), 'first');
    assert.equal(await form.locator('select').inputValue(), 'adam');
    assert.equal(await form.locator('.form-toggle').innerText(), 'Show code');
    // Enter/arrow keys into a cell whose code is hidden reach its form, never the invisible code.
    await page.evaluate(() => window.skylab.cells[0].focusEditor());
    assert.equal(await page.evaluate(() => document.activeElement?.type), 'range');
  });

  it('moving the slider and typing rewrite their lines; running uses the new values', async () => {
    const form = cell().locator('.cell-form');
    await form.locator('input[type=range]').fill('12');
    await form.locator('input[type=text]').fill('it\'s "x" </script>');
    await form.locator('select').selectOption('sgd');
    const src = await page.evaluate(() => window.skylab.cells[0].getSource());
    const lines = src.split('\n');
    assert.equal(lines.length, 6);
    assert.equal(lines[2], 'epochs = 12 #@param {type:"slider", min:1, max:50}');
    assert.equal(lines[3], 'name = "it\'s \\"x\\" </script>" #@param {type:"string"}');
    assert.equal(lines[4], 'opt = "sgd" #@param ["adam", "sgd"]');
    await screenshot(page, 'forms');
    await page.evaluate(() => window.skylab.run([window.skylab.cells[0]]));
    await waitIdle(page, 0, 90000);
    const out = await cell().locator('.output.stream').innerText();
    assert.equal(out.trim(), `RESULT 24 'it\\'s "x" </script>' sgd`);
  });

  it('"Show code" shows the editor beside the form and is saved as Colab metadata', async () => {
    await cell().locator('.form-toggle').click();
    await cell().locator('.cm-content').waitFor();
    assert.equal(await cell().locator('.cell-form').isVisible(), true);
    assert.equal(await cell().locator('.form-toggle').innerText(), 'Hide code');
    // Typing in the code updates the form.
    await page.evaluate(() => {
      const c = window.skylab.cells[0];
      c.setSource(c.getSource().replace('epochs = 12', 'epochs = 33'));
    });
    await page.waitForFunction(() => document.querySelector('.cell-form input[type=range]')?.value === '33');
    await screenshot(page, 'forms-code-shown');
    await page.keyboard.press('Control+s');
    await page.waitForFunction(() => document.querySelector('.save-state')?.textContent === 'All changes saved', null, { timeout: 15000 });
    const r = await server.api('GET', '/api/contents/forms.ipynb?content=1', undefined, server.userToken(USER));
    const c = r.json.content.cells[0];
    assert.equal(c.metadata.cellView, 'code');
    assert.match(Array.isArray(c.source) ? c.source.join('') : c.source, /^epochs = 33 #@param/m);
    assert.match(Array.isArray(c.source) ? c.source.join('') : c.source, /^name = "it's \\"x\\" <\/script>" #@param/m);
  });

  it('a form with run: "auto" runs its cell when a field changes', async () => {
    await page.evaluate(() => {
      const nb = window.skylab;
      nb.insertAt('code', 1, false);
      nb.cells[1].materialize();
      nb.cells[1].setSource('#@title Auto { run: "auto" }\nk = 2 #@param {type:"integer"}\nprint("K", k * 10)');
    });
    const field = cellAt(page, 1).locator('.cell-form input[type=number]');
    await field.fill('7');
    await field.press('Tab'); // commits (change event)
    await cellAt(page, 1).locator('.output.stream').filter({ hasText: 'K 70' }).waitFor({ timeout: 60000 });
    assert.equal(await page.evaluate(() => window.skylab.cells[1].getSource().split('\n')[1]), 'k = 7 #@param {type:"integer"}');
  });
});
