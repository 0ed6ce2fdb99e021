// Accounts, for administrators, from the Drive: a list of accounts and an
// "Add account" form (POST /api/skylab/users). A server's first visitor
// comes in through the login URL as the admin token's "admin", which has no
// account: the Drive then says so and offers to create the first one.
import { api, ApiError, Me } from '../api';
import { openDialog, toast } from '../ui/dialog';
import { clear, h } from '../ui/dom';
import { icon } from '../ui/icons';

interface UserRow {
  username: string;
  admin: boolean;
  disabled: boolean;
  account?: boolean; // false: owns runtimes but has no account (the admin token's "admin")
}

async function accounts(): Promise<UserRow[]> {
  const all = await api<UserRow[]>('GET', '/api/skylab/users');
  return all.filter(u => u.account !== false);
}

/** Adds the admin's entry points to the Drive: a side-bar item, and a banner
 * in `main` while the server has no account yet. Nothing for other users. */
export function mountAccounts(me: Me, side: HTMLElement, main: HTMLElement): void {
  if (!me.admin) return;
  const item = h('a.nav-item.accounts-nav', { href: '#', role: 'button' }, h('span.nav-icon', null, icon('shared')), 'Accounts');
  item.addEventListener('click', e => {
    e.preventDefault();
    void openAccountsDialog();
  });
  side.append(item);
  void (async () => {
    let list: UserRow[];
    try {
      list = await accounts();
    } catch {
      return;
    }
    if (list.length) return;
    const add = h('button.btn.primary.nowrap', { text: 'Add account' });
    const banner = h('div.banner.first-account', { role: 'status' },
      h('span.banner-icon', { text: 'i' }),
      h('span', { text: `You are signed in with this server's login URL as "${me.username}". Create the first account ` +
        '(yours, as an administrator), then sign in with it; the login URL changes each time the server starts.' }),
      add);
    add.addEventListener('click', async () => {
      if (await openAccountsDialog(true)) banner.remove();
    });
    main.prepend(banner);
  })();
}

/** The accounts dialog; `adding` opens the form at once. Resolves true when
 * an account was created. */
export async function openAccountsDialog(adding = false): Promise<boolean> {
  let created = false;
  const rows = h('ul.account-list', { 'aria-label': 'Accounts' });
  const username = h('input.text', { type: 'text', name: 'username', autocomplete: 'off', spellcheck: 'false',
    maxlength: '32', pattern: '[a-z_][a-z0-9_\\-]{0,31}', 'aria-label': 'User name' });
  const password = h('input.text', { type: 'password', name: 'password', autocomplete: 'new-password', 'aria-label': 'Password' });
  const admin = h('input', { type: 'checkbox', name: 'admin' });
  admin.checked = adding;
  const error = h('p.form-error', { role: 'alert', hidden: true });
  const submit = h('button.btn.primary', { type: 'submit', text: 'Add account' });
  const form = h('form.account-form', { 'aria-label': 'Add account' },
    h('label.field', null, h('span', { text: 'User name (a-z, 0-9, _ and -)' }), username),
    h('label.field', null, h('span', { text: 'Password (at least 8 characters)' }), password),
    h('label.check', null, admin, h('span', { text: ' Administrator' })),
    error, submit);
  const body = h('div.accounts', null, rows, form);
  const d = openDialog('Accounts', body, [{ label: 'Close', value: 'close' }], { initialFocus: username, wide: true });

  async function refresh() {
    clear(rows);
    try {
      const list = await accounts();
      if (!list.length) rows.append(h('li.muted', { text: 'No accounts yet.' }));
      for (const u of list) {
        rows.append(h('li', null, h('strong', { text: u.username }),
          u.admin ? h('span.tag', { text: 'administrator' }) : null,
          u.disabled ? h('span.tag', { text: 'disabled' }) : null));
      }
    } catch (e) {
      rows.append(h('li.muted', { text: e instanceof ApiError ? e.message : String(e) }));
    }
  }
  form.addEventListener('submit', async e => {
    e.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      await api('POST', '/api/skylab/users', { username: username.value.trim(), password: password.value, admin: admin.checked });
      created = true;
      toast(`Account "${username.value.trim()}" created. Sign in with it at /login.`);
      username.value = '';
      password.value = '';
      admin.checked = false;
      await refresh();
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : String(err);
      error.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  await refresh();
  await d.result;
  return created;
}
