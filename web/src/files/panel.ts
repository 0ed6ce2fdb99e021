// The Files panel of the notebook page: the connected runtime's /content
// (runtime files API, docs/files.md) — browse folders, upload from the
// computer (button or drag and drop, chunked, with progress), download,
// rename, delete, new folder, refresh. Without a runtime: "Connect".
import type { Kernel } from '@jupyterlab/services';
import type { NotebookPageContext } from '../extensions';
import { confirmDialog, promptDialog, toast } from '../ui/dialog';
import { clear, formatBytes, h } from '../ui/dom';
import { fileIcon } from './file_icons';
import { filesUrl, listDir, makeDir, removePath, renamePath, saveUrl, uploadFile, type RuntimeEntry } from './runtime_files';
import './files.css';

export function mountFilesPanel(el: HTMLElement, ctx: NotebookPageContext): void {
  new FilesPanel(el, ctx);
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

class FilesPanel {
  private dir = '';
  private kernel: Kernel.IKernelConnection | null = null;
  private readonly crumbs = h('nav.files-crumbs', { 'aria-label': 'Folder' });
  private readonly list = h('ul.files-list', { role: 'list' });
  private readonly uploads = h('div.files-uploads');
  private readonly body = h('div.files-body');
  private readonly picker = h('input', { type: 'file', multiple: true, hidden: true, 'aria-label': 'Upload files' });
  private loading = 0;
  private idleTimer = 0;
  private toolbar!: HTMLElement;

  constructor(private readonly el: HTMLElement, private readonly ctx: NotebookPageContext) {
    clear(el);
    el.classList.add('files-panel');
    const toolbar = (this.toolbar = h('div.files-toolbar', null,
      h('button.btn.icon', { title: 'Upload to this folder', 'aria-label': 'Upload', onclick: () => this.picker.click() }, fileIcon('upload')),
      h('button.btn.icon', { title: 'New folder', 'aria-label': 'New folder', onclick: () => void this.newFolder() }, fileIcon('newfolder')),
      h('button.btn.icon', { title: 'Refresh', 'aria-label': 'Refresh', onclick: () => void this.refresh() }, fileIcon('refresh'))));
    el.append(h('div.files-head', null, h('span.files-where', { text: '/content' }), toolbar), this.body, this.picker);
    this.picker.addEventListener('change', () => {
      const files = [...(this.picker.files ?? [])];
      this.picker.value = '';
      void this.upload(files);
    });
    el.addEventListener('dragover', e => {
      if (!this.kernel || !e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      el.classList.add('dragging');
    });
    el.addEventListener('dragleave', e => {
      if (!el.contains(e.relatedTarget as Node)) el.classList.remove('dragging');
    });
    el.addEventListener('drop', e => {
      if (!this.kernel) return;
      e.preventDefault();
      el.classList.remove('dragging');
      void this.upload([...(e.dataTransfer?.files ?? [])]);
    });
    ctx.onKernelChanged(k => this.setKernel(k));
    this.setKernel(ctx.kernel());
  }

  private setKernel(k: Kernel.IKernelConnection | null) {
    const changed = (k?.id ?? null) !== (this.kernel?.id ?? null);
    this.kernel?.statusChanged.disconnect(this.onStatus, this);
    this.kernel = k;
    // Code that ran may have written files: refresh when the kernel is idle again.
    k?.statusChanged.connect(this.onStatus, this);
    if (changed) this.dir = '';
    void this.refresh();
  }

  private onStatus(_k: Kernel.IKernelConnection, status: Kernel.Status) {
    if (status !== 'idle' || this.el.hidden || this.el.closest('[hidden]')) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = window.setTimeout(() => void this.refresh(), 300);
  }

  private showConnect() {
    this.toolbar.hidden = true;
    clear(this.body);
    const btn = h('button.btn.primary', {
      text: 'Connect to a runtime',
      onclick: async () => {
        btn.disabled = true;
        btn.textContent = 'Connecting…';
        try {
          await this.ctx.ensureKernel();
        } catch (e) {
          toast(`Could not connect: ${errorMessage(e)}`);
          btn.disabled = false;
          btn.textContent = 'Connect to a runtime';
        }
      },
    });
    this.body.append(h('div.files-empty', null,
      h('p', { text: 'Files of the runtime (/content) appear here once a runtime is connected.' }), btn));
  }

  async refresh(): Promise<void> {
    const k = this.kernel;
    if (!k) return this.showConnect();
    this.toolbar.hidden = false;
    const token = ++this.loading;
    let entries: RuntimeEntry[];
    try {
      entries = await listDir(k.id, this.dir);
    } catch (e) {
      if (token !== this.loading) return;
      if (this.dir) {
        this.dir = '';
        return this.refresh();
      }
      clear(this.body);
      this.body.append(h('div.files-empty', null, h('p.error', { text: errorMessage(e) })));
      return;
    }
    if (token !== this.loading || k !== this.kernel) return;
    this.renderCrumbs();
    clear(this.list);
    if (this.dir) {
      const up = this.dir.includes('/') ? this.dir.slice(0, this.dir.lastIndexOf('/')) : '';
      this.list.append(h('li.files-item.dir.parent', null, h('span.files-icon', null, fileIcon('up')),
        h('button.files-name', { text: '..', title: 'Parent folder', onclick: () => this.go(up) })));
    } else {
      this.list.append(h('li.files-item.drive', { title: 'Your Drive is mounted at /content/drive' },
        h('span.files-icon', null, fileIcon('drive')),
        h('a.files-name', { href: '/drive', target: '_blank', text: 'drive' }),
        h('span.files-size', { text: 'your Drive' })));
    }
    const sorted = [...entries].sort((a, b) => (a.type === b.type ? a.name.localeCompare(b.name) : a.type === 'directory' ? -1 : 1));
    for (const e of sorted) this.list.append(this.row(k.id, e));
    if (!entries.length) this.list.append(h('li.files-none', { text: 'This folder is empty. Drop files here to upload.' }));
    clear(this.body);
    this.body.append(this.crumbs, this.list, this.uploads);
  }

  private renderCrumbs() {
    clear(this.crumbs);
    this.crumbs.append(h('button.crumb', { text: 'content', onclick: () => this.go('') }));
    let acc = '';
    for (const part of this.dir ? this.dir.split('/') : []) {
      acc = acc ? acc + '/' + part : part;
      const target = acc;
      this.crumbs.append(h('span.sep', { text: '/' }), h('button.crumb', { text: part, onclick: () => this.go(target) }));
    }
  }

  private go(dir: string) {
    this.dir = dir;
    void this.refresh();
  }

  private row(kernelId: string, e: RuntimeEntry): HTMLElement {
    const isDir = e.type === 'directory';
    const name = isDir
      ? h('button.files-name', { text: e.name, title: `Open ${e.name}`, onclick: () => this.go(e.path) })
      : h('button.files-name', { text: e.name, title: `Download ${e.name}`, onclick: () => void this.download(kernelId, e) });
    const actions = h('span.files-actions', null,
      isDir ? null : h('button.btn.icon', { title: 'Download', 'aria-label': `Download ${e.name}`, onclick: () => void this.download(kernelId, e) }, fileIcon('download', 16)),
      h('button.btn.icon', { title: 'Rename', 'aria-label': `Rename ${e.name}`, onclick: () => void this.rename(kernelId, e) }, fileIcon('rename', 16)),
      h('button.btn.icon', { title: 'Delete', 'aria-label': `Delete ${e.name}`, onclick: () => void this.remove(kernelId, e) }, fileIcon('trash', 16)));
    return h('li.files-item', { class: 'files-item ' + (isDir ? 'dir' : 'file'), 'data-name': e.name },
      h('span.files-icon', null, fileIcon(isDir ? 'folder' : 'file')), name,
      h('span.files-size', { text: isDir ? '' : formatBytes(e.size ?? 0) }), actions);
  }

  private async download(kernelId: string, e: RuntimeEntry) {
    try {
      await saveUrl(filesUrl(kernelId, e.path), e.name, e.size ?? undefined);
    } catch (err) {
      toast(`Download of ${e.name} failed: ${errorMessage(err)}`);
    }
  }

  private async rename(kernelId: string, e: RuntimeEntry) {
    const name = await promptDialog('Rename', 'New name', e.name, 'Rename');
    if (!name || name === e.name) return;
    const to = (this.dir ? this.dir + '/' : '') + name;
    try {
      await renamePath(kernelId, e.path, to);
    } catch (err) {
      toast(`Rename failed: ${errorMessage(err)}`);
    }
    void this.refresh();
  }

  private async remove(kernelId: string, e: RuntimeEntry) {
    const what = e.type === 'directory' ? `the folder ${e.name} and everything in it` : e.name;
    if (!(await confirmDialog('Delete', `Delete ${what} from the runtime? This cannot be undone.`, 'Delete'))) return;
    try {
      await removePath(kernelId, e.path);
    } catch (err) {
      toast(`Delete failed: ${errorMessage(err)}`);
    }
    void this.refresh();
  }

  private async newFolder() {
    const k = this.kernel;
    if (!k) return;
    const name = await promptDialog('New folder', 'Folder name', 'new_folder', 'Create');
    if (!name) return;
    try {
      await makeDir(k.id, (this.dir ? this.dir + '/' : '') + name);
    } catch (err) {
      toast(`Could not create the folder: ${errorMessage(err)}`);
    }
    void this.refresh();
  }

  private async upload(files: File[]) {
    const k = this.kernel;
    if (!k || !files.length) return;
    const dir = this.dir;
    for (const f of files) {
      const bar = h('progress', { max: '100', value: '0', 'aria-label': `Uploading ${f.name}` });
      const row = h('div.files-upload', null, h('span.upload-name', { text: f.name }), bar);
      this.uploads.append(row);
      try {
        await uploadFile(k.id, dir, f, (sent, total) => (bar.value = total ? Math.floor((sent / total) * 100) : 100));
        row.remove();
      } catch (err) {
        row.remove();
        toast(`Upload of ${f.name} failed: ${errorMessage(err)}`);
      }
      if (dir === this.dir) void this.refresh();
    }
  }
}
