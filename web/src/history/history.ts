// Revision history of a Drive file: the list of revisions
// (GET /api/skylab/revisions?path=), a past revision side by side with the
// current content (cell by cell for notebooks, with a line diff), and
// Restore (POST /api/skylab/revisions/{id}/restore?path=), after which
// `onRestored` reloads the document.
import { api, encodePath } from '../api';
import { confirmDialog, openDialog, toast } from '../ui/dialog';
import { clear, formatBytes, h } from '../ui/dom';
import './history.css';

interface Revision {
  id: string;
  timestamp: string;
  size: number;
  kind: string;
  author: string;
  hash: string;
}

interface CellLike {
  id?: string;
  cell_type: string;
  source: string | string[];
}

/** One side of the comparison: a list of cells (a file is one "cell"). */
interface Side {
  cells: { key: string; type: string; text: string }[];
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sourceText(s: string | string[] | undefined): string {
  return Array.isArray(s) ? s.join('') : s ?? '';
}

function toSide(model: any): Side {
  if (model?.type === 'notebook' || (model?.format === 'json' && model?.content?.cells)) {
    const cells: CellLike[] = model.content?.cells ?? [];
    return { cells: cells.map((c, i) => ({ key: c.id || `#${i}`, type: c.cell_type, text: sourceText(c.source) })) };
  }
  const text = model?.format === 'base64' ? '(binary content)' : String(model?.content ?? '');
  return { cells: [{ key: 'file', type: 'file', text }] };
}

type Op = { kind: 'same' | 'del' | 'add'; text: string };

/** Line diff (LCS); falls back to "all removed, all added" for huge inputs. */
export function diffLines(a: string[], b: string[]): Op[] {
  const n = a.length;
  const m = b.length;
  if (n * m > 4_000_000) return [...a.map(t => ({ kind: 'del' as const, text: t })), ...b.map(t => ({ kind: 'add' as const, text: t }))];
  const lcs: Uint32Array[] = [];
  for (let i = 0; i <= n; i++) lcs.push(new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: 'same', text: a[i] });
      i++;
      j++;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ kind: 'del', text: a[i++] });
    else out.push({ kind: 'add', text: b[j++] });
  }
  while (i < n) out.push({ kind: 'del', text: a[i++] });
  while (j < m) out.push({ kind: 'add', text: b[j++] });
  return out;
}

/** Pairs cells of the two sides: by cell id where both have it, in order. */
function pairCells(old: Side, cur: Side): { old?: Side['cells'][0]; cur?: Side['cells'][0] }[] {
  const keys = diffLines(old.cells.map(c => c.key), cur.cells.map(c => c.key));
  const pairs: { old?: Side['cells'][0]; cur?: Side['cells'][0] }[] = [];
  let i = 0;
  let j = 0;
  for (const op of keys) {
    if (op.kind === 'same') pairs.push({ old: old.cells[i++], cur: cur.cells[j++] });
    else if (op.kind === 'del') pairs.push({ old: old.cells[i++] });
    else pairs.push({ cur: cur.cells[j++] });
  }
  // Unmatched neighbours (ids changed, e.g. cells without ids): show them side by side.
  const merged: typeof pairs = [];
  for (const p of pairs) {
    const last = merged[merged.length - 1];
    if (last && last.old && !last.cur && p.cur && !p.old) last.cur = p.cur;
    else merged.push({ ...p });
  }
  return merged;
}

function renderCompare(old: Side, cur: Side): HTMLElement {
  const table = h('div.history-compare');
  table.append(h('div.history-col-head', { text: 'This revision' }), h('div.history-col-head', { text: 'Current' }));
  let changed = 0;
  for (const p of pairCells(old, cur)) {
    const a = p.old?.text.split('\n') ?? [];
    const b = p.cur?.text.split('\n') ?? [];
    const ops = diffLines(a, b);
    const same = p.old && p.cur && ops.every(o => o.kind === 'same');
    if (!same) changed++;
    const left = h('pre.history-cell', { class: 'history-cell' + (p.old ? '' : ' missing') + (same ? ' same' : '') });
    const right = h('pre.history-cell', { class: 'history-cell' + (p.cur ? '' : ' missing') + (same ? ' same' : '') });
    if (p.old) left.append(h('span.history-type', { text: p.old.type }));
    if (p.cur) right.append(h('span.history-type', { text: p.cur.type }));
    for (const o of ops) {
      if (o.kind !== 'add' && p.old) left.append(h('span.line', { class: 'line' + (o.kind === 'del' ? ' del' : ''), text: o.text || ' ' }));
      if (o.kind !== 'del' && p.cur) right.append(h('span.line', { class: 'line' + (o.kind === 'add' ? ' add' : ''), text: o.text || ' ' }));
    }
    if (!p.old) left.append(h('span.history-absent', { text: '(not in this revision)' }));
    if (!p.cur) right.append(h('span.history-absent', { text: '(not in the current version)' }));
    table.append(left, right);
  }
  const summary = h('p.history-summary', { text: changed ? `${changed} cell${changed === 1 ? ' differs' : 's differ'} from the current version` : 'Same content as the current version' });
  return h('div', null, summary, table);
}

function when(iso: string): string {
  const d = new Date(iso);
  return isNaN(d.getTime()) ? iso : d.toLocaleString([], { dateStyle: 'medium', timeStyle: 'medium' });
}

export function openRevisionHistory(path: string, onRestored: () => void): void {
  const list = h('ul.history-list', { role: 'listbox', 'aria-label': 'Revisions' });
  const view = h('div.history-view', null, h('p.history-hint', { text: 'Choose a revision to compare it with the current version.' }));
  const restore = h('button.btn.primary.history-restore', { text: 'Restore this revision', disabled: true });
  const body = h('div.history-dialog', null, h('div.history-side', null, list), h('div.history-main', null, view, h('div.history-actions', null, restore)));
  const name = path.split('/').pop() || path;
  const dialog = openDialog(`Revision history of “${name}”`, body, [{ label: 'Close', value: 'close' }], { wide: true });
  dialog.root.classList.add('history');
  let selected: Revision | null = null;
  let current: Side | null = null;

  const show = async (rev: Revision, item: HTMLElement) => {
    selected = rev;
    for (const li of list.querySelectorAll('.selected')) li.classList.remove('selected');
    item.classList.add('selected');
    restore.disabled = true;
    clear(view);
    view.append(h('p.history-hint', { text: 'Loading…' }));
    try {
      const q = '?path=' + encodeURIComponent(path);
      const [old, cur] = await Promise.all([
        api('GET', `/api/skylab/revisions/${rev.id}${q}`),
        current ? Promise.resolve(null) : api('GET', '/api/contents/' + encodePath(path) + '?content=1'),
      ]);
      if (!current) current = toSide(cur);
      if (selected !== rev) return;
      clear(view);
      view.append(renderCompare(toSide(old), current));
      restore.disabled = false;
    } catch (e) {
      clear(view);
      view.append(h('p.error', { text: message(e) }));
    }
  };

  restore.addEventListener('click', async () => {
    const rev = selected;
    if (!rev) return;
    if (!(await confirmDialog('Restore', `Restore the version of ${when(rev.timestamp)}? The current version is kept in the history.`, 'Restore'))) return;
    try {
      await api('POST', `/api/skylab/revisions/${rev.id}/restore?path=${encodeURIComponent(path)}`);
      dialog.close('restored');
      toast(`Restored the version of ${when(rev.timestamp)}`);
      onRestored();
    } catch (e) {
      toast(`Restore failed: ${message(e)}`);
    }
  });

  void (async () => {
    try {
      const r = await api<{ revisions: Revision[] }>('GET', '/api/skylab/revisions?path=' + encodeURIComponent(path));
      if (!r.revisions.length) list.append(h('li.history-none', { text: 'No revisions yet: they are kept as you save.' }));
      r.revisions.forEach((rev, i) => {
        const item = h('li.history-item', { role: 'option', tabindex: '0', 'data-id': rev.id },
          h('span.history-when', { text: when(rev.timestamp) + (i === 0 ? ' (latest)' : '') }),
          h('span.history-meta', { text: `${rev.author || 'unknown'} · ${rev.kind} · ${formatBytes(rev.size)}` }));
        item.addEventListener('click', () => void show(rev, item));
        item.addEventListener('keydown', e => {
          if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            e.stopPropagation();
            void show(rev, item);
          }
        });
        list.append(item);
      });
    } catch (e) {
      list.append(h('li.error', { text: message(e) }));
    }
  })();
}
