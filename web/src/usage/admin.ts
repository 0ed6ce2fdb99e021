// The admin page (/admin, administrators; the server answers 403 to anyone
// else): running runtimes (stop one), the GPU queue, every user's use this
// week, accounts (add, disable, reset password, make admin) and the audit log.
import { api, Me } from '../api';
import { confirmDialog, promptDialog, showMessage, toast } from '../ui/dialog';
import { clear, formatBytes, h } from '../ui/dom';
import { logo, userButton } from '../ui/topbar';
import { hours, meter } from './bars';
import './usage.css';

function age(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function table(label: string, heads: string[], rows: HTMLElement[], empty: string): HTMLElement {
  if (!rows.length) return h('div.admin-empty', { text: empty, 'data-empty': label });
  return h('table.admin-table', { 'aria-label': label },
    h('thead', null, h('tr', null, ...heads.map(t => h('th', { text: t })))), h('tbody', null, ...rows));
}

function td(text: string, cls = ''): HTMLElement {
  return h(cls ? (`td.${cls}` as 'td') : 'td', { text });
}

export async function openAdminPage(app: HTMLElement, me: Me): Promise<void> {
  document.title = 'Admin - Skylab';
  clear(app);
  const main = h('main.usage-main', null, h('h1', { text: 'Administration' }));
  app.append(h('div.usage-page', null, h('header.topbar', null, logo(), h('div.spacer'), userButton(me)), main));
  if (!me.admin) {
    main.append(h('p.usage-sub', { text: 'This page is for administrators.' }));
    return;
  }
  const runtimes = h('section', { 'aria-label': 'Runtimes' });
  const queue = h('section', { 'aria-label': 'GPU queue' });
  const usage = h('section', { 'aria-label': 'Usage per user' });
  const users = h('section', { 'aria-label': 'Users' });
  const audit = h('section', { 'aria-label': 'Audit log' });
  const refresh = h('button.btn', { text: 'Refresh' });
  main.append(refresh,
    h('h2', { text: 'Running runtimes' }), runtimes,
    h('h2', { text: 'GPU queue' }), queue,
    h('h2', { text: 'Usage this week' }), usage,
    h('h2', { text: 'Users' }), users,
    h('h2', { text: 'Audit log' }), audit);

  async function loadRuntimes() {
    const r = await api('GET', '/api/skylab/admin/runtimes');
    clear(runtimes);
    runtimes.append(table('Running runtimes', ['Owner', 'Type', 'Age', 'Memory', 'GPUs', 'State', ''],
      r.runtimes.map((k: any) => {
        const stop = h('button.btn.link', { text: 'Stop', 'aria-label': `Stop runtime of ${k.owner}` });
        stop.addEventListener('click', async () => {
          if (!(await confirmDialog('Stop runtime', `Stop ${k.owner}'s ${k.type} runtime? Unsaved work in it is lost.`, 'Stop'))) return;
          try {
            await api('DELETE', `/api/skylab/admin/runtimes/${encodeURIComponent(k.id)}`);
            toast(`Stopped ${k.owner}'s runtime`);
          } catch (e: any) {
            await showMessage('Could not stop the runtime', e?.message || String(e));
          }
          void loadAll();
        });
        const mem = k.memory_bytes === null ? '-' : formatBytes(k.memory_bytes) + (k.memory_limit_bytes ? ` / ${formatBytes(k.memory_limit_bytes)}` : '');
        return h('tr', { 'data-runtime': k.id }, td(k.owner), td(k.type), td(age(k.age_seconds), 'num'), td(mem, 'num'),
          td(k.gpus.length ? k.gpus.join(', ') : '-'), td(k.state + (k.lease ? ` (${k.lease})` : '')), h('td', null, stop));
      }), 'No runtime is running.'));
    clear(queue);
    queue.append(h('div.usage-note', { text: `${r.gpus.total} GPU(s) on this server` }),
      table('GPU queue', ['Position', 'Owner', 'Type', 'State', 'Waiting since'],
        r.queue.map((p: any) => h('tr', null, td(p.position ? String(p.position) : '-', 'num'), td(p.owner), td(p.type),
          td(p.state + (p.reason ? `: ${p.reason}` : '')), td(new Date(p.created).toLocaleString()))), 'Nobody is waiting.'));
  }

  async function loadUsage() {
    const u = await api('GET', '/api/skylab/admin/usage');
    clear(usage);
    usage.append(table('Usage per user', ['User', 'Runtime hours', 'GPU hours', 'GPU quota', 'Running'],
      u.users.map((x: any) => h('tr', { 'data-user': x.user }, td(x.user), td(hours(x.runtime_hours), 'num'),
        h('td', null, meter(`${x.user}'s GPU hours`, x.gpu_hours, x.gpu_hours_per_week, hours)),
        td(x.gpu_hours_per_week === null ? 'none' : hours(x.gpu_hours_per_week), 'num'), td(String(x.running), 'num'))),
      'No use this week.'));
  }

  async function loadUsers() {
    const list = await api('GET', '/api/skylab/users');
    clear(users);
    const name = h('input', { type: 'text', placeholder: 'user name', 'aria-label': 'New user name', maxlength: 32 });
    const pass = h('input', { type: 'password', placeholder: 'password (8+ characters)', 'aria-label': 'New user password' });
    const adm = h('input', { type: 'checkbox', 'aria-label': 'Administrator' });
    const add = h('button.btn', { text: 'Add user' });
    add.addEventListener('click', async () => {
      try {
        await api('POST', '/api/skylab/users', { username: name.value.trim(), password: pass.value, admin: adm.checked });
        toast(`Added ${name.value.trim()}`);
        void loadAll();
      } catch (e: any) {
        await showMessage('Could not add the user', e?.message || String(e));
      }
    });
    users.append(h('div.admin-form', null, name, pass, h('label', null, adm, ' administrator'), add));
    const patch = async (u: string, body: object, done: string) => {
      try {
        await api('PATCH', `/api/skylab/users/${encodeURIComponent(u)}`, body);
        toast(done);
      } catch (e: any) {
        await showMessage('Could not change the account', e?.message || String(e));
      }
      void loadAll();
    };
    users.append(table('Users', ['User', 'Actions'], list.filter((u: any) => u.created !== null).map((u: any) => {
      const acts = h('div.admin-actions');
      const b = (text: string, run: () => void) => {
        const el = h('button.btn.link', { text });
        el.addEventListener('click', run);
        acts.append(el);
      };
      b(u.disabled ? 'Enable' : 'Disable', () => void patch(u.username, { disabled: !u.disabled }, `${u.username} ${u.disabled ? 'enabled' : 'disabled'}`));
      b(u.admin ? 'Remove admin' : 'Make admin', () => void patch(u.username, { admin: !u.admin }, `${u.username} changed`));
      b('Reset password', async () => {
        const p = await promptDialog(`New password for ${u.username}`, 'Password (8 characters or more)', '', 'Set password');
        if (p) void patch(u.username, { password: p }, `Password of ${u.username} reset`);
      });
      return h('tr', { 'data-user': u.username },
        h('td', null, u.username, u.admin ? h('span.admin-badge', { text: 'admin' }) : null,
          u.disabled ? h('span.admin-badge.off', { text: 'disabled' }) : null), h('td', null, acts));
    }), 'No accounts yet.'));
  }

  async function loadAudit() {
    const log = await api('GET', '/api/skylab/admin/audit?limit=100');
    clear(audit);
    audit.append(table('Audit log', ['When', 'Who', 'What', 'To whom', 'Detail'],
      log.map((e: any) => h('tr', null, td(new Date(e.time).toLocaleString()), td(e.actor), td(e.action), td(e.target), td(e.detail))),
      'Nothing recorded yet.'));
  }

  async function loadAll() {
    const results = await Promise.allSettled([loadRuntimes(), loadUsage(), loadUsers(), loadAudit()]);
    const failed = results.find(r => r.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) toast('Some of the page could not be loaded: ' + (failed.reason?.message || failed.reason));
  }
  refresh.addEventListener('click', () => void loadAll());
  await loadAll();
}
