'use strict';
// Co-editing without losing offline work (issue 14): a page that was offline
// while the server restarted merges what it typed with a collaborator's edits
// of the same cell; a page closed while offline keeps its unsent edits in
// localStorage and the next open of the notebook sends them. The collab
// WebSocket is routed away (playwright's routeWebSocket) to go offline.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { serverAndBrowser, passwordOf, signIn, sleep, until, codeNotebook: nb } = require('./harness');

const snapshot = page => page.evaluate(() => window.skylab.cells.map(c => ({ id: c.id, source: c.getSource() })));
const once = (text, token) => text.split(token).length - 1;

/** Collab sockets of `page` reach the server only while `net.online`. */
async function switchable(page) {
  const net = { online: true };
  await page.routeWebSocket(/\/api\/skylab\/collab\//, ws => {
    if (net.online) ws.connectToServer();
    else ws.close({ code: 1006, reason: 'offline' });
  });
  return net;
}

async function goOffline(page, net) {
  net.online = false;
  await page.evaluate(() => window.skylab.collab.ws?.close());
  await page.waitForFunction(() => !window.skylab.collab.ws || window.skylab.collab.ws.readyState !== 1);
}

async function typeAt(page, i, key, text) {
  await page.locator('.cells > .cell').nth(i).locator('.cm-content').click();
  await page.keyboard.press(key);
  await page.keyboard.type(text, { delay: 10 });
}

async function fileSources(server, path, token) {
  const r = await fetch(server.url('/files/' + path), { headers: { Authorization: `token ${token}` } });
  return JSON.parse(await r.text()).cells.map(c => [].concat(c.source).join(''));
}

describe('co-editing keeps offline work', { timeout: 240000 }, () => {
  let fixture, server, browser, token;

  before(async () => {
    fixture = await serverAndBrowser(['rita']);
    ({ server, browser, tokens: { rita: token } } = fixture);
  });

  after(() => fixture?.stop());

  async function open(path, page = null) {
    if (!page) ({ page } = await signIn(browser, server, 'rita', passwordOf('rita'), '/notebooks/' + path));
    else await page.goto(server.url('/notebooks/' + path));
    await page.waitForSelector('body[data-ready=true]');
    await page.waitForFunction(() => !!window.skylab.collab);
    return page;
  }

  it('offline across a server restart: both edits of one cell survive', async () => {
    let r = await server.api('PUT', '/api/contents/restart.ipynb', { type: 'notebook', format: 'json', content: nb(['r1', 'value = 1']) }, token);
    assert.equal(r.status, 201);
    const a = await open('restart.ipynb');
    const net = await switchable(a);
    const b = await open('restart.ipynb');
    // a reconnects through the route from now on, then goes offline and types.
    await a.evaluate(() => window.skylab.collab.ws?.close());
    await until(async () => (await a.evaluate(() => window.skylab.collab.ws?.readyState)) === 1, 'a to reconnect through the route');
    await goOffline(a, net);
    await typeAt(a, 0, 'Control+End', ' # typed by a offline');
    // And a cell added offline, typed into.
    await a.evaluate(() => { const s = window.skylab; s.insertAt('code', s.cells.length, true); });
    await a.keyboard.type('added_offline = 2', { delay: 10 });
    // b edits the same cell meanwhile; the server has it, then restarts (a new epoch).
    await typeAt(b, 0, 'Control+Home', 'b_first = 0; ');
    await until(async () => {
      const live = await server.api('GET', '/api/contents/restart.ipynb?content=1', undefined, token);
      return live.json.content.cells[0].source.startsWith('b_first = 0; ');
    }, "the server to have b's edit");
    await server.restart();
    net.online = true;
    const want = 'b_first = 0; value = 1 # typed by a offline';
    const agreed = await until(async () => {
      const [x, y] = [await snapshot(a), await snapshot(b)];
      return JSON.stringify(x) === JSON.stringify(y) && x[0].source === want && x[1]?.source === 'added_offline = 2' ? x : null;
    }, 'both pages to have both edits', 60000).catch(async e => {
      console.log('a', JSON.stringify(await snapshot(a)), 'b', JSON.stringify(await snapshot(b)));
      throw e;
    });
    assert.equal(agreed.length, 2);
    await until(async () => JSON.stringify(await fileSources(server, 'restart.ipynb', token)) === JSON.stringify([want, 'added_offline = 2']), 'the file to have both edits and the cell');
    await a.context().close();
    await b.context().close();
  });

  it('a page closed while offline: the next open restores its edits and sends them', async () => {
    let r = await server.api('PUT', '/api/contents/closed.ipynb', { type: 'notebook', format: 'json', content: nb(['k1', 'print(1)'], ['k2', 'x = 2']) }, token);
    assert.equal(r.status, 201);
    const page = await open('closed.ipynb');
    const context = page.context();
    const net = await switchable(page);
    await page.evaluate(() => window.skylab.collab.ws?.close());
    await until(async () => (await page.evaluate(() => window.skylab.collab.ws?.readyState)) === 1, 'the page to reconnect through the route');
    await goOffline(page, net);
    await typeAt(page, 1, 'Control+End', ' # kept while offline');
    // A cell added offline, with text typed into it.
    await page.evaluate(() => { const s = window.skylab; s.insertAt('code', s.cells.length, true); });
    await page.keyboard.type('added_offline = 3', { delay: 10 });
    // Meanwhile someone else's edit reaches the server (the copy is rebased onto it).
    const other = await open('closed.ipynb');
    await typeAt(other, 1, 'Control+Home', 'other = 1; ');
    await until(async () => {
      const live = await server.api('GET', '/api/contents/closed.ipynb?content=1', undefined, token);
      return live.json.content.cells[1].source.startsWith('other = 1; ');
    }, "the server to have the other page's edit");
    await other.context().close();
    await sleep(400); // the local copy is written a moment after typing stops
    const live = await server.api('GET', '/api/contents/closed.ipynb?content=1', undefined, token);
    assert.ok(!JSON.stringify(live.json).includes('kept while offline'), 'nothing reached the server while offline');
    await page.close();
    // The next open of the notebook, in the same browser profile.
    const again = await open('closed.ipynb', await context.newPage());
    const want = ['print(1)', 'other = 1; x = 2 # kept while offline', 'added_offline = 3'];
    await until(async () => JSON.stringify((await snapshot(again)).map(c => c.source)) === JSON.stringify(want), 'the page to show the restored edits')
      .catch(async e => { console.log(JSON.stringify(await snapshot(again))); throw e; });
    await until(async () => {
      const l = await server.api('GET', '/api/contents/closed.ipynb?content=1', undefined, token);
      return JSON.stringify(l.json.content.cells.map(c => c.source)) === JSON.stringify(want);
    }, 'the server to have them');
    await until(async () => JSON.stringify(await fileSources(server, 'closed.ipynb', token)) === JSON.stringify(want), 'the file to have them');
    for (const s of want) assert.equal(once((await fileSources(server, 'closed.ipynb', token)).join('\n'), s), 1);
    // The copy is gone once the server has everything.
    await until(() => again.evaluate(() => Object.keys(localStorage).filter(k => k.includes('#live.')).length === 0), 'the local copy to be dropped');
    await context.close();
  });

  it('text typed offline survives a change of the cell type', async () => {
    let r = await server.api('PUT', '/api/contents/type.ipynb', { type: 'notebook', format: 'json', content: nb(['t1', 'Title']) }, token);
    assert.equal(r.status, 201);
    const page = await open('type.ipynb');
    const net = await switchable(page);
    await page.evaluate(() => window.skylab.collab.ws?.close());
    await until(async () => (await page.evaluate(() => window.skylab.collab.ws?.readyState)) === 1, 'the page to reconnect through the route');
    await goOffline(page, net);
    await typeAt(page, 0, 'Control+End', ' typed offline');
    // The editor is made again for the new type; what was not sent yet goes with it.
    await page.evaluate(() => { window.skylab.select(0); window.skylab.changeType('markdown'); });
    net.online = true;
    await until(async () => {
      const l = await server.api('GET', '/api/contents/type.ipynb?content=1', undefined, token);
      const c = l.json.content.cells[0];
      return c.cell_type === 'markdown' && c.source === 'Title typed offline';
    }, 'the server to have the text and the type').catch(async e => { console.log(JSON.stringify(await snapshot(page))); throw e; });
    await page.context().close();
  });

  it('an editor made a viewer is disconnected at once and its page turns read-only', async () => {
    server.addUser('walt', passwordOf('walt'));
    let r = await server.api('PUT', '/api/contents/roles.ipynb', { type: 'notebook', format: 'json', content: nb(['w1', 'shared = 1']) }, token);
    assert.equal(r.status, 201);
    r = await server.api('POST', '/api/skylab/shares', { path: 'roles.ipynb', user: 'walt', role: 'editor' }, token);
    const { page } = await signIn(browser, server, 'walt', passwordOf('walt'), `/shared/${r.json.id}`);
    await page.waitForSelector('body[data-ready=true]');
    await page.waitForFunction(() => window.skylab.collab?.writable === true);
    r = await server.api('POST', '/api/skylab/shares', { path: 'roles.ipynb', user: 'walt', role: 'viewer' }, token);
    assert.equal(r.status, 201);
    // Without sending anything, the page learns it at once and reconnects as a viewer.
    await page.waitForFunction(() => window.skylab.collab?.writable === false, null, { timeout: 20000 });
    await typeAt(page, 0, 'Control+End', ' # walt typed');
    await sleep(1000);
    assert.deepEqual((await snapshot(page)).map(c => c.source), ['shared = 1']);
    const live = await server.api('GET', '/api/contents/roles.ipynb?content=1', undefined, token);
    assert.equal(live.json.content.cells[0].source, 'shared = 1');
    await page.context().close();
  });

  it('deleting the last cells at once: every page and the file keep the same one cell', async () => {
    let r = await server.api('PUT', '/api/contents/last.ipynb', { type: 'notebook', format: 'json', content: nb(['l1', 'one'], ['l2', 'two']) }, token);
    assert.equal(r.status, 201);
    const a = await open('last.ipynb');
    const b = await open('last.ipynb');
    await Promise.all([
      a.evaluate(() => { const s = window.skylab; s.deleteCells([s.cells.find(c => c.id === 'l1')]); }),
      b.evaluate(() => { const s = window.skylab; s.deleteCells([s.cells.find(c => c.id === 'l2')]); }),
    ]);
    const server1 = async () => (await server.api('GET', '/api/contents/last.ipynb?content=1', undefined, token)).json.content.cells.map(c => ({ id: c.id, source: c.source }));
    const agreed = await until(async () => {
      const [x, y, s] = [await snapshot(a), await snapshot(b), await server1()];
      return JSON.stringify(x) === JSON.stringify(y) && JSON.stringify(x) === JSON.stringify(s) && x.length === 1 ? x : null;
    }, 'both pages and the server to have one and the same cell').catch(async e => {
      console.log('a', JSON.stringify(await snapshot(a)), 'b', JSON.stringify(await snapshot(b)), 'server', JSON.stringify(await server1()));
      throw e;
    });
    assert.equal(agreed[0].source, '');
    // The one left deleted again (a page's own last cell): still one cell, the same everywhere.
    await a.evaluate(() => { const s = window.skylab; s.deleteCells([s.cells[0]]); });
    await until(async () => {
      const [x, y, s] = [await snapshot(a), await snapshot(b), await server1()];
      return JSON.stringify(x) === JSON.stringify(y) && JSON.stringify(x) === JSON.stringify(s) && x.length === 1 && x[0].id !== agreed[0].id;
    }, 'a new blank cell everywhere');
    await until(async () => (await fileSources(server, 'last.ipynb', token)).length === 1, 'the file to have one cell');
    await a.context().close();
    await b.context().close();
  });
});
