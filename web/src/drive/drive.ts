// The Drive page: My Drive (folders), Shared with me, Recent, Trash;
// new notebook / folder, upload (drag and drop, chunked, with progress),
// rename, move, delete with undo (kept in the page), search by name, and the
// examples gallery when the server offers one.
import type { Contents } from '@jupyterlab/services';
import { api, ApiError, contents, encodePath, forgetRecent, Me, notebookUrl, recentFiles } from '../api';
import { confirmDialog, openDialog, promptDialog, showMessage, toast } from '../ui/dialog';
import { clear, formatBytes, formatDate, h } from '../ui/dom';
import { icon } from '../ui/icons';
import { showMenu } from '../ui/menu';
import { logo, userButton } from '../ui/topbar';
import { mountAccounts } from './accounts';
import { uploadFiles } from './upload';

type View = 'mine' | 'shared' | 'recent';

interface Row {
  name: string;
  path: string;
  type: 'directory' | 'notebook' | 'file';
  modified: string;
  size: number | null;
  owner?: string;
  role?: string;
  shareId?: string;
  href: string;
}

export async function openDrivePage(app: HTMLElement, me: Me, initial: 'mine' | 'shared' | 'recent'): Promise<void> {
  document.title = 'My Drive - Skylab';
  clear(app);
  let view: View = initial;
  let folder = initial === 'mine' ? folderFromUrl() : '';
  let query = '';
  let rows: Row[] = [];
  let sharedIn: { id: string; sub: string; name: string; owner: string; role: string } | null = null; // browsing a shared folder
  const search = h('input.search', { type: 'search', placeholder: 'Search in Drive', 'aria-label': 'Search in Drive' });
  const top = h('header.topbar.drive-top', null, logo(), h('div.search-box', null, search), h('div.spacer'), userButton(me));
  const newBtn = h('button.btn.new-btn', { 'aria-haspopup': 'menu' }, h('span.plus', null, icon('plus', 22)), 'New');
  const navItems: Record<View, HTMLElement> = {
    mine: h('a.nav-item', { href: '/drive', 'data-view': 'mine' }, h('span.nav-icon', null, icon('drive')), 'My Drive'),
    shared: h('a.nav-item', { href: '/shared', 'data-view': 'shared' }, h('span.nav-icon', null, icon('shared')), 'Shared with me'),
    recent: h('a.nav-item', { href: '/recent', 'data-view': 'recent' }, h('span.nav-icon', null, icon('recent')), 'Recent'),
  };
  const storageBar = h('span.storage-used');
  const storageText = h('div.storage-text');
  const storage = h('div.storage', { hidden: true }, h('div.storage-bar', { role: 'presentation' }, storageBar), storageText);
  const side = h('nav.drive-nav', { 'aria-label': 'Drive' }, newBtn, ...Object.values(navItems), storage);
  const examples = h('section.examples', { hidden: true, 'aria-label': 'Examples' });
  const crumbs = h('div.crumbs');
  const listBody = h('div.rows', { role: 'rowgroup' });
  const list = h('div.file-list', { role: 'table', 'aria-label': 'Files' },
    h('div.row.head', { role: 'row' },
      h('span.c-name', { role: 'columnheader', text: 'Name' }),
      h('span.c-owner', { role: 'columnheader', text: 'Owner' }),
      h('span.c-mod', { role: 'columnheader', text: 'Last modified' }),
      h('span.c-size', { role: 'columnheader', text: 'Size' }),
      h('span.c-act', { role: 'columnheader', 'aria-label': 'Actions' })),
    listBody);
  const empty = h('div.empty', { hidden: true });
  const drop = h('div.drop-hint', { hidden: true, text: 'Drop files to upload them to this folder' });
  const fileInput = h('input', { type: 'file', multiple: true, hidden: true, 'aria-hidden': 'true' });
  const main = h('main.drive-main', null, examples, crumbs, list, empty, drop, fileInput);
  app.append(h('div.drive-page', null, top, h('div.drive-body', null, side, main)));
  mountAccounts(me, side, main);

  for (const [v, a] of Object.entries(navItems)) {
    a.addEventListener('click', e => {
      e.preventDefault();
      go(v as View, '');
    });
  }
  window.addEventListener('popstate', () => {
    const p = location.pathname;
    view = p.startsWith('/shared') ? 'shared' : p.startsWith('/recent') ? 'recent' : 'mine';
    folder = view === 'mine' ? folderFromUrl() : '';
    void load();
  });

  function go(v: View, f: string) {
    view = v;
    folder = f;
    sharedIn = null;
    query = '';
    search.value = '';
    const url = v === 'shared' ? '/shared' : v === 'recent' ? '/recent' : '/drive' + (folder ? '/' + encodePath(folder) : '');
    history.pushState(null, '', url);
    void load();
  }

  newBtn.addEventListener('click', () =>
    showMenu([
      { label: 'New notebook', id: 'new-notebook', run: () => void newNotebook() },
      { label: 'New folder', id: 'new-folder', run: () => void newFolder() },
      { separator: true, label: '' },
      { label: 'File upload', id: 'upload', run: () => fileInput.click() },
    ], newBtn));
  fileInput.addEventListener('change', () => {
    if (fileInput.files?.length) void doUpload([...fileInput.files]);
    fileInput.value = '';
  });

  // Drag and drop anywhere on the page.
  let dragDepth = 0;
  main.addEventListener('dragenter', e => {
    if (!e.dataTransfer?.types.includes('Files')) return;
    dragDepth++;
    drop.hidden = false;
  });
  main.addEventListener('dragleave', () => {
    if (--dragDepth <= 0) {
      dragDepth = 0;
      drop.hidden = true;
    }
  });
  main.addEventListener('dragover', e => {
    if (e.dataTransfer?.types.includes('Files')) e.preventDefault();
  });
  main.addEventListener('drop', e => {
    e.preventDefault();
    dragDepth = 0;
    drop.hidden = true;
    const files = [...(e.dataTransfer?.files ?? [])];
    if (files.length) void doUpload(files);
  });

  let searchTimer = 0;
  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => {
      query = search.value.trim().toLowerCase();
      void load();
    }, 150);
  });

  async function doUpload(files: File[]) {
    if (view !== 'mine') go('mine', '');
    await uploadFiles(files, folder, main);
    await load();
  }

  async function newNotebook() {
    const dir = view === 'mine' ? folder : '';
    const model = await contents.newUntitled({ path: dir, type: 'notebook' });
    location.href = notebookUrl(model.path);
  }

  async function newFolder() {
    const name = await promptDialog('New folder', 'Folder name', 'Untitled folder', 'Create');
    if (!name) return;
    const dir = view === 'mine' ? folder : '';
    try {
      const m = await contents.newUntitled({ path: dir, type: 'directory' });
      if (name !== m.name) await contents.rename(m.path, join(dir, name));
    } catch (e) {
      toast(errorText(e));
    }
    await load();
  }

  async function load() {
    for (const [v, a] of Object.entries(navItems)) a.classList.toggle('active', v === view);
    document.title = { mine: 'My Drive', shared: 'Shared with me', recent: 'Recent' }[view] + ' - Skylab';
    renderCrumbs();
    try {
      rows = await fetchRows();
    } catch (e) {
      rows = [];
      toast(errorText(e));
    }
    renderRows();
    void showStorage();
  }

  /** "1.2 MB of 10 GB used", with a bar (the server's /api/me storage). */
  async function showStorage() {
    try {
      const j = await api<{ storage?: { used: number; quota: number } }>('GET', '/api/me');
      const st = j.storage;
      if (!st) return;
      const share = st.quota > 0 ? Math.min(1, st.used / st.quota) : 0;
      storageBar.style.width = `${(share * 100).toFixed(1)}%`;
      storageBar.classList.toggle('full', share >= 0.9);
      storageText.textContent = st.quota > 0 ? `${formatBytes(st.used)} of ${formatBytes(st.quota)} used`
                                             : `${formatBytes(st.used)} used`;
      storage.hidden = false;
    } catch {
      storage.hidden = true;
    }
  }

  async function fetchRows(): Promise<Row[]> {
    if (view === 'shared' && sharedIn) {
      // Inside a folder someone shared: its listing through the share.
      const { id, sub } = sharedIn;
      const m: any = await api('GET', `/api/skylab/shared/${id}/contents${sub ? '/' + encodePath(sub) : ''}?content=1`);
      return filter((m.content as any[]).filter(c => !c.name.startsWith('.')).map(c => {
        const rel = sub ? `${sub}/${c.name}` : c.name;
        return {
          name: c.name, path: rel, type: c.type, modified: c.last_modified, size: c.size ?? null, owner: sharedIn!.owner, role: sharedIn!.role, shareId: id,
          href: c.type === 'notebook' ? `/shared/${id}/${encodePath(rel)}` : `/api/skylab/shared/${id}/files/${encodePath(rel)}`,
        } as Row;
      }).sort(byFolderThenName));
    }
    if (view === 'shared') {
      const shares: any[] = await api('GET', '/api/skylab/shared');
      const rows = await Promise.all(shares.map(async s => {
        let type: Row['type'] = s.name.endsWith('.ipynb') ? 'notebook' : 'file';
        if (type === 'file') {
          const m: any = await api('GET', `/api/skylab/shared/${s.id}/contents?content=0`).catch(() => null);
          if (m?.type === 'directory') type = 'directory';
        }
        return {
          name: s.name, path: '', type, modified: s.created, size: null, owner: s.owner, role: s.role, shareId: s.id,
          href: type === 'file' ? `/api/skylab/shared/${s.id}/files` : '/shared/' + s.id,
        } as Row;
      }));
      return filter(rows);
    }
    if (view === 'recent') {
      return filter(recentFiles().map(r => ({
        name: r.path.split('/').pop()!, path: r.path, type: 'notebook', modified: r.opened, size: null, owner: 'me', href: notebookUrl(r.path),
      })));
    }
    if (query && view === 'mine') return await searchAll(folder);
    const m = await contents.get(folder, { content: true });
    return (m.content as Contents.IModel[]).filter(c => !c.name.startsWith('.')).map(toRow).sort(byFolderThenName);
  }

  function filter(r: Row[]): Row[] {
    return query ? r.filter(x => x.name.toLowerCase().includes(query)) : r;
  }

  async function searchAll(root: string): Promise<Row[]> {
    const out: Row[] = [];
    const queue = [root];
    let visited = 0;
    while (queue.length && visited < 200 && out.length < 500) {
      const dir = queue.shift()!;
      visited++;
      const m = await contents.get(dir, { content: true });
      for (const c of m.content as Contents.IModel[]) {
        if (c.name.startsWith('.')) continue;
        if (c.name.toLowerCase().includes(query)) out.push(toRow(c));
        if (c.type === 'directory') queue.push(c.path);
      }
    }
    return out.sort(byFolderThenName);
  }

  function renderCrumbs() {
    clear(crumbs);
    if (view === 'shared' && sharedIn) {
      const top = h('a.crumb', { href: '/shared', text: 'Shared with me' });
      top.addEventListener('click', e => (e.preventDefault(), go('shared', '')));
      const parts = [sharedIn.name, ...(sharedIn.sub ? sharedIn.sub.split('/') : [])];
      crumbs.append(h('h1', null, top, ...parts.flatMap((p, i) => {
        const a = h('a.crumb', { href: '#', text: p });
        a.addEventListener('click', e => {
          e.preventDefault();
          sharedIn!.sub = parts.slice(1, i + 1).join('/');
          void load();
        });
        return [h('span.sep', { text: '›', 'aria-hidden': 'true' }), a];
      })));
      return;
    }
    if (view !== 'mine') {
      crumbs.append(h('h1', { text: { shared: 'Shared with me', recent: 'Recent', mine: '' }[view] }));
      return;
    }
    const parts = folder ? folder.split('/') : [];
    const root = h('a.crumb', { href: '/drive', text: 'My Drive' });
    root.addEventListener('click', e => (e.preventDefault(), go('mine', '')));
    crumbs.append(h('h1', null, root, ...parts.flatMap((p, i) => {
      const path = parts.slice(0, i + 1).join('/');
      const a = h('a.crumb', { href: '/drive/' + encodePath(path), text: p });
      a.addEventListener('click', e => (e.preventDefault(), go('mine', path)));
      return [h('span.sep', { text: '›', 'aria-hidden': 'true' }), a];
    })));
  }

  function renderRows() {
    clear(listBody);
    empty.hidden = rows.length > 0;
    if (!rows.length) {
      empty.textContent = query ? `No files match “${query}”.`
        : view === 'shared' ? 'Nothing has been shared with you yet.'
        : view === 'recent' ? 'Notebooks you open appear here.'
        : 'This folder is empty. Create a notebook with New, or drop files here.';
    }
    const frag = document.createDocumentFragment();
    for (const r of rows) frag.append(rowEl(r));
    listBody.append(frag);
  }

  function rowEl(r: Row): HTMLElement {
    const kind = r.type === 'directory' ? 'folder' : r.type === 'notebook' ? 'notebook' : 'file';
    const link = h('a.name', { href: r.href }, h('span.ficon', null, icon(kind)), h('span', { text: r.name }));
    if (r.type === 'directory') {
      link.addEventListener('click', e => {
        e.preventDefault();
        if (view === 'shared') {
          sharedIn = { id: r.shareId!, sub: r.path, name: sharedIn?.name ?? r.name, owner: r.owner ?? '', role: r.role ?? '' };
          void load();
        } else go('mine', r.path);
      });
    }
    const more = h('button.btn.icon.more', { 'aria-label': `Actions for ${r.name}` }, icon('more'));
    more.addEventListener('click', () => showMenu(actions(r), more));
    const row = h('div.row', { role: 'row', 'data-path': r.path },
      h('span.c-name', { role: 'cell' }, link, r.role ? h('span.badge', { text: r.role }) : null),
      h('span.c-owner', { role: 'cell', text: r.owner ?? 'me' }),
      h('span.c-mod', { role: 'cell', text: formatDate(r.modified) }),
      h('span.c-size', { role: 'cell', text: r.size == null || r.type === 'directory' ? '—' : formatBytes(r.size) }),
      h('span.c-act', { role: 'cell' }, more));
    row.addEventListener('contextmenu', e => {
      e.preventDefault();
      showMenu(actions(r), { x: e.clientX, y: e.clientY });
    });
    return row;
  }

  function actions(r: Row) {
    if (view === 'shared') {
      return [
        { label: 'Open', run: () => (location.href = r.href) },
        { label: 'Save a copy in My Drive', run: () => void copyShared(r), disabled: r.type === 'directory' },
      ];
    }
    const items = [
      { label: 'Open', run: () => (r.type === 'directory' ? go('mine', r.path) : (location.href = r.href)) },
      { label: 'Rename', id: 'rename', run: () => void rename(r) },
      { label: 'Move', id: 'move', run: () => void move(r) },
    ];
    if (r.type !== 'directory') items.push({ label: 'Download', run: () => download(r) } as any);
    items.push({ label: 'Delete', id: 'delete', run: () => void trash(r) } as any);
    if (view === 'recent') items.push({ label: 'Remove from Recent', run: () => (forgetRecent(r.path), void load()) } as any);
    return items;
  }

  async function rename(r: Row) {
    const name = await promptDialog('Rename', 'New name', r.name, 'Rename');
    if (!name || name === r.name) return;
    if (name.includes('/')) return void showMessage('Rename', 'A name cannot contain “/”. Use Move to change folders.');
    const to = join(parent(r.path), name);
    try {
      await contents.rename(r.path, to);
      forgetRecent(r.path, to);
    } catch (e) {
      toast(errorText(e));
    }
    await load();
  }

  async function move(r: Row) {
    const dest = await pickFolder(r);
    if (dest === null) return;
    const to = join(dest, r.name);
    if (to === r.path) return;
    try {
      await contents.rename(r.path, to);
      forgetRecent(r.path, to);
      toast(`Moved to ${dest || 'My Drive'}`, { label: 'Undo', run: () => void contents.rename(to, r.path).then(load) });
    } catch (e) {
      toast(errorText(e));
    }
    await load();
  }

  async function trash(r: Row) {
    // Delete with undo: what is deleted is kept in this page (up to 48 MB)
    // and written back by Undo. Larger items ask first.
    let snap: Snapshot | null = null;
    try {
      snap = await snapshot(r.path, r.type, { bytes: 0 });
    } catch {
      snap = null;
    }
    if (!snap && !(await confirmDialog('Delete', `“${r.name}” is too large to undo its deletion. Delete it anyway?`, 'Delete'))) return;
    try {
      await deleteRecursive(r.path, r.type);
      forgetRecent(r.path);
      if (snap) {
        const s = snap;
        toast(`“${r.name}” deleted`, {
          label: 'Undo',
          run: () => void restoreSnapshot(s).then(() => toast(`“${r.name}” restored`), e => toast(errorText(e))).then(load),
        }, 12000);
      }
    } catch (e) {
      toast(errorText(e));
    }
    await load();
  }

  async function copyShared(r: Row) {
    try {
      const m: any = await api('POST', `/api/skylab/shared/${r.shareId}/copy`, r.path ? { path: r.path } : {});
      toast(`Saved “${m.name}” in My Drive`, { label: 'Open', run: () => (location.href = notebookUrl(m.path)) });
    } catch (e) {
      toast(errorText(e));
    }
  }

  function download(r: Row) {
    const a = h('a', { href: '/files/' + encodePath(r.path) + '?download=1', download: r.name });
    document.body.append(a);
    a.click();
    a.remove();
  }

  void loadExamples(examples);
  await load();
}

/**
 * The examples gallery ("Welcome"). Shown only when the server offers
 * GET /api/skylab/examples → [{name, title, description}]; choosing one
 * copies it into the Drive (POST /api/skylab/examples/<name> → contents model).
 */
async function loadExamples(section: HTMLElement): Promise<void> {
  let list: { name: string; title: string; description: string }[];
  try {
    list = await api('GET', '/api/skylab/examples');
  } catch {
    return; // 404: this server has no examples; the section stays hidden
  }
  if (!Array.isArray(list) || !list.length) return;
  section.append(h('h2', { text: 'Welcome to Skylab — start from an example' }));
  const grid = h('div.example-grid');
  for (const ex of list) {
    const card = h('button.example-card', { 'data-example': ex.name },
      h('span.ex-title', { text: ex.title || ex.name }), h('span.ex-desc', { text: ex.description || '' }));
    card.addEventListener('click', async () => {
      try {
        const m: any = await api('POST', '/api/skylab/examples/' + encodeURIComponent(ex.name), {});
        location.href = notebookUrl(m.path);
      } catch (e) {
        toast(errorText(e));
      }
    });
    grid.append(card);
  }
  section.append(grid);
  section.hidden = false;
}

async function pickFolder(r: Row): Promise<string | null> {
  let cur = parent(r.path);
  const listEl = h('div.folder-pick', { role: 'listbox', 'aria-label': 'Folders' });
  const here = h('div.pick-here');
  const body = h('div', null, here, listEl);
  const d = openDialog(`Move “${r.name}”`, body, [{ label: 'Cancel', value: 'cancel' }, { label: 'Move here', value: 'ok', primary: true }]);
  const show = async () => {
    here.textContent = 'In: My Drive' + (cur ? ' / ' + cur : '');
    clear(listEl);
    if (cur) {
      const up = h('button.pick', { text: '.. (up)' });
      up.addEventListener('click', () => ((cur = parent(cur)), void show()));
      listEl.append(up);
    }
    const m = await contents.get(cur, { content: true });
    for (const c of m.content as Contents.IModel[]) {
      if (c.type !== 'directory' || c.name.startsWith('.') || c.path === r.path) continue;
      const b = h('button.pick', null, icon('folder', 16), ' ' + c.name);
      b.addEventListener('click', () => ((cur = c.path), void show()));
      listEl.append(b);
    }
  };
  await show();
  return (await d.result) === 'ok' ? cur : null;
}

type Snapshot =
  | { path: string; type: 'directory'; children: Snapshot[] }
  | { path: string; type: 'notebook'; content: unknown }
  | { path: string; type: 'file'; content: string };

const UNDO_LIMIT = 48 * 1024 * 1024;

/** Reads an item (a folder with everything in it) into memory; null when over the undo limit. */
async function snapshot(path: string, type: string, budget: { bytes: number }): Promise<Snapshot | null> {
  if (type === 'directory') {
    const m = await contents.get(path, { content: true });
    const children: Snapshot[] = [];
    for (const c of m.content as Contents.IModel[]) {
      const s = await snapshot(c.path, c.type, budget);
      if (!s) return null;
      children.push(s);
    }
    return { path, type: 'directory', children };
  }
  const m = await contents.get(path, type === 'notebook' ? { type: 'notebook', content: true } : { type: 'file', format: 'base64', content: true });
  budget.bytes += m.size ?? (typeof m.content === 'string' ? m.content.length : 0);
  if (budget.bytes > UNDO_LIMIT) return null;
  return type === 'notebook' ? { path, type: 'notebook', content: m.content } : { path, type: 'file', content: String(m.content) };
}

async function restoreSnapshot(s: Snapshot): Promise<void> {
  if (s.type === 'directory') {
    await contents.save(s.path, { type: 'directory' });
    for (const c of s.children) await restoreSnapshot(c);
  } else if (s.type === 'notebook') {
    await contents.save(s.path, { type: 'notebook', format: 'json', content: s.content as any });
  } else {
    await contents.save(s.path, { type: 'file', format: 'base64', content: s.content });
  }
}

async function deleteRecursive(path: string, type: string): Promise<void> {
  if (type === 'directory') {
    const m = await contents.get(path, { content: true });
    for (const c of m.content as Contents.IModel[]) await deleteRecursive(c.path, c.type);
  }
  await contents.delete(path);
}

function toRow(c: Contents.IModel): Row {
  return {
    name: c.name, path: c.path, type: c.type as Row['type'], modified: c.last_modified, size: c.size ?? null, owner: 'me',
    href: c.type === 'notebook' ? notebookUrl(c.path) : c.type === 'directory' ? '/drive/' + encodePath(c.path) : '/files/' + encodePath(c.path),
  };
}

function byFolderThenName(a: Row, b: Row): number {
  if ((a.type === 'directory') !== (b.type === 'directory')) return a.type === 'directory' ? -1 : 1;
  return a.name.localeCompare(b.name, undefined, { numeric: true });
}

function folderFromUrl(): string {
  const p = location.pathname;
  if (!p.startsWith('/drive/')) return '';
  return p.slice(7).split('/').filter(Boolean).map(decodeURIComponent).join('/');
}

export function parent(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

export function join(dir: string, name: string): string {
  return dir ? dir + '/' + name : name;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  const any = e as any;
  return any?.response?.status ? `${any.message || 'Request failed'} (${any.response.status})` : String(any?.message ?? e);
}
