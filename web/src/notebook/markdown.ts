// Markdown cells: marked for Markdown, KaTeX for $…$, $$…$$, \(…\), \[…\].
// The HTML reaches the app's own origin, so it goes through DOMPurify (the
// maintained sanitizer) as a DOM, never re-serialized: no scripts, handlers,
// javascript:/vbscript: URLs (entity, case and whitespace tricks included),
// no `style` (a notebook must not cover the app), no `id`/`name` (DOM
// clobbering), no forms. KaTeX's output (built from TeX, not from HTML) is
// sanitized on its own with the styles and MathML it needs, and put in place
// of its placeholders in text nodes only.
import DOMPurify, { type Config } from 'dompurify';
import katex from 'katex';
import { marked } from 'marked';

marked.setOptions({ gfm: true, breaks: false });

const MATH = /(```[\s\S]*?```|`[^`\n]*`)|\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\]|\\\(([\s\S]+?)\\\)|(?<![\\$\w])\$([^\s$](?:[^$\n]*?[^\s$\\])?)\$(?![\w$])/g;
const PLACEHOLDER = /@@SKYMATH(\d+)@@/g;

/** Markdown and raw HTML in it. */
const MARKDOWN_CONFIG: Config & { RETURN_DOM_FRAGMENT: true } = {
  USE_PROFILES: { html: true, mathMl: true, svg: true },
  FORBID_TAGS: ['style', 'form', 'button', 'textarea', 'select', 'option', 'fieldset', 'iframe', 'frame', 'object',
    'embed', 'link', 'meta', 'base', 'template', 'noscript', 'dialog', 'portal'],
  FORBID_ATTR: ['style', 'id', 'name', 'action', 'formaction', 'form', 'srcdoc', 'xlink:href', 'autofocus', 'popover',
    'popovertarget'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: true,
  SANITIZE_DOM: true,
  RETURN_DOM_FRAGMENT: true,
};

/** KaTeX's output: its inline styles (sizes, offsets) and MathML with the TeX annotation. */
const KATEX_CONFIG: Config & { RETURN_DOM_FRAGMENT: true } = {
  USE_PROFILES: { html: true, mathMl: true, svg: true },
  ADD_TAGS: ['semantics', 'annotation'],
  ADD_ATTR: ['encoding'],
  FORBID_ATTR: ['id', 'name'],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

const markdownPurifier = DOMPurify(window);
markdownPurifier.addHook('uponSanitizeElement', (node, data) => {
  // GFM task lists are the only inputs: disabled checkboxes.
  if (data.tagName === 'input') {
    const el = node as Element;
    if (el.getAttribute('type') !== 'checkbox') el.remove();
    else el.setAttribute('disabled', '');
  }
});
markdownPurifier.addHook('afterSanitizeAttributes', node => {
  if (node instanceof HTMLAnchorElement && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});
const katexPurifier = DOMPurify(window);

function mathHtml(tex: string, display: boolean): string {
  try {
    // maxSize: no \rule or \kern bigger than 50em (a cell, not the page).
    return katex.renderToString(tex, { displayMode: display, throwOnError: false, output: 'htmlAndMathml',
      maxSize: 50, maxExpand: 1000, trust: false });
  } catch (e) {
    return `<code class="math-error">${tex.replace(/[&<>]/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!)}</code>`;
  }
}

/** KaTeX's rendering of `tex`, sanitized, as nodes. */
export function renderMathFragment(tex: string, display: boolean): DocumentFragment {
  return katexPurifier.sanitize(mathHtml(tex, display), KATEX_CONFIG);
}

/** KaTeX's rendering of `tex` as (sanitized) HTML. */
export function renderMath(tex: string, display: boolean): string {
  const d = document.createElement('div');
  d.append(renderMathFragment(tex, display));
  return d.innerHTML;
}

/** Markdown `src` rendered and sanitized, as nodes for the page. */
export function renderMarkdownFragment(src: string): DocumentFragment {
  const math: { tex: string; display: boolean }[] = [];
  const protectedSrc = src.replace(MATH, (m, code, d1, d2, i1, i2) => {
    if (code) return code;
    const display = d1 !== undefined || d2 !== undefined;
    math.push({ tex: d1 ?? d2 ?? i1 ?? i2 ?? '', display });
    return `@@SKYMATH${math.length - 1}@@`;
  });
  const html = marked.parse(protectedSrc, { async: false }) as string;
  const frag = sanitizeFragment(html);
  if (math.length) {
    // Placeholders become math where they are text; in an attribute they stay text.
    const walker = document.createTreeWalker(frag, NodeFilter.SHOW_TEXT);
    const texts: Text[] = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) if (/@@SKYMATH\d+@@/.test(n.nodeValue ?? '')) texts.push(n as Text);
    for (const t of texts) {
      const value = t.nodeValue ?? '';
      const parts: (Node | string)[] = [];
      let last = 0;
      for (const m of value.matchAll(PLACEHOLDER)) {
        parts.push(value.slice(last, m.index));
        const item = math[+m[1]];
        parts.push(item ? renderMathFragment(item.tex, item.display) : m[0]);
        last = m.index! + m[0].length;
      }
      parts.push(value.slice(last));
      t.replaceWith(...parts);
    }
  }
  return frag;
}

/** Markdown `src` rendered and sanitized, as HTML. Prefer renderMarkdownFragment (no second parse). */
export function renderMarkdown(src: string): string {
  const d = document.createElement('div');
  d.append(renderMarkdownFragment(src));
  return d.innerHTML;
}

/** `html` sanitized for the app's page (MARKDOWN_CONFIG), as nodes. */
export function sanitizeFragment(html: string): DocumentFragment {
  return markdownPurifier.sanitize(html, MARKDOWN_CONFIG);
}

/** `html` sanitized for the app's page, as HTML. */
export function sanitize(html: string): string {
  const d = document.createElement('div');
  d.append(sanitizeFragment(html));
  return d.innerHTML;
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
