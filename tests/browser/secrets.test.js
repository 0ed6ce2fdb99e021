'use strict';
// Secrets and long-cell notifications in Debian's Chromium: the Secrets
// panel (key icon) adds a secret, a cell is refused it until the panel's
// "Notebook access" switch is on, then prints it through
// google.colab.userdata; the value is never listed back. With notifications
// turned on (Tools → Notifications…, permission granted to the context), a
// cell that ran longer than the threshold while the tab was hidden shows a
// notification with its execution time; a visible tab or a short cell does not.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, cellAt, runCell: runCellIn, waitIdle: waitIdleIn } = require('./harness');

const ADA = ['ada', 'correct horse battery'];
const VALUE = 'kgl-' + require('node:crypto').randomBytes(12).toString('hex');

describe('secrets and notifications', { timeout: 300000 }, () => {
  let server, browser, page, context;

  before(async () => {
    server = await startServer();
    server.addUser(...ADA);
    browser = await launchBrowser();
    ({ page, context } = await signIn(browser, server, ...ADA, '/'));
    await context.grantPermissions(['notifications'], { origin: server.baseUrl });
    // Records the notifications the page shows, and lets the test hide the tab.
    await context.addInitScript(() => {
      const N = window.Notification;
      window.__notes = [];
      window.__hidden = false;
      class Recorded extends N {
        constructor(title, opts) {
          super(title, opts);
          window.__notes.push({ title, body: opts?.body ?? '' });
        }
      }
      Object.defineProperty(Recorded, 'permission', { get: () => N.permission });
      Recorded.requestPermission = (...a) => N.requestPermission(...a);
      window.Notification = Recorded;
      Object.defineProperty(document, 'visibilityState', { get: () => (window.__hidden ? 'hidden' : 'visible'), configurable: true });
    });
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

  it('the Secrets panel adds a secret; the notebook needs access to read it', async () => {
    await page.click('.side-icon[data-panel=secrets]');
    const panel = page.locator('.secrets-panel');
    await panel.getByText('No secrets yet.').waitFor({ timeout: 10000 });
    await panel.getByRole('button', { name: '+ Add new secret' }).click();
    await panel.getByLabel('Secret name').fill('KAGGLE_KEY');
    await panel.getByLabel('Secret value').fill(VALUE);
    await panel.getByRole('button', { name: 'Save' }).click();
    const row = panel.locator('.secret-row[data-name=KAGGLE_KEY]');
    await row.waitFor({ timeout: 10000 });
    assert.equal(await row.locator('.secret-access').isChecked(), false);
    // Listed by name only.
    const listed = await page.evaluate(async () => (await fetch('/api/skylab/secrets')).text());
    assert.match(listed, /KAGGLE_KEY/);
    assert.ok(!listed.includes(VALUE));

    await runCell(0, "from google.colab import userdata\nprint(userdata.get('KAGGLE_KEY'))");
    await waitIdle(0);
    assert.match(await cell(0).locator('.output').first().innerText(), /NotebookAccessError: Notebook does not have access to secret KAGGLE_KEY/);

    await row.locator('.secret-access').click();
    await page.waitForFunction(async () => {
      const r = await fetch('/api/skylab/secrets');
      const s = await r.json();
      return s[0]?.grants?.length === 1;
    }, null, { timeout: 10000 });
    assert.equal(await row.locator('.secret-access').isChecked(), true);
    await runCell(0, "from google.colab import userdata\nprint(userdata.get('KAGGLE_KEY'))");
    await waitIdle(0);
    assert.equal((await cell(0).locator('.output').first().innerText()).trim(), VALUE);
    await screenshot(page, 'secrets-panel');

    // Switched off again: refused again.
    await row.locator('.secret-access').click();
    await page.waitForFunction(async () => (await (await fetch('/api/skylab/secrets')).json())[0].grants.length === 0, null, { timeout: 10000 });
    await runCell(0, "from skylab import userdata\nprint(userdata.get('KAGGLE_KEY'))");
    await waitIdle(0);
    assert.match(await cell(0).locator('.output').first().innerText(), /NotebookAccessError/);
  });

  it('a long cell that ends while the tab is hidden notifies, with its execution time', async () => {
    await page.click('.menubar-item[data-menu=Tools]');
    await page.click('.menu-item[data-id=notifications]');
    await page.check('.notify-enabled');
    await page.fill('.notify-seconds', '2');
    await screenshot(page, 'notifications-settings');
    await page.click('.dialog .btn.primary');
    assert.deepEqual(await page.evaluate(() => JSON.parse(localStorage.getItem('skylab.notify'))), { enabled: true, seconds: 2 });

    // Visible tab: no notification.
    await runCell(1, 'import time\ntime.sleep(2.5)');
    await waitIdle(1);
    // Hidden tab, short cell: none.
    await page.evaluate(() => { window.__hidden = true; });
    await runCell(2, '1 + 1');
    await waitIdle(2);
    assert.deepEqual(await page.evaluate(() => window.__notes), []);
    // Hidden tab, long cell: one, with the time.
    await runCell(3, 'import time\ntime.sleep(3)');
    await waitIdle(3);
    await page.waitForFunction(() => window.__notes.length === 1, null, { timeout: 10000 });
    const [note] = await page.evaluate(() => window.__notes);
    assert.match(note.title, /^Cell \[\d+\] finished$/);
    assert.match(note.body, /Untitled.*\.ipynb: ran for 3\.\d s/);
    await page.evaluate(() => { window.__hidden = false; });
  });
});
