// Bundles the app with esbuild into OUT (default ../build/web):
//   OUT/index.html            the page shell (names the hashed bundles)
//   OUT/frame.html            the sandboxed output frame (served at /output-frame)
//   OUT/static/app-HASH.js|css, fonts  long-cached assets
// node build.mjs [--out DIR] [--dev]
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const outArg = args.indexOf('--out');
const out = path.resolve(outArg >= 0 ? args[outArg + 1] : path.join(here, '..', 'build', 'web'));
const dev = args.includes('--dev');
const staticDir = path.join(out, 'static');

fs.rmSync(staticDir, { recursive: true, force: true });
fs.mkdirSync(staticDir, { recursive: true });

const result = await esbuild.build({
  entryPoints: { app: path.join(here, 'src', 'main.ts') },
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  minify: !dev,
  sourcemap: dev ? 'linked' : false,
  outdir: staticDir,
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  loader: { '.woff2': 'file', '.woff': 'file', '.ttf': 'file' },
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map(p => path.basename(p));
const js = outputs.find(f => /^app-.*\.js$/.test(f));
const css = outputs.find(f => /^app-.*\.css$/.test(f));
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Skylab</title>
<link rel="icon" href="/static/${fs.existsSync(path.join(here, 'favicon.svg')) ? 'favicon.svg' : ''}">
${css ? `<link rel="stylesheet" href="/static/${css}">` : ''}
<script type="module" src="/static/${js}"></script>
</head>
<body><div id="app" aria-live="polite"><div class="boot">Loading Skylab…</div></div></body>
</html>
`;
fs.copyFileSync(path.join(here, 'favicon.svg'), path.join(staticDir, 'favicon.svg'));
fs.writeFileSync(path.join(out, 'index.html'), html);
fs.copyFileSync(path.join(here, 'frame.html'), path.join(out, 'frame.html'));
const size = outputs.reduce((n, f) => n + fs.statSync(path.join(staticDir, f)).size, 0);
console.log(`web: built ${js}${css ? ' + ' + css : ''} (${(size / 1024).toFixed(0)} KiB in static/) into ${out}`);
