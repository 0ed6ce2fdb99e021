'use strict';
// Real-time co-editing in the app (issue 14): the owner and an editor (a
// share) type into the same cell and add cells at the same time in two
// browsers; both pages converge to the same notebook, which is the file on
// disk (saved by the server). The editor's cursor shows in the owner's page
// with its name. A viewer sees the live notebook and cannot change anything.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { serverAndBrowser, passwordOf, signIn, screenshot, sleep, until, codeNotebook: nb } = require('./harness');

const snapshot = page => page.evaluate(() => window.skylab.cells.map(c => ({ id: c.id, type: c.type, source: c.getSource() })));

describe('co-editing', { timeout: 240000 }, () => {
  let fixture, server, browser, owner, editor, viewer, otoken;

  before(async () => {
    fixture = await serverAndBrowser(['olga', 'eddy', 'vera']);
    ({ server, browser, tokens: { olga: otoken } } = fixture);
    let r = await server.api('PUT', '/api/contents/co.ipynb', { type: 'notebook', format: 'json', content: nb(['c1', 'x = 1'], ['c2', '']) }, otoken);
    assert.equal(r.status, 201);
    r = await server.api('POST', '/api/skylab/shares', { path: 'co.ipynb', user: 'eddy', role: 'editor' }, otoken);
    assert.equal(r.status, 201);
    const edShare = r.json.id;
    r = await server.api('POST', '/api/skylab/shares', { path: 'co.ipynb', user: 'vera', role: 'viewer' }, otoken);
    const viShare = r.json.id;
    ({ page: owner } = await signIn(browser, server, 'olga', passwordOf('olga'), '/notebooks/co.ipynb'));
    ({ page: editor } = await signIn(browser, server, 'eddy', passwordOf('eddy'), `/shared/${edShare}`));
    ({ page: viewer } = await signIn(browser, server, 'vera', passwordOf('vera'), `/shared/${viShare}`));
    for (const p of [owner, editor, viewer]) {
      await p.waitForSelector('body[data-ready=true]');
      await p.waitForFunction(() => !!window.skylab.collab);
    }
  });

  after(() => fixture?.stop());

  it('two writers typing in one cell and adding cells converge, and the file is what they see', async () => {
    const typeInto = async (page, i, text) => {
      const cm = page.locator('.cells > .cell').nth(i).locator('.cm-content');
      await cm.click();
      await page.keyboard.press('Control+End');
      await page.keyboard.type(text, { delay: 15 });
    };
    // Both in cell 0 at once.
    await Promise.all([typeInto(owner, 0, ' # olga was here'), typeInto(editor, 0, ' # eddy too')]);
    // The editor's caret and name show in the owner's page.
    await owner.waitForSelector('.remote-caret-label:has-text("eddy")', { timeout: 20000 });
    await screenshot(owner, 'collab-remote-caret');
    // Both add a cell at the end at once and type into it.
    const addAndType = async (page, text) => {
      await page.evaluate(() => { const s = window.skylab; s.insertAt('code', s.cells.length, true); });
      await page.keyboard.type(text, { delay: 15 });
    };
    await Promise.all([addAndType(owner, 'olga_cell = 1'), addAndType(editor, 'eddy_cell = 2')]);

    const converged = await until(async () => {
      const [a, b, v] = [await snapshot(owner), await snapshot(editor), await snapshot(viewer)];
      return JSON.stringify(a) === JSON.stringify(b) && JSON.stringify(a) === JSON.stringify(v) ? a : null;
    }, 'the three pages to agree');
    const first = converged[0].source;
    assert.ok(first.startsWith('x = 1'), first);
    // Typed at the same spot at once, the two may interleave; nothing is lost
    // or doubled: each is a subsequence, and the length is the sum.
    const subseq = (s, t) => { let i = 0; for (const ch of s) if (ch === t[i]) i++; return i === t.length; };
    const rest = first.slice('x = 1'.length);
    assert.ok(subseq(rest, ' # olga was here') && subseq(rest, ' # eddy too'), first);
    assert.equal(rest.length, ' # olga was here'.length + ' # eddy too'.length, first);
    const sources = converged.map(c => c.source);
    assert.ok(sources.includes('olga_cell = 1') && sources.includes('eddy_cell = 2'), JSON.stringify(sources));
    assert.equal(converged.length, 4);
    // The server saved exactly that (debounced): the file's bytes, not the live document.
    await until(async () => {
      const r = await fetch(server.url('/files/co.ipynb'), { headers: { Authorization: `token ${otoken}` } });
      const disk = JSON.parse(await r.text());
      const src = s => (Array.isArray(s) ? s.join('') : s);
      return JSON.stringify(disk.cells.map(c => ({ id: c.id, type: c.cell_type, source: src(c.source) }))) === JSON.stringify(converged);
    }, 'the file on disk to equal the pages');
  });

  it('an editor whose connection drops keeps typing, and nothing is lost', async () => {
    // Drop the editor's socket (the page reconnects by itself) and type at once.
    await editor.evaluate(() => { window.skylab.collab.ws.close(); });
    const cm = editor.locator('.cells > .cell').nth(1).locator('.cm-content');
    await cm.click();
    await editor.keyboard.press('Control+End');
    await editor.keyboard.type(' # typed offline', { delay: 10 });
    // Meanwhile the owner edits another cell.
    await owner.locator('.cells > .cell').nth(0).locator('.cm-content').click();
    await owner.keyboard.press('Control+Home');
    await owner.keyboard.type('owner_meanwhile = 1;', { delay: 10 });
    const agreed = await until(async () => {
      const [a, b] = [await snapshot(owner), await snapshot(editor)];
      return JSON.stringify(a) === JSON.stringify(b) && a[1].source.endsWith(' # typed offline') && a[0].source.startsWith('owner_meanwhile = 1;') ? a : null;
    }, 'the reconnected editor and the owner to agree').catch(async e => {
      const live = await server.api('GET', '/api/contents/co.ipynb?content=1', undefined, otoken);
      console.log('owner', JSON.stringify(await snapshot(owner)), 'editor', JSON.stringify(await snapshot(editor)),
        'server', JSON.stringify(live.json?.content?.cells?.map(c => c.source)));
      throw e;
    });
    const live = await server.api('GET', '/api/contents/co.ipynb?content=1', undefined, otoken);
    assert.deepEqual(live.json.content.cells.map(c => c.source), agreed.map(c => c.source));
  });

  it('a viewer sees the live notebook but cannot change anything', async () => {
    const before = await snapshot(owner);
    assert.equal(await viewer.evaluate(() => window.skylab.collab.writable), false);
    // Typing into the viewer's editor changes nothing (read-only editor).
    await viewer.locator('.cells > .cell').nth(0).locator('.cm-content').click();
    await viewer.keyboard.type('vera typed this');
    // Structural commands do nothing either.
    await viewer.evaluate(() => {
      const s = window.skylab;
      s.insertAt('code', 0, false);
      s.deleteCells([s.cells[1]]);
      s.select(1);
      s.moveCell(-1);
      s.changeType('markdown');
    });
    await sleep(1500);
    assert.deepEqual(await snapshot(viewer), before);
    assert.deepEqual(await snapshot(owner), before);
    const live = await server.api('GET', '/api/contents/co.ipynb?content=1', undefined, otoken);
    assert.deepEqual(live.json.content.cells.map(c => c.source), before.map(c => c.source));
    // The viewer still follows the owner's edits live.
    await owner.locator('.cells > .cell').nth(1).locator('.cm-content').click();
    await owner.keyboard.press('Control+End');
    await owner.keyboard.type(' # seen by vera');
    await until(async () => (await snapshot(viewer))[1].source.endsWith(' # seen by vera'), 'the viewer to see the edit');
  });

  it('an undone delete puts the cell back in place for everyone, with its outputs; metadata follows', async () => {
    // The owner's cell 1 has outputs (as its page shows them) and metadata.
    const id = await owner.evaluate(() => {
      const c = window.skylab.cells[1];
      c.ensureOutputs();
      c.outputs.set([{ output_type: 'stream', name: 'stdout', text: 'kept output\n' }]);
      c.executionCount = 7;
      c.metadata = { tags: ['keep-me'] };
      window.skylab.changed(c, 'meta');
      return c.id;
    });
    // The editor gets the metadata (a meta op), cell 1 stays where it is.
    await until(() => editor.evaluate(id => JSON.stringify(window.skylab.cells.find(c => c.id === id)?.metadata) === '{"tags":["keep-me"]}', id), 'the metadata at the editor');
    const before = await snapshot(owner);
    // Delete and undo at once (the delete's echo comes after the undo).
    await owner.evaluate(() => { const s = window.skylab; s.deleteCells([s.cells[1]]); s.undo(); });
    const cellAt1 = page => page.evaluate(() => {
      const c = window.skylab.cells[1];
      return { id: c.id, text: c.el.querySelector('.outputs')?.textContent ?? '', meta: c.metadata };
    });
    await sleep(500);
    assert.deepEqual(await snapshot(owner), before);
    await until(async () => JSON.stringify(await snapshot(editor)) === JSON.stringify(before), 'the editor to have the cell back in place');
    for (const p of [owner, editor]) {
      const c = await cellAt1(p);
      assert.equal(c.id, id);
      assert.match(c.text, /kept output/);
      assert.deepEqual(c.meta, { tags: ['keep-me'] });
    }
    // The file has it back at its index, with its outputs and metadata.
    await until(async () => {
      const r = await fetch(server.url('/files/co.ipynb'), { headers: { Authorization: `token ${otoken}` } });
      const disk = JSON.parse(await r.text());
      const c = disk.cells[1];
      const text = (c.outputs ?? []).map(o => [].concat(o.text ?? []).join('')).join('');
      return c.id === id && text === 'kept output\n' && c.execution_count === 7 && JSON.stringify(c.metadata) === '{"tags":["keep-me"]}';
    }, 'the file to have the cell back with its outputs');
  });
  it('an editor that missed an update asks for it and catches up, not stays behind', async () => {
    // The editor's page loses the next update of cell 0 (as a frame lost in
    // transit would be); every later one then comes with a gap.
    const id = await editor.evaluate(() => {
      const ws = window.skylab.collab.ws;
      const id = window.skylab.cells[0].id;
      const deliver = ws.onmessage;
      let lost = false;
      ws.onmessage = ev => {
        const m = JSON.parse(String(ev.data));
        if (!lost && m.t === 'updates' && m.cell === id) { lost = true; return; }
        deliver(ev);
      };
      return id;
    });
    await owner.locator('.cells > .cell').nth(0).locator('.cm-content').click();
    await owner.keyboard.press('Control+End');
    await owner.keyboard.type(' # after a lost frame', { delay: 30 });
    await until(async () => {
      const [a, b] = [await snapshot(owner), await snapshot(editor)];
      return JSON.stringify(a) === JSON.stringify(b) && a[0].id === id && a[0].source.endsWith(' # after a lost frame');
    }, 'the editor to catch up').catch(async e => {
      console.log('owner', JSON.stringify(await snapshot(owner)), 'editor', JSON.stringify(await snapshot(editor)));
      throw e;
    });
  });
});
