// Real-time co-editing in the app: one WebSocket per open notebook to the
// server's authority (/api/skylab/collab/… or /api/skylab/shared/{id}/collab…;
// protocol in docs/architecture.md). Cell text goes through @codemirror/collab
// (local edits apply at once, the server sequences them, remote ones are
// rebased with receiveUpdates); structural changes are sent as ops, applied
// here at once and placed again where the server sequenced them; the
// collaborators' cursors show as colored carets with names. The server saves
// the notebook itself; the page does not PUT while a session is live.
import { collab, getSyncedVersion, receiveUpdates, sendableUpdates } from '@codemirror/collab';
import { ChangeSet, EditorState, StateEffect, StateField, Text, type Extension } from '@codemirror/state';
import { Decoration, EditorView, WidgetType, type DecorationSet } from '@codemirror/view';
import { encodePath } from '../api';
import type { Cell, CellJSON, CellType } from './cell';
import type { DocStore } from './document';
import type { Output } from './outputs';
import { rebaseUnsent } from './resync';

/** What the page lets the session do to its cells (applied without echoing ops). */
export interface CollabPage {
  collabCells(): Cell[];
  collabInsert(json: CellJSON, index: number): Cell;
  collabRemove(cell: Cell): void;
  collabMove(cell: Cell, index: number): void;
  collabType(cell: Cell, type: CellType): void;
  /** A collaborator replaced the cell's metadata. */
  collabMeta(cell: Cell, metadata: Record<string, unknown>): void;
  /** A collaborator replaced the notebook's metadata. */
  collabNotebookMeta(metadata: Record<string, unknown>): void;
  /** `msgId`: the execute_request they come from (the page skips its own runs). */
  collabOutputs(cell: Cell, outputs: Output[], count: number | null, running: boolean, msgId: string): void;
  collabReadOnly(readOnly: boolean): void;
  collabStatus(text: string): void;
}

interface Shadow { version: number; doc: Text }
interface Peer { client: number; user: string; cell: string | null; anchor: number; head: number }

const setCarets = StateEffect.define<{ pos: number; user: string; color: string }[]>();

class CaretWidget extends WidgetType {
  constructor(readonly user: string, readonly color: string) { super(); }
  eq(o: CaretWidget) { return o.user === this.user && o.color === this.color; }
  toDOM() {
    const el = document.createElement('span');
    el.className = 'remote-caret';
    el.style.borderLeftColor = this.color;
    el.setAttribute('aria-label', `${this.user}'s cursor`);
    const label = document.createElement('span');
    label.className = 'remote-caret-label';
    label.textContent = this.user;
    label.style.backgroundColor = this.color;
    el.append(label);
    return el;
  }
  ignoreEvent() { return true; }
}

const caretField = StateField.define<DecorationSet>({
  create: () => Decoration.none,
  update(deco, tr) {
    deco = deco.map(tr.changes);
    for (const e of tr.effects) {
      if (!e.is(setCarets)) continue;
      const len = tr.state.doc.length;
      deco = Decoration.set(e.value.map(c => Decoration.widget({ widget: new CaretWidget(c.user, c.color), side: 1 })
        .range(Math.max(0, Math.min(c.pos, len)))), true);
    }
    return deco;
  },
  provide: f => EditorView.decorations.from(f),
});

function colorOf(name: string): string {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360} 70% 42%)`;
}

export class CollabSession {
  writable = false;
  private ws: WebSocket | null = null;
  private epoch = '';
  private client = 0;
  private clientID = crypto.randomUUID();
  private shadows = new Map<string, Shadow>();
  private inflight = new Set<string>();
  /** Cells whose updates came with a gap: a pull for the missing ones is on its way. */
  private pulling = new Set<string>();
  private peers = new Map<number, Peer>();
  private rid = 0;
  private pendingOps = new Map<number, unknown>();
  private applying = false;
  private closed = false;
  private retry = 500;
  private presenceTimer = 0;
  private receiving = false;
  private initialized = false; // the first init came (later ones are reconnects)
  /** Per cell: how many of its unconfirmed updates went out in the push in flight. */
  private sent = new Map<string, number>();
  /** Per cell: its editor's latest state (what is unsent when the editor is made again). */
  private lastStates = new Map<string, EditorState>();
  private backupTimer = 0;

  /**
   * @param backupKey where this notebook's local copies live ("skylab.backup." +
   *   its session path, as the non-live page's); this tab's unsent changes go
   *   to backupKey + "#live." + its client id.
   */
  constructor(private page: CollabPage, private url: string, private backupKey = '') {}

  static urlFor(doc: DocStore): string {
    const base = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;
    if (doc.shareId) {
      const sub = (doc as any).sub as string | undefined;
      return `${base}/api/skylab/shared/${doc.shareId}/collab${sub ? '/' + encodePath(sub) : ''}`;
    }
    return `${base}/api/skylab/collab/${encodePath(doc.path)}`;
  }

  /** Connects; resolves with the first init (the notebook as the server holds it). */
  start(): Promise<any> {
    return new Promise((resolve, reject) => {
      let first = true;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onmessage = ev => {
        let m: any;
        try { m = JSON.parse(String(ev.data)); } catch { return; }
        if (m.t === 'init') {
          this.retry = 500;
          this.takeInit(m, !this.initialized);
          this.initialized = true;
          if (first) {
            first = false;
            resolve(m);
          }
          return;
        }
        this.onFrame(m);
      };
      ws.onclose = ev => {
        this.ws = null;
        if (first) return reject(new Error(ev.reason || `collab closed (${ev.code})`));
        if (this.closed) return;
        if (ev.code >= 4400 && ev.code < 4500) {
          this.page.collabStatus('Not connected: ' + (ev.reason || ev.code));
          return;
        }
        this.page.collabStatus('Offline — changes are kept and sent on reconnect');
        setTimeout(() => this.reconnect(), this.retry);
        this.retry = Math.min(this.retry * 2, 10000);
      };
    });
  }

  private reconnect() {
    if (this.closed) return;
    void this.start().catch(() => {
      setTimeout(() => this.reconnect(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    });
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }

  private send(m: unknown) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  // ------------------------------------------------------------ editors

  /** The CodeMirror extensions of cell `cell`'s editor (made lazily). */
  extensions(cell: Cell): Extension[] {
    const sh = this.shadow(cell);
    const ext: Extension[] = [
      collab({ startVersion: sh.version, clientID: this.clientID }),
      caretField,
      EditorView.updateListener.of(u => {
        this.lastStates.set(cell.id, u.state);
        if (u.docChanged && !this.receiving) {
          this.flush(cell);
          this.scheduleBackup();
        }
        if ((u.selectionSet || u.focusChanged) && u.view.hasFocus) this.presence(cell, u.state.selection.main.anchor, u.state.selection.main.head);
      }),
    ];
    if (!this.writable) ext.push(EditorState.readOnly.of(true));
    return ext;
  }

  /** The text an editor of `cell` starts with (the server's, at the version above). */
  source(cell: Cell): string {
    return this.shadow(cell).doc.toString();
  }

  private shadow(cell: Cell): Shadow {
    let sh = this.shadows.get(cell.id);
    if (!sh) {
      sh = { version: 0, doc: Text.of(cell.getSource().split(/\r\n?|\n/)) };
      this.shadows.set(cell.id, sh);
    }
    return sh;
  }

  private flush(cell: Cell) {
    const ed = cell.editor;
    if (!ed || this.inflight.has(cell.id) || !this.writable) return;
    // At most what one push may carry (the server's limit); the rest follows its confirmation.
    const ups = sendableUpdates(ed.state).slice(0, 200);
    if (!ups.length) return;
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.inflight.add(cell.id);
    this.sent.set(cell.id, Math.max(this.sent.get(cell.id) ?? 0, ups.length));
    this.send({ t: 'push', cell: cell.id, version: getSyncedVersion(ed.state),
      updates: ups.map(u => ({ clientID: u.clientID, changes: u.changes.toJSON() })) });
  }

  private presence(cell: Cell, anchor: number, head: number) {
    clearTimeout(this.presenceTimer);
    this.presenceTimer = window.setTimeout(() => this.send({ t: 'presence', cell: cell.id, anchor, head }), 30);
  }

  private showCarets(cellId: string | null) {
    const cells = this.page.collabCells();
    for (const c of cells) {
      if (cellId && c.id !== cellId) continue;
      if (!c.editor) continue;
      const carets = [...this.peers.values()].filter(p => p.cell === c.id).map(p => ({ pos: p.head, user: p.user, color: colorOf(p.user) }));
      c.editor.dispatch({ effects: setCarets.of(carets) });
    }
  }

  // ------------------------------------------------------------ structure (from the page)

  /**
   * The page inserted `cell` at `index` (or put a deleted one back: an undo,
   * with its id, metadata and outputs). The server starts the cell's text at
   * version 0, so an editor left from before the delete starts again there.
   */
  inserted(cell: Cell) {
    if (this.applying || !this.writable) return;
    const cells = this.page.collabCells();
    const i = cells.indexOf(cell);
    const j = cell.toJSON();
    const source = cell.getSource();
    this.shadows.set(cell.id, { version: 0, doc: Text.of(String(source).split(/\r\n?|\n/)) });
    if (cell.editor && (getSyncedVersion(cell.editor.state) !== 0 || sendableUpdates(cell.editor.state).length)) cell.rebuildEditor(source);
    const put: Partial<CellJSON> = { id: cell.id, cell_type: j.cell_type, source, metadata: j.metadata ?? {} };
    if (j.cell_type === 'code') {
      put.outputs = j.outputs ?? [];
      put.execution_count = j.execution_count ?? null;
    }
    this.op({ kind: 'insert', after: i > 0 ? cells[i - 1].id : null, cell: put });
  }
  /** The page changed the cell's metadata (Colab's cellView...): sent whole. */
  metaChanged(cell: Cell) {
    if (this.applying || !this.writable) return;
    this.op({ kind: 'meta', id: cell.id, metadata: cell.metadata ?? {} });
  }
  /** The page changed the notebook's metadata: sent whole. */
  notebookMetaChanged(metadata: Record<string, unknown>) {
    if (this.applying || !this.writable) return;
    this.op({ kind: 'nbmeta', metadata });
  }
  removed(cell: Cell) {
    if (this.applying || !this.writable) return;
    this.op({ kind: 'delete', id: cell.id });
  }
  moved(cell: Cell) {
    if (this.applying || !this.writable) return;
    const cells = this.page.collabCells();
    const i = cells.indexOf(cell);
    this.op({ kind: 'move', id: cell.id, after: i > 0 ? cells[i - 1].id : null });
  }
  typed(cell: Cell) {
    this.carryOver(cell);
    if (this.applying || !this.writable) return;
    this.op({ kind: 'type', id: cell.id, cell_type: cell.type });
  }
  /**
   * A cell's editor was made again (a type change, ours or a collaborator's):
   * the new one starts from the server's text, so what the old one had not
   * had confirmed is applied to it again (same base: same synced version).
   */
  private carryOver(cell: Cell) {
    const last = this.lastStates.get(cell.id);
    this.lastStates.delete(cell.id);
    if (!last) return;
    const ups = sendableUpdates(last);
    if (!ups.length) return;
    cell.ensureEditor();
    const ed = cell.editor;
    if (!ed || ed.state === last || getSyncedVersion(ed.state) !== getSyncedVersion(last) || sendableUpdates(ed.state).length) return;
    const k = Math.min(this.sent.get(cell.id) ?? 0, ups.length);
    // One transaction each: the server confirms ours one by one (by client id).
    for (const u of ups) ed.dispatch({ changes: u.changes });
    // Those of a push in flight stay counted: its confirmation, or a stale, settles them.
    if (k) this.sent.set(cell.id, k);
  }

  private op(op: unknown) {
    const rid = ++this.rid;
    this.pendingOps.set(rid, op);
    this.send({ t: 'op', rid, op });
    this.scheduleBackup();
  }

  // ------------------------------------------------------------ from the server

  private takeInit(m: any, first: boolean) {
    const same = !first && m.epoch === this.epoch;
    this.epoch = m.epoch;
    this.client = m.client;
    const wasWritable = this.writable;
    this.writable = !!m.writable;
    this.page.collabReadOnly(!this.writable);
    if (!first && wasWritable !== this.writable) {
      // Rights changed (an editor made a viewer, or back): editors are made
      // again, read-only or not, from the server's text (a viewer's unsent
      // edits could never be accepted).
      this.applying = true;
      try {
        for (const c of this.page.collabCells()) {
          if (!c.editor) continue;
          this.lastStates.delete(c.id);
          this.sent.delete(c.id);
          c.rebuildEditor(this.shadow(c).doc.toString());
        }
      } finally {
        this.applying = false;
      }
    }
    this.peers.clear();
    for (const p of m.peers ?? []) this.peers.set(p.client, { client: p.client, user: p.user, cell: null, anchor: 0, head: 0 });
    if (first) {
      if (this.backupKey) {
        // The local copy of what is unsent: kept fresh while open, marked as left when the page goes.
        window.addEventListener('pagehide', () => this.writeBackup(true));
        window.setInterval(() => this.writeBackup(false), 20000);
        // Held while this tab lives: another tab knows whose copy is still being sent.
        void navigator.locks?.request(this.lockName(this.clientID), () => new Promise(() => {})).catch(() => {});
      }
      for (const c of m.nb.cells) this.shadows.set(c.id, { version: m.versions[c.id] ?? 0, doc: Text.of(String(c.source).split('\n')) });
    } else {
      // Pushes of the old connection are answered never; what reconcile sends is on this one.
      this.inflight.clear();
      this.pulling.clear();
      this.reconcile(m, same);
    }
    // The server holds and saves every change from here on.
    this.page.collabStatus(this.writable ? 'All changes saved' : 'View only');
    if (!first) {
      for (const [rid, op] of this.pendingOps) this.send({ t: 'op', rid, op });
      // Text typed offline (rebased above, or in cells inserted offline) goes out after the ops.
      for (const c of this.page.collabCells()) this.flush(c);
    }
  }

  /** A later init or a sync: the cell list as the server has it. */
  private reconcile(m: any, sameEpoch: boolean) {
    this.applying = true;
    try {
      // Cells this page inserted or deleted and the server has not sequenced
      // yet (offline, or in flight) stay inserted or deleted: the ops are
      // sent (again) after this and their echoes place the cells.
      const inserting = new Set<string>(), deleting = new Set<string>();
      for (const o of this.pendingOps.values() as Iterable<any>) {
        if (o?.kind === 'insert') { inserting.add(o.cell?.id); deleting.delete(o.cell?.id); }
        if (o?.kind === 'delete') { deleting.add(o.id); inserting.delete(o.id); }
      }
      const here = new Set(this.page.collabCells().map(c => c.id));
      const want = (m.nb.cells as CellJSON[]).filter(c => !(deleting.has(c.id!) && !here.has(c.id!)));
      if (m.nb.metadata && typeof m.nb.metadata === 'object') this.page.collabNotebookMeta(m.nb.metadata);
      const ids = new Set(want.map(c => c.id));
      for (const c of [...this.page.collabCells()]) if (!ids.has(c.id) && !inserting.has(c.id)) { this.page.collabRemove(c); this.shadows.delete(c.id); }
      want.forEach((json, index) => {
        const id = json.id!;
        let cell = this.page.collabCells().find(c => c.id === id);
        const version = m.versions[id] ?? 0;
        if (!cell) {
          this.shadows.set(id, { version, doc: Text.of(String(json.source).split('\n')) });
          cell = this.page.collabInsert(json, index);
          return;
        }
        if (this.page.collabCells().indexOf(cell) !== index) this.page.collabMove(cell, index);
        if (cell.type !== json.cell_type) this.page.collabType(cell, json.cell_type);
        const meta = json.metadata ?? {};
        if (JSON.stringify(cell.metadata ?? {}) !== JSON.stringify(meta)) this.page.collabMeta(cell, meta);
        if (sameEpoch && this.shadows.has(id)) {
          // Catch up; what this page typed meanwhile is rebased and sent.
          this.send({ t: 'pull', cell: id, version: cell.editor ? getSyncedVersion(cell.editor.state) : this.shadows.get(id)!.version });
        } else {
          this.rebuild(cell, String(json.source), version);
        }
      });
    } finally {
      this.applying = false;
    }
  }

  /**
   * The server's text replaces ours at a new version (another epoch: the
   * server restarted or the document was reloaded; or we were too far
   * behind). Our unsent edits are rebased over what changed on the server
   * since their base (the shadow: the server's text they were made on) and
   * sent: nothing typed offline is lost (./resync.ts).
   */
  private rebuild(cell: Cell, source: string, version: number) {
    const old = this.shadows.get(cell.id);
    let merged: ChangeSet | null = null;
    if (cell.editor && old) {
      const ups = sendableUpdates(cell.editor.state).map(u => u.changes);
      const k = Math.min(this.sent.get(cell.id) ?? 0, ups.length);
      if (ups.length) merged = rebaseUnsent(old.doc.toString(), source, ups.slice(0, k), ups.slice(k));
    }
    this.sent.delete(cell.id);
    this.lastStates.delete(cell.id);
    this.shadows.set(cell.id, { version, doc: Text.of(source.split('\n')) });
    cell.rebuildEditor(source);
    if (merged && !merged.empty && cell.editor) cell.editor.dispatch({ changes: merged });
  }

  // ------------------------------------------------------------ local copy of unsent changes

  private lockName(clientID: string) {
    return `skylab.live.${clientID}`;
  }

  private ownBackupKey() {
    return this.backupKey ? `${this.backupKey}#live.${this.clientID}` : '';
  }

  private scheduleBackup() {
    if (!this.backupKey || this.backupTimer) return;
    this.backupTimer = window.setTimeout(() => {
      this.backupTimer = 0;
      this.writeBackup(false);
    }, 150);
  }

  /**
   * Keeps this tab's unconfirmed changes in localStorage: per cell its base
   * text and its updates (ChangeSet JSON), and the structural ops not
   * sequenced yet. Removed when nothing is pending. `closing`: the page goes
   * away (another tab may then take the changes over at once).
   */
  writeBackup(closing: boolean) {
    const key = this.ownBackupKey();
    if (!key) return;
    if (!this.writable) {
      // A viewer (also an editor made one) has nothing it could send.
      try { localStorage.removeItem(key); } catch { /* unavailable */ }
      return;
    }
    const cells: Record<string, unknown> = {};
    for (const c of this.page.collabCells()) {
      if (!c.editor) continue;
      const ups = sendableUpdates(c.editor.state);
      const sh = this.shadows.get(c.id);
      if (!ups.length || !sh) continue;
      cells[c.id] = { base: sh.doc.toString(), sent: Math.min(this.sent.get(c.id) ?? 0, ups.length), changes: ups.map(u => u.changes.toJSON()) };
    }
    const ops = [...this.pendingOps.values()];
    try {
      if (!Object.keys(cells).length && !ops.length) localStorage.removeItem(key);
      else localStorage.setItem(key, JSON.stringify({ live: 1, at: Date.now(), closed: closing, cells, ops }));
    } catch {
      /* storage full or unavailable: the session still sends them when online */
    }
  }

  /**
   * After the first init, with the cells on the page: takes over the local
   * copies of tabs of this notebook that were closed before their changes
   * reached the server (a tab holds a Web Lock while it lives; where there
   * are none, plain http on a LAN name, a copy marked as left at pagehide
   * or silent for a minute). Their ops are applied
   * and sent again (inserted cells come back, deleted ones go), their text
   * is rebased onto the server's like a reconnect's, then the copy is
   * dropped. Returns whether anything was restored.
   */
  async restoreBackups(): Promise<boolean> {
    if (!this.backupKey || !this.writable) return false;
    const prefix = `${this.backupKey}#live.`;
    const found: any[] = [];
    let held: Set<string> | null = null;
    try {
      if (navigator.locks) held = new Set(((await navigator.locks.query()).held ?? []).map(l => l.name ?? ''));
    } catch {
      held = null;
    }
    try {
      for (let i = localStorage.length - 1; i >= 0; i--) {
        const key = localStorage.key(i);
        if (!key || !key.startsWith(prefix) || key === this.ownBackupKey()) continue;
        let b: any = null;
        try { b = JSON.parse(localStorage.getItem(key) || 'null'); } catch { /* dropped below */ }
        // A tab still open sends its own.
        const id = key.slice(prefix.length);
        if (held ? held.has(this.lockName(id)) : b && !b.closed && Date.now() - Number(b.at) < 60000) continue;
        localStorage.removeItem(key);
        if (b?.live === 1) found.push(b);
      }
    } catch {
      return false;
    }
    found.sort((a, b) => Number(a.at) - Number(b.at));
    let restored = false;
    for (const b of found) {
      for (const op of Array.isArray(b.ops) ? b.ops : []) {
        const id = op?.kind === 'insert' ? op.cell?.id : op?.id;
        const exists = this.page.collabCells().some(c => c.id === id);
        if (op?.kind === 'insert' ? exists : op?.kind !== 'nbmeta' && !exists) continue;
        this.applyOp(op);
        this.op(op);
        restored = true;
      }
      for (const [id, c] of Object.entries<any>(b.cells && typeof b.cells === 'object' ? b.cells : {})) {
        const cell = this.page.collabCells().find(x => x.id === id);
        if (!cell || typeof c?.base !== 'string' || !Array.isArray(c.changes)) continue;
        try {
          const changes = c.changes.map((j: unknown) => ChangeSet.fromJSON(j));
          const k = Math.max(0, Math.min(Number(c.sent) || 0, changes.length));
          cell.ensureEditor();
          const ed = cell.editor;
          if (!ed) continue;
          const merged = rebaseUnsent(c.base, ed.state.doc.toString(), changes.slice(0, k), changes.slice(k));
          if (merged && !merged.empty) {
            ed.dispatch({ changes: merged });
            restored = true;
          }
        } catch {
          /* a copy that does not fit (another app version): skipped */
        }
      }
    }
    if (restored) this.writeBackup(false);
    return restored;
  }

  private onFrame(m: any) {
    const cell = typeof m.cell === 'string' ? this.page.collabCells().find(c => c.id === m.cell) : undefined;
    switch (m.t) {
      case 'updates': {
        if (!cell) return;
        const sh = this.shadow(cell);
        const ups = (m.updates as any[]).map(u => ({ clientID: u.clientID as string, changes: ChangeSet.fromJSON(u.changes) }));
        // The shadow: the server's text at its version.
        if (m.version <= sh.version) {
          for (const u of ups.slice(sh.version - m.version)) { sh.doc = u.changes.apply(sh.doc); sh.version++; }
        }
        // Updates past what this page has (a frame it never got): it asks for
        // the ones in between rather than stay behind for good.
        const have = cell.editor ? getSyncedVersion(cell.editor.state) : sh.version;
        if (m.version > have) {
          if (!this.pulling.has(cell.id)) {
            this.pulling.add(cell.id);
            this.send({ t: 'pull', cell: cell.id, version: have });
          }
          break;
        }
        this.pulling.delete(cell.id);
        if (cell.editor) {
          const fresh = ups.slice(have - m.version);
          if (fresh.length) {
            const before = sendableUpdates(cell.editor.state).length;
            this.receiving = true;
            try { cell.editor.dispatch(receiveUpdates(cell.editor.state, fresh)); } finally { this.receiving = false; }
            // Ours confirmed are no longer "sent, maybe applied" (a refused push stays counted: harmless).
            const confirmed = before - sendableUpdates(cell.editor.state).length;
            if (confirmed > 0) this.sent.set(cell.id, Math.max(0, (this.sent.get(cell.id) ?? 0) - confirmed));
          }
        } else {
          cell.setSource(sh.doc.toString());
        }
        this.inflight.delete(cell.id);
        this.flush(cell);
        this.scheduleBackup();
        break;
      }
      case 'stale':
        if (!cell) return;
        this.inflight.delete(cell.id);
        this.send({ t: 'pull', cell: cell.id, version: cell.editor ? getSyncedVersion(cell.editor.state) : this.shadow(cell).version });
        break;
      case 'reset':
        if (!cell) return;
        this.rebuild(cell, String(m.source), m.version);
        break;
      case 'op':
        // Our own op was applied here already; its echo only places the cell
        // again, and not when a later op of ours on that cell is still on its
        // way (a delete undone at once: its echo must not remove the cell
        // that is back).
        if (m.client !== this.client || !this.supersededOwn(m.rid, m.op)) this.applyOp(m.op);
        if (m.client === this.client) {
          this.pendingOps.delete(m.rid);
          // A cell inserted offline: the text typed into it since goes out now.
          if (m.op?.kind === 'insert') {
            const mine = this.page.collabCells().find(c => c.id === m.op.cell?.id);
            if (mine) this.flush(mine);
          }
          this.scheduleBackup();
        }
        break;
      case 'sync':
        this.reconcile(m, true);
        break;
      case 'outputs':
        if (cell) this.page.collabOutputs(cell, m.outputs ?? [], m.execution_count ?? null, !!m.running, String(m.msg_id ?? ''));
        break;
      case 'presence': {
        const old = this.peers.get(m.client);
        this.peers.set(m.client, { client: m.client, user: m.user, cell: m.cell, anchor: m.anchor ?? 0, head: m.head ?? 0 });
        if (old?.cell && old.cell !== m.cell) this.showCarets(old.cell);
        if (m.cell) this.showCarets(m.cell);
        break;
      }
      case 'join':
        this.peers.set(m.client, { client: m.client, user: m.user, cell: null, anchor: 0, head: 0 });
        break;
      case 'leave': {
        const old = this.peers.get(m.client);
        this.peers.delete(m.client);
        if (old?.cell) this.showCarets(old.cell);
        break;
      }
      case 'error':
        if (m.rid !== undefined) {
          // An op the server could not apply (its cell is gone): take the server's list again.
          this.pendingOps.delete(m.rid);
          this.ws?.close();
        } else if (cell) {
          this.inflight.delete(cell.id);
          if (m.code === 'bad_changes') this.send({ t: 'pull', cell: cell.id, version: -1 });
        }
        break;
    }
  }

  /** Whether a later op of ours names the same cell (or, for notebook metadata, is one too). */
  private supersededOwn(rid: number, op: any): boolean {
    const key = (o: any) => (o?.kind === 'nbmeta' ? '\0nb' : o?.kind === 'insert' ? o.cell?.id : o?.id);
    const k = key(op);
    for (const [r, o] of this.pendingOps) if (r > rid && key(o) === k) return true;
    return false;
  }

  private applyOp(op: any) {
    this.applying = true;
    try {
      const cells = this.page.collabCells();
      const find = (id: string) => cells.find(c => c.id === id);
      const indexAfter = (after: string | null) => {
        if (after == null) return 0;
        const i = this.page.collabCells().findIndex(c => c.id === after);
        return i < 0 ? this.page.collabCells().length : i + 1;
      };
      // Puts `c` right after `after` (null: first), as the server did.
      const place = (c: Cell, after: string | null) => {
        const rest = this.page.collabCells().filter(x => x !== c);
        const i = after == null ? -1 : rest.findIndex(x => x.id === after);
        const at = after == null ? 0 : i < 0 ? rest.length : i + 1;
        if (this.page.collabCells().indexOf(c) !== at) this.page.collabMove(c, at);
      };
      if (op.kind === 'insert') {
        const mine = find(op.cell.id);
        if (mine) {
          // Ours, applied before: where the server put it.
          place(mine, op.after);
          return;
        }
        this.shadows.set(op.cell.id, { version: 0, doc: Text.of(String(op.cell.source).split('\n')) });
        this.page.collabInsert(op.cell, indexAfter(op.after));
      } else if (op.kind === 'delete') {
        const c = find(op.id);
        if (c) this.page.collabRemove(c);
        this.shadows.delete(op.id);
      } else if (op.kind === 'move') {
        const c = find(op.id);
        if (!c) return;
        place(c, op.after);
      } else if (op.kind === 'type') {
        const c = find(op.id);
        if (c && c.type !== op.cell_type) this.page.collabType(c, op.cell_type);
      } else if (op.kind === 'meta') {
        const c = find(op.id);
        if (c && op.metadata && typeof op.metadata === 'object') this.page.collabMeta(c, op.metadata);
      } else if (op.kind === 'nbmeta') {
        if (op.metadata && typeof op.metadata === 'object') this.page.collabNotebookMeta(op.metadata);
      }
    } finally {
      this.applying = false;
    }
  }
}
