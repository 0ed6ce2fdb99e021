// The notebook page: top bar (file name, menus, Share, runtime status),
// sidebar (table of contents, files), the cells, keyboard handling,
// execution and output routing, autosave.
import type { KeyBinding } from '@codemirror/view';
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { api, contents, forgetRecent, type Me, noteRecent, notebookUrl, serverSettings } from '../api';
import { errorText } from '../drive/drive';
import { handleStdin, type NotebookPageContext, type OutputContext } from '../extensions';
import { mountFilesPanel } from '../files/panel';
import { openRevisionHistory } from '../history/history';
import { openShareDialog } from '../share/dialog';
import { cellFinished, openNotifySettings } from '../secrets/notify';
import { keyIcon, mountSecretsPanel } from '../secrets/panel';
import { confirmDialog, openDialog, promptDialog, showMessage, toast } from '../ui/dialog';
import { clear, formatBytes, h } from '../ui/dom';
import { closeMenus, menuBar, showMenu, type MenuItem } from '../ui/menu';
import { icon } from '../ui/icons';
import { logo, userButton } from '../ui/topbar';
import { Cell, type CellJSON, type CellType } from './cell';
import { CollabSession, type CollabPage } from './collab';
import type { Output } from './outputs';
import { DriveDoc, SharedDoc, type DocStore, type NotebookFile } from './document';
import { setOutputOrigin } from './frames';
import { headings } from './markdown';
import { text } from './outputs';
import { RuntimeDeath } from './runtime_death';
import { Runtime, runtimeTypes } from './runtime';
import { openTerminal } from '../terminal/panel';
import { VariablesPanel } from '../variables/panel';

interface Command {
  id: string;
  label: string;
  keys?: string;
  run: () => void | Promise<void>;
  enabled?: () => boolean;
}

interface UndoStep {
  label: string;
  undo: () => void;
  redo: () => void;
}

const isMac = /Mac/.test(navigator.platform);
const MOD = isMac ? '⌘' : 'Ctrl';

/** Starts loading a Drive notebook before the page is built. */
export function prefetchNotebook(path: string): Promise<NotebookFile> {
  const p = new DriveDoc(path).load();
  p.catch(() => undefined);
  return p;
}

export async function openNotebookPage(app: HTMLElement, path: string, me: Me, prefetch: Promise<NotebookFile> | null = null): Promise<void> {
  setOutputOrigin(me.outputOrigin);
  let doc: DocStore;
  const shared = /^\/shared\/([0-9a-f]{24,48})(?:\/(.*))?$/.exec(location.pathname);
  if (shared) doc = new SharedDoc(shared[1], (shared[2] ?? '').split('/').map(decodeURIComponent).join('/'), '');
  else doc = new DriveDoc(path);
  const nb = new NotebookPage(app, doc, me);
  await nb.open(shared ? null : prefetch);
  (window as any).skylab = nb; // for tests and benchmarks
}

/** Routes /shared/<id>… here too. */
export class NotebookPage implements NotebookPageContext, CollabPage {
  /** Co-editing with the server as the authority (null: off; the page saves by PUT). */
  collab: CollabSession | null = null;
  cells: Cell[] = [];
  active = 0;
  mode: 'command' | 'edit' = 'command';
  readOnly = false;
  runtime!: Runtime;
  private list = h('div.cells', { role: 'list', 'aria-label': 'Notebook cells' });
  private scroller = h('main.nb-scroll');
  private saveState = h('span.save-state', { role: 'status', 'aria-live': 'polite' });
  private titleInput = h('input.title', { 'aria-label': 'File name', spellcheck: 'false' });
  private statusEl = h('div.runtime-status');
  private banner = h('div.banner', { hidden: true, role: 'alert' });
  private sidebar = h('aside.sidebar', { hidden: true });
  private tocEl = h('nav.toc', { 'aria-label': 'Table of contents' });
  private filesEl = h('div.files-panel');
  private secretsEl = h('div.secrets-panel');
  private varsEl = h('div.vars-panel');
  private vars: VariablesPanel | null = null;
  private nbMeta: Record<string, unknown> = {};
  private nbFormatMinor = 5;
  private dirty = false;
  private dirtySince = 0;
  private changeSeq = 0;
  private saving: Promise<void> | null = null;
  private saveTimer = 0;
  private lastSaved = '';
  /** Another tab or person saved the file since this page loaded or saved it: saves wait for the user's choice. */
  private conflict = false;
  private undoStack: UndoStep[] = [];
  private redoStack: UndoStep[] = [];
  private clipboard: CellJSON[] = [];
  private runs = new Map<string, Cell>(); // execute_request msg_id → cell
  private queue: Cell[] = [];
  private observer: IntersectionObserver;
  private tocTimer = 0;
  private commands = new Map<string, Command>();
  private chord = false;
  private dPressed = 0;
  private resourceTimer = 0;
  private bannerTimer = 0;
  private death!: RuntimeDeath;
  private kernelHandlers: (() => void)[] = [];
  private panel: 'toc' | 'files' | 'variables' | 'secrets' | null = null;
  private filesMounted = false;
  private secrets: { refresh(): void } | null = null;

  constructor(private app: HTMLElement, private doc: DocStore, private me: Me) {
    this.observer = new IntersectionObserver(entries => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        const cell = this.cellByEl(e.target as HTMLElement);
        if (cell) {
          cell.materialize();
          this.observer.unobserve(e.target);
        }
      }
    }, { root: this.scroller, rootMargin: '800px 0px' });
  }

  get path(): string {
    return this.doc.path;
  }
  get serverSettings() {
    return serverSettings;
  }
  kernel(): Kernel.IKernelConnection | null {
    return this.runtime?.kernel ?? null;
  }
  onKernelChanged(cb: (k: Kernel.IKernelConnection | null) => void): () => void {
    return this.runtime.onKernel(cb);
  }
  ensureKernel(): Promise<Kernel.IKernelConnection> {
    return this.runtime.ensure();
  }

  // ---------------------------------------------------------------- open

  async open(prefetch: Promise<NotebookFile> | null = null) {
    this.buildLayout();
    let file;
    try {
      file = await (prefetch ?? this.doc.load());
    } catch (e) {
      clear(this.list);
      this.list.append(h('div.load-error', null, h('h2', { text: 'This notebook could not be opened' }), h('p', { text: errorText(e) }),
        h('a.btn', { href: '/drive', text: 'Back to Drive' })));
      return;
    }
    performance.mark('skylab-loaded');
    this.serverRuns = file.running ?? {};
    this.readOnly = !file.writable;
    const nb = file.content ?? {};
    const live = await this.startCollab();
    if (live) nb.cells = live.nb.cells;
    this.nbMeta = nb.metadata ?? {};
    this.nbFormatMinor = Math.max(nb.nbformat_minor ?? 5, 5);
    let cells: CellJSON[] = nb.cells ?? [];
    const backup = live ? null : this.readBackup(file.lastModified, cells);
    if (backup) {
      cells = backup;
      toast('Restored changes that had not reached the server yet');
    }
    const empty = !cells.length;
    if (empty) cells = [{ cell_type: 'code', source: '' }];
    const frag = document.createDocumentFragment();
    for (const c of cells) {
      const cell = new Cell(c, this);
      this.cells.push(cell);
      frag.append(cell.el);
    }
    this.list.append(frag);
    if (empty) this.collab?.inserted(this.cells[0]); // the server's notebook had none
    // The cells on screen get their editors now; the rest when scrolled near.
    const bottom = this.scroller.getBoundingClientRect().top + this.scroller.clientHeight + 200;
    for (const c of this.cells) {
      if (c.el.getBoundingClientRect().top > bottom) break;
      c.materialize();
    }
    for (const c of this.cells) if (!c.materialized) this.observer.observe(c.el);
    performance.mark('skylab-built');
    this.setTitle();
    if (!this.doc.shareId) noteRecent(this.doc.path);
    if (this.readOnly) this.showReadOnlyBanner();
    this.select(0, false);
    this.updateToc();
    if (live) this.collabStatus(this.readOnly ? 'View only' : 'All changes saved');
    else this.setSaveState(this.readOnly ? 'View only' : backup ? 'Unsaved changes' : 'All changes saved');
    if (this.doc.shareId) this.app.querySelector<HTMLElement>('.share-btn')!.hidden = true;
    if (backup) this.markDirty();
    this.runtime = new Runtime(this.doc.path, this.sessionPath());
    this.death = new RuntimeDeath(this.banner, { reconnect: () => this.runtime.ensure(), changeType: t => this.runtime.changeType(t), currentType: () => this.runtime.type });
    this.runtime.onChange(() => {
      this.renderStatus();
      const s = this.runtime.state;
      this.death.stateChanged(s, this.kernel()?.id ?? null, [...this.runs.values()]);
      if (s === 'restarting' || s === 'dead' || s === 'disconnected') this.resetRuns();
    });
    this.runtime.onKernel(k => this.kernelChanged(k));
    this.renderStatus();
    // Reattach to a runtime this notebook already has (outputs of cells that
    // ran while the tab was closed come with it).
    void this.runtime.reattach().catch(() => false).then(ok => {
      if (!ok) this.clearPending();
    });
    document.addEventListener('keydown', e => this.onKey(e));
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.flush(true);
    });
    window.addEventListener('pagehide', () => this.flush(true));
    window.addEventListener('beforeunload', e => {
      if (this.dirty && !this.readOnly) {
        this.flush(true);
        e.preventDefault();
      }
    });
    (document.body.dataset as any).ready = 'true';
    performance.mark('skylab-ready');
  }

  private sessionPath(): string {
    return this.doc.shareId ? `.shared/${this.doc.shareId}/${this.doc.path}` : this.doc.path;
  }

  private buildLayout() {
    clear(this.app);
    this.registerCommands();
    const c = (id: string): MenuItem => {
      const cmd = this.commands.get(id)!;
      return { label: cmd.label, shortcut: cmd.keys, run: () => void cmd.run(), disabled: cmd.enabled ? () => !cmd.enabled!() : false, id };
    };
    const sep: MenuItem = { separator: true, label: '' };
    const menus = menuBar([
      { label: 'File', items: () => [c('new-notebook'), c('open-drive'), sep, c('rename'), c('save'), c('save-copy'), c('history'), sep, c('download'), c('share')] },
      { label: 'Edit', items: () => [c('undo'), c('redo'), sep, c('copy-cell'), c('cut-cell'), c('paste-cell'), c('delete-cell'), sep, c('clear-outputs'), c('clear-all-outputs')] },
      { label: 'View', items: () => [c('toggle-toc'), c('toggle-files'), c('toggle-variables'), c('palette')] },
      { label: 'Insert', items: () => [c('insert-code'), c('insert-text'), sep, c('to-code'), c('to-markdown')] },
      { label: 'Runtime', items: () => [c('run-all'), c('run-before'), c('run-cell'), c('run-after'), sep, c('interrupt'), c('restart'), c('restart-run-all'), sep, c('change-type'), c('connect'), c('disconnect'), sep, c('terminal')] },
      { label: 'Tools', items: () => [c('palette'), c('shortcuts'), c('notifications')] },
      { label: 'Help', items: () => [c('shortcuts'), { label: 'About Skylab', run: () => void showMessage('Skylab', 'Skylab: notebooks and runtimes on your own machines.') }] },
    ]);
    this.titleInput.addEventListener('keydown', e => {
      if (e.key === 'Enter') this.titleInput.blur();
      if (e.key === 'Escape') {
        this.setTitle();
        this.titleInput.blur();
      }
      e.stopPropagation();
    });
    this.titleInput.addEventListener('change', () => void this.renameTo(this.titleInput.value));
    const shareBtn = h('button.btn.share-btn', { text: 'Share', 'data-cmd': 'share' });
    shareBtn.addEventListener('click', () => void this.commands.get('share')!.run());
    const top = h('header.topbar.nb-top', null,
      logo(),
      h('div.title-block', null, h('div.title-row', null, this.titleInput, this.saveState), menus),
      h('div.spacer'),
      shareBtn,
      userButton(this.me));
    const runAllBtn = h('button.btn.tool', { text: '▶ Run all', 'data-cmd': 'run-all' });
    runAllBtn.addEventListener('click', () => void this.runAll());
    const addCode = h('button.btn.tool', { text: '+ Code', 'data-cmd': 'insert-code' });
    addCode.addEventListener('click', () => this.insert('code', 1, true));
    const addText = h('button.btn.tool', { text: '+ Text', 'data-cmd': 'insert-text' });
    addText.addEventListener('click', () => this.insert('markdown', 1, true));
    const toolbar = h('div.toolbar', { role: 'toolbar', 'aria-label': 'Notebook' }, addCode, addText, runAllBtn, h('div.spacer'), this.statusEl);
    const tocBtn = h('button.side-icon', { 'aria-label': 'Table of contents', title: 'Table of contents', 'data-panel': 'toc' }, icon('toc'));
    tocBtn.addEventListener('click', () => this.togglePanel('toc'));
    const filesBtn = h('button.side-icon', { 'aria-label': 'Files', title: 'Files', 'data-panel': 'files' }, icon('files'));
    filesBtn.addEventListener('click', () => this.togglePanel('files'));
    const varsBtn = h('button.side-icon', { 'aria-label': 'Variables', title: 'Variables', 'data-panel': 'variables' }, icon('vars'));
    varsBtn.addEventListener('click', () => this.togglePanel('variables'));
    const secretsBtn = h('button.side-icon', { 'aria-label': 'Secrets', title: 'Secrets', 'data-panel': 'secrets' }, keyIcon());
    secretsBtn.addEventListener('click', () => this.togglePanel('secrets'));
    const rail = h('nav.rail', { 'aria-label': 'Panels' }, tocBtn, filesBtn, varsBtn, secretsBtn);
    this.sidebar.append(h('div.panel-head'), this.tocEl, this.filesEl, this.varsEl, this.secretsEl);
    this.scroller.append(this.banner, this.list, h('div.add-row', null,
      h('button.btn.tool', { text: '+ Code', onclick: () => this.insertAt('code', this.cells.length, true) }),
      h('button.btn.tool', { text: '+ Text', onclick: () => this.insertAt('markdown', this.cells.length, true) })));
    this.app.append(h('div.nb-page', null, top, toolbar, h('div.nb-body', null, rail, this.sidebar, this.scroller)));
  }

  private togglePanel(p: 'toc' | 'files' | 'variables' | 'secrets') {
    this.panel = this.panel === p ? null : p;
    this.sidebar.hidden = !this.panel;
    document.querySelectorAll('.side-icon').forEach(b => b.classList.toggle('active', (b as HTMLElement).dataset.panel === this.panel));
    (this.sidebar.firstChild as HTMLElement).textContent = this.panel === 'toc' ? 'Table of contents' : this.panel === 'files' ? 'Files' : this.panel === 'variables' ? 'Variables' : this.panel === 'secrets' ? 'Secrets' : '';
    this.varsEl.hidden = this.panel !== 'variables';
    if (this.panel === 'variables' && !this.vars) this.vars = new VariablesPanel(this.varsEl, this.runtime);
    this.vars?.setOpen(this.panel === 'variables');
    this.tocEl.hidden = this.panel !== 'toc';
    this.filesEl.hidden = this.panel !== 'files';
    this.secretsEl.hidden = this.panel !== 'secrets';
    if (this.panel === 'secrets') {
      if (this.secrets) this.secrets.refresh();
      else this.secrets = mountSecretsPanel(this.secretsEl, () => this.sessionPath());
    }
    if (this.panel === 'files' && !this.filesMounted) {
      this.filesMounted = true;
      mountFilesPanel(this.filesEl, this);
    }
    if (this.panel === 'toc') this.updateToc();
  }

  private setTitle() {
    const name = this.doc.path.split('/').pop() || this.doc.path;
    this.titleInput.value = name;
    this.titleInput.readOnly = this.readOnly || !!this.doc.shareId;
    document.title = `${name} - Skylab`;
  }

  private showReadOnlyBanner() {
    const copy = h('button.btn.primary', { text: 'Save a copy in Drive' });
    copy.addEventListener('click', () => void this.saveCopy());
    const ro = h('div.readonly-banner', { role: 'status' }, h('span', { text: 'View only: this notebook was shared with you as a viewer. You can run it, but changes are not saved.' }), copy);
    this.scroller.prepend(ro);
    document.body.classList.add('read-only');
  }

  // ---------------------------------------------------------------- cells

  private cellByEl(el: HTMLElement): Cell | undefined {
    const id = el.dataset.cellId;
    return this.cells.find(c => c.id === id);
  }

  index(cell: Cell): number {
    return this.cells.indexOf(cell);
  }

  select(i: number, scroll = true) {
    if (!this.cells.length) return;
    i = Math.max(0, Math.min(i, this.cells.length - 1));
    this.cells[this.active]?.el.classList.remove('selected');
    this.active = i;
    const el = this.cells[i].el;
    el.classList.add('selected');
    if (scroll) el.scrollIntoView({ block: 'nearest' });
  }

  private commandMode() {
    const cell = this.cells[this.active];
    this.mode = 'command';
    if (cell?.type === 'markdown') cell.finishEdit();
    (document.activeElement as HTMLElement)?.blur?.();
    cell?.el.setAttribute('tabindex', '-1');
    cell?.el.focus({ preventScroll: true });
  }

  private insertAt(type: CellType, at: number, focus: boolean, json?: CellJSON): Cell {
    if (this.collab && !this.collab.writable) return this.cells[this.active]; // a viewer of a live notebook
    const cell = new Cell(json ? { ...json, id: undefined } : { cell_type: type, source: '' }, this);
    this.placeCell(cell, at);
    this.pushUndo({ label: 'insert cell', undo: () => this.removeCell(cell), redo: () => this.placeCell(cell, at) });
    this.markDirty();
    if (focus) {
      this.select(at);
      cell.focusEditor();
    }
    return cell;
  }

  insert(type: CellType, offset: 0 | 1, focus: boolean): Cell {
    return this.insertAt(type, Math.min(this.active + offset, this.cells.length), focus);
  }

  private placeCell(cell: Cell, at: number) {
    at = Math.min(at, this.cells.length);
    this.cells.splice(at, 0, cell);
    const next = this.list.children[at];
    this.list.insertBefore(cell.el, next ?? null);
    cell.materialize();
    this.updateToc();
    this.collab?.inserted(cell);
  }

  private removeCell(cell: Cell) {
    const i = this.index(cell);
    if (i < 0) return;
    this.cells.splice(i, 1);
    cell.el.remove();
    this.collab?.removed(cell);
    if (!this.cells.length) this.placeCell(new Cell({ cell_type: 'code', source: '' }, this), 0);
    this.select(Math.min(i, this.cells.length - 1), false);
    this.updateToc();
  }

  deleteCells(cells = [this.cells[this.active]]) {
    if (this.collab && !this.collab.writable) return;
    const placed = cells.map(c => ({ c, i: this.index(c) })).filter(x => x.i >= 0);
    for (const { c } of placed) this.removeCell(c);
    const step = {
      label: 'delete cell',
      undo: () => {
        for (const { c, i } of placed) this.placeCell(c, i);
        this.select(placed[0].i);
      },
      redo: () => placed.forEach(({ c }) => this.removeCell(c)),
    };
    this.pushUndo(step);
    this.markDirty();
    toast(placed.length > 1 ? `${placed.length} cells deleted` : 'Cell deleted', { label: 'Undo', run: () => this.undo() });
  }

  moveCell(dir: -1 | 1) {
    if (this.collab && !this.collab.writable) return;
    const i = this.active;
    const j = i + dir;
    if (j < 0 || j >= this.cells.length) return;
    const swap = (a: number, b: number) => {
      const cell = this.cells[a];
      this.cells.splice(a, 1);
      this.cells.splice(b, 0, cell);
      cell.el.remove();
      this.list.insertBefore(cell.el, this.list.children[b] ?? null);
      this.select(b);
      this.updateToc();
      this.collab?.moved(cell);
    };
    swap(i, j);
    this.pushUndo({ label: 'move cell', undo: () => swap(j, i), redo: () => swap(i, j) });
    this.markDirty();
  }

  changeType(t: CellType) {
    if (this.collab && !this.collab.writable) return;
    const cell = this.cells[this.active];
    const old = cell.type;
    if (old === t) return;
    const outputs = cell.toJSON().outputs;
    cell.setType(t);
    this.pushUndo({
      label: 'change cell type',
      undo: () => {
        cell.setType(old);
        if (outputs) cell.outputs.set(outputs);
      },
      redo: () => cell.setType(t),
    });
    this.markDirty();
    this.updateToc();
  }

  private pushUndo(s: UndoStep) {
    this.undoStack.push(s);
    if (this.undoStack.length > 200) this.undoStack.shift();
    this.redoStack = [];
  }

  undo() {
    const s = this.undoStack.pop();
    if (!s) return void toast('Nothing to undo');
    s.undo();
    this.redoStack.push(s);
    this.markDirty();
  }

  redo() {
    const s = this.redoStack.pop();
    if (!s) return;
    s.redo();
    this.undoStack.push(s);
    this.markDirty();
  }

  // ---------------------------------------------------------------- CellHost

  outputContext(cell: Cell): OutputContext {
    const k = this.kernel();
    return { kernelId: k?.id ?? null, kernel: k, path: this.doc.path, cellId: cell.id, serverSettings };
  }

  changed(cell: Cell, what: 'source' | 'outputs' | 'meta') {
    if (what === 'meta') this.collab?.metaChanged(cell);
    this.markDirty();
    if (what === 'source' && cell.type === 'markdown') {
      clearTimeout(this.tocTimer);
      this.tocTimer = window.setTimeout(() => this.updateToc(), 400);
    }
  }

  focused(cell: Cell) {
    this.mode = 'edit';
    const i = this.index(cell);
    if (i !== this.active) this.select(i, false);
  }

  blurred(cell: Cell) {
    if (cell.type === 'markdown' && cell.editing) {
      setTimeout(() => {
        if (!cell.hasFocus() && this.cells[this.active] !== cell) cell.finishEdit();
      }, 0);
    }
  }

  selectCell(cell: Cell) {
    const i = this.index(cell);
    if (i >= 0 && i !== this.active) {
      const prev = this.cells[this.active];
      this.select(i, false);
      if (prev?.type === 'markdown' && prev.editing) prev.finishEdit();
    }
  }

  edge(cell: Cell, dir: -1 | 1): boolean {
    const i = this.index(cell) + dir;
    if (i < 0 || i >= this.cells.length) return false;
    if (cell.type === 'markdown') cell.finishEdit();
    this.select(i);
    const next = this.cells[i];
    if (next.type === 'markdown') {
      this.commandMode();
      return true;
    }
    next.focusEditor(dir === 1 ? 'start' : 'end');
    return true;
  }

  runClicked(cell: Cell) {
    this.select(this.index(cell), false);
    if (cell.runState !== 'idle') return void this.runtime.interrupt();
    void this.run([cell]);
  }

  keys(cell: Cell): KeyBinding[] {
    return [
      { key: 'Shift-Enter', run: () => (this.runAndAdvance(cell), true) },
      { key: 'Mod-Enter', run: () => (this.runInPlace(cell), true) },
      { key: 'Alt-Enter', run: () => (this.runAndInsert(cell), true) },
      { key: 'Escape', run: () => (this.commandMode(), true) },
      { key: 'Mod-s', run: () => (void this.saveNow(), true) },
    ];
  }

  // ---------------------------------------------------------------- running

  private runAndAdvance(cell: Cell) {
    const i = this.index(cell);
    this.run([cell]);
    if (i === this.cells.length - 1) this.insertAt('code', i + 1, true);
    else {
      this.select(i + 1);
      const next = this.cells[i + 1];
      if (next.type === 'code') next.focusEditor('start');
      else this.commandMode();
    }
  }

  private runInPlace(cell: Cell) {
    this.run([cell]);
    if (cell.type === 'markdown') this.commandMode();
  }

  private runAndInsert(cell: Cell) {
    this.run([cell]);
    this.insertAt('code', this.index(cell) + 1, true);
  }

  /** Renders Markdown cells, queues code cells for the kernel (in order). */
  run(cells: Cell[]) {
    for (const cell of cells) {
      if (cell.type === 'markdown') {
        cell.finishEdit();
        continue;
      }
      if (cell.type !== 'code' || cell.runState !== 'idle') continue;
      cell.setRunState('queued');
      this.queue.push(cell);
    }
    void this.pump();
  }

  private pumping = false;

  private async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length) {
        let k: Kernel.IKernelConnection;
        try {
          k = await this.runtime.ensure();
        } catch (e) {
          for (const c of this.queue) c.setRunState('idle');
          this.queue = [];
          toast('Could not connect to a runtime: ' + errorText(e));
          return;
        }
        const cell = this.queue.shift();
        if (!cell) break;
        if (cell.runState !== 'queued') continue;
        this.execute(k, cell);
      }
    } finally {
      this.pumping = false;
    }
  }

  private execute(k: Kernel.IKernelConnection, cell: Cell) {
    cell.ensureOutputs();
    cell.outputs.clear();
    cell.lastDuration = null;
    const code = cell.getSource();
    const future = k.requestExecute({ code, allow_stdin: true, stop_on_error: true, store_history: true }, false, { cellId: cell.id });
    const msgId = future.msg.header.msg_id;
    this.runs.set(msgId, cell);
    this.ownRuns.add(msgId);
    if (this.ownRuns.size > 1000) this.ownRuns.delete(this.ownRuns.values().next().value!);
    this.savePending();
    cell.setRunState('queued');
    future.onStdin = msg => this.onStdin(k, cell, msg as KernelMessage.IInputRequestMsg);
    future.onReply = reply => {
      const c = reply.content as any;
      if (c.execution_count != null) cell.executionCount = c.execution_count;
      cell.updateGutter();
      if (c.status === 'aborted') {
        cell.setRunState('idle');
        cell.lastDuration = null;
        cell.updateGutter();
      }
      if (c.status === 'error') {
        // Jupyter aborts the queued cells after an error: do the same here.
        for (const q of this.queue) q.setRunState('idle');
        this.queue = [];
      }
    };
    future.done.catch(() => undefined).then(() => {
      if (this.runs.get(msgId) === cell) this.finish(msgId, cell);
      future.dispose();
    });
    this.markDirty();
  }

  private finish(msgId: string, cell: Cell) {
    this.runs.delete(msgId);
    this.savePending();
    const started = cell.runState === 'running' ? cell.startedAt : 0;
    if (cell.runState !== 'idle') cell.setRunState('idle');
    if (started) cellFinished(Date.now() - started, `Cell ${cell.executionCount != null ? `[${cell.executionCount}]` : this.index(cell) + 1}`, this.doc.path.split('/').pop() || this.doc.path);
    cell.updateGutter();
    this.markDirty();
  }

  private onStdin(k: Kernel.IKernelConnection, cell: Cell, msg: KernelMessage.IInputRequestMsg) {
    const { prompt, password } = msg.content;
    const reply = (value: string) => k.sendInputReply({ status: 'ok', value } as any, msg.header as any);
    const special = handleStdin({ prompt, password, outputEl: cell.outputs.el, context: this.outputContext(cell) });
    if (special) {
      special.then(reply, e => reply(''));
      return;
    }
    const input = h('input.stdin-input', { type: password ? 'password' : 'text', 'aria-label': prompt || 'Input', autocomplete: 'off' });
    const box = h('div.stdin', null, h('span.stdin-prompt', { text: prompt }), input);
    cell.outputs.el.append(box);
    cell.outputs.el.classList.add('has-output');
    input.addEventListener('keydown', e => {
      e.stopPropagation();
      if (e.key !== 'Enter') return;
      e.preventDefault();
      const value = input.value;
      box.remove();
      cell.outputs.add({ output_type: 'stream', name: 'stdout', text: prompt + (password ? '········' : value) + '\n' });
      reply(value);
    });
    setTimeout(() => input.focus(), 0);
  }

  private kernelChanged(k: Kernel.IKernelConnection | null) {
    for (const off of this.kernelHandlers) off();
    this.kernelHandlers = [];
    clearInterval(this.resourceTimer);
    if (!k) {
      // Requests sent to the old kernel are over; cells still waiting in the
      // queue run on the next one.
      for (const [, cell] of this.runs) cell.setRunState('idle');
      this.runs.clear();
      this.savePending();
      return;
    }
    const onIopub = (_: unknown, msg: KernelMessage.IIOPubMessage) => this.onIopub(msg);
    k.iopubMessage.connect(onIopub);
    const onUnhandled = (_: unknown, msg: KernelMessage.IMessage) => {
      const cell = this.runs.get((msg.parent_header as any)?.msg_id);
      const c = msg.content as any;
      if (cell && msg.header.msg_type === 'execute_reply' && c.execution_count != null) {
        cell.executionCount = c.execution_count;
        cell.updateGutter();
      }
    };
    k.unhandledMessage.connect(onUnhandled);
    this.kernelHandlers.push(() => {
      k.iopubMessage.disconnect(onIopub);
      k.unhandledMessage.disconnect(onUnhandled);
    });
    this.restorePending();
    this.pollResources();
    this.resourceTimer = window.setInterval(() => this.pollResources(), 5000);
  }

  private onIopub(msg: KernelMessage.IIOPubMessage) {
    const type = msg.header.msg_type as string;
    const content = msg.content as any;
    if (type === 'skylab_runtime_event') {
      this.death.event(content);
      if (content.event === 'stopped') return;
      return this.runtimeEvent(content);
    }
    if (type === 'update_display_data') {
      const id = content.transient?.display_id;
      if (id) for (const c of this.cells) if (c.outputs.updateDisplay(id, content.data, content.metadata ?? {})) this.changed(c, 'outputs');
      return;
    }
    const parentId = (msg.parent_header as any)?.msg_id;
    const cell = parentId ? this.runs.get(parentId) : undefined;
    if (!cell) return;
    switch (type) {
      case 'status':
        if (content.execution_state === 'busy') cell.setRunState('running');
        else if (content.execution_state === 'idle') this.finish(parentId, cell);
        return;
      case 'execute_input':
        if (content.execution_count != null) cell.executionCount = content.execution_count;
        if (cell.runState !== 'running') cell.setRunState('running');
        cell.updateGutter();
        return;
      case 'stream':
        cell.ensureOutputs();
        cell.outputs.add({ output_type: 'stream', name: content.name, text: content.text });
        break;
      case 'display_data':
      case 'execute_result':
      case 'error':
        cell.ensureOutputs();
        cell.outputs.add({ output_type: type, ...content });
        break;
      case 'clear_output':
        cell.outputs.clear(!!content.wait);
        break;
      default:
        return;
    }
    this.changed(cell, 'outputs');
  }

  private pendingKey() {
    return 'skylab.pending.' + this.sessionPath();
  }

  /** Remembers which requests are running (for a tab that is reopened). */
  private savePending() {
    const m: Record<string, string> = {};
    for (const [id, c] of this.runs) m[id] = c.id;
    if (Object.keys(m).length) localStorage.setItem(this.pendingKey(), JSON.stringify({ at: Date.now(), runs: m }));
    else localStorage.removeItem(this.pendingKey());
  }

  /** Cells the server was still recording into when the notebook was loaded
   * (run from another tab, computer or client): shown as running, and their
   * further output rendered, like this tab's own pending requests. */
  private serverRuns: Record<string, string> = {};

  private restorePending() {
    let p: { at: number; runs: Record<string, string> } | null = null;
    try {
      p = JSON.parse(localStorage.getItem(this.pendingKey()) || 'null');
    } catch {
      p = null;
    }
    if (Object.keys(this.serverRuns).length) {
      p = { at: p?.at ?? Date.now(), runs: { ...this.serverRuns, ...(p?.runs ?? {}) } };
      this.serverRuns = {};
    }
    if (!p) return;
    for (const [msgId, cellId] of Object.entries(p.runs)) {
      const cell = this.cells.find(c => c.id === cellId);
      if (!cell || this.runs.has(msgId)) continue;
      this.runs.set(msgId, cell);
      cell.ensureOutputs();
      cell.setRunState('running');
    }
    // Once the kernel is idle, whatever was running has finished: stop
    // waiting for requests whose end the server could not replay.
    const restored = new Set(Object.keys(p.runs));
    let idleChecks = 0;
    const timer = window.setInterval(() => {
      const k = this.kernel();
      const left = [...this.runs].filter(([id]) => restored.has(id));
      if (!k || !left.length) return clearInterval(timer);
      idleChecks = k.status === 'idle' ? idleChecks + 1 : 0;
      if (idleChecks >= 2) {
        for (const [id, cell] of left) this.finish(id, cell);
        clearInterval(timer);
      }
    }, 3000);
  }

  private clearPending() {
    localStorage.removeItem(this.pendingKey());
  }

  private resetRuns() {
    for (const [, cell] of this.runs) cell.setRunState('idle');
    this.runs.clear();
    this.savePending();
  }

  async runAll() {
    this.run(this.cells);
  }

  // ---------------------------------------------------------------- runtime UI

  private renderStatus() {
    const rt = this.runtime;
    clear(this.statusEl);
    const s = rt.state;
    let label: string;
    let cls = s as string;
    if (s === 'disconnected') label = 'Connect';
    else if (s === 'starting' && rt.waitReason) label = rt.waitReason;
    else if (s === 'connecting' || s === 'starting' || s === 'unknown') label = 'Connecting…';
    else if (s === 'queued') label = `Waiting for a GPU — position ${rt.queuePosition ?? '?'} in queue`;
    else if (s === 'busy') label = 'Busy';
    else if (s === 'restarting') label = 'Restarting…';
    else if (s === 'dead') label = 'Runtime stopped — Reconnect';
    else label = 'Connected';
    if (s === 'idle' || s === 'busy') cls = 'connected ' + s;
    const main = h('button.status-btn', { class: `status-btn ${cls}`, 'aria-label': `Runtime: ${label}`, 'data-state': s },
      h('span.dot', { 'aria-hidden': 'true' }),
      h('span.status-label', { text: label }),
      h('span.meter', { 'aria-hidden': 'true' }));
    main.addEventListener('click', () => {
      if (s === 'disconnected' || s === 'dead') void this.runtime.ensure().catch(e => toast(errorText(e)));
      else this.runtimeMenu(main);
    });
    const more = h('button.status-more', { 'aria-label': 'Runtime options', 'aria-haspopup': 'menu', text: '▾' });
    more.addEventListener('click', () => this.runtimeMenu(more));
    this.statusEl.append(main, more);
    if (s === 'idle' || s === 'busy') this.renderMeter();
    if (rt.type && (s === 'idle' || s === 'busy')) main.title = `Runtime type: ${rt.type}`;
  }

  private runtimeMenu(anchor: HTMLElement) {
    const c = (id: string): MenuItem => {
      const cmd = this.commands.get(id)!;
      return { label: cmd.label, shortcut: cmd.keys, run: () => void cmd.run(), disabled: cmd.enabled ? () => !cmd.enabled!() : false, id };
    };
    const items = [c('connect'), c('interrupt'), c('restart'), c('change-type'), c('disconnect'), { separator: true, label: '' }, c('run-all')];
    const menu = showMenu(items, anchor);
    const res = h('div.menu-resources', { text: 'Resources: loading…' });
    menu.prepend(res);
    void api('GET', '/api/skylab/resources').then((r: any) => {
      res.textContent = '';
      res.append(resourceSummary(r, this.kernel()?.id));
    }).catch(() => (res.textContent = ''));
  }

  private resources: any = null;

  private async pollResources() {
    if (!this.kernel() || document.visibilityState === 'hidden') return;
    try {
      this.resources = await api('GET', '/api/skylab/resources');
      this.renderMeter();
    } catch {
      /* transient */
    }
  }

  private renderMeter() {
    const r = this.resources;
    const meter = this.statusEl.querySelector('.meter');
    if (!meter || !r || !this.kernel()) return;
    clear(meter);
    const u = runtimeUsage(r, this.kernel()?.id);
    const frac = (x: Amount) => (x.total ? Math.min(1, x.used / x.total) : 0);
    meter.append(bar('RAM', frac(u.ram)), bar('Disk', frac(u.disk)));
    if (u.gpu) meter.append(bar('GPU', u.gpu.total ? frac(u.gpu) : u.gpuUtilization / 100));
    (this.statusEl.firstChild as HTMLElement).title =
      `RAM ${formatBytes(u.ram.used)} / ${formatBytes(u.ram.total)} · Disk ${formatBytes(u.disk.used)} / ${formatBytes(u.disk.total)}` +
      (u.gpu?.total ? ` · GPU ${formatBytes(u.gpu.used)} / ${formatBytes(u.gpu.total)}` : '') +
      (this.runtime.type ? ` · ${this.runtime.type.toUpperCase()} runtime` : '');
  }

  private runtimeEvent(c: any) {
    clearInterval(this.bannerTimer);
    const end = Date.now() + (Number(c.seconds_left) || 0) * 1000;
    clear(this.banner);
    this.banner.hidden = false;
    this.banner.className = 'banner runtime-warning';
    const msg = h('span.banner-text');
    const why = c.reason === 'idle' ? 'because it has been idle'
      : c.reason === 'quota' ? 'because your weekly GPU quota runs out (see Usage)' : 'because it reached its maximum lifetime';
    const tick = () => {
      const left = Math.max(0, Math.round((end - Date.now()) / 1000));
      const mm = Math.floor(left / 60);
      const ss = String(left % 60).padStart(2, '0');
      msg.textContent = c.event === 'expiring' || left === 0
        ? `This runtime is being shut down ${why}. Save your work; files in /content will be lost.`
        : `This runtime will be disconnected in ${mm}:${ss} ${why}.` + (c.reason === 'idle' ? ' Run a cell to keep it.' : ' Save checkpoints to /content/drive.');
    };
    tick();
    this.bannerTimer = window.setInterval(tick, 1000);
    const dismiss = h('button.btn.link', { text: 'Dismiss' });
    dismiss.addEventListener('click', () => {
      this.banner.hidden = true;
      clearInterval(this.bannerTimer);
    });
    this.banner.append(h('span.banner-icon', { text: '!', 'aria-hidden': 'true' }), msg, dismiss);
  }

  private async changeRuntimeType() {
    let types;
    try {
      types = await runtimeTypes();
    } catch (e) {
      return void toast(errorText(e));
    }
    const select = h('select.text', { 'aria-label': 'Runtime type' });
    for (const t of types.types) {
      const desc = [t.gpus ? `${t.gpus} GPU` : null, t.cpus ? `${t.cpus} CPU` : null, t.memory ? formatBytes(t.memory) + ' RAM' : null].filter(Boolean).join(', ');
      const o = h('option', { value: t.name, text: `${t.display_name || t.name}${desc ? ' — ' + desc : ''}` });
      if ((this.runtime.type || types.types.find(x => x.default)?.name) === t.name) o.selected = true;
      select.append(o);
    }
    const gpuInfo = types.gpus.total ? `GPUs: ${types.gpus.free} of ${types.gpus.total} free${types.gpus.queued ? `, ${types.gpus.queued} waiting` : ''}.` : 'This server has no GPUs.';
    const body = h('div', null, h('label.field', null, h('span', { text: 'Hardware accelerator' }), select), h('p.hint', { text: gpuInfo }),
      h('p.hint', { text: 'Changing the type starts a new runtime; variables and files in /content are lost.' }));
    const d = openDialog('Change runtime type', body, [{ label: 'Cancel', value: 'cancel' }, { label: 'Save', value: 'ok', primary: true }], { initialFocus: select });
    if ((await d.result) !== 'ok') return;
    const type = select.value;
    if (type === this.runtime.type && this.kernel()) return;
    try {
      await this.runtime.changeType(type);
      toast(`Connected to a ${type} runtime`);
    } catch (e) {
      toast('Could not start the runtime: ' + errorText(e));
    }
  }

  // ---------------------------------------------------------------- co-editing (./collab.ts)

  private async startCollab(): Promise<any | null> {
    if (new URLSearchParams(location.search).get('collab') === '0') return null;
    const s = new CollabSession(this, CollabSession.urlFor(this.doc));
    try {
      const init = await s.start();
      this.collab = s;
      this.readOnly = !init.writable;
      return init;
    } catch {
      return null; // no live service: the page loads and saves the file itself
    }
  }
  collabEditor(cell: Cell) {
    return this.collab ? { source: this.collab.source(cell), extensions: this.collab.extensions(cell) } : null;
  }
  typeChanged(cell: Cell) {
    this.collab?.typed(cell);
  }
  collabCells() {
    return this.cells;
  }
  collabInsert(json: CellJSON, index: number): Cell {
    const cell = new Cell(json, this);
    this.placeCell(cell, index);
    return cell;
  }
  collabRemove(cell: Cell) {
    this.removeCell(cell);
    cell.destroy();
  }
  collabMove(cell: Cell, index: number) {
    this.cells.splice(this.index(cell), 1);
    this.cells.splice(index, 0, cell);
    const focused = cell.hasFocus(), sel = cell.editor?.state.selection;
    cell.el.remove();
    this.list.insertBefore(cell.el, this.list.children[index] ?? null);
    if (focused) {
      cell.editor!.focus(); // moving the element blurred it; the user keeps typing
      if (sel) cell.editor!.dispatch({ selection: sel });
    }
    this.updateToc();
  }
  collabType(cell: Cell, t: CellType) {
    cell.setType(t);
    this.updateToc();
  }
  collabMeta(cell: Cell, metadata: Record<string, unknown>) {
    cell.setMetadata(metadata);
  }
  collabNotebookMeta(metadata: Record<string, unknown>) {
    this.nbMeta = metadata;
  }
  private ownRuns = new Set<string>(); // execute_request msg_ids this page sent (bounded)
  collabOutputs(cell: Cell, outputs: Output[], count: number | null, running: boolean, msgId: string) {
    // This page's own runs show what its kernel connection delivered (widgets, downloads).
    if (this.ownRuns.has(msgId) || [...this.runs.values()].includes(cell)) return;
    cell.ensureOutputs();
    cell.outputs.set(outputs);
    cell.executionCount = count;
    if ((cell.runState === 'running') !== running) cell.setRunState(running ? 'running' : 'idle');
    cell.updateGutter();
  }
  collabReadOnly(readOnly: boolean) {
    this.readOnly = readOnly;
  }
  collabStatus(t: string) {
    this.saveState.textContent = t;
    this.saveState.dataset.state = t === 'All changes saved' || t === 'View only' ? 'saved' : 'dirty';
  }

  // ---------------------------------------------------------------- saving

  markDirty() {
    if (this.readOnly || this.collab) return; // live: the server saves
    this.changeSeq++;
    this.scheduleBackup();
    const now = Date.now();
    if (!this.dirty) {
      this.dirty = true;
      this.dirtySince = now;
      this.setSaveState('Unsaved changes');
    }
    // Saves 1 s after the last change, and at least every 5 s while changes go on.
    const due = Math.min(now + 1000, this.dirtySince + 5000);
    clearTimeout(this.saveTimer);
    this.saveTimer = window.setTimeout(() => {
      this.saveTimer = 0;
      void this.saveNow();
    }, Math.max(0, due - now));
  }


  private setSaveState(s: string) {
    this.saveState.textContent = s;
    this.saveState.dataset.state = s === 'All changes saved' ? 'saved' : s.startsWith('Saving') ? 'saving' : s.startsWith('Save failed') ? 'failed' : 'dirty';
  }

  toJSON() {
    const meta = { ...this.nbMeta };
    if (!meta.kernelspec) meta.kernelspec = { name: 'python3', display_name: 'Python 3', language: 'python' };
    if (!meta.language_info) meta.language_info = { name: 'python' };
    return { cells: this.cells.map(c => c.toJSON()), metadata: meta, nbformat: 4, nbformat_minor: this.nbFormatMinor };
  }

  async saveNow(): Promise<void> {
    if (this.readOnly) return;
    clearTimeout(this.saveTimer);
    this.saveTimer = 0;
    if (this.saving) {
      await this.saving;
      if (this.dirty) return this.saveNow();
      return;
    }
    if (!this.dirty) return;
    const seq = this.changeSeq;
    this.dirtySince = Date.now(); // changes from now on wait at most 5 s for the next save
    this.setSaveState('Saving…');
    this.saving = (async () => {
      try {
        if (await this.changedElsewhere()) return;
        this.lastSaved = await this.doc.save(this.toJSON());
        if (seq === this.changeSeq) {
          this.dirty = false;
          this.setSaveState('All changes saved');
          this.dropBackup();
        } else {
          this.setSaveState('Unsaved changes');
        }
      } catch (e: any) {
        const status = e?.response?.status ?? e?.status;
        if (status === 403 && this.doc.shareId) {
          this.readOnly = true;
          this.showReadOnlyBanner();
        }
        this.setSaveState('Save failed — retrying');
        this.writeBackup();
        clearTimeout(this.saveTimer);
        this.saveTimer = window.setTimeout(() => void this.saveNow(), 5000);
      }
    })();
    await this.saving;
    this.saving = null;
    if (this.dirty && seq !== this.changeSeq && !this.saveTimer) {
      this.changeSeq--;
      this.markDirty();
    }
  }

  /**
   * Whether the file on the server is newer than what this page loaded or
   * last saved (another tab, a collaborator with edit rights, a restore):
   * then nothing is overwritten silently. The user chooses: keep theirs
   * (reload), overwrite with this page's version, or save this page's
   * version as a copy. Autosave waits meanwhile; the local backup keeps
   * every keystroke.
   */
  private async changedElsewhere(): Promise<boolean> {
    if (this.conflict) {
      this.setSaveState('Changed elsewhere — not saved');
      return true;
    }
    const base = this.lastSaved || this.loadedAt;
    if (!base) return false;
    let now = '';
    try {
      now = await this.doc.modified();
    } catch {
      return false; // the save itself reports what is wrong
    }
    if (!now || new Date(now).getTime() <= new Date(base).getTime() + 1) return false;
    this.conflict = true;
    this.writeBackup();
    this.setSaveState('Changed elsewhere — not saved');
    void this.resolveConflict(now);
    return true;
  }

  private async resolveConflict(theirs: string) {
    const when = new Date(theirs).toLocaleTimeString();
    const d = openDialog('This notebook changed elsewhere',
      `“${this.doc.path}” was saved from another tab or by someone else at ${when}, after you opened it. ` +
      'Your changes here are not saved yet.',
      [{ label: 'Save mine as a copy', value: 'copy' }, { label: 'Reload theirs', value: 'reload' },
        { label: 'Overwrite with mine', value: 'overwrite', primary: true }]);
    const choice = await d.result;
    if (choice === 'reload') {
      this.dirty = false;
      this.dropBackup();
      location.reload();
      return;
    }
    if (choice === 'copy') {
      try {
        const dir = this.doc.path.includes('/') ? this.doc.path.slice(0, this.doc.path.lastIndexOf('/') + 1) : '';
        const stem = this.doc.path.slice(dir.length).replace(/\.ipynb$/, '');
        const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
        const m = await contents.save(`${dir}${stem} (my changes ${stamp}).ipynb`, { type: 'notebook', format: 'json', content: this.toJSON() as any });
        toast(`Your version is saved as ${m.name}`, { label: 'Open', run: () => window.open(notebookUrl(m.path), '_blank') });
        this.dirty = false;
        this.dropBackup();
        location.reload();
      } catch (e) {
        toast('Could not save a copy: ' + errorText(e));
        this.conflict = false; // asks again at the next save
      }
      return;
    }
    if (choice === 'overwrite') {
      this.lastSaved = theirs; // this page has now seen their version
      this.conflict = false;
      await this.saveNow();
      return;
    }
    this.conflict = false; // dismissed: asks again at the next save
    this.setSaveState('Unsaved changes');
  }

  /** The page goes away: send what is unsaved (keepalive) and keep a local copy. */
  private flush(leaving: boolean) {
    if (!this.dirty || this.readOnly) return;
    this.writeBackup();
    if (this.conflict) return; // the local copy only: never overwrite their version unasked
    if (leaving) {
      const content = this.toJSON();
      const size = JSON.stringify(content).length;
      if (size < 60000 && !this.doc.shareId) void this.doc.save(content, { keepalive: true });
      else void this.saveNow();
    }
  }

  private backupKey() {
    return 'skylab.backup.' + this.sessionPath();
  }

  /**
   * Every keystroke also lands in localStorage (sources and cell order only,
   * a moment after typing stops), so that a crash, a lost network or a
   * closed tab loses nothing the server had not saved yet.
   */
  private writeBackup() {
    try {
      const cells = this.cells.map(c => ({ id: c.id, cell_type: c.type, source: c.getSource() }));
      localStorage.setItem(this.backupKey(), JSON.stringify({ base: this.lastSaved || this.loadedAt, at: Date.now(), cells }));
    } catch {
      /* storage full: the server save is still retried */
    }
  }

  private backupTimer = 0;

  private scheduleBackup() {
    clearTimeout(this.backupTimer);
    this.backupTimer = window.setTimeout(() => {
      if (this.dirty) this.writeBackup();
    }, 400);
  }

  private loadedAt = '';

  /** The backup merged into the file's cells (outputs from the file), when it is newer. */
  private readBackup(lastModified: string, fileCells: CellJSON[]): CellJSON[] | null {
    this.loadedAt = lastModified;
    try {
      const b = JSON.parse(localStorage.getItem(this.backupKey()) || 'null');
      if (!b) return null;
      // Only if the file did not change on the server since the backup's base.
      if (!b.base || new Date(b.base).getTime() < new Date(lastModified).getTime() - 1) {
        localStorage.removeItem(this.backupKey());
        return null;
      }
      const byId = new Map(fileCells.map(c => [c.id, c]));
      const merged: CellJSON[] = b.cells.map((c: CellJSON) => {
        const f = byId.get(c.id);
        return f && f.cell_type === c.cell_type ? { ...f, source: c.source } : { id: c.id, cell_type: c.cell_type, source: c.source };
      });
      const same = merged.length === fileCells.length && merged.every((c, i) => c.id === fileCells[i].id && text(c.source) === text(fileCells[i].source));
      if (same) {
        localStorage.removeItem(this.backupKey());
        return null;
      }
      return merged;
    } catch {
      return null;
    }
  }

  private dropBackup() {
    localStorage.removeItem(this.backupKey());
  }

  private async renameTo(name: string) {
    name = name.trim();
    const old = this.doc.path;
    if (!name || name === old.split('/').pop()) return this.setTitle();
    if (!name.endsWith('.ipynb')) name += '.ipynb';
    if (name.includes('/')) {
      toast('A name cannot contain “/”');
      return this.setTitle();
    }
    try {
      await this.saveNow();
      const oldPending = this.pendingKey();
      const oldClient = 'skylab.client.' + this.sessionPath();
      this.doc = await this.doc.rename(name);
      history.replaceState(null, '', notebookUrl(this.doc.path));
      forgetRecent(old, this.doc.path);
      const client = localStorage.getItem(oldClient);
      if (client) localStorage.setItem('skylab.client.' + this.sessionPath(), client);
      const pending = localStorage.getItem(oldPending);
      if (pending) localStorage.setItem(this.pendingKey(), pending);
      if (this.runtime.session) {
        await api('PATCH', `/api/sessions/${this.runtime.session.id}`, { path: this.doc.path, name }).catch(() => undefined);
      }
      this.runtime.path = this.doc.path;
      this.runtime.sessionPath = this.sessionPath();
      this.setTitle();
      toast(`Renamed to ${name}`);
    } catch (e) {
      toast('Rename failed: ' + errorText(e));
      this.setTitle();
    }
  }

  private async saveCopy() {
    try {
      let m: any;
      if (this.doc.shareId) {
        m = await api('POST', `/api/skylab/shared/${this.doc.shareId}/copy`, {});
      } else {
        await this.saveNow();
        const dir = this.doc.path.includes('/') ? this.doc.path.slice(0, this.doc.path.lastIndexOf('/')) : '';
        m = await contents.copy(this.doc.path, dir);
      }
      toast(`Saved a copy: ${m.name}`, { label: 'Open', run: () => window.open(notebookUrl(m.path), '_blank') });
    } catch (e) {
      toast('Could not save a copy: ' + errorText(e));
    }
  }

  // ---------------------------------------------------------------- TOC

  private updateToc() {
    if (this.panel !== 'toc') return;
    clear(this.tocEl);
    const list = h('ol.toc-list');
    for (const cell of this.cells) {
      if (cell.type !== 'markdown') continue;
      for (const hd of headings(cell.getSource())) {
        const a = h('button.toc-item', { text: hd.text, style: { paddingLeft: `${8 + (hd.level - 1) * 14}px` } });
        a.addEventListener('click', () => {
          cell.materialize();
          this.select(this.index(cell));
          cell.el.scrollIntoView({ block: 'start', behavior: 'smooth' });
        });
        list.append(h('li', null, a));
      }
    }
    if (!list.children.length) list.append(h('li.toc-empty', { text: 'Add headings (# Title) in text cells to build a table of contents.' }));
    this.tocEl.append(list);
  }

  // ---------------------------------------------------------------- commands

  private registerCommands() {
    const add = (id: string, label: string, run: () => void | Promise<void>, keys?: string, enabled?: () => boolean) =>
      this.commands.set(id, { id, label, run, keys, enabled });
    const cur = () => this.cells[this.active];
    const connected = () => !!this.kernel();
    add('new-notebook', 'New notebook', async () => {
      const m = await contents.newUntitled({ path: '', type: 'notebook' });
      window.open(notebookUrl(m.path), '_blank');
    });
    add('open-drive', 'Open Drive', () => void (location.href = '/drive'));
    add('rename', 'Rename', () => {
      this.titleInput.focus();
      this.titleInput.select();
    }, undefined, () => !this.readOnly && !this.doc.shareId);
    add('save', 'Save', () => this.saveNow(), `${MOD}+S`, () => !this.readOnly);
    add('save-copy', 'Save a copy in Drive', () => this.saveCopy());
    add('history', 'Revision history', () => openRevisionHistory(this.doc.path, () => location.reload()), undefined, () => !this.doc.shareId);
    add('download', 'Download .ipynb', () => {
      const blob = new Blob([JSON.stringify(this.toJSON(), null, 1)], { type: 'application/x-ipynb+json' });
      const a = h('a', { href: URL.createObjectURL(blob), download: this.doc.path.split('/').pop() });
      document.body.append(a);
      a.click();
      a.remove();
    });
    add('share', 'Share', () => openShareDialog(this.doc.path), undefined, () => !this.doc.shareId);
    add('undo', 'Undo cell operation', () => this.undo(), `${MOD}+M Z`);
    add('redo', 'Redo cell operation', () => this.redo());
    add('copy-cell', 'Copy cell', () => void (this.clipboard = [cur().toJSON()]), 'C');
    add('cut-cell', 'Cut cell', () => {
      this.clipboard = [cur().toJSON()];
      this.deleteCells();
    }, 'X');
    add('paste-cell', 'Paste cell below', () => {
      for (const [n, j] of this.clipboard.entries()) this.insertAt(j.cell_type, this.active + 1 + n, false, j);
      this.select(this.active + 1);
    }, 'V', () => this.clipboard.length > 0);
    add('delete-cell', 'Delete cell', () => this.deleteCells(), `${MOD}+M D`);
    add('clear-outputs', 'Clear cell output', () => {
      cur().outputs.clear();
      this.markDirty();
    });
    add('clear-all-outputs', 'Clear all outputs', () => {
      for (const c of this.cells) {
        if (c.type !== 'code') continue;
        c.materialize();
        c.outputs.clear();
        c.executionCount = null;
        c.updateGutter();
      }
      this.markDirty();
    });
    add('toggle-toc', 'Table of contents', () => this.togglePanel('toc'));
    add('toggle-files', 'Files', () => this.togglePanel('files'));
    add('toggle-variables', 'Variables', () => this.togglePanel('variables'));
    add('terminal', 'Open terminal', () => this.runtime.ensure().then(k => openTerminal(k.id)).catch(e => toast(errorText(e))));
    add('palette', 'Command palette', () => this.palette(), `${MOD}+Shift+P`);
    add('notifications', 'Notifications…', () => openNotifySettings());
    add('toggle-secrets', 'Secrets', () => this.togglePanel('secrets'));
    add('insert-code', 'Code cell', () => void this.insert('code', 1, true), `${MOD}+M B`);
    add('insert-text', 'Text cell', () => void this.insert('markdown', 1, true));
    add('insert-above', 'Code cell above', () => void this.insert('code', 0, true), `${MOD}+M A`);
    add('to-code', 'Convert to code cell', () => this.changeType('code'), `${MOD}+M Y`);
    add('to-markdown', 'Convert to text cell', () => this.changeType('markdown'), `${MOD}+M M`);
    add('move-up', 'Move cell up', () => this.moveCell(-1), `${MOD}+M K`);
    add('move-down', 'Move cell down', () => this.moveCell(1), `${MOD}+M J`);
    add('run-all', 'Run all', () => this.runAll(), `${MOD}+F9`);
    add('run-before', 'Run before', () => this.run(this.cells.slice(0, this.active)), `${MOD}+F8`);
    add('run-cell', 'Run the focused cell', () => this.run([cur()]), `${MOD}+Enter`);
    add('run-after', 'Run selection and after', () => this.run(this.cells.slice(this.active)), `${MOD}+F10`);
    add('interrupt', 'Interrupt execution', () => this.runtime.interrupt(), `${MOD}+M I`, connected);
    add('restart', 'Restart runtime', async () => {
      if (await confirmDialog('Restart runtime', 'All variables will be lost. Files in /content stay.', 'Restart')) await this.runtime.restart();
    }, `${MOD}+M .`, connected);
    add('restart-run-all', 'Restart and run all', async () => {
      if (!(await confirmDialog('Restart and run all', 'All variables will be lost, then every cell runs.', 'Restart'))) return;
      if (this.kernel()) await this.runtime.restart();
      void this.runAll();
    });
    add('change-type', 'Change runtime type', () => this.changeRuntimeType());
    add('connect', 'Connect', async () => {
      try {
        await this.runtime.ensure();
      } catch (e) {
        toast(errorText(e));
      }
    }, undefined, () => !connected());
    add('disconnect', 'Disconnect and delete runtime', async () => {
      if (await confirmDialog('Disconnect and delete runtime', 'The runtime is shut down; variables and files in /content are lost. Your Drive stays.', 'Delete runtime')) {
        for (const q of this.queue) q.setRunState('idle');
        this.queue = [];
        await this.runtime.disconnectAndDelete();
      }
    }, undefined, connected);
    add('shortcuts', 'Keyboard shortcuts', () => this.shortcutsHelp(), `${MOD}+M H`);
  }

  private palette() {
    closeMenus();
    const input = h('input.text.palette-input', { type: 'text', placeholder: 'Search commands', 'aria-label': 'Search commands' });
    const list = h('div.palette-list', { role: 'listbox' });
    const body = h('div.palette', null, input, list);
    const d = openDialog('Command palette', body, [], { initialFocus: input });
    let sel = 0;
    let shown: Command[] = [];
    const render = () => {
      const q = input.value.toLowerCase();
      shown = [...this.commands.values()].filter(c => c.label.toLowerCase().includes(q) && (!c.enabled || c.enabled()));
      sel = Math.min(sel, Math.max(0, shown.length - 1));
      clear(list);
      shown.forEach((c, i) => {
        const b = h('button.palette-item', { role: 'option', 'aria-selected': String(i === sel), class: i === sel ? 'palette-item sel' : 'palette-item' },
          h('span', { text: c.label }), c.keys ? h('kbd', { text: c.keys }) : null);
        b.addEventListener('click', () => {
          d.close('run');
          void c.run();
        });
        list.append(b);
      });
    };
    input.addEventListener('input', () => ((sel = 0), render()));
    input.addEventListener('keydown', e => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        sel = (sel + (e.key === 'ArrowDown' ? 1 : -1) + shown.length) % Math.max(shown.length, 1);
        render();
        list.children[sel]?.scrollIntoView({ block: 'nearest' });
      } else if (e.key === 'Enter') {
        e.preventDefault();
        e.stopPropagation();
        const c = shown[sel];
        d.close('run');
        if (c) void c.run();
      }
    });
    render();
  }

  private shortcutsHelp() {
    const rows: [string, string][] = [
      ['Shift+Enter', 'Run cell, select next'], [`${MOD}+Enter`, 'Run cell'], ['Alt+Enter', 'Run cell, insert below'],
      ['Esc / Enter', 'Command mode / edit mode'], ['A / B', 'Insert cell above / below (command mode)'], ['D D', 'Delete cell (command mode)'],
      ['M / Y', 'To text / to code (command mode)'], ['Z', 'Undo cell operation (command mode)'], ['C / X / V', 'Copy / cut / paste cell'],
      ['J / K', 'Next / previous cell'], [`${MOD}+M B/A/D/M/Y/Z`, 'Colab style cell commands'], [`${MOD}+Shift+P`, 'Command palette'],
      ['Tab / Shift+Tab', 'Complete / show documentation'], [`${MOD}+S`, 'Save'],
    ];
    const table = h('table.shortcuts', null, ...rows.map(([k, v]) => h('tr', null, h('td', null, h('kbd', { text: k })), h('td', { text: v }))));
    openDialog('Keyboard shortcuts', table, [{ label: 'Close', value: 'ok', primary: true }]);
  }

  private onKey(e: KeyboardEvent) {
    const mod = isMac ? e.metaKey : e.ctrlKey;
    const target = e.target as HTMLElement;
    const inEditor = !!target.closest?.('.cm-editor');
    const inField = !inEditor && (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement || target.isContentEditable);
    if (document.querySelector('.overlay')) return; // a dialog has the keyboard
    if (mod && e.shiftKey && (e.key === 'P' || e.key === 'p')) {
      e.preventDefault();
      return this.palette();
    }
    if (mod && (e.key === 's' || e.key === 'S')) {
      e.preventDefault();
      return void this.saveNow();
    }
    if (mod && e.key === 'F9') return (e.preventDefault(), void this.runAll());
    if (mod && e.key === 'F8') return (e.preventDefault(), this.run(this.cells.slice(0, this.active)));
    if (mod && e.key === 'F10') return (e.preventDefault(), this.run(this.cells.slice(this.active)));
    // Colab's Ctrl+M chords, in both modes.
    if (mod && (e.key === 'm' || e.key === 'M')) {
      e.preventDefault();
      this.chord = true;
      return;
    }
    if (this.chord) {
      this.chord = false;
      const k = e.key.toLowerCase();
      const map: Record<string, string> = { b: 'insert-code', a: 'insert-above', d: 'delete-cell', m: 'to-markdown', y: 'to-code', z: 'undo', i: 'interrupt', '.': 'restart', k: 'move-up', j: 'move-down', h: 'shortcuts' };
      if (map[k]) {
        e.preventDefault();
        void this.commands.get(map[k])!.run();
      }
      return;
    }
    if (inEditor || inField) return;
    // Command mode.
    const cell = this.cells[this.active];
    if (!cell) return;
    const key = e.key;
    if (e.shiftKey && key === 'Enter') return (e.preventDefault(), this.runAndAdvance(cell));
    if (mod && key === 'Enter') return (e.preventDefault(), this.runInPlace(cell));
    if (e.altKey && key === 'Enter') return (e.preventDefault(), this.runAndInsert(cell));
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (key === 'Enter') {
      e.preventDefault();
      cell.edit();
      cell.focusEditor();
    } else if (key === 'ArrowDown' || key === 'j') {
      e.preventDefault();
      this.select(this.active + 1);
      this.commandMode();
    } else if (key === 'ArrowUp' || key === 'k') {
      e.preventDefault();
      this.select(this.active - 1);
      this.commandMode();
    } else if (key === 'a') this.insert('code', 0, true);
    else if (key === 'b') this.insert('code', 1, true);
    else if (key === 'm') this.changeType('markdown');
    else if (key === 'y') this.changeType('code');
    else if (key === 'z') this.undo();
    else if (key === 'c') this.clipboard = [cell.toJSON()];
    else if (key === 'x') void this.commands.get('cut-cell')!.run();
    else if (key === 'v') void this.commands.get('paste-cell')!.run();
    else if (key === 'd') {
      const now = Date.now();
      if (now - this.dPressed < 600) {
        this.dPressed = 0;
        this.deleteCells();
      } else this.dPressed = now;
    }
  }
}

function bar(label: string, frac: number): HTMLElement {
  const pct = Math.round(Math.max(0, Math.min(1, frac)) * 100);
  return h('span.bar', { title: `${label} ${pct}%` }, h('span.bar-label', { text: label }), h('span.bar-track', null, h('span.bar-fill', { style: { width: `${pct}%` }, class: pct > 85 ? 'bar-fill hot' : 'bar-fill' })));
}

interface Amount {
  used: number;
  total: number;
}

// What the meter shows, from GET /api/skylab/resources: this runtime's own
// figures (its cgroup, its /content, its GPU) where the server has them,
// the machine's otherwise (e.g. unsandboxed kernels, no disk limit).
function runtimeUsage(r: any, kernelId?: string) {
  const host = r.host ?? {};
  const mine = (r.runtimes ?? []).find((x: any) => x.id === kernelId) ?? {};
  const ram: Amount = mine.memory?.used != null
    ? { used: mine.memory.used, total: mine.memory.limit ?? host.memory_total }
    : { used: host.memory_total - host.memory_available, total: host.memory_total };
  const disk: Amount = mine.disk?.used != null && mine.disk?.limit
    ? { used: mine.disk.used, total: mine.disk.limit }
    : { used: (host.disk?.total ?? 0) - (host.disk?.free ?? 0), total: host.disk?.total ?? 0 };
  const g = mine.gpus?.[0]?.memory_total ? mine.gpus[0] : host.gpus?.[0];
  const gpu: Amount | null = g ? { used: g.memory_used ?? 0, total: g.memory_total ?? 0 } : null;
  return { ram, disk, gpu, gpuUtilization: g?.utilization ?? 0, own: mine.memory?.used != null };
}

function resourceSummary(r: any, kernelId?: string): HTMLElement {
  const u = runtimeUsage(r, kernelId);
  const whose = u.own ? 'this runtime' : 'the machine';
  const lines = [
    `RAM (${whose}): ${formatBytes(u.ram.used)} of ${formatBytes(u.ram.total)} used`,
    u.disk.total ? `Disk: ${formatBytes(u.disk.used)} of ${formatBytes(u.disk.total)} used` : '',
    u.gpu ? `GPU: ${u.gpuUtilization}% · ${formatBytes(u.gpu.used)} of ${formatBytes(u.gpu.total)}` : '',
  ].filter(Boolean);
  return h('div', null, ...lines.map(l => h('div', { text: l })));
}

export { text };
