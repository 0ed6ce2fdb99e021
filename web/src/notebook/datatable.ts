// Interactive tables (Colab's data_table) for outputs of type
// application/vnd.skylab.datatable+json (python/skylab/data_table.py): the
// output holds the first page; sorting, filtering and further pages are
// asked of the kernel over a comm (target "skylab.datatable"), one page per
// answer, so a large frame never crosses the wire. "Copy" puts the rows
// shown on the clipboard as TSV. The output's text/html (pandas' own table)
// is one click away and is what other notebook viewers show.
import type { Kernel } from '@jupyterlab/services';
import { registerMimeRenderer, type OutputContext } from '../extensions';
import { h } from '../ui/dom';
import { renderInFrame } from './frames';
import './datatable.css';

export const DATATABLE_MIME = 'application/vnd.skylab.datatable+json';
const COMM_TARGET = 'skylab.datatable';
const PAGE_SIZES = [10, 25, 50, 100];
const MAX_COLS = 200;
const MAX_ROWS = 500;

interface Page {
  offset: number;
  rows: string[][];
  index: string[];
  total: number;
  total_rows?: number;
  error?: string;
}

interface TableData extends Page {
  id: string;
  columns: string[];
  dtypes: string[];
  index_name?: string;
  include_index?: boolean;
  page_size?: number;
}

/** One comm per kernel connection, shared by its tables; answers matched by seq. */
class PageChannel {
  private comm: Kernel.IComm | null = null;
  private seq = 0;
  private waiting = new Map<number, (p: Page) => void>();

  constructor(private kernel: Kernel.IKernelConnection) {}

  request(req: Record<string, unknown>): Promise<Page> {
    if (!this.comm || this.comm.isDisposed) {
      this.comm = this.kernel.createComm(COMM_TARGET);
      this.comm.onMsg = msg => {
        const d = msg.content.data as any;
        const cb = typeof d?.seq === 'number' ? this.waiting.get(d.seq) : undefined;
        if (cb) {
          this.waiting.delete(d.seq);
          cb(d as Page);
        }
      };
      this.comm.onClose = () => {
        for (const cb of this.waiting.values()) cb({ error: 'This table is no longer in the runtime: run the cell again.', offset: 0, rows: [], index: [], total: 0 });
        this.waiting.clear();
        this.comm = null;
      };
      this.comm.open({});
    }
    const seq = ++this.seq;
    return new Promise<Page>(resolve => {
      this.waiting.set(seq, resolve);
      this.comm!.send({ ...req, seq } as any);
    });
  }
}

const channels = new WeakMap<Kernel.IKernelConnection, PageChannel>();

function channel(k: Kernel.IKernelConnection): PageChannel {
  let c = channels.get(k);
  if (!c) channels.set(k, (c = new PageChannel(k)));
  return c;
}

/** nbformat's multiline string joined. */
function text(v: unknown): string {
  return Array.isArray(v) ? v.filter(x => typeof x === 'string').join('') : typeof v === 'string' ? v : '';
}

/** A cell's text: strings, numbers and booleans as such, anything else (from a crafted file) empty. */
function str(v: unknown, max = 1000): string {
  const t = typeof v;
  return (t === 'string' ? (v as string) : t === 'number' || t === 'boolean' ? String(v) : '').slice(0, max);
}

/** The output's data, checked and bounded (it comes from a kernel and from files). */
function parse(data: unknown): TableData | null {
  const d = data as any;
  if (!d || typeof d !== 'object' || typeof d.id !== 'string' || !Array.isArray(d.columns)) return null;
  const columns = d.columns.slice(0, MAX_COLS).map((c: unknown) => str(c));
  return {
    id: str(d.id, 100),
    columns,
    dtypes: Array.isArray(d.dtypes) ? d.dtypes.slice(0, MAX_COLS).map((c: unknown) => str(c, 50)) : [],
    index_name: str(d.index_name),
    include_index: d.include_index !== false,
    page_size: Number.isSafeInteger(d.page_size) && d.page_size >= 1 && d.page_size <= MAX_ROWS ? d.page_size : 25,
    ...page(d, columns.length),
  };
}

function page(d: any, ncols: number): Page {
  const rows: string[][] = Array.isArray(d?.rows) ? d.rows.slice(0, MAX_ROWS).map((r: unknown) => (Array.isArray(r) ? r.slice(0, ncols).map(c => str(c)) : [])) : [];
  return {
    offset: Number.isSafeInteger(d?.offset) && d.offset >= 0 ? d.offset : 0,
    rows,
    index: Array.isArray(d?.index) ? d.index.slice(0, rows.length).map((c: unknown) => str(c)) : [],
    total: Number.isSafeInteger(d?.total) && d.total >= 0 ? d.total : rows.length,
    total_rows: Number.isSafeInteger(d?.total_rows) ? d.total_rows : undefined,
    error: typeof d?.error === 'string' ? str(d.error) : undefined,
  };
}

/** Tab-separated text of a header and rows (tabs and newlines in cells become spaces). */
export function toTsv(header: string[], rows: string[][]): string {
  const clean = (s: string) => s.replace(/[\t\r\n]+/g, ' ');
  return [header, ...rows].map(r => r.map(clean).join('\t')).join('\n') + '\n';
}

function renderTable(data: unknown, metadata: Record<string, unknown>, el: HTMLElement, ctx: OutputContext, bundle?: Record<string, unknown>) {
  const t = parse(data);
  if (!t) {
    el.textContent = 'Invalid table output';
    return;
  }
  const numeric = t.dtypes.map(d => /^(u?int|float|complex|Int|UInt|Float)/.test(d));
  let cur: Page = t;
  let pageSize = t.page_size ?? 25;
  let sort: number | null = null;
  let ascending = true;
  let filter = '';
  let busy = false;

  const status = h('span.dt-status');
  const filterInput = h('input.dt-filter', { type: 'search', placeholder: 'Filter', 'aria-label': 'Filter rows' });
  const prev = h('button.btn.dt-prev', { type: 'button', 'aria-label': 'Previous page', text: '‹' });
  const next = h('button.btn.dt-next', { type: 'button', 'aria-label': 'Next page', text: '›' });
  const sizeSel = h('select.dt-size', { 'aria-label': 'Rows per page' }, ...[...new Set([...PAGE_SIZES, pageSize])].sort((a, b) => a - b).map(n => h('option', { value: String(n), text: String(n), selected: n === pageSize })));
  const copy = h('button.btn.dt-copy', { type: 'button', text: 'Copy' });
  const plain = h('button.btn.link.dt-plain', { type: 'button', text: 'Show as HTML' });
  const thead = h('thead');
  const tbody = h('tbody');
  const table = h('table.dt-table', null, thead, tbody);
  const htmlBox = h('div.dt-html', { hidden: true });
  const note = h('div.dt-note', { hidden: true });
  el.classList.add('datatable');
  // Selecting the cell may scroll it: a click on the table's controls must land where it was aimed.
  el.addEventListener('mousedown', e => e.stopPropagation());
  el.append(h('div.dt-bar', null, filterInput, h('span.dt-spacer'), status, sizeSel, prev, next, copy, plain), note, h('div.dt-scroll', null, table), htmlBox);

  const head = () => {
    thead.textContent = '';
    const tr = h('tr', null, t.include_index ? h('th.dt-index', { text: t.index_name ?? '' }) : null);
    t.columns.forEach((c, i) => {
      const arrow = sort === i ? (ascending ? ' ▲' : ' ▼') : '';
      const th = h(numeric[i] ? 'th.num' : 'th', { 'data-col': String(i), title: `${c} (${t.dtypes[i] ?? ''}): click to sort`, 'aria-sort': sort === i ? (ascending ? 'ascending' : 'descending') : 'none' },
        h('button.dt-sort', { type: 'button', text: c + arrow }));
      th.querySelector('button')!.addEventListener('click', () => {
        if (sort === i) ascending = !ascending;
        else (sort = i), (ascending = true);
        void load(0);
      });
      tr.append(th);
    });
    thead.append(tr);
  };

  const body = () => {
    tbody.textContent = '';
    cur.rows.forEach((r, j) => {
      const tr = h('tr', null, t.include_index ? h('th.dt-index', { text: cur.index[j] ?? '' }) : null);
      r.forEach((v, i) => tr.append(h(numeric[i] ? 'td.num' : 'td', { text: v })));
      tbody.append(tr);
    });
    const from = cur.total ? cur.offset + 1 : 0;
    const to = cur.offset + cur.rows.length;
    const of = cur.total.toLocaleString('en-US');
    const all = t.total_rows ?? cur.total_rows;
    status.textContent = `${from.toLocaleString('en-US')}–${to.toLocaleString('en-US')} of ${of}` + (filter && all != null ? ` (filtered from ${all.toLocaleString('en-US')})` : '');
    prev.disabled = busy || cur.offset <= 0;
    next.disabled = busy || to >= cur.total;
  };

  const load = async (offset: number) => {
    const k = ctx.current ? ctx.current().kernel : ctx.kernel;
    if (!k || k.isDisposed || k.status === 'dead') {
      note.hidden = false;
      note.textContent = 'Connect to the runtime and run the cell again to sort, filter and page through this table.';
      return;
    }
    busy = true;
    el.classList.add('dt-busy');
    body();
    try {
      const p = page(await channel(k).request({ id: t.id, offset, limit: pageSize, sort, ascending, filter }), t.columns.length);
      if (p.error) {
        note.hidden = false;
        note.textContent = p.error;
      } else {
        note.hidden = true;
        cur = p;
      }
    } finally {
      busy = false;
      el.classList.remove('dt-busy');
      head();
      body();
    }
  };

  prev.addEventListener('click', () => void load(Math.max(0, cur.offset - pageSize)));
  next.addEventListener('click', () => void load(cur.offset + pageSize));
  sizeSel.addEventListener('change', () => {
    pageSize = Number(sizeSel.value);
    void load(cur.offset - (cur.offset % pageSize));
  });
  let ft = 0;
  filterInput.addEventListener('input', () => {
    clearTimeout(ft);
    ft = window.setTimeout(() => {
      filter = filterInput.value.slice(0, 1000);
      void load(0);
    }, 300);
  });
  copy.addEventListener('click', () => {
    const tsv = t.include_index
      ? toTsv([t.index_name ?? '', ...t.columns], cur.rows.map((r, j) => [cur.index[j] ?? '', ...r]))
      : toTsv(t.columns, cur.rows);
    el.dataset.copied = String(cur.rows.length);
    void navigator.clipboard?.writeText(tsv).then(
      () => (copy.textContent = 'Copied'),
      () => (copy.textContent = 'Copy failed'),
    );
    setTimeout(() => (copy.textContent = 'Copy'), 1500);
  });
  const html = bundle?.['text/html'];
  if (html == null) plain.hidden = true;
  plain.addEventListener('click', () => {
    const show = htmlBox.hidden;
    if (show && !htmlBox.firstChild) renderInFrame(htmlBox, { html: text(html) });
    htmlBox.hidden = !show;
    (table.parentElement as HTMLElement).hidden = show;
    plain.textContent = show ? 'Interactive table' : 'Show as HTML';
  });
  head();
  body();
}

/**
 * A plain pandas DataFrame result (`text/html` of class "dataframe", no
 * table MIME type) gets an "Interactive table" button, as in Colab: it asks
 * the kernel, silently, to show `Out[n]` as a table, and draws that in place
 * (the stored output is left as it was).
 */
export function offerInteractive(o: Record<string, any>, el: HTMLElement, ctx: OutputContext): void {
  const data = o.data ?? {};
  const n = o.execution_count;
  if (o.output_type !== 'execute_result' || !Number.isSafeInteger(n) || DATATABLE_MIME in data) return;
  const html = text(data['text/html']);
  if (!/<table[^>]*class="[^"]*\bdataframe\b/.test(html.slice(0, 2000))) return;
  const btn = h('button.btn.link.dt-convert', { type: 'button', text: 'Interactive table', title: 'Sort, filter and page through this DataFrame' });
  const note = h('span.dt-note');
  const offer = h('div.dt-offer', null, btn, note);
  offer.addEventListener('mousedown', e => e.stopPropagation());
  el.prepend(offer); // above the frame, whose height changes as it loads
  btn.addEventListener('click', () => {
    const k = ctx.current ? ctx.current().kernel : ctx.kernel;
    if (!k || k.isDisposed || k.status === 'dead') {
      note.textContent = ' Connect to the runtime and run the cell again.';
      return;
    }
    btn.disabled = true;
    const future = k.requestExecute({ code: `import skylab.data_table as _skylab_dt; _skylab_dt._show_output(${n}); del _skylab_dt`, silent: true, store_history: false, allow_stdin: false, stop_on_error: false });
    future.onIOPub = msg => {
      const c = msg.content as any;
      if (msg.header.msg_type === 'display_data' && c.data?.[DATATABLE_MIME]) {
        const box = h('div.output.display_data');
        for (const child of Array.from(el.children)) (child as HTMLElement).hidden = true;
        el.append(box);
        renderTable(c.data[DATATABLE_MIME], {}, box, ctx, data);
      } else if (msg.header.msg_type === 'error') {
        note.textContent = ' ' + str(c.evalue);
        btn.disabled = false;
      }
    };
  });
}

registerMimeRenderer(DATATABLE_MIME, (data, metadata, el, ctx) => renderTable(data, metadata, el, ctx, ctx.bundle));
