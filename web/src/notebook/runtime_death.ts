// A runtime that dies says why (issue 15). When the runtime goes `dead`
// (out of memory, its maximum lifetime or idle timeout, stopped by an
// operator, its cluster job ended), the notebook shows the reason where the
// user looks (as Colab's "Your session crashed after using all available
// RAM"), marks the cells that were running, offers Reconnect and, after an
// out-of-memory crash, a runtime type with more memory. page.ts feeds it the
// runtime's states and Skylab's runtime events; everything else is here.
import { api } from '../api';
import { formatBytes, h } from '../ui/dom';
import { runtimeTypes, type RuntimeType } from './runtime';

/** What the notice needs of the page. */
export interface DeathHooks {
  reconnect(): Promise<unknown>;
  changeType(type: string): Promise<unknown>;
  /** The name of the runtime type that died ('' unknown). */
  currentType(): string;
}

/** The part of a cell the notice marks. */
export interface MarkableCell {
  el: HTMLElement;
}

export type DeathKind = 'oom' | 'lifetime' | 'idle' | 'operator' | 'cluster' | 'other';

/** Sorts a server's reason (KernelModel.reason, a runtime event) into a kind. */
export function classify(reason: string, lastEvent: string | null): DeathKind {
  if (/out of memory|oom/i.test(reason)) return 'oom';
  if (lastEvent === 'lifetime' || lastEvent === 'idle' || lastEvent === 'operator') return lastEvent;
  if (/slurm/i.test(reason)) return 'cluster';
  return 'other';
}

export function describe(kind: DeathKind, reason: string): string {
  switch (kind) {
    case 'oom':
      return 'Your session crashed after using all available RAM' +
        (/limit of (\d+) MiB/.exec(reason) ? ` (${/limit of (\d+) MiB/.exec(reason)![1]} MiB)` : '') + '.';
    case 'lifetime':
      return 'This runtime reached its maximum lifetime and was shut down. Files in /content are gone; the Drive keeps yours.';
    case 'idle':
      return 'This runtime was disconnected because it was idle.';
    case 'operator':
      return 'This runtime was stopped by an administrator.';
    case 'cluster':
      return `The cluster ended this runtime (${reason}). Files in /content are gone; the Drive keeps yours.`;
    default:
      return reason ? `The runtime stopped: ${reason}.` : 'The runtime stopped.';
  }
}

export class RuntimeDeath {
  readonly el = h('div.banner.runtime-death', { hidden: true, role: 'alert' });
  private lastEvent: string | null = null;
  private marked: { cell: MarkableCell; note: HTMLElement }[] = [];
  private deadKernel: string | null = null;

  /** The notice goes right before `anchor` (the page's banner). */
  constructor(private anchor: HTMLElement, private hooks: DeathHooks) {
    anchor.before(this.el);
  }

  /** A `skylab_runtime_event` from the server. */
  event(c: { event?: string; reason?: string }) {
    if (c.event === 'expiring' || c.event === 'stopped') this.lastEvent = c.reason ?? null;
  }

  /** The runtime's state changed; `running` are the cells that were running. */
  stateChanged(state: string, kernelId: string | null, running: MarkableCell[]) {
    // A runtime shut down on the server (lifetime, idle, an operator) may end
    // as `disconnected` or `unknown` (its WebSocket closed) rather than `dead`: its event came first.
    const stopped = (state === 'disconnected' || state === 'unknown') && this.lastEvent !== null && this.el.hidden;
    if (state === 'dead' || stopped) {
      if (kernelId && kernelId === this.deadKernel) return;
      this.deadKernel = kernelId;
      void this.died(kernelId, running);
    } else if (state === 'busy') {
      // A new runtime runs something: the old marks are history.
      this.unmark();
    } else if (state === 'idle' || state === 'starting' || state === 'connecting') {
      if (state === 'idle') this.deadKernel = null;
      if (state !== 'idle') this.el.hidden = true;
      this.lastEvent = state === 'idle' ? this.lastEvent : null;
    }
  }

  private unmark() {
    for (const m of this.marked) {
      m.cell.el.classList.remove('crashed');
      m.note.remove();
    }
    this.marked = [];
  }

  private async died(kernelId: string | null, running: MarkableCell[]) {
    let reason = '';
    if (kernelId) {
      try {
        const r: any = await api('GET', `/api/skylab/runtimes/${kernelId}`);
        reason = typeof r?.reason === 'string' ? r.reason.slice(0, 500) : '';
      } catch {
        /* gone: shut down (lifetime, operator), the event says why */
      }
    }
    const kind = classify(reason, this.lastEvent);
    const text = describe(kind, reason);
    this.unmark();
    for (const cell of running) {
      cell.el.classList.add('crashed');
      const note = h('div.cell-crash', { role: 'status', text: kind === 'oom' ? 'This cell was running when the runtime ran out of memory.' : 'This cell was running when the runtime stopped.' });
      cell.el.querySelector('.cell-main')?.append(note);
      this.marked.push({ cell, note });
    }
    this.el.replaceChildren(
      h('span.banner-icon', { text: '!', 'aria-hidden': 'true' }),
      h('span.banner-text.death-text', { text }));
    this.el.dataset.kind = kind;
    this.anchor.hidden = true; // the deadline warning ("will be disconnected in …") is over
    const reconnect = h('button.btn.primary.death-reconnect', { text: 'Reconnect' });
    reconnect.addEventListener('click', () => {
      this.el.hidden = true;
      void this.hooks.reconnect();
    });
    this.el.append(reconnect);
    if (kind === 'oom') void this.offerBigger();
    const dismiss = h('button.btn.link', { text: 'Dismiss' });
    dismiss.addEventListener('click', () => (this.el.hidden = true));
    this.el.append(dismiss);
    this.el.hidden = false;
  }

  /** After an out-of-memory crash: the smallest runtime type with more memory. */
  private async offerBigger() {
    let types: RuntimeType[];
    try {
      types = (await runtimeTypes()).types;
    } catch {
      return;
    }
    const current = types.find(t => t.name === this.hooks.currentType()) ?? types.find(t => t.default);
    const mem = current?.memory ?? 0;
    if (!mem) return;
    const bigger = types.filter(t => t.memory > mem || (t.memory === 0 && t.name !== current?.name))
      .sort((a, b) => (a.memory || Infinity) - (b.memory || Infinity))[0];
    if (!bigger) return;
    const label = `${bigger.display_name || bigger.name} (${bigger.memory ? formatBytes(bigger.memory) : 'no memory limit'})`;
    const btn = h('button.btn.death-bigger', { text: `Use ${label}` });
    const dead = this.deadKernel;
    btn.addEventListener('click', async () => {
      this.el.hidden = true;
      // The dead runtime still counts against the user's runtimes: it goes first.
      if (dead) await api('DELETE', `/api/kernels/${dead}`).catch(() => undefined);
      void this.hooks.changeType(bigger.name);
    });
    this.el.querySelector('.death-reconnect')?.after(btn);
  }
}
