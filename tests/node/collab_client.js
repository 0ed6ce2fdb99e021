'use strict';
// A headless co-editing client of Skylab's collab WebSocket built on
// @codemirror/collab + @codemirror/state (the same library the app uses):
// one EditorState per cell, the server as the central authority. Used by
// collab.test.js and bench/collab_bench.mjs. Structural ops are applied
// when the server sequences them (their echo); text edits apply locally at
// once and are rebased by receiveUpdates. Offline: edits and ops queue and
// go out after the next init (pull, rebase, push). When the server sends a
// cell's whole text (another epoch after a restart, or too far behind),
// unsent edits are rebased with the app's own module (web/src/notebook/
// resync.ts, bundled here by esbuild): the code under test is the app's.

const path = require('node:path');
const WebSocket = require('ws');

const WEB = path.resolve(__dirname, '..', '..', 'web', 'node_modules');
const state = require(path.join(WEB, '@codemirror/state'));
const { EditorState, ChangeSet, Text } = state;
const { collab, receiveUpdates, sendableUpdates, getSyncedVersion } = require(path.join(WEB, '@codemirror/collab'));

// The app's resync.ts, bundled with @codemirror/state left to this process's copy.
const resync = (() => {
  const esbuild = require(path.join(WEB, 'esbuild'));
  const out = esbuild.buildSync({
    entryPoints: [path.resolve(__dirname, '..', '..', 'web', 'src', 'notebook', 'resync.ts')],
    bundle: true, format: 'cjs', platform: 'node', write: false, external: ['@codemirror/state'], logLevel: 'error',
  });
  const mod = { exports: {} };
  new Function('require', 'module', 'exports', out.outputFiles[0].text)(id => (id === '@codemirror/state' ? state : require(id)), mod, mod.exports);
  return mod.exports;
})();

class CollabClient {
  constructor(url, token, name) {
    this.url = url;
    this.token = token;
    this.name = name;
    this.clientID = `${name}-${Math.random().toString(36).slice(2, 10)}`;
    this.cells = new Map();   // id -> {state, type, inflight}
    this.order = [];
    this.outputs = new Map(); // id -> last outputs frame
    this.pendingOps = new Map(); // rid -> op (queued or sent, not yet sequenced)
    this.rid = 0;
    this.ws = null;
    this.online = false;
    this.epoch = null;
    this.errors = [];
    this.listeners = [];
    this.received = 0;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, { headers: { Authorization: `token ${this.token}` } });
      this.ws = ws;
      let opened = false;
      ws.on('message', data => {
        if (this.ws !== ws) return; // dropped by disconnect(): frames still in flight are lost
        const m = JSON.parse(data.toString());
        this.received++;
        if (m.t === 'init') {
          this.onInit(m);
          if (!opened) { opened = true; resolve(m); }
        } else {
          this.onFrame(m);
        }
        for (const l of this.listeners.slice()) l(m);
      });
      ws.on('close', (code) => {
        this.online = false;
        if (!opened) reject(new Error(`closed before init: ${code}`));
      });
      ws.on('error', e => { if (!opened) reject(e); });
    });
  }

  disconnect() {
    this.online = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  send(m) {
    if (this.online && this.ws) this.ws.send(JSON.stringify(m));
  }

  waitFor(pred, ms = 30000) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { this.listeners = this.listeners.filter(x => x !== l); reject(new Error('timeout')); }, ms);
      const l = m => { if (pred(m)) { clearTimeout(t); this.listeners = this.listeners.filter(x => x !== l); resolve(m); } };
      this.listeners.push(l);
    });
  }

  // base: the server's text at the synced version (what unsent edits were made on);
  // sent: how many unconfirmed updates went out in a push (maybe applied).
  newCell(id, source, type, version) {
    const state = EditorState.create({ doc: source, extensions: [collab({ startVersion: version, clientID: this.clientID })] });
    this.cells.set(id, { state, type, inflight: false, base: state.doc, sent: 0 });
  }

  // The server's text replaces ours: unsent edits rebased onto it (the app's resync.ts).
  resetCell(id, source, type, version) {
    const old = this.cells.get(id);
    let merged = null;
    if (old) {
      const ups = sendableUpdates(old.state).map(u => u.changes);
      const k = Math.min(old.sent, ups.length);
      if (ups.length) merged = resync.rebaseUnsent(old.base.toString(), source, ups.slice(0, k), ups.slice(k));
    }
    this.newCell(id, source, type, version);
    if (merged && !merged.empty) { const c = this.cells.get(id); c.state = c.state.update({ changes: merged }).state; }
  }

  onInit(m) {
    const sameEpoch = this.epoch === m.epoch;
    this.epoch = m.epoch;
    this.writable = m.writable;
    this.client = m.client;
    // Cells we inserted or deleted that the server has not sequenced yet stay so.
    const inserting = new Set(), deleting = new Set();
    for (const o of this.pendingOps.values()) {
      if (o.kind === 'insert') { inserting.add(o.cell.id); deleting.delete(o.cell.id); }
      if (o.kind === 'delete') { deleting.add(o.id); inserting.delete(o.id); }
    }
    const seen = new Set();
    const order = [];
    for (const c of m.nb.cells) {
      if (deleting.has(c.id) && !this.cells.has(c.id)) continue;
      seen.add(c.id);
      order.push(c.id);
      const mine = this.cells.get(c.id);
      if (mine && sameEpoch) {
        mine.type = c.cell_type;
        mine.inflight = false;
      } else {
        this.resetCell(c.id, c.source, c.cell_type, m.versions[c.id]);
      }
      if (c.outputs) this.outputs.set(c.id, { outputs: c.outputs, execution_count: c.execution_count });
    }
    for (const id of [...this.cells.keys()]) {
      if (seen.has(id)) continue;
      if (inserting.has(id)) { order.push(id); this.cells.get(id).inflight = false; } else this.cells.delete(id);
    }
    this.order = order;
    this.online = true;
    // Catch up on every cell we had (rebases what we did offline), then our queued ops, then text.
    if (sameEpoch) for (const [id, c] of this.cells) if (!inserting.has(id)) this.send({ t: 'pull', cell: id, version: getSyncedVersion(c.state) });
    for (const [rid, op] of this.pendingOps) this.send({ t: 'op', rid, op });
    for (const id of this.cells.keys()) this.flush(id);
  }

  onFrame(m) {
    if (m.t === 'updates') {
      const c = this.cells.get(m.cell);
      if (!c) return;
      const synced = getSyncedVersion(c.state);
      if (m.version > synced) return; // a gap: the pull we sent covers it
      const ups = m.updates.slice(synced - m.version).map(u => ({ clientID: u.clientID, changes: ChangeSet.fromJSON(u.changes) }));
      if (ups.length) {
        const before = sendableUpdates(c.state).length;
        c.state = receiveUpdates(c.state, ups).state;
        for (const u of ups) c.base = u.changes.apply(c.base);
        c.sent = Math.max(0, c.sent - (before - sendableUpdates(c.state).length));
      }
      c.inflight = false;
      this.flush(m.cell);
    } else if (m.t === 'stale') {
      const c = this.cells.get(m.cell);
      if (!c) return;
      c.inflight = false;
      this.send({ t: 'pull', cell: m.cell, version: getSyncedVersion(c.state) });
    } else if (m.t === 'reset') {
      const c = this.cells.get(m.cell);
      if (!c) return;
      this.resetCell(m.cell, m.source, c.type, m.version);
      this.flush(m.cell);
    } else if (m.t === 'op') {
      const own = m.client === this.client && m.rid !== undefined && this.pendingOps.has(m.rid);
      if (own && m.op.kind === 'insert' && this.cells.has(m.op.cell.id)) {
        // Ours (inserted offline and typed into): keep the cell, place it where the server did.
        this.order = this.order.filter(x => x !== m.op.cell.id);
        const i = m.op.after == null ? 0 : (this.order.includes(m.op.after) ? this.order.indexOf(m.op.after) + 1 : this.order.length);
        this.order.splice(i, 0, m.op.cell.id);
      } else {
        this.applyOp(m.op);
      }
      if (m.client === this.client && m.rid !== undefined) this.pendingOps.delete(m.rid);
      if (own && m.op.kind === 'insert') this.flush(m.op.cell.id);
    } else if (m.t === 'outputs') {
      this.outputs.set(m.cell, { outputs: m.outputs, execution_count: m.execution_count, running: m.running });
    } else if (m.t === 'error') {
      if (m.rid !== undefined) this.pendingOps.delete(m.rid);
      if (m.cell && this.cells.has(m.cell)) {
        this.cells.get(m.cell).inflight = false;
        // Refused changes would be refused again: take the server's text.
        if (m.code === 'bad_changes') this.send({ t: 'pull', cell: m.cell, version: -1 });
      }
      this.errors.push(m);
    } else if (m.t === 'sync') {
      this.onInit({ ...m, epoch: this.epoch, writable: this.writable, client: this.client });
    }
  }

  applyOp(op) {
    const at = after => (after == null ? 0 : this.order.indexOf(after) + 1);
    if (op.kind === 'insert') {
      this.newCell(op.cell.id, op.cell.source, op.cell.cell_type, 0);
      const i = op.after == null ? 0 : (this.order.includes(op.after) ? at(op.after) : this.order.length);
      this.order.splice(i, 0, op.cell.id);
    } else if (op.kind === 'delete') {
      this.cells.delete(op.id);
      this.order = this.order.filter(x => x !== op.id);
    } else if (op.kind === 'move') {
      this.order = this.order.filter(x => x !== op.id);
      this.order.splice(at(op.after), 0, op.id);
    } else if (op.kind === 'type') {
      const c = this.cells.get(op.id);
      if (c) c.type = op.cell_type;
    }
  }

  // ---- local actions
  edit(id, spec) {
    const c = this.cells.get(id);
    if (!c) return false;
    c.state = c.state.update({ changes: spec }).state;
    this.flush(id);
    return true;
  }

  flush(id) {
    const c = this.cells.get(id);
    if (!c || c.inflight || !this.online) return;
    const ups = sendableUpdates(c.state).slice(0, 200); // the server's limit per push
    if (!ups.length) return;
    c.inflight = true;
    c.sent = Math.max(c.sent, ups.length);
    this.send({
      t: 'push', cell: id, version: getSyncedVersion(c.state),
      updates: ups.map(u => ({ clientID: u.clientID, changes: u.changes.toJSON() })),
    });
  }

  op(op) {
    const rid = ++this.rid;
    this.pendingOps.set(rid, op);
    this.send({ t: 'op', rid, op });
    return rid;
  }

  text(id) { return this.cells.get(id).state.doc.toString(); }

  idle() {
    if (!this.online || this.pendingOps.size) return false;
    for (const [id, c] of this.cells) {
      if (c.inflight || sendableUpdates(c.state).length) { this.flush(id); return false; }
    }
    return true;
  }

  snapshot() {
    return this.order.map(id => ({ id, type: this.cells.get(id).type, source: this.text(id) }));
  }

  async ping() {
    const p = this.waitFor(m => m.t === 'pong');
    this.send({ t: 'ping' });
    await p;
  }
}

module.exports = { CollabClient };
