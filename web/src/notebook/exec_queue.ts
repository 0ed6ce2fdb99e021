// The execution queue: code cells wait here in order, go to the kernel one
// at a time as execute_requests, and the kernel's replies and IOPub
// messages are routed back to the cell that sent them. Requests still
// running when the tab closes are remembered (localStorage) and picked up
// again when the page reattaches to the runtime.
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { errorText } from '../drive/drive';
import { handleStdin, type OutputContext } from '../extensions';
import { cellFinished } from '../secrets/notify';
import { toast } from '../ui/dialog';
import { h } from '../ui/dom';
import type { Cell } from './cell';
import type { Runtime } from './runtime';

/** What the queue needs from the page. */
export interface ExecHost {
  readonly runtime: Runtime;
  readonly cells: Cell[];
  /** The notebook's path (for "cell finished" notifications). */
  readonly path: string;
  /** The key that names this notebook's runtime session (pending runs are stored under it). */
  sessionPath(): string;
  index(cell: Cell): number;
  outputContext(cell: Cell): OutputContext;
  changed(cell: Cell, what: 'outputs'): void;
  markDirty(): void;
  /** A `skylab_runtime_event` message on IOPub (warnings, death). */
  runtimeEvent(content: any): void;
}

export class ExecutionQueue {
  /** execute_request msg_id → the cell it runs. */
  readonly runs = new Map<string, Cell>();
  /** execute_request msg_ids this page sent (bounded). */
  readonly ownRuns = new Set<string>();
  private queue: Cell[] = [];
  private pumping = false;
  private kernelHandlers: (() => void)[] = [];
  /** Cells the server was still recording into when the notebook was loaded
   * (run from another tab, computer or client): shown as running, and their
   * further output rendered, like this tab's own pending requests. */
  serverRuns: Record<string, string> = {};

  constructor(private host: ExecHost) {}

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

  /** Cells waiting in the queue go back to idle and the queue empties (not the running one). */
  dropQueued() {
    for (const q of this.queue) q.setRunState('idle');
    this.queue = [];
  }

  /** Whether a request of this page, or one running now, is the cell's. */
  ownsOutputOf(cell: Cell, msgId: string): boolean {
    return this.ownRuns.has(msgId) || [...this.runs.values()].includes(cell);
  }

  private async pump() {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length) {
        let k: Kernel.IKernelConnection;
        try {
          k = await this.host.runtime.ensure();
        } catch (e) {
          this.dropQueued();
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
      // Jupyter aborts the queued cells after an error: do the same here.
      if (c.status === 'error') this.dropQueued();
    };
    future.done.catch(() => undefined).then(() => {
      if (this.runs.get(msgId) === cell) this.finish(msgId, cell);
      future.dispose();
    });
    this.host.markDirty();
  }

  private finish(msgId: string, cell: Cell) {
    this.runs.delete(msgId);
    this.savePending();
    const started = cell.runState === 'running' ? cell.startedAt : 0;
    if (cell.runState !== 'idle') cell.setRunState('idle');
    if (started) cellFinished(Date.now() - started, `Cell ${cell.executionCount != null ? `[${cell.executionCount}]` : this.host.index(cell) + 1}`, this.host.path.split('/').pop() || this.host.path);
    cell.updateGutter();
    this.host.markDirty();
  }

  private onStdin(k: Kernel.IKernelConnection, cell: Cell, msg: KernelMessage.IInputRequestMsg) {
    const { prompt, password } = msg.content;
    const reply = (value: string) => k.sendInputReply({ status: 'ok', value } as any, msg.header as any);
    const special = handleStdin({ prompt, password, outputEl: cell.outputs.el, context: this.host.outputContext(cell) });
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

  /** The page's kernel connection changed (null: none now). */
  kernelChanged(k: Kernel.IKernelConnection | null) {
    for (const off of this.kernelHandlers) off();
    this.kernelHandlers = [];
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
  }

  private onIopub(msg: KernelMessage.IIOPubMessage) {
    const type = msg.header.msg_type as string;
    const content = msg.content as any;
    if (type === 'skylab_runtime_event') return this.host.runtimeEvent(content);
    if (type === 'update_display_data') {
      const id = content.transient?.display_id;
      if (id) for (const c of this.host.cells) if (c.outputs.updateDisplay(id, content.data, content.metadata ?? {})) this.host.changed(c, 'outputs');
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
    this.host.changed(cell, 'outputs');
  }

  /** The localStorage key of this notebook's pending requests. */
  pendingKey() {
    return 'skylab.pending.' + this.host.sessionPath();
  }

  /** Remembers which requests are running (for a tab that is reopened). */
  private savePending() {
    const m: Record<string, string> = {};
    for (const [id, c] of this.runs) m[id] = c.id;
    if (Object.keys(m).length) localStorage.setItem(this.pendingKey(), JSON.stringify({ at: Date.now(), runs: m }));
    else localStorage.removeItem(this.pendingKey());
  }

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
      const cell = this.host.cells.find(c => c.id === cellId);
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
      const k = this.host.runtime.kernel;
      const left = [...this.runs].filter(([id]) => restored.has(id));
      if (!k || !left.length) return clearInterval(timer);
      idleChecks = k.status === 'idle' ? idleChecks + 1 : 0;
      if (idleChecks >= 2) {
        for (const [id, cell] of left) this.finish(id, cell);
        clearInterval(timer);
      }
    }, 3000);
  }

  /** Forgets the stored pending requests (no runtime to reattach to). */
  clearPending() {
    localStorage.removeItem(this.pendingKey());
  }

  /** The kernel restarted, died or went away: nothing of this page runs any more. */
  resetRuns() {
    for (const [, cell] of this.runs) cell.setRunState('idle');
    this.runs.clear();
    this.savePending();
  }
}
