// A cell's output area: nbformat outputs in, DOM out. Streams are merged
// and appended incrementally (carriage returns rewrite only the last line),
// long streams keep only their last lines in the page ("Show all" brings
// the rest), rich outputs pick the best MIME type, HTML/JS go to sandboxed
// frames, display ids can be updated in place.
import { findMimeRenderer, type OutputContext } from '../extensions';
import { Ansi, applyCarriageReturns, terminalText } from './ansi';
import { renderInFrame } from './frames';
import { offerInteractive } from './datatable';
import { renderMarkdownFragment, renderMathFragment } from './markdown';

export type Output = Record<string, any> & { output_type: string };

const MAX_LINES = 2000; // lines of a stream kept in the page

/** Joins nbformat multiline strings. */
export function text(v: unknown): string {
  return Array.isArray(v) ? v.join('') : typeof v === 'string' ? v : v == null ? '' : JSON.stringify(v);
}

class StreamView {
  el: HTMLElement;
  private body: HTMLElement;
  private tail: HTMLElement;
  private hiddenNote: HTMLElement;
  private ansi = new Ansi();
  private pending = ''; // the unfinished last line (raw, may hold \r)
  private lines = 0;
  private chunks: { node: HTMLElement; lines: number }[] = [];
  private dropped = 0;

  constructor(public output: Output, private onShowAll: () => void) {
    this.el = document.createElement('div');
    this.el.className = `output stream ${output.name === 'stderr' ? 'stderr' : 'stdout'}`;
    this.hiddenNote = document.createElement('div');
    this.hiddenNote.className = 'truncated';
    this.hiddenNote.hidden = true;
    this.body = document.createElement('pre');
    this.tail = document.createElement('span');
    this.body.append(this.tail);
    this.el.append(this.hiddenNote, this.body);
    this.append(text(output.text), false);
  }

  /** Adds text; `record` also appends it to the output model. */
  append(t: string, record = true) {
    if (record) this.output.text = text(this.output.text) + t;
    const all = this.pending + t.replace(/\r\n/g, '\n');
    const nl = all.lastIndexOf('\n');
    if (nl >= 0) {
      const done = all.slice(0, nl + 1);
      this.pending = all.slice(nl + 1);
      let lines = done.split('\n');
      lines.pop();
      if (lines.length > MAX_LINES) {
        // Only the last lines of a huge batch reach the page.
        this.dropped += lines.length - MAX_LINES;
        lines = lines.slice(lines.length - MAX_LINES);
        this.ansi = new Ansi();
      }
      const html = lines.map(l => this.ansi.toHtml(applyCarriageReturns(l))).join('\n') + '\n';
      const chunk = document.createElement('span');
      chunk.innerHTML = html;
      this.body.insertBefore(chunk, this.tail);
      this.chunks.push({ node: chunk, lines: lines.length });
      this.lines += lines.length;
      while (this.lines > MAX_LINES && this.chunks.length > 1) {
        const c = this.chunks.shift()!;
        c.node.remove();
        this.lines -= c.lines;
        this.dropped += c.lines;
      }
      if (this.dropped) this.showNote();
    } else {
      this.pending = all;
    }
    // The last line: rendered with a copy of the colour state, since it may be redrawn.
    const save = Object.assign(Object.create(Object.getPrototypeOf(this.ansi)), this.ansi);
    this.tail.innerHTML = save.toHtml(applyCarriageReturns(this.pending));
  }

  private showNote() {
    this.hiddenNote.hidden = false;
    this.hiddenNote.textContent = '';
    const b = document.createElement('button');
    b.className = 'btn link';
    b.textContent = 'Show all';
    b.addEventListener('click', () => this.onShowAll());
    this.hiddenNote.append(`${this.dropped.toLocaleString()} earlier lines hidden. `, b);
  }

  showAll() {
    const full = terminalText(text(this.output.text));
    this.body.innerHTML = new Ansi().toHtml(full);
    this.hiddenNote.hidden = true;
    this.chunks = [];
  }
}

export class OutputArea {
  readonly el: HTMLElement;
  outputs: Output[] = [];
  private lastStream: StreamView | null = null;
  private clearPending = false;
  private displayEls = new Map<Output, HTMLElement>();

  constructor(private ctx: () => OutputContext) {
    this.el = document.createElement('div');
    this.el.className = 'outputs';
  }

  /** Replaces everything with `outputs` (e.g. loaded from the file). */
  set(outputs: Output[]) {
    this.clearNow();
    for (const o of outputs) this.add(o);
  }

  clear(wait = false) {
    if (wait) this.clearPending = true;
    else this.clearNow();
  }

  private clearNow() {
    this.clearPending = false;
    this.outputs = [];
    this.lastStream = null;
    this.displayEls.clear();
    this.el.textContent = '';
    this.el.classList.remove('has-output');
  }

  add(o: Output) {
    if (this.clearPending) this.clearNow();
    if (o.output_type === 'stream') {
      if (this.lastStream && this.lastStream.output.name === o.name && this.outputs[this.outputs.length - 1] === this.lastStream.output) {
        this.lastStream.append(text(o.text));
        return;
      }
      const stored: Output = { output_type: 'stream', name: o.name, text: '' };
      this.outputs.push(stored);
      const v: StreamView = new StreamView(stored, () => v.showAll());
      v.append(text(o.text));
      this.lastStream = v;
      this.el.append(v.el);
    } else {
      this.lastStream = null;
      this.outputs.push(o);
      const el = this.render(o);
      this.displayEls.set(o, el);
      this.el.append(el);
    }
    this.el.classList.add('has-output');
  }

  /** update_display_data: re-renders outputs carrying this display id. */
  updateDisplay(displayId: string, data: Record<string, unknown>, metadata: Record<string, unknown>): boolean {
    let found = false;
    for (let i = 0; i < this.outputs.length; i++) {
      const o = this.outputs[i];
      if (o.transient?.display_id !== displayId && o.metadata?.__display_id !== displayId) continue;
      found = true;
      const n: Output = { ...o, data, metadata: { ...metadata, __display_id: displayId } };
      this.outputs[i] = n;
      const old = this.displayEls.get(o);
      const el = this.render(n);
      this.displayEls.delete(o);
      this.displayEls.set(n, el);
      if (old) old.replaceWith(el);
    }
    return found;
  }

  /** The outputs as nbformat stores them (stream texts as a terminal shows them). */
  toJSON(): Output[] {
    return this.outputs.map(o => {
      switch (o.output_type) {
        case 'stream':
          return { output_type: 'stream', name: o.name, text: terminalText(text(o.text)) };
        case 'error':
          return { output_type: 'error', ename: String(o.ename ?? ''), evalue: String(o.evalue ?? ''), traceback: o.traceback ?? [] };
        case 'execute_result':
          return { output_type: 'execute_result', execution_count: o.execution_count ?? null, data: o.data ?? {}, metadata: cleanMeta(o.metadata) };
        default:
          return { output_type: 'display_data', data: o.data ?? {}, metadata: cleanMeta(o.metadata) };
      }
    });
  }

  private render(o: Output): HTMLElement {
    const el = document.createElement('div');
    el.className = 'output ' + o.output_type;
    if (o.output_type === 'error') {
      const pre = document.createElement('pre');
      const tb: string[] = o.traceback ?? [`${o.ename}: ${o.evalue}`];
      pre.innerHTML = new Ansi().toHtml(tb.join('\n'));
      el.append(pre);
      return el;
    }
    const data = o.data ?? {};
    const ctx = { ...this.ctx(), current: this.ctx };
    renderBundle(data, o.metadata ?? {}, el, ctx);
    offerInteractive(o, el, ctx);
    return el;
  }
}

function cleanMeta(m: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!m || !('__display_id' in m)) return m ?? {};
  const { __display_id, ...rest } = m;
  return rest;
}

const IMAGE = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

export function renderBundle(data: Record<string, any>, metadata: Record<string, any>, el: HTMLElement, ctx: OutputContext) {
  const ext = findMimeRenderer(data);
  if (ext) {
    try {
      void Promise.resolve(ext.render(data[ext.mime], metadata[ext.mime] ?? {}, el, { ...ctx, bundle: data })).catch(e => (el.textContent = String(e)));
    } catch (e) {
      el.textContent = String(e);
    }
    return;
  }
  if ('application/javascript' in data) {
    renderInFrame(el, { js: text(data['application/javascript']) });
    el.classList.add('rich');
    return;
  }
  if ('text/html' in data) {
    renderInFrame(el, { html: text(data['text/html']) });
    el.classList.add('rich');
    return;
  }
  for (const mime of IMAGE) {
    if (mime in data) {
      const img = document.createElement('img');
      img.src = `data:${mime};base64,${text(data[mime]).replace(/\s/g, '')}`;
      const md = metadata[mime] ?? metadata;
      if (md?.width) img.width = md.width;
      if (md?.height) img.height = md.height;
      img.alt = 'Output image';
      el.append(img);
      return;
    }
  }
  if ('image/svg+xml' in data) {
    const img = document.createElement('img');
    img.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(text(data['image/svg+xml']));
    img.alt = 'Output image';
    el.append(img);
    return;
  }
  if ('text/markdown' in data) {
    const d = document.createElement('div');
    d.className = 'markdown';
    d.append(renderMarkdownFragment(text(data['text/markdown'])));
    el.append(d);
    return;
  }
  if ('text/latex' in data) {
    const d = document.createElement('div');
    const tex = text(data['text/latex']).trim().replace(/^\$\$?|\$\$?$/g, '');
    d.append(renderMathFragment(tex, true));
    el.append(d);
    return;
  }
  if ('application/json' in data) {
    const pre = document.createElement('pre');
    pre.className = 'json';
    pre.textContent = JSON.stringify(data['application/json'], null, 2);
    el.append(pre);
    return;
  }
  const pre = document.createElement('pre');
  if (!('text/plain' in data)) {
    pre.textContent = `[${Object.keys(data).join(', ')}]`;
    el.append(pre);
    return;
  }
  const full = text(data['text/plain']);
  const LIMIT = 100_000;
  pre.innerHTML = new Ansi().toHtml(full.length > LIMIT ? full.slice(0, LIMIT) : full);
  el.append(pre);
  if (full.length > LIMIT) {
    const note = document.createElement('div');
    note.className = 'truncated';
    const b = document.createElement('button');
    b.className = 'btn link';
    b.textContent = 'Show all';
    b.addEventListener('click', () => {
      pre.innerHTML = new Ansi().toHtml(full);
      note.remove();
    });
    note.append(`Output truncated: ${(full.length - LIMIT).toLocaleString()} more characters. `, b);
    el.append(note);
  }
}
