// The Usage page (/usage): this week's runtime and GPU hours, Drive and cache
// storage, each against its limit, as bars; when the GPU quota refills.
import { api, Me } from '../api';
import { clear, formatBytes, h } from '../ui/dom';
import { logo, userButton } from '../ui/topbar';
import { hours, meter } from './bars';
import './usage.css';

interface Usage {
  user: string;
  runtime_hours: number;
  gpu_hours: number;
  running: number;
  by_type: Record<string, { runtime_hours: number; gpu_hours: number }>;
  week: { start: string; end: string };
  quota_refills: string;
  storage: { used_bytes: number | null; quota_bytes: number | null };
  limits: { gpu_hours_per_week: number | null; max_runtimes: number | null; max_gpu_runtimes: number; storage_bytes: number | null };
}

function card(title: string, ...body: (Node | string)[]): HTMLElement {
  return h('section.usage-card', { 'aria-label': title }, h('h3', { text: title }), ...body);
}

export async function openUsagePage(app: HTMLElement, me: Me): Promise<void> {
  document.title = 'Usage - Skylab';
  clear(app);
  const main = h('main.usage-main', null, h('h1', { text: 'Your usage' }));
  app.append(h('div.usage-page', null, h('header.topbar', null, logo(), h('div.spacer'), userButton(me)), main));
  let u: Usage;
  try {
    u = await api<Usage>('GET', '/api/skylab/usage');
  } catch (e: any) {
    main.append(h('p.usage-sub', { text: 'Usage could not be loaded: ' + (e?.message || e) }));
    return;
  }
  const day = (iso: string) => new Date(iso).toLocaleString([], { weekday: 'long', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  main.append(h('p.usage-sub', { text: `This week, since ${day(u.week.start)}. Quotas refill ${day(u.quota_refills)}.` }));
  const gpuLimit = u.limits.gpu_hours_per_week;
  const gpuLeft = gpuLimit === null ? null : Math.max(0, gpuLimit - u.gpu_hours);
  const cards = h('div.usage-cards', null,
    card('GPU hours this week',
      meter('GPU hours this week', u.gpu_hours, gpuLimit, hours),
      h('div.usage-figure', { text: gpuLimit === null ? `${hours(u.gpu_hours)} used; no weekly limit` : `${hours(u.gpu_hours)} of ${hours(gpuLimit)} used` }),
      h('div.usage-note', { text: gpuLimit === null ? '' : gpuLeft! > 0 ? `${hours(gpuLeft!)} left until ${day(u.quota_refills)}` : `Used up: GPU runtimes are refused until ${day(u.quota_refills)}` })),
    card('Runtime hours this week',
      meter('Runtime hours this week', u.runtime_hours, null, hours),
      h('div.usage-figure', { text: `${hours(u.runtime_hours)} in ${Object.keys(u.by_type).length || 0} runtime type(s)` }),
      h('div.usage-note', { text: Object.entries(u.by_type).map(([t, v]) => `${t}: ${hours(v.runtime_hours)}`).join(' · ') })),
    card('Drive and caches',
      meter('Drive and caches', u.storage.used_bytes ?? 0, u.storage.quota_bytes, formatBytes),
      h('div.usage-figure', { text: u.storage.quota_bytes ? `${formatBytes(u.storage.used_bytes ?? 0)} of ${formatBytes(u.storage.quota_bytes)}` : `${formatBytes(u.storage.used_bytes ?? 0)} used` })),
    card('Runtimes running now',
      meter('Runtimes running now', u.running, u.limits.max_runtimes, n => String(Math.round(n))),
      h('div.usage-figure', { text: u.limits.max_runtimes ? `${u.running} of ${u.limits.max_runtimes}` : `${u.running} running` }),
      h('div.usage-note', { text: `At most ${u.limits.max_gpu_runtimes} with a GPU at a time` })));
  main.append(cards);
}
