// A used-versus-limit bar: a picture of how much of a limit is used (the
// numbers are in its label and title, for people and for screen readers).
import { h } from '../ui/dom';

/** `limit` null: unlimited (the bar shows use without a ceiling). */
export function meter(label: string, used: number, limit: number | null, fmt: (n: number) => string): HTMLElement {
  const frac = limit === null ? 0 : limit <= 0 ? 1 : Math.min(1, used / limit);
  const fill = h('span.usage-fill');
  if (limit === null) {
    fill.classList.add('unlimited');
    fill.style.width = used > 0 ? '4%' : '0';
  } else {
    fill.style.width = `${(frac * 100).toFixed(1)}%`;
    if (frac >= 1) fill.classList.add('full');
    else if (frac >= 0.8) fill.classList.add('warn');
  }
  const text = limit === null ? `${fmt(used)} used (no limit)` : `${fmt(used)} of ${fmt(limit)}`;
  return h('div.usage-meter', {
    role: 'meter', 'aria-label': label, title: `${label}: ${text}`,
    'aria-valuemin': 0, 'aria-valuemax': limit === null ? used || 1 : limit, 'aria-valuenow': used,
    'aria-valuetext': text, 'data-fraction': frac.toFixed(4),
  }, fill);
}

export function hours(n: number): string {
  if (n === 0) return '0 h';
  if (n < 0.1) return `${Math.round(n * 60)} min`;
  return `${n.toFixed(n < 10 ? 1 : 0)} h`;
}
