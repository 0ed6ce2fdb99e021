// Colab forms, as a pure module (no DOM): parses `#@title`, `#@markdown`
// and `#@param` lines of a code cell into a form model, and rewrites one
// parameter's value in the source as a properly quoted Python literal.
//
//   #@title Training { display-mode: "form", run: "auto" }
//   #@markdown Pick the **learning rate**.
//   epochs = 5 #@param {type:"slider", min:1, max:50, step:1}
//   name = "run-1" #@param {type:"string", placeholder:"a name"}
//   lr = 0.01 #@param {type:"number"}
//   n = 3 #@param {type:"integer"}
//   augment = True #@param {type:"boolean"}
//   day = "2024-01-31" #@param {type:"date"}
//   expr = 2 ** 10 #@param {type:"raw"}
//   opt = "adam" #@param ["adam", "sgd"]
//   act = "relu" #@param ["relu", "tanh"] {allow-input: true}
//   k = 3 #@param [1, 3, 5] {type:"raw"}
//
// Everything here is bounded: a cell longer than MAX_SOURCE, lines longer
// than MAX_LINE, more than MAX_PARAMS parameters or MAX_OPTIONS options are
// cut (never an error). Nothing in the model is HTML: the view must render
// text with textContent (and Markdown with the app's sanitizer).

export const MAX_SOURCE = 1_000_000;
export const MAX_LINE = 100_000;
export const MAX_PARAMS = 200;
export const MAX_OPTIONS = 1_000;
export const MAX_TEXT = 1_000; // one string field's value or a title

export type ParamType = 'string' | 'number' | 'integer' | 'slider' | 'boolean' | 'date' | 'raw' | 'dropdown';

export interface FormParam {
  kind: 'param';
  /** 0-based line of the cell's source. */
  line: number;
  /** Assignment target, e.g. `epochs` or `cfg.lr`. */
  name: string;
  type: ParamType;
  /** The value's Python source text as written (trimmed). */
  raw: string;
  /** The value as the widget shows it: a decoded string, a number, a boolean. */
  value: string | number | boolean;
  min?: number;
  max?: number;
  step?: number;
  placeholder?: string;
  /** Dropdown: the options as shown and whether each is a string (quoted when written). */
  options?: { label: string; quoted: boolean }[];
  /** Dropdown with `{allow-input: true}`: free text besides the options. */
  allowInput?: boolean;
  /** Dropdown with `{type:"raw"}`: options are written unquoted. */
  rawOptions?: boolean;
}

export interface FormMarkdown {
  kind: 'markdown';
  line: number;
  text: string;
}

export interface FormModel {
  title: string | null;
  /** From the title's `display-mode`: "form" hides the code by default. */
  displayMode: 'form' | 'both' | null;
  /** `run: "auto"` on the title: the cell runs when a field changes. */
  runAuto: boolean;
  items: (FormParam | FormMarkdown)[];
}

const MARKER = /#\s*@(title|markdown|param)\b/;

/** Cheap test: could this source hold a form at all? */
export function mayHaveForm(source: string): boolean {
  return MARKER.test(source.length > MAX_SOURCE ? source.slice(0, MAX_SOURCE) : source);
}

/** Parses a cell's source; null when it has no form elements. */
export function parseForm(source: string): FormModel | null {
  if (!mayHaveForm(source)) return null;
  const lines = source.slice(0, MAX_SOURCE).split('\n');
  const model: FormModel = { title: null, displayMode: null, runAuto: false, items: [] };
  let params = 0;
  let found = false;
  for (let i = 0; i < lines.length; i++) {
    const full = lines[i].replace(/\r$/, '');
    if (full.length > MAX_LINE || !full.includes('@')) continue;
    const c = commentStart(full);
    if (c < 0) continue;
    const comment = full.slice(c);
    const before = full.slice(0, c);
    let m: RegExpMatchArray | null;
    if (!before.trim() && (m = comment.match(/^#\s*@title\b(.*)$/))) {
      found = true;
      const { text, spec } = splitTrailingSpec(m[1]);
      model.title = text.trim().slice(0, MAX_TEXT);
      const mode = spec?.['display-mode'];
      if (mode === 'form' || mode === 'both') model.displayMode = mode;
      model.runAuto = spec?.run === 'auto';
    } else if (!before.trim() && (m = comment.match(/^#\s*@markdown\b ?(.*)$/))) {
      found = true;
      model.items.push({ kind: 'markdown', line: i, text: m[1].slice(0, MAX_LINE) });
    } else if ((m = comment.match(/^#\s*@param\b(.*)$/)) && params < MAX_PARAMS) {
      const p = parseParam(i, before, m[1]);
      if (p) {
        found = true;
        params++;
        model.items.push(p);
      }
    }
  }
  return found ? model : null;
}

/** Index of the `#` that starts the line's comment (outside Python strings), or -1. */
export function commentStart(line: string): number {
  let i = 0;
  while (i < line.length) {
    const ch = line[i];
    if (ch === '#') return i;
    if (ch === '"' || ch === "'") {
      const triple = line.startsWith(ch.repeat(3), i);
      const q = triple ? ch.repeat(3) : ch;
      // A raw prefix (r"…") keeps backslashes but they still escape the quote for the tokenizer.
      i += q.length;
      while (i < line.length && !line.startsWith(q, i)) i += line[i] === '\\' ? 2 : 1;
      if (i >= line.length) return -1; // unterminated (or a multi-line string): no comment on this line
      i += q.length;
      continue;
    }
    i++;
  }
  return -1;
}

const ASSIGN = /^(\s*)([A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]]{0,100}\])*)(\s*(?::\s*[^=]{1,100})?=\s*)(.*?)\s*$/;

/** `name = value ` before the comment: the target and where the value is. */
function splitAssign(before: string): { name: string; from: number; to: number } | null {
  const m = ASSIGN.exec(before);
  if (!m || m[4].startsWith('=')) return null;
  const from = m[1].length + m[2].length + m[3].length;
  return { name: m[2], from, to: from + m[4].length };
}

function parseParam(line: number, before: string, rest: string): FormParam | null {
  const a = splitAssign(before);
  if (!a) return null;
  const name = a.name;
  const raw = before.slice(a.from, a.to);
  let spec: Spec | null = null;
  let list: { label: string; quoted: boolean }[] | null = null;
  let s = rest.trim();
  if (s.startsWith('[')) {
    const r = parseList(s);
    if (!r) return null;
    list = r.items;
    s = s.slice(r.end).trim();
  }
  if (s.startsWith('{')) {
    spec = parseSpec(s);
    if (!spec) return null;
  } else if (s) {
    return null;
  }
  const p: FormParam = { kind: 'param', line, name, type: 'raw', raw, value: raw };
  if (list) {
    p.type = 'dropdown';
    p.options = list;
    p.allowInput = spec?.['allow-input'] === true;
    p.rawOptions = spec?.type === 'raw';
    const lit = pyStringLiteral(raw);
    p.value = lit !== null ? lit : raw;
    return p;
  }
  const t = spec?.type;
  switch (t) {
    case 'string': {
      p.type = 'string';
      const lit = pyStringLiteral(raw);
      p.value = lit !== null ? lit : raw;
      if (typeof spec?.placeholder === 'string') p.placeholder = spec.placeholder.slice(0, MAX_TEXT);
      break;
    }
    case 'number':
    case 'integer':
    case 'slider': {
      p.type = t;
      const n = Number(raw);
      p.value = raw !== '' && Number.isFinite(n) ? n : raw;
      if (t === 'slider') {
        p.min = num(spec?.min, 0);
        p.max = num(spec?.max, 100);
        p.step = num(spec?.step, 1);
        if (!(p.step > 0)) p.step = 1;
        if (p.max < p.min) p.max = p.min;
      }
      break;
    }
    case 'boolean':
      p.type = 'boolean';
      p.value = raw === 'True';
      break;
    case 'date': {
      p.type = 'date';
      const lit = pyStringLiteral(raw);
      p.value = lit !== null ? lit : raw;
      break;
    }
    default:
      p.type = 'raw'; // {type:"raw"}, a bare #@param, or a type we do not know
  }
  return p;
}

function num(v: unknown, dflt: number): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : dflt;
}

type Spec = Record<string, string | number | boolean>;

/** `Title text { display-mode: "form" }` → the text and the parsed spec. */
function splitTrailingSpec(s: string): { text: string; spec: Spec | null } {
  const open = s.lastIndexOf('{');
  if (open >= 0 && s.trimEnd().endsWith('}')) {
    const spec = parseSpec(s.slice(open).trim());
    if (spec) return { text: s.slice(0, open), spec };
  }
  return { text: s, spec: null };
}

/**
 * Colab's option object: `{type:"slider", min:1, max:50, allow-input: true}`
 * (keys unquoted or quoted, values strings, numbers, booleans). The whole
 * text must be the object; null on anything else.
 */
export function parseSpec(s: string): Spec | null {
  const t = new Tokens(s);
  if (!t.eat('{')) return null;
  const out: Spec = Object.create(null);
  let n = 0;
  t.ws();
  if (t.eat('}')) return t.ws(), t.done() ? out : null;
  for (;;) {
    if (++n > 50) return null;
    t.ws();
    const key = t.str() ?? t.ident();
    if (key == null) return null;
    t.ws();
    if (!t.eat(':')) return null;
    t.ws();
    const v = t.value();
    if (v === undefined) return null;
    out[key] = v;
    t.ws();
    if (t.eat('}')) break;
    if (!t.eat(',')) return null;
    t.ws();
    if (t.eat('}')) break; // trailing comma
  }
  t.ws();
  return t.done() ? out : null;
}

/** `["a", 'b', 3]` at the start of `s`: the items and where the list ends. */
function parseList(s: string): { items: { label: string; quoted: boolean }[]; end: number } | null {
  const t = new Tokens(s);
  if (!t.eat('[')) return null;
  const items: { label: string; quoted: boolean }[] = [];
  t.ws();
  if (t.eat(']')) return { items, end: t.pos };
  for (;;) {
    t.ws();
    const str = t.str();
    if (str != null) {
      if (items.length < MAX_OPTIONS) items.push({ label: str.slice(0, MAX_TEXT), quoted: true });
    } else {
      const v = t.bare();
      if (v == null) return null;
      if (items.length < MAX_OPTIONS) items.push({ label: v, quoted: false });
    }
    t.ws();
    if (t.eat(']')) break;
    if (!t.eat(',')) return null;
    t.ws();
    if (t.eat(']')) break;
  }
  return { items, end: t.pos };
}

class Tokens {
  pos = 0;
  constructor(private s: string) {}
  done() {
    return this.pos >= this.s.length;
  }
  ws() {
    while (this.pos < this.s.length && /\s/.test(this.s[this.pos])) this.pos++;
  }
  eat(c: string): boolean {
    if (this.s[this.pos] !== c) return false;
    this.pos++;
    return true;
  }
  ident(): string | null {
    const m = /^[A-Za-z_][\w-]*/.exec(this.s.slice(this.pos, this.pos + 100));
    if (!m) return null;
    this.pos += m[0].length;
    return m[0];
  }
  /** A bare list item: a number or a name (True, None, a constant). */
  bare(): string | null {
    const re = /[^,\]\s"'][^,\]]*/y;
    re.lastIndex = this.pos;
    const m = re.exec(this.s);
    if (!m) return null;
    this.pos += m[0].length;
    return m[0].trim();
  }
  /** A quoted string ('…' or "…", with backslash escapes) decoded; null if none here. */
  str(): string | null {
    const lit = readPyString(this.s, this.pos);
    if (!lit) return null;
    this.pos = lit.end;
    return lit.value;
  }
  value(): string | number | boolean | undefined {
    const s = this.str();
    if (s != null) return s;
    const m = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?/.exec(this.s.slice(this.pos, this.pos + 50));
    if (m) {
      this.pos += m[0].length;
      return Number(m[0]);
    }
    const id = this.ident();
    if (id === 'true' || id === 'True') return true;
    if (id === 'false' || id === 'False') return false;
    return id ?? undefined;
  }
}

const ESC: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0', a: '\x07', b: '\b', f: '\f', v: '\v' };

/** Reads one Python string literal (optional r/u/b prefix, single or triple quotes) at `at`. */
function readPyString(s: string, at: number): { value: string; end: number } | null {
  let i = at;
  let rawMode = false;
  const pre = /^[rRuU]?/.exec(s.slice(i, i + 1))![0];
  if (pre && (s[i + 1] === '"' || s[i + 1] === "'")) {
    rawMode = pre === 'r' || pre === 'R';
    i++;
  }
  const q = s[i];
  if (q !== '"' && q !== "'") return null;
  const triple = s.startsWith(q.repeat(3), i);
  const close = triple ? q.repeat(3) : q;
  i += close.length;
  let out = '';
  while (i < s.length && !s.startsWith(close, i)) {
    const ch = s[i];
    if (ch === '\\' && i + 1 < s.length) {
      const n = s[i + 1];
      if (rawMode) {
        out += ch + n;
        i += 2;
        continue;
      }
      if (n in ESC) {
        out += ESC[n];
        i += 2;
        continue;
      }
      const hex = n === 'x' ? 2 : n === 'u' ? 4 : n === 'U' ? 8 : 0;
      if (hex && /^[0-9a-fA-F]+$/.test(s.slice(i + 2, i + 2 + hex)) && s.slice(i + 2, i + 2 + hex).length === hex) {
        const cp = parseInt(s.slice(i + 2, i + 2 + hex), 16);
        out += cp <= 0x10ffff ? String.fromCodePoint(cp) : '\ufffd';
        i += 2 + hex;
        continue;
      }
      out += ch + n;
      i += 2;
      continue;
    }
    out += ch;
    i++;
  }
  if (i >= s.length) return null;
  return { value: out, end: i + close.length };
}

/** The decoded value when `raw` is exactly one Python string literal, else null. */
export function pyStringLiteral(raw: string): string | null {
  const r = readPyString(raw, 0);
  return r && r.end === raw.length ? r.value : null;
}

/**
 * A Python string literal for `s` that stays on one line: quotes,
 * backslashes, control and line-separator characters escaped.
 */
export function pyQuote(s: string, quote: '"' | "'" = '"'): string {
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + quote;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else if (cp === 0x85 || cp === 0x2028 || cp === 0x2029 || (cp >= 0x80 && cp < 0xa0) || cp === 0xfeff) out += '\\u' + cp.toString(16).padStart(4, '0');
    else out += ch;
  }
  return out + quote;
}

/**
 * The Python source for a new value of `p` as entered in its widget;
 * null when the input is not valid for the type (the line is left alone).
 */
export function encodeValue(p: FormParam, v: string | number | boolean): string | null {
  const quote = quoteOf(p.raw);
  switch (p.type) {
    case 'string':
      return pyQuote(String(v).slice(0, 100_000), quote);
    case 'date': {
      const s = String(v);
      return /^\d{4}-\d{2}-\d{2}$/.test(s) ? pyQuote(s, quote) : null;
    }
    case 'boolean':
      return v === true || v === 'true' || v === 'True' ? 'True' : 'False';
    case 'number':
    case 'integer':
    case 'slider': {
      const s = typeof v === 'number' ? v : String(v).trim();
      if (s === '') return null;
      let n = Number(s);
      if (!Number.isFinite(n)) return null;
      if (p.type === 'slider') n = Math.min(p.max ?? n, Math.max(p.min ?? n, n));
      if (p.type === 'integer') {
        if (!Number.isInteger(n)) return null;
        return BigInt(n).toString();
      }
      if (p.type === 'slider' && Number.isInteger(p.step ?? 1) && Number.isInteger(p.min ?? 0)) return String(Math.round(n));
      return pyNumber(n);
    }
    case 'dropdown': {
      const s = String(v);
      const opt = p.options?.find(o => o.label === s);
      if (opt) return opt.quoted && !p.rawOptions ? pyQuote(s, quote) : oneLine(s);
      if (!p.allowInput) return null;
      const quoted = p.rawOptions ? false : (p.options ?? []).every(o => o.quoted);
      return quoted ? pyQuote(s, quote) : oneLine(s);
    }
    case 'raw':
    default:
      return oneLine(String(v));
  }
}

function quoteOf(raw: string): '"' | "'" {
  return /^[rRuU]?'/.test(raw) ? "'" : '"';
}

/** Raw Python (the user's own expression): kept on its line. */
function oneLine(s: string): string | null {
  const t = s.replace(/[\r\n\u0085\u2028\u2029]+/g, ' ').trim();
  return t ? t : null;
}

function pyNumber(n: number): string {
  // JS and Python agree on finite decimal literals (1e+21, 0.1, -3).
  return Object.is(n, -0) ? '0' : String(n);
}

/** A change to a cell's source: replace [from, to) with insert (offsets in the string). */
export interface SourceEdit {
  from: number;
  to: number;
  insert: string;
}

/**
 * The edit that writes `value` (the widget's value) into the line of `p`;
 * null when the line no longer is that parameter or the value is invalid.
 */
export function paramEdit(source: string, p: FormParam, value: string | number | boolean): SourceEdit | null {
  const enc = encodeValue(p, value);
  if (enc == null) return null;
  let start = 0;
  for (let i = 0; i < p.line; i++) {
    const nl = source.indexOf('\n', start);
    if (nl < 0) return null;
    start = nl + 1;
  }
  let end = source.indexOf('\n', start);
  if (end < 0) end = source.length;
  const line = source.slice(start, end).replace(/\r$/, '');
  const c = commentStart(line);
  if (c < 0) return null;
  const before = line.slice(0, c);
  const a = splitAssign(before);
  const pm = /^#\s*@param\b(.*)$/.exec(line.slice(c));
  if (!a || !pm || a.name !== p.name) return null;
  const cur = parseParam(p.line, before, pm[1]);
  if (!cur || cur.type !== p.type) return null;
  // Keep at least one space before the comment.
  const insert = a.to < before.length ? enc : enc + ' ';
  return { from: start + a.from, to: start + a.to, insert };
}

/** Applies an edit to a string. */
export function applyEdit(source: string, e: SourceEdit): string {
  return source.slice(0, e.from) + e.insert + source.slice(e.to);
}

/** Whether the code is hidden: Colab's `cellView: "form"` metadata, else the title's display-mode. */
export function codeHidden(model: FormModel | null, metadata: Record<string, unknown>): boolean {
  if (!model) return false;
  const v = metadata.cellView;
  if (v === 'form') return true;
  if (v === 'code') return false;
  return model.displayMode === 'form';
}
