// The notebook's runtime: a Jupyter session (path → kernel) through
// @jupyterlab/services. Connect on demand, change type (a new runtime from
// /api/skylab/runtimes, queued while no GPU is free), interrupt, restart,
// disconnect and delete. The WebSocket client id is kept per notebook in
// localStorage so that a reopened tab gets the server's replay of what the
// kernel said while no tab was open.
import { KernelConnection, SessionAPI, type Kernel, type Session } from '@jupyterlab/services';
import { api } from '../api';
import { serverSettings } from '../api';

export type RuntimeState = 'disconnected' | 'connecting' | 'queued' | 'idle' | 'busy' | 'starting' | 'restarting' | 'dead' | 'unknown';

export interface RuntimeType {
  name: string;
  display_name: string;
  memory: number;
  cpus: number;
  gpus: number;
  default: boolean;
}

export class Runtime {
  kernel: Kernel.IKernelConnection | null = null;
  session: Session.IModel | null = null;
  state: RuntimeState = 'disconnected';
  queuePosition: number | null = null;
  waitReason: string | null = null;
  type = '';
  private listeners = new Set<() => void>();
  private kernelListeners = new Set<(k: Kernel.IKernelConnection | null) => void>();
  private connecting: Promise<Kernel.IKernelConnection> | null = null;

  constructor(public path: string, public sessionPath: string) {}

  onChange(cb: () => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  onKernel(cb: (k: Kernel.IKernelConnection | null) => void): () => void {
    this.kernelListeners.add(cb);
    return () => this.kernelListeners.delete(cb);
  }

  private emit() {
    for (const l of this.listeners) l();
  }

  private clientId(): string {
    const key = 'skylab.client.' + this.sessionPath;
    let id = localStorage.getItem(key);
    if (!id) {
      id = crypto.randomUUID();
      localStorage.setItem(key, id);
    }
    return id;
  }

  /** Reattaches to this notebook's session if the server still has one. */
  async reattach(): Promise<boolean> {
    const list = await SessionAPI.listRunning(serverSettings);
    const s = list.find(x => x.path === this.sessionPath);
    if (!s || !s.kernel) return false;
    this.session = s;
    // A runtime that died (out of memory, …) stays listed with its reason
    // (and counts against the user's runtimes): it goes, and the session
    // gets a new one (connect's PATCH).
    if ((s.kernel as any).execution_state === 'dead') {
      await api('DELETE', `/api/kernels/${s.kernel.id}`).catch(() => undefined);
      return false;
    }
    await this.attachKernel(s.kernel as Kernel.IModel);
    return true;
  }

  ensure(): Promise<Kernel.IKernelConnection> {
    // While a runtime is being connected or replaced, requests wait for it.
    if (this.connecting) return this.connecting;
    if (this.kernel && !this.kernel.isDisposed && this.kernel.status !== 'dead') return Promise.resolve(this.kernel);
    if (!this.connecting) {
      this.connecting = this.connect().finally(() => (this.connecting = null));
    }
    return this.connecting;
  }

  private async connect(type?: string): Promise<Kernel.IKernelConnection> {
    this.setState('connecting');
    try {
      if (!type && (await this.reattach().catch(() => false))) return this.kernel!;
      let kernelModel: { id?: string; name: string } = { name: 'python3' };
      if (type) kernelModel = { id: await this.newRuntime(type), name: 'python3' };
      const name = this.path.split('/').pop() || this.path;
      if (this.session) {
        const body: any = { id: this.session.id, kernel: kernelModel };
        this.session = await api('PATCH', `/api/sessions/${this.session.id}`, body);
      } else {
        this.session = await SessionAPI.startSession({ path: this.sessionPath, name, type: 'notebook', kernel: kernelModel } as any, serverSettings);
      }
      await this.attachKernel(this.session!.kernel as Kernel.IModel);
      return this.kernel!;
    } catch (e) {
      this.setState('disconnected');
      throw e;
    }
  }

  /** POST /api/skylab/runtimes; waits in the GPU queue (showing the position). Returns the kernel id. */
  private async newRuntime(type: string): Promise<string> {
    let r: any = await api('POST', '/api/skylab/runtimes', { type, kernel_name: 'python3' });
    while (r.state === 'queued') {
      this.queuePosition = r.position ?? null;
      this.setState('queued');
      await new Promise(res => setTimeout(res, 2000));
      r = await api('GET', `/api/skylab/runtimes/${r.id}`);
    }
    this.queuePosition = null;
    // A runtime that left the GPU queue is still starting: connect once its
    // kernel answers (requests sent to it earlier could go unanswered).
    // A cluster runtime (Slurm) may wait long for a machine: as long as the
    // server gives a reason ("Waiting for a machine (Resources, position 3
    // in the queue)"), it is shown and the wait goes on.
    for (let i = 0; (i < 120 || r.reason) && (r.state === 'starting' || r.kernel?.execution_state === 'starting'); i++) {
      this.waitReason = r.reason ?? null;
      this.setState('starting');
      await new Promise(res => setTimeout(res, r.reason ? 1000 : 500));
      r = await api('GET', `/api/skylab/runtimes/${r.id}`);
    }
    this.waitReason = null;
    return r.kernel?.id ?? r.id;
  }

  private async attachKernel(model: Kernel.IModel) {
    this.kernel?.dispose();
    // A connection of our own (not KernelManager.connectTo: its poll of
    // /api/kernels can race a runtime that just started and declare it dead).
    // A runtime shut down on the server ends the WebSocket; the connection
    // then finds the kernel gone and reports 'dead'.
    const k: Kernel.IKernelConnection = new KernelConnection({ model, serverSettings, clientId: this.clientId(), username: '', handleComms: true });
    this.kernel = k;
    const debug = localStorage.getItem('skylab.debug') === '1';
    k.statusChanged.connect((_, s) => {
      if (debug) console.log('kernel status', k.id, s);
      if (this.kernel === k) this.setState(s as RuntimeState);
    });
    k.connectionStatusChanged.connect((_, s) => {
      if (debug) console.log('kernel connection', k.id, s);
      if (this.kernel !== k) return;
      if (s === 'connecting') this.setState('connecting');
      else if (s === 'connected') this.setState(k.status as RuntimeState);
    });
    k.disposed.connect(() => {
      if (this.kernel === k) {
        this.kernel = null;
        this.setState('disconnected');
        for (const l of this.kernelListeners) l(null);
      }
    });
    // Listeners first: the server replays what the kernel said while no tab
    // was connected as soon as the WebSocket opens.
    for (const l of this.kernelListeners) l(k);
    this.setState(k.status as RuntimeState);
    this.type = await this.lookupType(model.id);
    this.emit();
  }

  private async lookupType(id: string): Promise<string> {
    try {
      const r: any = await api('GET', `/api/skylab/runtimes/${id}`);
      return r.type ?? '';
    } catch {
      return '';
    }
  }

  private setState(s: RuntimeState) {
    this.state = s;
    this.emit();
  }

  async interrupt() {
    await this.kernel?.interrupt();
  }

  async restart() {
    if (!this.kernel) return;
    await this.kernel.restart();
  }

  /** A new runtime of `type` replaces the current one (which is shut down). */
  async changeType(type: string) {
    const old = this.kernel;
    const oldId = old?.id;
    await this.connecting?.catch(() => undefined);
    this.connecting = this.connect(type).finally(() => (this.connecting = null));
    await this.connecting;
    // The session's PATCH shut the old kernel down; make sure of it.
    if (oldId && oldId !== this.kernel?.id) await api('DELETE', `/api/kernels/${oldId}`).catch(() => undefined);
  }

  /** Shuts the runtime down and forgets the session. */
  async disconnectAndDelete() {
    const k = this.kernel;
    const s = this.session;
    this.session = null;
    this.kernel = null;
    k?.dispose();
    if (s) await SessionAPI.shutdownSession(s.id, serverSettings).catch(() => undefined);
    if (k) await api('DELETE', `/api/kernels/${k.id}`).catch(() => undefined);
    this.setState('disconnected');
    for (const l of this.kernelListeners) l(null);
  }

  dispose() {
    this.kernel?.dispose();
  }
}

export async function runtimeTypes(): Promise<{ types: RuntimeType[]; gpus: { total: number; free: number; queued: number } }> {
  return api('GET', '/api/skylab/runtime_types');
}
