// Markdown cells: marked for Markdown, KaTeX for $…$, $$…$$, \(…\), \[…\];
// the HTML is sanitized (an allow-list) before it reaches the app's page.
import katex from 'katex';
import { marked } from 'marked';

marked.setOptions({ gfm: true, breaks: false });

const MATH = /(```[\s\S]*?```|`[^`\n]*`)|\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|(?<![\\$\w])\$([^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\w$])/g;

export function renderMath(tex: string, display: boolean): string {
  try {
    return katex.renderToString(tex, { displayMode: display, throwOnError: false, output: 'htmlAndMathml' });
  } catch (e) {
    return `<code class="math-error">${tex.replace(/[&<>]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!)}</code>`;
  }
}

export function renderMarkdown(src: string): string {
  const math: string[] = [];
  const protectedSrc = src.replace(MATH, (m, code, d1, d2, i1, i2) => {
    if (code) return code;
    const display = d1 !== undefined || d2 !== undefined;
    const tex = d1 ?? d2 ?? i1 ?? i2 ?? '';
    math.push(renderMath(tex, display));
    return `@@SKYMATH${math.length - 1}@@`;
  });
  let html = marked.parse(protectedSrc, { async: false }) as string;
  html = html.replace(/@@SKYMATH(\d+)@@/g, (_, i) => math[+i]);
  return sanitize(html);
}

const ALLOWED = new Set(('a abbr b blockquote br caption code dd del details div dl dt em figcaption figure h1 h2 h3 h4 h5 h6 hr i img ' +
  'input ins kbd li mark ol p pre q s samp small span strong sub summary sup table tbody td tfoot th thead tr u ul ' +
  'math semantics mrow mi mo mn msup msub mfrac msqrt mroot mtext annotation mspace mstyle mtable mtr mtd munder mover munderover mpadded menclose svg path line g').split(' '));
const URL_ATTRS = new Set(['href', 'src']);

/** Keeps only allow-listed elements and attributes; no scripts, handlers or javascript: URLs. */
export function sanitize(html: string): string {
  const t = document.createElement('template');
  t.innerHTML = html;
  const walk = (node: Element) => {
    for (const child of [...node.children]) {
      const tag = child.tagName.toLowerCase();
      if (!ALLOWED.has(tag)) {
        if (['script', 'style', 'iframe', 'object', 'embed', 'link', 'meta', 'base', 'form'].includes(tag)) child.remove();
        else child.replaceWith(...child.childNodes);
        continue;
      }
      for (const a of [...child.attributes]) {
        const n = a.name.toLowerCase();
        if (n.startsWith('on') || n === 'srcdoc' || n === 'formaction') child.removeAttribute(a.name);
        else if (URL_ATTRS.has(n) && !/^(https?:|mailto:|#|\/|data:image\/(png|jpeg|gif|webp);)/i.test(a.value.trim()) && /^[a-z]+:/i.test(a.value.trim()))
          child.removeAttribute(a.name);
      }
      if (tag === 'a') {
        child.setAttribute('target', '_blank');
        child.setAttribute('rel', 'noopener noreferrer');
      }
      if (tag === 'input' && child.getAttribute('type') !== 'checkbox') child.remove();
      else walk(child);
    }
  };
  walk(t.content as unknown as Element);
  return t.innerHTML;
}

/** Headings of a Markdown source (for the table of contents), without rendering it. */
export function headings(src: string): { level: number; text: string }[] {
  const out: { level: number; text: string }[] = [];
  let fence = false;
  for (const line of src.split('\n')) {
    if (/^\s*```/.test(line)) fence = !fence;
    if (fence) continue;
    const m = /^(#{1,6})\s+(.+?)\s*#*\s*$/.exec(line);
    if (m) out.push({ level: m[1].length, text: m[2].replace(/[*_`]/g, '').replace(/\$([^$]+)\$/g, '$1') });
  }
  return out;
}
