// The terminal panel: a shell inside the notebook's runtime (the Jupyter
// terminals API), shown with xterm.js in a panel docked below the notebook.
// One panel per page; closing it shuts the terminal down on the server.
import { FitAddon } from '@xterm/addon-fit';
import { Terminal as XTerm } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import './panel.css';
import { TerminalConnection } from '@jupyterlab/services/lib/terminal/default';
import { api, serverSettings } from '../api';
import { h } from '../ui/dom';

let current: TerminalPanel | null = null;

/** Opens (or focuses) a terminal in the runtime `kernelId` (null: the server picks or starts one). */
export async function openTerminal(kernelId: string | null): Promise<void> {
  if (current && !current.closed) {
    current.focus();
    return;
  }
  current = new TerminalPanel();
  await current.start(kernelId);
}

class TerminalPanel {
  closed = false;
  private el: HTMLElement;
  private body: HTMLElement;
  private status: HTMLElement;
  private xterm = new XTerm({ cursorBlink: true, fontSize: 13, scrollback: 5000, convertEol: false });
  private fit = new FitAddon();
  private conn: TerminalConnection | null = null;
  private name = '';
  private observer: ResizeObserver | null = null;

  constructor() {
    const close = h('button.btn.tool', { text: '✕', 'aria-label': 'Close terminal', title: 'Close terminal' });
    close.addEventListener('click', () => void this.close());
    this.status = h('span.term-status', { text: 'Starting…' });
    this.body = h('div.term-body');
    this.el = h('section.term-panel', { 'aria-label': 'Terminal' },
      h('div.term-head', null, h('span.term-title', { text: 'Terminal' }), this.status, h('div.spacer'), close),
      this.body);
    document.body.append(this.el);
    document.body.classList.add('has-terminal');
    this.xterm.loadAddon(this.fit);
    this.xterm.open(this.body);
    this.fitNow();
    this.observer = new ResizeObserver(() => this.fitNow());
    this.observer.observe(this.body);
  }

  async start(kernelId: string | null) {
    try {
      const model = await api<{ name: string }>('POST', '/api/terminals', kernelId ? { kernel_id: kernelId } : {});
      this.name = model.name;
      this.el.dataset.name = model.name;
      const conn = new TerminalConnection({ model, serverSettings });
      this.conn = conn;
      conn.messageReceived.connect((_, msg) => {
        if (msg.type === 'stdout' && typeof msg.content?.[0] === 'string') this.xterm.write(msg.content[0] as string);
      });
      conn.connectionStatusChanged.connect((_, s) => {
        this.status.textContent = s === 'connected' ? '' : s;
        if (s === 'connected') this.sendSize();
      });
      conn.disposed.connect(() => {
        this.status.textContent = 'Ended';
        this.el.dataset.state = 'ended';
      });
      this.xterm.onData(data => {
        if (!conn.isDisposed) conn.send({ type: 'stdin', content: [data] });
      });
      this.xterm.onResize(() => this.sendSize());
      this.focus();
    } catch (e) {
      this.status.textContent = 'Could not open a terminal: ' + (e instanceof Error ? e.message : String(e));
      this.el.dataset.state = 'error';
    }
  }

  focus() {
    this.xterm.focus();
  }

  private fitNow() {
    try {
      this.fit.fit();
    } catch {
      /* not laid out yet */
    }
  }

  private sendSize() {
    if (this.conn && !this.conn.isDisposed && this.conn.connectionStatus === 'connected')
      this.conn.send({ type: 'set_size', content: [this.xterm.rows, this.xterm.cols, this.body.clientHeight, this.body.clientWidth] });
  }

  async close() {
    this.closed = true;
    this.observer?.disconnect();
    const conn = this.conn;
    this.conn = null;
    if (conn && !conn.isDisposed) {
      conn.dispose();
      if (this.name) await api('DELETE', `/api/terminals/${encodeURIComponent(this.name)}`).catch(() => undefined);
    }
    this.xterm.dispose();
    this.el.remove();
    document.body.classList.remove('has-terminal');
    if (current === this) current = null;
  }
}
