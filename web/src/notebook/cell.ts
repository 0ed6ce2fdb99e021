// One cell: its source (in a CodeMirror view once materialized, a plain
// <pre> before), its rendered Markdown, its outputs and run state.
import type { Extension } from '@codemirror/state';
import type { EditorView, KeyBinding } from '@codemirror/view';
import type { Kernel } from '@jupyterlab/services';
import type { OutputContext } from '../extensions';
import { h } from '../ui/dom';
import { createEditor } from './editor';
import { FormView } from './form_view';
import { applyEdit } from './forms';
import { renderMarkdownFragment } from './markdown';
import { OutputArea, text, type Output } from './outputs';

export type CellType = 'code' | 'markdown' | 'raw';

export interface CellJSON {
  id?: string;
  cell_type: CellType;
  source: string | string[];
  metadata?: Record<string, unknown>;
  outputs?: Output[];
  execution_count?: number | null;
  attachments?: unknown;
}

export interface CellHost {
  kernel(): Kernel.IKernelConnection | null;
  outputContext(cell: Cell): OutputContext;
  changed(cell: Cell, what: 'source' | 'outputs' | 'meta'): void;
  focused(cell: Cell): void;
  blurred(cell: Cell): void;
  keys(cell: Cell): KeyBinding[];
  edge(cell: Cell, dir: -1 | 1): boolean;
  runClicked(cell: Cell): void;
  selectCell(cell: Cell): void;
  /** Co-editing: the editor's starting text and extensions, and type changes to send. */
  collabEditor?(cell: Cell): { source: string; extensions: Extension[] } | null;
  typeChanged?(cell: Cell): void;
}

export function newId(): string {
  return crypto.randomUUID().replace(/-/g, '').slice(0, 12);
}

export class Cell {
  readonly el: HTMLElement;
  id: string;
  type: CellType;
  metadata: Record<string, unknown>;
  executionCount: number | null;
  editor: EditorView | null = null;
  readonly outputs: OutputArea;
  /** Colab form (`#@param` …) of a code cell; hidden when there is none. */
  readonly form: FormView;
  materialized = false;
  editing = false; // markdown: source shown
  runState: 'idle' | 'queued' | 'running' = 'idle';
  private source: string;
  private pendingOutputs: Output[] | null;
  private editorHost: HTMLElement;
  private staticEl: HTMLElement;
  private mdEl: HTMLElement;
  private gutter: HTMLElement;
  private runBtn: HTMLButtonElement;
  private countEl: HTMLElement;
  private timeEl: HTMLElement;
  private timer = 0;
  startedAt = 0;
  lastDuration: number | null = null;
  private attachments: unknown;

  constructor(json: CellJSON, private host: CellHost) {
    this.id = json.id || newId();
    this.type = json.cell_type === 'markdown' || json.cell_type === 'raw' ? json.cell_type : 'code';
    this.source = text(json.source);
    this.metadata = json.metadata ?? {};
    this.executionCount = json.execution_count ?? null;
    this.pendingOutputs = this.type === 'code' ? json.outputs ?? [] : [];
    this.attachments = json.attachments;
    this.outputs = new OutputArea(() => host.outputContext(this));

    this.runBtn = h('button.run-btn', { 'aria-label': 'Run cell', title: 'Run cell (Ctrl+Enter)' });
    this.runBtn.addEventListener('click', e => {
      e.stopPropagation();
      host.runClicked(this);
    });
    this.countEl = h('span.exec-count');
    this.timeEl = h('span.exec-time');
    this.gutter = h('div.cell-gutter', null, this.runBtn, this.countEl, this.timeEl);
    this.staticEl = h('pre.static-code');
    this.editorHost = h('div.editor');
    this.mdEl = h('div.markdown.rendered', { tabindex: '-1', hidden: this.type !== 'markdown' });
    this.form = new FormView({
      source: () => (this.type === 'code' ? this.getSource() : ''),
      apply: e => this.applyEdit(e),
      metadata: () => this.metadata,
      toggled: () => {
        this.showForm();
        if (this.type === 'code' && !this.form.hidden()) this.materialize();
        host.changed(this, 'meta');
      },
      run: () => host.runClicked(this),
    });
    this.el = h('div.cell', { 'data-cell-id': this.id, 'data-type': this.type, role: 'group', 'aria-label': `${this.type} cell` },
      this.gutter, h('div.cell-main', null, h('div.code-row', null, this.editorHost, this.staticEl, this.form.el), this.mdEl, this.outputs.el));
    this.el.addEventListener('mousedown', () => host.selectCell(this));
    this.mdEl.addEventListener('dblclick', () => this.edit());
    this.staticEl.addEventListener('mousedown', e => {
      e.preventDefault();
      this.materialize();
      this.focusEditor();
    });
    this.renderStatic();
    this.updateGutter();
    this.showForm();
  }

  /** Re-reads the form from the source; hides the code when the form says so. */
  /** The metadata as a collaborator set it (replaced whole): the form follows cellView. */
  setMetadata(metadata: Record<string, unknown>) {
    this.metadata = metadata;
    this.form.refresh();
    this.showForm();
    if (this.type === 'code' && !this.form.hidden()) this.materialize();
  }

  showForm() {
    this.form.update();
    this.el.classList.toggle('form-code-hidden', this.type === 'code' && this.form.hidden());
  }

  /** A form field's edit: through the editor when there is one (undo keeps it). */
  private applyEdit(e: { from: number; to: number; insert: string }) {
    // Co-edited: every change goes through an editor, whose collab extension
    // sends it to the server (which saves the notebook), hidden code or not.
    if (!this.editor && this.type === 'code' && this.host.collabEditor?.(this)) this.materialize();
    if (this.editor) {
      this.editor.dispatch({ changes: e });
    } else {
      this.source = applyEdit(this.source, e);
      this.renderStatic();
      this.host.changed(this, 'source');
    }
  }

  getSource(): string {
    return this.editor ? this.editor.state.doc.toString() : this.source;
  }

  setSource(s: string) {
    this.source = s;
    if (this.editor) this.editor.dispatch({ changes: { from: 0, to: this.editor.state.doc.length, insert: s } });
    else this.renderStatic();
    if (this.type === 'markdown' && !this.editing) this.renderMd();
    this.showForm();
  }

  /** Creates the editor, renders Markdown and outputs (once; when near the viewport). */
  materialize() {
    if (this.materialized) return;
    this.materialized = true;
    this.el.classList.add('live');
    if (this.type === 'markdown') {
      if (this.editing) this.showEditor();
      this.renderMd();
    } else {
      this.showEditor();
    }
    if (this.pendingOutputs) {
      this.outputs.set(this.pendingOutputs);
      this.pendingOutputs = null;
    }
  }

  private showEditor() {
    if (!this.editor) {
      const live = this.host.collabEditor?.(this) ?? null;
      if (live) this.source = live.source;
      this.editor = createEditor(this.editorHost, this.source, this.type === 'markdown' ? 'markdown' : 'code', {
        kernel: () => this.host.kernel(),
        onChange: () => {
          this.host.changed(this, 'source');
          if (this.type === 'code') this.form.sourceChanged();
        },
        onFocus: () => this.host.focused(this),
        onBlur: () => this.host.blurred(this),
        keys: this.host.keys(this),
        onEdge: dir => this.host.edge(this, dir),
        extra: live?.extensions,
      });
    }
    this.staticEl.hidden = true;
    this.editorHost.hidden = false;
    if (this.type === 'markdown') this.mdEl.hidden = this.editing;
  }

  private renderStatic() {
    this.staticEl.textContent = this.source || ' ';
    if (this.type === 'markdown') this.staticEl.classList.add('md-source');
  }

  renderMd() {
    if (this.type !== 'markdown') return;
    const src = this.getSource();
    if (src.trim()) this.mdEl.replaceChildren(renderMarkdownFragment(src));
    else this.mdEl.innerHTML = '<p class="empty-md">Double-click (or Enter) to edit</p>';
    this.staticEl.hidden = true;
    this.mdEl.hidden = this.editing;
    this.editorHost.hidden = !this.editing;
  }

  /** Markdown: show the editor. */
  edit() {
    if (this.type !== 'markdown') return this.focusEditor();
    this.editing = true;
    this.el.classList.add('editing');
    this.materialize();
    this.showEditor();
    this.mdEl.hidden = true;
    this.editorHost.hidden = false;
    this.focusEditor();
  }

  /** Markdown: render and hide the editor. */
  finishEdit() {
    if (this.type !== 'markdown' || !this.editing) return;
    this.editing = false;
    this.el.classList.remove('editing');
    this.renderMd();
  }

  focusEditor(at: 'start' | 'end' | null = null) {
    this.materialize();
    if (this.el.classList.contains('form-code-hidden')) {
      // The code is hidden behind its form: the keyboard goes to the form, never to invisible code.
      this.form.focus();
      return;
    }
    if (this.type === 'markdown' && !this.editing) {
      this.editing = true;
      this.el.classList.add('editing');
      this.showEditor();
      this.mdEl.hidden = true;
      this.editorHost.hidden = false;
    }
    const ed = this.editor!;
    ed.focus();
    if (at === 'start') ed.dispatch({ selection: { anchor: 0 } });
    if (at === 'end') ed.dispatch({ selection: { anchor: ed.state.doc.length } });
  }

  hasFocus(): boolean {
    return !!this.editor?.hasFocus;
  }

  setType(t: CellType) {
    if (t === this.type) return;
    const src = this.getSource();
    this.type = t;
    this.el.dataset.type = t;
    this.editor?.destroy();
    this.editor = null;
    this.editorHost.textContent = '';
    this.source = src;
    this.editing = t === 'markdown';
    if (t !== 'code') {
      this.outputs.clear();
      this.executionCount = null;
    }
    this.materialized = false;
    this.mdEl.hidden = true;
    this.materialize();
    this.updateGutter();
    this.showForm();
    this.host.typeChanged?.(this);
  }

  /** An editor exists (created hidden for a rendered Markdown cell). */
  ensureEditor() {
    this.materialize();
    if (this.editor) return;
    this.showEditor();
    if (this.type === 'markdown' && !this.editing) this.renderMd();
  }

  /** Co-editing: a new editor on `source` (the server's text replaced ours). */
  rebuildEditor(source: string) {
    this.source = source;
    if (!this.editor) {
      this.renderStatic();
      if (this.type === 'markdown' && !this.editing) this.renderMd();
      if (this.type === 'code') this.form.sourceChanged();
      return;
    }
    this.editor.destroy();
    this.editor = null;
    this.editorHost.textContent = '';
    this.showEditor();
    if (this.type === 'markdown' && !this.editing) this.renderMd();
    if (this.type === 'code') this.form.sourceChanged();
  }

  setRunState(s: 'idle' | 'queued' | 'running') {
    this.runState = s;
    this.el.classList.toggle('running', s === 'running');
    this.el.classList.toggle('queued', s === 'queued');
    clearInterval(this.timer);
    if (s === 'running') {
      this.startedAt = Date.now();
      this.timer = window.setInterval(() => this.updateGutter(), 1000);
    } else if (s === 'idle' && this.startedAt) {
      this.lastDuration = Date.now() - this.startedAt;
      this.startedAt = 0;
    }
    this.updateGutter();
  }

  updateGutter() {
    const code = this.type === 'code';
    this.gutter.hidden = !code;
    if (!code) return;
    this.runBtn.setAttribute('aria-label', this.runState === 'running' ? 'Interrupt execution' : 'Run cell');
    this.runBtn.title = this.runState === 'running' ? 'Interrupt execution' : 'Run cell (Ctrl+Enter)';
    this.countEl.textContent = this.runState === 'queued' ? '[*]' : this.executionCount != null ? `[${this.executionCount}]` : '[ ]';
    if (this.runState === 'running') this.timeEl.textContent = `${Math.round((Date.now() - this.startedAt) / 1000)}s`;
    else this.timeEl.textContent = this.lastDuration != null ? formatDuration(this.lastDuration) : '';
  }

  toJSON(): CellJSON {
    const src = this.getSource();
    const base: CellJSON = { id: this.id, cell_type: this.type, source: src, metadata: this.metadata };
    if (this.attachments && this.type !== 'code') base.attachments = this.attachments;
    if (this.type === 'code') {
      base.outputs = this.pendingOutputs ?? this.outputs.toJSON();
      base.execution_count = this.executionCount;
    }
    return base;
  }

  /** Outputs arrive: make sure they have a place. */
  ensureOutputs() {
    this.materialize();
  }

  destroy() {
    clearInterval(this.timer);
    this.editor?.destroy();
  }
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
}
