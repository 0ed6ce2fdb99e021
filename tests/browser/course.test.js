'use strict';
// The course story in Chromium: open the CIFAR-10 example from the Drive's
// gallery, Run all (on a tiny CIFAR-10 in the official format that the
// operator provided with `skylab dataset add`, so nothing is downloaded),
// answer files.upload() with a picture, and see the curves and the picture
// classified.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { startServer, launchBrowser, signIn, screenshot } = require('./harness');

const REPO = path.resolve(__dirname, '..', '..');
const BIN = process.env.SKYLAB_BIN || path.join(REPO, 'build', 'skylab');

function python(code) {
  const r = spawnSync('/usr/bin/python3', ['-c', code], { cwd: path.join(REPO, 'tests', 'integration') });
  assert.equal(r.status, 0, String(r.stderr));
  return r.stdout;
}

describe('course notebook from the gallery', { timeout: 420000 }, () => {
  let server, browser, page;

  before(async () => {
    server = await startServer();
    server.addUser('stu', 'password of stu');
    const tarball = path.join(server.dataDir, 'cifar-10-python.tar.gz');
    python(`import course_data; course_data.cifar10_tarball(${JSON.stringify(tarball)}, per_batch=40, test=40)`);
    const r = spawnSync(BIN, ['dataset', 'add', 'cifar10', tarball, '--data-dir', server.dataDir]);
    assert.equal(r.status, 0, String(r.stderr));
    browser = await launchBrowser();
    ({ page } = await signIn(browser, server, 'stu', 'password of stu', '/'));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('opens CIFAR-10 from the gallery, runs all, classifies an uploaded picture', async () => {
    await page.locator('.examples .example-card[data-example=cifar10_cnn]').waitFor({ timeout: 30000 });
    await screenshot(page, 'drive-gallery');
    await Promise.all([page.waitForURL(/\/notebooks\/Examples\/cifar10_cnn\.ipynb$/),
      page.click('.examples .example-card[data-example=cifar10_cnn]')]);
    await page.waitForSelector('body[data-ready=true]');
    // A student shortens the training in the parameters cell, as the notebook invites.
    const params = await page.evaluate(() => {
      const nb = window.skylab;
      const i = nb.cells.findIndex(c => /EPOCHS = \d+/.test(c.getSource()));
      if (i < 0) return -1;
      nb.cells[i].materialize();
      nb.cells[i].setSource(nb.cells[i].getSource().replace(/EPOCHS = \d+/, 'EPOCHS = 2'));
      return i;
    });
    assert.ok(params >= 0, 'the notebook has a parameters cell with EPOCHS');
    await page.click('[data-cmd=run-all]');
    // files.upload() asks for a picture; give it one of the test pictures.
    const input = page.locator('.skylab-upload input[type=file]');
    await input.waitFor({ state: 'attached', timeout: 300000 });
    const png = Buffer.from(python(
      'import io, sys, numpy as np\nfrom PIL import Image\n' +
      'b = io.BytesIO(); Image.fromarray(np.full((32, 32, 3), (200, 40, 40), np.uint8)).save(b, "PNG")\n' +
      'sys.stdout.buffer.write(b.getvalue())'));
    await input.setInputFiles({ name: 'my-picture.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => /Prediction: \w+ \(/.test(document.querySelector('.cells')?.innerText ?? ''),
      null, { timeout: 120000 });
    const text = await page.locator('.cells').innerText();
    assert.match(text, /Using device: cpu/);
    assert.match(text, /Test accuracy: [\d.]+/);
    assert.doesNotMatch(text, /downloading/, 'the operator-provided data set is used, nothing is downloaded');
    // Sample pictures, the accuracy/loss curves and the uploaded picture are images.
    const images = await page.locator('.cells .output img').count();
    assert.ok(images >= 3, `expected at least 3 images, saw ${images}`);
    await page.locator('.cells .output img').last().scrollIntoViewIfNeeded();
    await screenshot(page, 'course-cifar10-classified');
  });
});
