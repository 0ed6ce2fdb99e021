// Drop-down menus (menu bar and context menus), keyboard accessible.
import { h } from './dom';

export interface MenuItem {
  label: string;
  shortcut?: string;
  run?: () => void;
  disabled?: boolean | (() => boolean);
  separator?: boolean;
  id?: string;
}

let openMenu: { el: HTMLElement; close: () => void } | null = null;

export function closeMenus(): void {
  openMenu?.close();
}

/** Opens a menu below `anchor` (or at x,y). */
export function showMenu(items: MenuItem[], anchor: HTMLElement | { x: number; y: number }, onClose?: () => void): HTMLElement {
  closeMenus();
  const list = h('div.menu', { role: 'menu' });
  for (const it of items) {
    if (it.separator) {
      list.append(h('div.menu-sep', { role: 'separator' }));
      continue;
    }
    const disabled = typeof it.disabled === 'function' ? it.disabled() : !!it.disabled;
    const b = h('button.menu-item', { role: 'menuitem', disabled, 'data-id': it.id },
      h('span.label', { text: it.label }), it.shortcut ? h('span.shortcut', { text: it.shortcut }) : null);
    b.addEventListener('click', () => {
      close();
      it.run?.();
    });
    list.append(b);
  }
  const r = anchor instanceof HTMLElement ? anchor.getBoundingClientRect() : { left: anchor.x, bottom: anchor.y };
  list.style.left = `${Math.max(4, Math.min(r.left, window.innerWidth - 280))}px`;
  list.style.top = `${r.bottom + 2}px`;
  const onDown = (e: MouseEvent) => {
    if (!list.contains(e.target as Node) && !(anchor instanceof HTMLElement && anchor.contains(e.target as Node))) close();
  };
  const close = () => {
    if (!list.isConnected) return;
    list.remove();
    document.removeEventListener('mousedown', onDown, true);
    if (openMenu?.el === list) openMenu = null;
    if (anchor instanceof HTMLElement) anchor.setAttribute('aria-expanded', 'false');
    onClose?.();
  };
  list.addEventListener('keydown', e => {
    const items = [...list.querySelectorAll<HTMLButtonElement>('.menu-item:not([disabled])')];
    const i = items.indexOf(document.activeElement as HTMLButtonElement);
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      items[(i + 1) % items.length]?.focus();
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      items[(i - 1 + items.length) % items.length]?.focus();
    } else if (e.key === 'Escape') {
      e.preventDefault();
      close();
      if (anchor instanceof HTMLElement) anchor.focus();
    } else if (e.key === 'Tab') {
      close();
    }
  });
  document.addEventListener('mousedown', onDown, true);
  document.body.append(list);
  openMenu = { el: list, close };
  if (anchor instanceof HTMLElement) anchor.setAttribute('aria-expanded', 'true');
  list.querySelector<HTMLButtonElement>('.menu-item:not([disabled])')?.focus();
  return list;
}

/** A menu bar: buttons that open their menus; hovering moves between open menus. */
export function menuBar(menus: { label: string; items: () => MenuItem[] }[]): HTMLElement {
  const bar = h('nav.menubar', { 'aria-label': 'Menu' });
  let active: HTMLElement | null = null;
  for (const m of menus) {
    const b = h('button.menubar-item', { text: m.label, 'aria-haspopup': 'menu', 'aria-expanded': 'false', 'data-menu': m.label });
    const open = () => {
      active = b;
      b.classList.add('open');
      showMenu(m.items(), b, () => {
        b.classList.remove('open');
        if (active === b) active = null;
      });
    };
    b.addEventListener('click', () => (active === b ? closeMenus() : open()));
    b.addEventListener('mouseenter', () => {
      if (active && active !== b) open();
    });
    bar.append(b);
  }
  return bar;
}
