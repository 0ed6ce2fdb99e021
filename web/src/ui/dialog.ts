// Modal dialogs (message, confirm, prompt) and toasts. Keyboard: Enter
// confirms, Escape cancels, focus is trapped in the dialog.
import { h } from './dom';

export interface DialogButton {
  label: string;
  value: string;
  primary?: boolean;
}

export function openDialog(
  title: string,
  body: HTMLElement | string,
  buttons: DialogButton[],
  opts: { initialFocus?: HTMLElement; wide?: boolean } = {},
): { root: HTMLElement; result: Promise<string | null>; close: (v: string | null) => void } {
  const prev = document.activeElement as HTMLElement | null;
  let resolve!: (v: string | null) => void;
  const result = new Promise<string | null>(r => (resolve = r));
  const bodyEl = typeof body === 'string' ? h('p', { text: body }) : body;
  const btnRow = h('div.dialog-buttons');
  const dialog = h('div.dialog', { role: 'dialog', 'aria-modal': 'true', 'aria-label': title, class: 'dialog' + (opts.wide ? ' wide' : '') },
    h('h2', { text: title }), bodyEl, btnRow);
  const overlay = h('div.overlay', null, dialog);
  const close = (v: string | null) => {
    overlay.remove();
    prev?.focus?.();
    resolve(v);
  };
  for (const b of buttons) {
    btnRow.append(h('button', { class: b.primary ? 'btn primary' : 'btn', text: b.label, onclick: () => close(b.value) }));
  }
  overlay.addEventListener('mousedown', e => {
    if (e.target === overlay) close(null);
  });
  overlay.addEventListener('keydown', e => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close(null);
    } else if (e.key === 'Enter' && !(e.target instanceof HTMLTextAreaElement) && !(e.target instanceof HTMLButtonElement)) {
      const primary = buttons.find(b => b.primary);
      if (primary) {
        e.preventDefault();
        close(primary.value);
      }
    } else if (e.key === 'Tab') {
      const f = [...dialog.querySelectorAll<HTMLElement>('button, input, select, textarea, a[href], [tabindex]')].filter(x => !x.hasAttribute('disabled'));
      if (!f.length) return;
      const i = f.indexOf(document.activeElement as HTMLElement);
      if (e.shiftKey && i <= 0) {
        e.preventDefault();
        f[f.length - 1].focus();
      } else if (!e.shiftKey && i === f.length - 1) {
        e.preventDefault();
        f[0].focus();
      }
    }
  });
  document.body.append(overlay);
  (opts.initialFocus ?? btnRow.querySelector<HTMLElement>('.primary') ?? btnRow.querySelector<HTMLElement>('button'))?.focus();
  return { root: dialog, result, close };
}

export function showMessage(title: string, text: string): Promise<string | null> {
  return openDialog(title, text, [{ label: 'OK', value: 'ok', primary: true }]).result;
}

export async function confirmDialog(title: string, text: string, ok = 'OK'): Promise<boolean> {
  return (await openDialog(title, text, [{ label: 'Cancel', value: 'cancel' }, { label: ok, value: 'ok', primary: true }]).result) === 'ok';
}

export async function promptDialog(title: string, label: string, value = '', ok = 'OK'): Promise<string | null> {
  const input = h('input.text', { type: 'text', value, 'aria-label': label, spellcheck: 'false' });
  const body = h('label.field', null, h('span', { text: label }), input);
  const d = openDialog(title, body, [{ label: 'Cancel', value: 'cancel' }, { label: ok, value: 'ok', primary: true }], { initialFocus: input });
  const dot = value.lastIndexOf('.');
  input.setSelectionRange(0, dot > 0 ? dot : value.length);
  const r = await d.result;
  return r === 'ok' ? input.value.trim() : null;
}

let toastBox: HTMLElement | null = null;

/** A short message at the bottom; with an action button (e.g. Undo). */
export function toast(text: string, action?: { label: string; run: () => void }, ms = 6000): void {
  if (!toastBox) {
    toastBox = h('div.toasts', { role: 'status', 'aria-live': 'polite' });
    document.body.append(toastBox);
  }
  const t = h('div.toast', null, h('span', { text }));
  if (action) {
    t.append(h('button.btn.link', { text: action.label, onclick: () => { action.run(); t.remove(); } }));
  }
  t.append(h('button.btn.icon', { 'aria-label': 'Dismiss', text: '✕', onclick: () => t.remove() }));
  toastBox.append(t);
  setTimeout(() => t.remove(), ms);
}
