'use strict';
// Usage and administration in Chromium (issue 16): the Usage page draws this
// week's use against the limits as bars; the admin page lists a user's
// running runtime and stops it; a non-administrator gets no admin page.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, signIn, screenshot, sleep } = require('./harness');

const CONFIG = `
[runtimes]
idle_timeout = "1h"
max_per_user = 3
[quotas]
gpu_hours_per_week = 10
`;

async function waitFor(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what);
    await sleep(200);
  }
}

describe('usage and admin pages', { timeout: 240000 }, () => {
  let server, browser, stuToken, kid;

  before(async () => {
    server = await startServer({ config: CONFIG });
    server.addUser('stu', 'password of stu');
    server.addUser('boss', 'password of boss');
    assert.equal((await server.api('PATCH', '/api/skylab/users/boss', { admin: true })).status, 200);
    stuToken = server.userToken('stu');
    const k = await server.api('POST', '/api/kernels', { name: 'python3' }, stuToken);
    assert.equal(k.status, 201);
    kid = k.json.id;
    await waitFor('stu\'s runtime seconds', async () =>
      (await server.api('GET', '/api/skylab/usage', undefined, stuToken)).json.runtime_seconds > 0);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('shows the week\'s use against the limits as bars, reached from the user menu', async () => {
    const { context, page } = await signIn(browser, server, 'stu', 'password of stu', '/drive');
    await page.click('button.avatar');
    await Promise.all([page.waitForURL(/\/usage$/), page.click('.menu-item[data-id=usage]')]);
    const gpu = page.locator('[role=meter][aria-label="GPU hours this week"]');
    await gpu.waitFor({ timeout: 30000 });
    assert.equal(await gpu.getAttribute('aria-valuemax'), '10');
    assert.equal(await gpu.getAttribute('aria-valuenow'), '0');
    const running = page.locator('[role=meter][aria-label="Runtimes running now"]');
    assert.equal(await running.getAttribute('aria-valuenow'), '1');
    assert.equal(await running.getAttribute('aria-valuemax'), '3');
    // A third of the bar is filled: a picture of 1 of 3 runtimes.
    const widths = await running.evaluate(el => [el.getBoundingClientRect().width, el.firstElementChild.getBoundingClientRect().width]);
    assert.ok(widths[1] > widths[0] * 0.3 && widths[1] < widths[0] * 0.37, `fill ${widths[1]} of ${widths[0]}`);
    const runtime = page.locator('[role=meter][aria-label="Runtime hours this week"]');
    assert.ok(Number(await runtime.getAttribute('aria-valuenow')) > 0);
    const storage = page.locator('[role=meter][aria-label="Drive and caches"]');
    assert.equal(await storage.getAttribute('aria-valuemax'), String(10 * 2 ** 30));
    await screenshot(page, 'usage-page');
    // Not an administrator: no Admin entry, and no admin page.
    await page.click('button.avatar');
    assert.equal(await page.locator('.menu-item[data-id=admin]').count(), 0);
    await page.keyboard.press('Escape');
    await page.goto(server.url('/admin'));
    await page.getByText('This page is for administrators.').waitFor();
    assert.equal(await page.locator('table.admin-table').count(), 0);
    await context.close();
  });

  it('lets an administrator stop a user\'s runtime, and records it', async () => {
    const { context, page } = await signIn(browser, server, 'boss', 'password of boss', '/drive');
    await page.click('button.avatar');
    await Promise.all([page.waitForURL(/\/admin$/), page.click('.menu-item[data-id=admin]')]);
    const row = page.locator(`tr[data-runtime="${kid}"]`);
    await row.waitFor({ timeout: 30000 });
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[0], 'stu');
    assert.equal(cells[1], 'cpu');
    // Usage per user: stu's GPU bar against the default quota.
    const bar = page.locator('tr[data-user=stu] [role=meter]');
    assert.equal(await bar.getAttribute('aria-valuemax'), '10');
    await screenshot(page, 'admin-page');
    await row.getByRole('button', { name: 'Stop runtime of stu' }).click();
    await page.locator('.dialog .btn.primary').click();
    await row.waitFor({ state: 'detached', timeout: 30000 });
    await waitFor('the runtime to be gone', async () =>
      (await server.api('GET', '/api/kernels/' + kid, undefined, stuToken)).status === 404);
    // The audit log on the page shows it.
    await page.locator('section[aria-label="Audit log"] td', { hasText: 'runtime.stop' }).first().waitFor({ timeout: 30000 });
    // Accounts: disable stu from the page.
    await page.locator('section[aria-label=Users] tr[data-user=stu]').getByRole('button', { name: 'Disable' }).click();
    await page.locator('section[aria-label=Users] tr[data-user=stu] .admin-badge.off').waitFor({ timeout: 30000 });
    assert.equal((await server.api('GET', '/api/kernels', undefined, stuToken)).status, 403);
    await page.locator('section[aria-label="Audit log"] td', { hasText: 'user.disable' }).first().waitFor({ timeout: 30000 });
    await context.close();
  });
});
