'use strict';
// Unit tests of the app's pure Colab forms parser (web/src/notebook/forms.ts),
// compiled on the fly with the app's own esbuild.
const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..');
const esbuild = require(path.join(REPO, 'web', 'node_modules', 'esbuild'));
const out = esbuild.buildSync({ entryPoints: [path.join(REPO, 'web/src/notebook/forms.ts')], bundle: true, format: 'cjs', platform: 'node', write: false });
const mod = { exports: {} };
new Function('module', 'exports', 'require', out.outputFiles[0].text)(mod, mod.exports, require);
const F = mod.exports;

const params = src => F.parseForm(src).items.filter(i => i.kind === 'param');
const set = (src, i, v) => {
  const p = params(src)[i];
  const e = F.paramEdit(src, p, v);
  return e && F.applyEdit(src, e);
};

/** Runs Python on `code`; returns stdout (proves the rewritten line is valid Python with the right value). */
function py(code) {
  const r = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

describe('forms parser', () => {
  it('reads every Colab parameter type', () => {
    const src = [
      '#@title Training setup { display-mode: "form" }',
      '#@markdown Pick the **rate**.',
      'epochs = 5 #@param {type:"slider", min:1, max:50, step:1}',
      "name = 'run-1'  # @param {type:\"string\", placeholder:\"a name\"}",
      'lr = 0.01 #@param {type:"number"}',
      'n = 3 #@param {type:"integer"}',
      'augment = True #@param {type:"boolean"}',
      'day = "2024-01-31" #@param {type:"date"}',
      'expr = 2 ** 10 #@param {type:"raw"}',
      'opt = "adam" #@param ["adam", "sgd"]',
      "act = 'relu' #@param ['relu', 'tanh'] {allow-input: true}",
      'k = 3 #@param [1, 3, 5] {type:"raw"}',
      'bare = 7 #@param',
      'print(epochs)',
    ].join('\n');
    const m = F.parseForm(src);
    assert.equal(m.title, 'Training setup');
    assert.equal(m.displayMode, 'form');
    assert.equal(m.items[0].kind, 'markdown');
    assert.equal(m.items[0].text, 'Pick the **rate**.');
    const p = params(src);
    assert.deepEqual(p.map(x => [x.name, x.type]), [
      ['epochs', 'slider'], ['name', 'string'], ['lr', 'number'], ['n', 'integer'], ['augment', 'boolean'],
      ['day', 'date'], ['expr', 'raw'], ['opt', 'dropdown'], ['act', 'dropdown'], ['k', 'dropdown'], ['bare', 'raw'],
    ]);
    assert.deepEqual([p[0].value, p[0].min, p[0].max, p[0].step, p[0].line], [5, 1, 50, 1, 2]);
    assert.equal(p[1].value, 'run-1');
    assert.equal(p[1].placeholder, 'a name');
    assert.equal(p[2].value, 0.01);
    assert.equal(p[4].value, true);
    assert.equal(p[5].value, '2024-01-31');
    assert.equal(p[6].value, '2 ** 10');
    assert.deepEqual(p[7].options.map(o => o.label), ['adam', 'sgd']);
    assert.equal(p[8].allowInput, true);
    assert.equal(p[9].rawOptions, true);
    assert.deepEqual(p[9].options, [{ label: '1', quoted: false }, { label: '3', quoted: false }, { label: '5', quoted: false }]);
  });

  it('returns null without form elements and ignores markers inside strings', () => {
    assert.equal(F.parseForm('x = 1\nprint(x)'), null);
    assert.equal(F.parseForm('s = "#@param {type:\\"string\\"}"'), null);
    // The comment starts after the string, which holds a fake marker.
    const p = params('s = "a #@param [1]" #@param {type:"string"}');
    assert.equal(p.length, 1);
    assert.equal(p[0].value, 'a #@param [1]');
  });

  it('reads run: "auto" and display-mode "both"; honours Colab cellView metadata', () => {
    const m = F.parseForm('#@title T { run: "auto", display-mode: "both" }\nx = 1 #@param');
    assert.equal(m.runAuto, true);
    assert.equal(m.displayMode, 'both');
    assert.equal(F.codeHidden(m, {}), false);
    assert.equal(F.codeHidden(m, { cellView: 'form' }), true);
    const f = F.parseForm('#@title T {display-mode:"form"}\nx = 1 #@param');
    assert.equal(F.codeHidden(f, {}), true);
    assert.equal(F.codeHidden(f, { cellView: 'code' }), false);
    assert.equal(F.codeHidden(null, { cellView: 'form' }), false);
  });

  it('rewrites a slider, number, integer, boolean, date line and keeps the comment', () => {
    const src = 'import os\nepochs = 5 #@param {type:"slider", min:1, max:50}\nprint(epochs)';
    assert.equal(set(src, 0, 12), 'import os\nepochs = 12 #@param {type:"slider", min:1, max:50}\nprint(epochs)');
    assert.equal(set(src, 0, 99), 'import os\nepochs = 50 #@param {type:"slider", min:1, max:50}\nprint(epochs)', 'clamped to max');
    const fl = 'p = 0.5 #@param {type:"slider", min:0, max:1, step:0.05}';
    assert.equal(set(fl, 0, '0.35'), 'p = 0.35 #@param {type:"slider", min:0, max:1, step:0.05}', 'a float slider keeps its fraction');
    assert.equal(set('a: int = 1 #@param {type:"integer"}', 0, 4), 'a: int = 4 #@param {type:"integer"}', 'annotated assignment');
    assert.equal(set('cfg.lr = 1 # @param{type:"number"}', 0, 2), 'cfg.lr = 2 # @param{type:"number"}', 'attribute target, Colab spacing variants');
    assert.equal(set('big = 1 #@param {type:"integer"}', 0, '1e21'), 'big = 1000000000000000000000 #@param {type:"integer"}');
    assert.equal(set('lr = 0.01 #@param {type:"number"}', 0, '1e-4'), 'lr = 0.0001 #@param {type:"number"}');
    assert.equal(set('lr = 0.01 #@param {type:"number"}', 0, 'abc'), null, 'invalid number is not written');
    assert.equal(set('n = 3 #@param {type:"integer"}', 0, '2.5'), null);
    assert.equal(set('n = 3 #@param {type:"integer"}', 0, '-40'), 'n = -40 #@param {type:"integer"}');
    assert.equal(set('b = True #@param {type:"boolean"}', 0, false), 'b = False #@param {type:"boolean"}');
    assert.equal(set('d = "2024-01-01" #@param {type:"date"}', 0, '2025-12-31'), 'd = "2025-12-31" #@param {type:"date"}');
    assert.equal(set('d = "2024-01-01" #@param {type:"date"}', 0, '"); import os; ("'), null);
    assert.equal(set('x =  #@param {type:"string"}', 0, 'v'), 'x =  "v" #@param {type:"string"}', 'an empty value gets one');
  });

  it('quotes hostile strings so that the line stays one valid Python assignment', () => {
    const hostile = 'a"b\'c\\d\ne\r\tf\u2028g\u0085h\x00i """ #@param </script><img src=x onerror=alert(1)>';
    for (const q of ['"x"', "'x'"]) {
      const src = `s = ${q} #@param {type:"string"}\nprint(repr(s))`;
      const out = set(src, 0, hostile);
      assert.equal(out.split('\n').length, 2, 'still two lines');
      assert.equal(params(out)[0].value, hostile, 'parses back to the same value');
      assert.equal(py(out.replace('print(repr(s))', 'import sys; sys.stdout.write(s.encode("unicode_escape").decode())')),
        Buffer.from(py(`import sys; sys.stdout.write(${JSON.stringify(hostile)}.encode("unicode_escape").decode())`)).toString());
    }
  });

  it('dropdowns write the chosen option quoted (or raw) and free text only with allow-input', () => {
    assert.equal(set('o = "adam" #@param ["adam", "sgd"]', 0, 'sgd'), 'o = "sgd" #@param ["adam", "sgd"]');
    assert.equal(set('o = "adam" #@param ["adam", "sgd"]', 0, 'rmsprop'), null);
    assert.equal(set('o = "adam" #@param ["adam", "sgd"] {allow-input: true}', 0, 'x"y'), 'o = "x\\"y" #@param ["adam", "sgd"] {allow-input: true}');
    assert.equal(set('k = 3 #@param [1, 3, 5]', 0, '5'), 'k = 5 #@param [1, 3, 5]');
    assert.equal(set('k = "a" #@param ["a", "b"] {type:"raw"}', 0, 'b'), 'k = b #@param ["a", "b"] {type:"raw"}');
    assert.equal(set('e = 1 #@param {type:"raw"}', 0, '1\nimport os'), 'e = 1 import os #@param {type:"raw"}', 'raw stays on its line');
  });

  it('does not rewrite a line that changed under the form', () => {
    const src = 'a = 1 #@param {type:"integer"}';
    const p = params(src)[0];
    assert.equal(F.paramEdit('b = 1 #@param {type:"integer"}', p, 2), null);
    assert.equal(F.paramEdit('a = 1 #@param {type:"string"}', p, 2), null);
    assert.equal(F.paramEdit('', p, 2), null);
  });

  it('bounds hostile input: huge lists, huge lines, many params, broken specs', () => {
    const many = Array.from({ length: 5000 }, (_, i) => `"o${i}"`).join(', ');
    const p = params(`x = "o1" #@param [${many}]`)[0];
    assert.equal(p.options.length, F.MAX_OPTIONS);
    assert.equal(F.parseForm('x = 1 #@param {type:"string"}' + ' '.repeat(F.MAX_LINE)), null, 'over-long line ignored');
    const lots = Array.from({ length: 500 }, (_, i) => `v${i} = ${i} #@param {type:"integer"}`).join('\n');
    assert.equal(params(lots).length, F.MAX_PARAMS);
    for (const bad of ['{type:"slider"', '{type:}', '{:1}', '{type:"x",,}', '["a"', '[,]', '{type:"string"} trailing', '{' + 'a:1,'.repeat(100) + '}']) {
      assert.equal(F.parseForm(`x = 1 #@param ${bad}`), null, bad);
    }
    assert.equal(F.parseSpec('{__proto__: 1}').__proto__, 1, 'no prototype pollution: a plain key');
    assert.equal(({}).polluted, undefined);
    // A title with markup is plain text in the model (the view uses textContent).
    assert.equal(F.parseForm('#@title <img src=x onerror=alert(1)>\nx = 1 #@param').title, '<img src=x onerror=alert(1)>');
    // Unbalanced quotes never throw.
    assert.equal(F.parseForm('x = "unterminated #@param {type:"string"}'), null);
    assert.equal(F.pyStringLiteral('"a" + "b"'), null);
  });
});
