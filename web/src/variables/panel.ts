// The Variables panel: names, types, shapes and sizes of the kernel's user
// variables (python/skylab/variables.py), asked for with a silent
// execute_request (no history, no outputs, not recorded in the notebook)
// only while the panel is open, and again after each run of a cell.
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import { clear, h } from '../ui/dom';

const EXPR = '__import__("skylab.variables").variables.summary()';

interface Variable {
  name: string;
  type: string;
  module: string;
  shape: number[] | null;
  size: number | null;
  value: string | null;
}

export interface KernelSource {
  kernel: Kernel.IKernelConnection | null;
  onKernel(cb: (k: Kernel.IKernelConnection | null) => void): () => void;
}

function bytes(n: number | null): string {
  if (n === null || n === undefined) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}

export class VariablesPanel {
  private open = false;
  private ours = new Set<string>();
  private kernel: Kernel.IKernelConnection | null = null;
  private pending = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private list: HTMLElement;

  constructor(private el: HTMLElement, private source: KernelSource) {
    this.list = h('div.vars-list');
    el.append(this.list);
    source.onKernel(k => this.attach(k));
    this.attach(source.kernel);
  }

  /** Shown or hidden: only an open panel asks the kernel anything. */
  setOpen(open: boolean) {
    this.open = open;
    if (open) this.refresh();
  }

  private attach(k: Kernel.IKernelConnection | null) {
    if (k === this.kernel) return;
    this.kernel?.iopubMessage.disconnect(this.onIOPub, this);
    this.kernel = k;
    k?.iopubMessage.connect(this.onIOPub, this);
    this.refresh();
  }

  private onIOPub(_: Kernel.IKernelConnection, msg: KernelMessage.IIOPubMessage) {
    if (!this.open || msg.header.msg_type !== 'status') return;
    const parent = msg.parent_header as Partial<KernelMessage.IHeader>;
    if ((msg.content as any).execution_state !== 'idle' || parent?.msg_type !== 'execute_request') return;
    if (parent.msg_id && this.ours.has(parent.msg_id)) return;  // our own query: no loop
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), 150);  // after a run of cells, once
  }

  private render(vars: Variable[] | null, note = '') {
    clear(this.list);
    if (note || !vars) {
      this.list.append(h('div.vars-note', { text: note || 'No runtime connected' }));
      return;
    }
    if (!vars.length) {
      this.list.append(h('div.vars-note', { text: 'No variables yet' }));
      return;
    }
    const rows = vars.map(v => h('tr.var', { 'data-name': v.name },
      h('td.var-name', { text: v.name }),
      h('td.var-type', { text: v.type, title: v.module ? `${v.module}.${v.type}` : v.type }),
      h('td.var-shape', { text: v.shape ? (v.shape.length === 1 && v.type !== 'ndarray' ? String(v.shape[0]) : `(${v.shape.join(', ')}${v.shape.length === 1 ? ',' : ''})`) : '' }),
      h('td.var-size', { text: bytes(v.size) }),
      h('td.var-value', { text: v.value ?? '' })));
    this.list.append(h('table.vars', null,
      h('thead', null, h('tr', null, ...['Name', 'Type', 'Shape', 'Size', 'Value'].map(t => h('th', { text: t })))),
      h('tbody', null, ...rows)));
  }

  async refresh() {
    if (!this.open) return;
    const k = this.kernel;
    if (!k || k.isDisposed || k.status === 'dead') return this.render(null);
    if (this.pending) return;
    this.pending = true;
    try {
      const future = k.requestExecute({ code: '', silent: true, store_history: false, user_expressions: { vars: EXPR }, allow_stdin: false, stop_on_error: false });
      this.ours.add(future.msg.header.msg_id);
      const reply = await future.done;
      this.ours.delete(future.msg.header.msg_id);
      const r = (reply.content as any).user_expressions?.vars;
      if (!r || r.status !== 'ok') return this.render(null, 'Variables are not available in this runtime');
      this.render(JSON.parse(r.data['text/plain']) as Variable[]);
    } catch {
      this.render(null, 'Variables are not available right now');
    } finally {
      this.pending = false;
    }
  }
}
