// The bar at the top of every page: logo, a slot, the user's menu.
import type { Me } from '../api';
import { h } from './dom';
import { showMenu } from './menu';

export function logo(): HTMLElement {
  return h('a.logo', { href: '/drive', 'aria-label': 'Skylab home' },
    h('span.logo-mark', { 'aria-hidden': 'true' }), h('span.logo-text', { text: 'Skylab' }));
}

export function userButton(me: Me): HTMLElement {
  const b = h('button.avatar', { 'aria-label': `Account: ${me.username}`, title: me.username, text: me.username.slice(0, 1).toUpperCase() });
  b.addEventListener('click', () =>
    showMenu([
      { label: `Signed in as ${me.username}`, disabled: true },
      { separator: true, label: '' },
      { label: 'My Drive', run: () => (location.href = '/drive') },
      { label: 'Usage', id: 'usage', run: () => (location.href = '/usage') },
      ...(me.admin ? [{ label: 'Admin', id: 'admin', run: () => (location.href = '/admin') }] : []),
      { label: 'Sign out', id: 'signout', run: () => signOut() },
    ], b));
  return b;
}

function signOut(): void {
  const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='))?.slice(6) ?? '';
  const f = h('form', { method: 'post', action: '/logout' }, h('input', { type: 'hidden', name: '_xsrf', value: decodeURIComponent(xsrf) }));
  document.body.append(f);
  f.submit();
}
