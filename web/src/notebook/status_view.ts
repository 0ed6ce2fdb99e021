// The runtime status view: the toolbar's status button (state, RAM/Disk/GPU
// meter), its menu with the resources summary, the banner that counts down
// to an announced shutdown, and the "Change runtime type" dialog.
import type { Kernel } from '@jupyterlab/services';
import { api } from '../api';
import { errorText } from '../drive/drive';
import { openDialog, toast } from '../ui/dialog';
import { clear, formatBytes, h } from '../ui/dom';
import { showMenu, type MenuItem } from '../ui/menu';
import { runtimeTypes, type Runtime } from './runtime';

export class RuntimeStatusView {
  /** The toolbar element the view renders into (div.runtime-status). */
  readonly el = h('div.runtime-status');
  private resources: any = null;
  private resourceTimer = 0;
  private bannerTimer = 0;

  /**
   * @param runtime the notebook's runtime (state, type, kernel)
   * @param banner the page's alert banner (runtime warnings)
   * @param menuItems the runtime menu's entries (commands), built when it opens
   */
  constructor(private runtime: Runtime, private banner: HTMLElement, private menuItems: () => MenuItem[]) {}

  private kernel(): Kernel.IKernelConnection | null {
    return this.runtime.kernel;
  }

  /** Renders the button for the runtime's current state. */
  render() {
    const rt = this.runtime;
    clear(this.el);
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
      else this.menu(main);
    });
    const more = h('button.status-more', { 'aria-label': 'Runtime options', 'aria-haspopup': 'menu', text: '▾' });
    more.addEventListener('click', () => this.menu(more));
    this.el.append(main, more);
    if (s === 'idle' || s === 'busy') this.renderMeter();
    if (rt.type && (s === 'idle' || s === 'busy')) main.title = `Runtime type: ${rt.type}`;
  }

  private menu(anchor: HTMLElement) {
    const menu = showMenu(this.menuItems(), anchor);
    const res = h('div.menu-resources', { text: 'Resources: loading…' });
    menu.prepend(res);
    void api('GET', '/api/skylab/resources').then((r: any) => {
      res.textContent = '';
      res.append(resourceSummary(r, this.kernel()?.id));
    }).catch(() => (res.textContent = ''));
  }

  /** The kernel connection changed: the meter polls while there is one. */
  kernelChanged(k: Kernel.IKernelConnection | null) {
    clearInterval(this.resourceTimer);
    if (!k) return;
    this.pollResources();
    this.resourceTimer = window.setInterval(() => this.pollResources(), 5000);
  }

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
    const meter = this.el.querySelector('.meter');
    if (!meter || !r || !this.kernel()) return;
    clear(meter);
    const u = runtimeUsage(r, this.kernel()?.id);
    const frac = (x: Amount) => (x.total ? Math.min(1, x.used / x.total) : 0);
    meter.append(bar('RAM', frac(u.ram)), bar('Disk', frac(u.disk)));
    if (u.gpu) meter.append(bar('GPU', u.gpu.total ? frac(u.gpu) : u.gpuUtilization / 100));
    (this.el.firstChild as HTMLElement).title =
      `RAM ${formatBytes(u.ram.used)} / ${formatBytes(u.ram.total)} · Disk ${formatBytes(u.disk.used)} / ${formatBytes(u.disk.total)}` +
      (u.gpu?.total ? ` · GPU ${formatBytes(u.gpu.used)} / ${formatBytes(u.gpu.total)}` : '') +
      (this.runtime.type ? ` · ${this.runtime.type.toUpperCase()} runtime` : '');
  }

  /** Shows a `skylab_runtime_event` warning (idle, lifetime or quota shutdown ahead) with a countdown. */
  warning(c: any) {
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

  /** The "Change runtime type" dialog; starts the chosen type's runtime. */
  async changeType() {
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
