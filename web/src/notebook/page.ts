// The notebook page: the composition of the top bar (file name, menus,
// Share, save state), the toolbar, the sidebar panels, the cells and their
// operations (with undo), and the page's parts in their own modules:
//   exec_queue.ts   execution queue, kernel message routing, pending runs
//   save.ts         PUT autosave, conflicts, local backup (or live status)
//   status_view.ts  runtime status button, meter, warnings, runtime type
//   commands.ts     command registry, palette, shortcuts dialog
//   keymap.ts       document keys and cell editor keys
//   model.ts        the cells, the selection, cell operations with undo (undo.ts)
//   collab.ts       live co-editing (the server saves)
import type { KeyBinding } from '@codemirror/view';
import type { Kernel } from '@jupyterlab/services';
import { api, contents, forgetRecent, type Me, noteRecent, notebookUrl, serverSettings } from '../api';
import { errorText } from '../drive/drive';
import type { NotebookPageContext, OutputContext } from '../extensions';
import { mountFilesPanel } from '../files/panel';
import { openRevisionHistory } from '../history/history';
import { openShareDialog } from '../share/dialog';
import { openNotifySettings } from '../secrets/notify';
import { keyIcon, mountSecretsPanel } from '../secrets/panel';
import { confirmDialog, showMessage, toast } from '../ui/dialog';
import { clear, h } from '../ui/dom';
import { menuBar, type MenuItem } from '../ui/menu';
import { icon } from '../ui/icons';
import { logo, userButton } from '../ui/topbar';
import { Cell, type CellHost, type CellJSON, type CellType } from './cell';
import { CollabSession, type CollabPage } from './collab';
import { CommandRegistry, MOD, shortcutsHelp } from './commands';
import { DriveDoc, SharedDoc, type DocStore, type NotebookFile } from './document';
import { ExecutionQueue } from './exec_queue';
import { setOutputOrigin } from './frames';
import { Keymap } from './keymap';
import { headings } from './markdown';
import type { Output } from './outputs';
import { text } from './outputs';
import { RuntimeDeath } from './runtime_death';
import { Runtime } from './runtime';
import { LiveSaver, liveStatus, PutSaver, type SaveController } from './save';
import { RuntimeStatusView } from './status_view';
import { NotebookModel } from './model';
import { openTerminal } from '../terminal/panel';
import { VariablesPanel } from '../variables/panel';

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
  // The page's object for the browser tests and benchmarks: only where the
  // page was opened with the harness's init script (tests/browser/harness.js
  // signIn sets window.__skylabTestHook), never on a user's page.
  if ((window as any).__skylabTestHook === true) (window as any).skylab = nb;
}

/** Routes /shared/<id>… here too. */
export class NotebookPage implements NotebookPageContext, CollabPage {
  /** Co-editing with the server as the authority (null: off; the page saves by PUT). */
  collab: CollabSession | null = null;
  /** The cells, the selection and the cell operations with undo. */
  readonly model = new NotebookModel(this);
  mode: 'command' | 'edit' = 'command';
  readOnly = false;
  runtime!: Runtime;
  private scroller = h('main.nb-scroll');
  private saveState = h('span.save-state', { role: 'status', 'aria-live': 'polite' });
  private titleInput = h('input.title', { 'aria-label': 'File name', spellcheck: 'false' });
  /** Where the runtime status view goes in the toolbar (replaced once the runtime exists). */
  private statusSlot = h('div.runtime-status');
  private banner = h('div.banner', { hidden: true, role: 'alert' });
  private sidebar = h('aside.sidebar', { hidden: true });
  private tocEl = h('nav.toc', { 'aria-label': 'Table of contents' });
  private filesEl = h('div.files-panel');
  private secretsEl = h('div.secrets-panel');
  private varsEl = h('div.vars-panel');
  private vars: VariablesPanel | null = null;
  private nbMeta: Record<string, unknown> = {};
  private nbFormatMinor = 5;
  /** How the page saves: by PUT (autosave, conflicts, local backup), or not at all while co-edited live. */
  private saver: SaveController = new LiveSaver(this.saveState); // nothing to save until the notebook is loaded
  /** The execution queue and the routing of kernel messages to cells. */
  private exec = new ExecutionQueue(this);
  private status!: RuntimeStatusView;
  private observer: IntersectionObserver;
  private tocTimer = 0;
  readonly commands = new CommandRegistry();
  private keymap = new Keymap(this);
  private death!: RuntimeDeath;
  private panel: 'toc' | 'files' | 'variables' | 'secrets' | null = null;
  private filesMounted = false;
  private secrets: { refresh(): void } | null = null;

  constructor(private app: HTMLElement, public doc: DocStore, private me: Me) {
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

  get cells(): Cell[] {
    return this.model.cells;
  }
  get active(): number {
    return this.model.active;
  }
  get cellHost(): CellHost {
    return this;
  }
  private get list(): HTMLElement {
    return this.model.list;
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
    this.exec.serverRuns = file.running ?? {};
    this.readOnly = !file.writable;
    const nb = file.content ?? {};
    const live = await this.startCollab();
    if (live) nb.cells = live.nb.cells;
    this.nbMeta = nb.metadata ?? {};
    this.nbFormatMinor = Math.max(nb.nbformat_minor ?? 5, 5);
    let cells: CellJSON[] = nb.cells ?? [];
    const put = live ? null : new PutSaver(this, this.saveState);
    this.saver = put ?? new LiveSaver(this.saveState);
    const backup = put?.readBackup(file.lastModified, cells) ?? null;
    if (backup) {
      cells = backup;
      toast('Restored changes that had not reached the server yet');
    }
    const empty = !cells.length;
    if (empty) cells = [{ cell_type: 'code', source: '' }];
    this.model.load(cells);
    if (empty) this.collab?.inserted(this.cells[0]); // the server's notebook had none
    // The cells on screen get their editors now; the rest when scrolled near.
    const bottom = this.scroller.getBoundingClientRect().top + this.scroller.clientHeight + 200;
    for (const c of this.cells) {
      if (c.el.getBoundingClientRect().top > bottom) break;
      c.materialize();
    }
    for (const c of this.cells) if (!c.materialized) this.observer.observe(c.el);
    void this.collab?.restoreBackups().then(r => r && toast('Restored changes that had not reached the server yet'));
    performance.mark('skylab-built');
    this.setTitle();
    if (!this.doc.shareId) noteRecent(this.doc.path);
    if (this.readOnly) this.showReadOnlyBanner();
    this.select(0, false);
    this.updateToc();
    this.saver.setState(this.readOnly ? 'View only' : backup ? 'Unsaved changes' : 'All changes saved');
    if (this.doc.shareId) this.app.querySelector<HTMLElement>('.share-btn')!.hidden = true;
    if (backup) this.markDirty();
    this.runtime = new Runtime(this.doc.path, this.sessionPath());
    this.status = new RuntimeStatusView(this.runtime, this.banner, () => this.runtimeMenuItems());
    this.statusSlot.replaceWith(this.status.el);
    this.death = new RuntimeDeath(this.banner, { reconnect: () => this.runtime.ensure(), changeType: t => this.runtime.changeType(t), currentType: () => this.runtime.type });
    this.runtime.onChange(() => {
      this.status.render();
      const s = this.runtime.state;
      this.death.stateChanged(s, this.kernel()?.id ?? null, [...this.exec.runs.values()]);
      if (s === 'restarting' || s === 'dead' || s === 'disconnected') this.exec.resetRuns();
    });
    this.runtime.onKernel(k => {
      this.exec.kernelChanged(k);
      this.status.kernelChanged(k);
    });
    this.status.render();
    // Reattach to a runtime this notebook already has (outputs of cells that
    // ran while the tab was closed come with it).
    void this.runtime.reattach().catch(() => false).then(ok => {
      if (!ok) this.exec.clearPending();
    });
    document.addEventListener('keydown', e => this.keymap.onKey(e));
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this.saver.flush(true);
    });
    window.addEventListener('pagehide', () => this.saver.flush(true));
    window.addEventListener('beforeunload', e => {
      if (this.saver.dirty && !this.readOnly) {
        this.saver.flush(true);
        e.preventDefault();
      }
    });
    (document.body.dataset as any).ready = 'true';
    performance.mark('skylab-ready');
  }

  sessionPath(): string {
    return this.doc.shareId ? `.shared/${this.doc.shareId}/${this.doc.path}` : this.doc.path;
  }

  private buildLayout() {
    clear(this.app);
    this.registerCommands();
    const c = (id: string) => this.commands.menuItem(id);
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
    const toolbar = h('div.toolbar', { role: 'toolbar', 'aria-label': 'Notebook' }, addCode, addText, runAllBtn, h('div.spacer'), this.statusSlot);
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

  showReadOnlyBanner() {
    const copy = h('button.btn.primary', { text: 'Save a copy in Drive' });
    copy.addEventListener('click', () => void this.saveCopy());
    const ro = h('div.readonly-banner', { role: 'status' }, h('span', { text: 'View only: this notebook was shared with you as a viewer. You can run it, but changes are not saved.' }), copy);
    this.scroller.prepend(ro);
    document.body.classList.add('read-only');
  }

  // ---------------------------------------------------------------- cells

  private cellByEl(el: HTMLElement): Cell | undefined {
    return this.model.byId(el.dataset.cellId);
  }

  index(cell: Cell): number {
    return this.model.index(cell);
  }

  select(i: number, scroll = true) {
    this.model.select(i, scroll);
  }

  commandMode() {
    const cell = this.cells[this.active];
    this.mode = 'command';
    if (cell?.type === 'markdown') cell.finishEdit();
    (document.activeElement as HTMLElement)?.blur?.();
    cell?.el.setAttribute('tabindex', '-1');
    cell?.el.focus({ preventScroll: true });
  }

  insertAt(type: CellType, at: number, focus: boolean, json?: CellJSON): Cell {
    return this.model.insertAt(type, at, focus, json);
  }

  insert(type: CellType, offset: 0 | 1, focus: boolean): Cell {
    return this.insertAt(type, Math.min(this.active + offset, this.cells.length), focus);
  }

  deleteCells(cells?: Cell[]) {
    this.model.deleteCells(cells);
  }

  moveCell(dir: -1 | 1) {
    this.model.moveCell(dir);
  }

  changeType(t: CellType) {
    this.model.changeType(t);
  }

  undo() {
    this.model.undo();
  }

  redo() {
    this.model.redo();
  }

  copyCell(cell: Cell) {
    this.model.copy(cell);
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
    return this.keymap.cellKeys(cell);
  }

  // ---------------------------------------------------------------- running

  runAndAdvance(cell: Cell) {
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

  runInPlace(cell: Cell) {
    this.run([cell]);
    if (cell.type === 'markdown') this.commandMode();
  }

  runAndInsert(cell: Cell) {
    this.run([cell]);
    this.insertAt('code', this.index(cell) + 1, true);
  }

  /** Renders Markdown cells, queues code cells for the kernel (in order). */
  run(cells: Cell[]) {
    this.exec.run(cells);
  }

  async runAll() {
    this.run(this.cells);
  }

  /** A `skylab_runtime_event` on IOPub: a shutdown ahead (banner) or the runtime's death. */
  runtimeEvent(content: any) {
    this.death.event(content);
    if (content.event === 'stopped') return;
    this.status.warning(content);
  }

  private runtimeMenuItems(): MenuItem[] {
    const c = (id: string) => this.commands.menuItem(id);
    return [c('connect'), c('interrupt'), c('restart'), c('change-type'), c('disconnect'), { separator: true, label: '' }, c('run-all')];
  }

  // ---------------------------------------------------------------- co-editing (./collab.ts)

  private async startCollab(): Promise<any | null> {
    if (new URLSearchParams(location.search).get('collab') === '0') return null;
    const s = new CollabSession(this, CollabSession.urlFor(this.doc), 'skylab.backup.' + this.sessionPath());
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
    this.model.place(cell, index);
    return cell;
  }
  collabRemove(cell: Cell) {
    this.model.remove(cell, false); // the server keeps a cell (its blank one follows an emptying delete)
    cell.destroy();
  }
  collabMove(cell: Cell, index: number) {
    const focused = cell.hasFocus(), sel = cell.editor?.state.selection;
    this.model.moveTo(cell, index);
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
  collabOutputs(cell: Cell, outputs: Output[], count: number | null, running: boolean, msgId: string) {
    // This page's own runs show what its kernel connection delivered (widgets, downloads).
    if (this.exec.ownsOutputOf(cell, msgId)) return;
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
    liveStatus(this.saveState, t);
  }

  // ---------------------------------------------------------------- saving

  markDirty() {
    this.saver.markDirty();
  }

  toJSON() {
    const meta = { ...this.nbMeta };
    if (!meta.kernelspec) meta.kernelspec = { name: 'python3', display_name: 'Python 3', language: 'python' };
    if (!meta.language_info) meta.language_info = { name: 'python' };
    return { cells: this.cells.map(c => c.toJSON()), metadata: meta, nbformat: 4, nbformat_minor: this.nbFormatMinor };
  }

  saveNow(): Promise<void> {
    return this.saver.saveNow();
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
      const oldPending = this.exec.pendingKey();
      const oldClient = 'skylab.client.' + this.sessionPath();
      this.doc = await this.doc.rename(name);
      history.replaceState(null, '', notebookUrl(this.doc.path));
      forgetRecent(old, this.doc.path);
      const client = localStorage.getItem(oldClient);
      if (client) localStorage.setItem('skylab.client.' + this.sessionPath(), client);
      const pending = localStorage.getItem(oldPending);
      if (pending) localStorage.setItem(this.exec.pendingKey(), pending);
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

  updateToc() {
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
    const add = this.commands.add.bind(this.commands);
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
    add('copy-cell', 'Copy cell', () => this.copyCell(cur()), 'C');
    add('cut-cell', 'Cut cell', () => this.model.cut(cur()), 'X');
    add('paste-cell', 'Paste cell below', () => this.model.paste(), 'V', () => this.model.canPaste());
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
    add('palette', 'Command palette', () => this.commands.palette(), `${MOD}+Shift+P`);
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
    add('change-type', 'Change runtime type', () => this.status.changeType());
    add('connect', 'Connect', async () => {
      try {
        await this.runtime.ensure();
      } catch (e) {
        toast(errorText(e));
      }
    }, undefined, () => !connected());
    add('disconnect', 'Disconnect and delete runtime', async () => {
      if (await confirmDialog('Disconnect and delete runtime', 'The runtime is shut down; variables and files in /content are lost. Your Drive stays.', 'Delete runtime')) {
        this.exec.dropQueued();
        await this.runtime.disconnectAndDelete();
      }
    }, undefined, connected);
    add('shortcuts', 'Keyboard shortcuts', () => shortcutsHelp(), `${MOD}+M H`);
  }
}

export { text };
