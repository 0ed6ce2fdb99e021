// "Tell me when a long cell finishes": a browser notification when a cell
// that ran longer than a threshold ends while the tab is hidden, with the
// cell's execution time. Off until the user turns it on (Tools → Notifications),
// which asks the browser's permission from that click.
import { openDialog } from '../ui/dialog';
import { h } from '../ui/dom';
import './secrets.css';

const KEY = 'skylab.notify';
export const DEFAULT_SECONDS = 10;

export interface NotifySettings {
  enabled: boolean;
  /** Cells that ran at least this long notify. */
  seconds: number;
}

export function notifySettings(): NotifySettings {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || '{}');
    const seconds = Number(s.seconds);
    return { enabled: s.enabled === true, seconds: Number.isFinite(seconds) && seconds >= 0 ? seconds : DEFAULT_SECONDS };
  } catch {
    return { enabled: false, seconds: DEFAULT_SECONDS };
  }
}

function save(s: NotifySettings): void {
  localStorage.setItem(KEY, JSON.stringify(s));
}

const supported = () => typeof Notification !== 'undefined';

/** "1 min 5 s", "12.3 s". */
export function describeDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/**
 * Called when a cell this page ran has finished: notifies when enabled,
 * permitted, the tab is hidden and the run took at least the threshold.
 */
export function cellFinished(durationMs: number, label: string, notebook: string): Notification | null {
  const s = notifySettings();
  if (!s.enabled || !supported() || Notification.permission !== 'granted') return null;
  if (document.visibilityState !== 'hidden' || durationMs < s.seconds * 1000) return null;
  const n = new Notification(`${label} finished`, {
    body: `${notebook}: ran for ${describeDuration(durationMs)}`,
    tag: 'skylab-cell-' + notebook,
  });
  n.onclick = () => {
    window.focus();
    n.close();
  };
  return n;
}

/** The settings dialog (Tools → Notifications…). */
export function openNotifySettings(): void {
  const s = notifySettings();
  const on = h('input.notify-enabled', { type: 'checkbox', 'aria-label': 'Notify when a long cell finishes' });
  on.checked = s.enabled && supported() && Notification.permission === 'granted';
  const secs = h('input.notify-seconds.text', { type: 'number', min: '0', max: '86400', step: '1', value: String(s.seconds), 'aria-label': 'Threshold in seconds', style: { width: '6em' } });
  const note = h('p.notify-note', { role: 'status' });
  const explain = () => {
    if (!supported()) note.textContent = 'This browser does not show notifications.';
    else if (Notification.permission === 'denied') note.textContent = 'The browser blocks notifications for this site; allow them in its site settings.';
    else note.textContent = 'Only while this tab is in the background.';
  };
  explain();
  on.addEventListener('change', async () => {
    // The permission is asked from this click (browsers require a gesture).
    if (on.checked && supported() && Notification.permission !== 'granted') {
      const p = await Notification.requestPermission();
      if (p !== 'granted') on.checked = false;
    }
    explain();
    store();
  });
  const store = () => {
    const n = Math.min(86400, Math.max(0, Number(secs.value)));
    save({ enabled: on.checked, seconds: Number.isFinite(n) ? n : DEFAULT_SECONDS });
  };
  secs.addEventListener('change', store);
  secs.addEventListener('keydown', e => e.stopPropagation());
  const body = h('div.notify-settings', null,
    h('label.notify-row', null, on, h('span', { text: 'Notify me when a cell finishes that ran at least' })),
    h('label.notify-row.notify-threshold', null, secs, h('span', { text: 'seconds' })),
    note);
  const d = openDialog('Notifications', body, [{ label: 'Done', value: 'ok', primary: true }], { initialFocus: on });
  void d.result.then(store);
}
