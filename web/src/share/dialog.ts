// The Share dialog: share a notebook, file or folder of one's Drive with a
// user as viewer or editor, turn link sharing (anyone signed in with the
// link may view) on and off, list and revoke shares. Uses
// /api/skylab/shares (docs/security.md, "Sharing").
import { api } from '../api';
import { openDialog, toast } from '../ui/dialog';
import { clear, h } from '../ui/dom';
import './share.css';

export interface Share {
  id: string;
  owner: string;
  path: string;
  name: string;
  user: string | null;
  role: 'viewer' | 'editor';
  link: string | null;
  created: string;
}

/** The address a link share is opened at in the app. */
export function shareLinkUrl(s: Share): string {
  return `${location.origin}/shared/${s.id}`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export function openShareDialog(path: string): void {
  const name = path.split('/').pop() || path;
  const user = h('input.text.share-user', { type: 'text', placeholder: 'User name', 'aria-label': 'User to share with', autocomplete: 'off', spellcheck: 'false' });
  const role = h('select.share-role', { 'aria-label': 'Role' },
    h('option', { value: 'viewer', text: 'Viewer' }), h('option', { value: 'editor', text: 'Editor' }));
  const add = h('button.btn.primary.share-add', { type: 'submit', text: 'Share' });
  const error = h('p.share-error', { role: 'alert' });
  const form = h('form.share-form', null, user, role, add);
  const people = h('ul.share-list', { 'aria-label': 'People with access' });
  const linkToggle = h('input.share-link-toggle', { type: 'checkbox', id: 'share-link-toggle' });
  const linkBox = h('div.share-link-box');
  const body = h('div.share-dialog', null,
    path.includes('/') ? h('p.share-path', { text: 'My Drive / ' + path.split('/').join(' / ') }) : null,
    h('h3', { text: 'Share with people' }), form, error,
    h('h3', { text: 'People with access' }), people,
    h('h3', { text: 'Link' }),
    h('label.share-link-label', { for: 'share-link-toggle' }, linkToggle,
      h('span', { text: ' Anyone signed in to this server with the link can view' })),
    linkBox);
  const dialog = openDialog(`Share “${name}”`, body, [{ label: 'Done', value: 'done', primary: true }], { initialFocus: user });
  dialog.root.classList.add('share');
  let shares: Share[] = [];

  const render = () => {
    clear(people);
    const direct = shares.filter(s => s.user);
    if (!direct.length) people.append(h('li.share-none', { text: 'Only you.' }));
    for (const s of direct) {
      const roleSel = h('select.share-item-role', { 'aria-label': `Role of ${s.user}` },
        h('option', { value: 'viewer', text: 'Viewer', selected: s.role === 'viewer' }),
        h('option', { value: 'editor', text: 'Editor', selected: s.role === 'editor' }));
      roleSel.addEventListener('change', () => void grant({ path, user: s.user, role: roleSel.value }, s.id));
      people.append(h('li.share-item', { 'data-user': s.user ?? '' },
        h('span.share-avatar', { text: (s.user ?? '?').slice(0, 1).toUpperCase(), 'aria-hidden': 'true' }),
        h('span.share-who', { text: s.user ?? '' }), roleSel,
        h('button.btn.share-revoke', { text: 'Remove', 'aria-label': `Stop sharing with ${s.user}`, onclick: () => void revoke(s) })));
    }
    const link = shares.find(s => !s.user);
    linkToggle.checked = !!link;
    clear(linkBox);
    if (link) {
      const url = shareLinkUrl(link);
      const field = h('input.text.share-link-url', { type: 'text', readonly: true, value: url, 'aria-label': 'Link' });
      linkBox.append(field, h('button.btn.share-copy', {
        text: 'Copy link',
        onclick: async () => {
          field.select();
          try {
            await navigator.clipboard.writeText(url);
            toast('Link copied');
          } catch {
            document.execCommand('copy');
          }
        },
      }));
    }
  };

  const load = async () => {
    try {
      shares = await api<Share[]>('GET', '/api/skylab/shares?path=' + encodeURIComponent(path));
      render();
    } catch (e) {
      error.textContent = message(e);
    }
  };

  /** POSTs a grant; `replaces`: a share of the same person to revoke after (role change). */
  const grant = async (req: Record<string, unknown>, replaces?: string) => {
    error.textContent = '';
    try {
      const s = await api<Share>('POST', '/api/skylab/shares', req);
      if (replaces && replaces !== s.id) await api('DELETE', `/api/skylab/shares/${replaces}`);
      await load();
      return true;
    } catch (e) {
      error.textContent = message(e);
      await load();
      return false;
    }
  };

  const revoke = async (s: Share) => {
    error.textContent = '';
    try {
      await api('DELETE', `/api/skylab/shares/${s.id}`);
    } catch (e) {
      error.textContent = message(e);
    }
    await load();
  };

  form.addEventListener('submit', async e => {
    e.preventDefault();
    e.stopPropagation();
    const who = user.value.trim();
    if (!who) {
      error.textContent = 'Type the user name of the person to share with.';
      return;
    }
    add.disabled = true;
    const existing = shares.find(s => s.user === who);
    if (await grant({ path, user: who, role: role.value }, existing?.id)) {
      user.value = '';
      toast(`Shared with ${who}`);
    }
    add.disabled = false;
    user.focus();
  });
  // Enter in the user field shares rather than closing the dialog.
  user.addEventListener('keydown', e => {
    if (e.key === 'Enter') {
      e.preventDefault();
      e.stopPropagation();
      form.requestSubmit();
    }
  });
  linkToggle.addEventListener('change', async () => {
    const link = shares.find(s => !s.user);
    if (linkToggle.checked && !link) await grant({ path, link: true });
    else if (!linkToggle.checked && link) await revoke(link);
  });
  void load();
  void dialog.result;
}
