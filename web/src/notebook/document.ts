// Where a notebook is loaded from and saved to: the user's Drive (Contents
// API through @jupyterlab/services) or a share (/api/skylab/shared/{id}/contents).
import { api, contents, encodePath } from '../api';

export interface NotebookFile {
  content: any;
  writable: boolean;
  lastModified: string;
  name: string;
  path: string;
  /** Requests the server is recording into this notebook (msg_id -> cell id). */
  running?: Record<string, string>;
}

export interface DocStore {
  /** Drive path shown to the user (for own files) or the share's name. */
  readonly path: string;
  readonly shareId: string | null;
  load(): Promise<NotebookFile>;
  save(content: unknown, opts?: { keepalive?: boolean }): Promise<string>;
  /** The file's last_modified on the server now (no content fetched). */
  modified(): Promise<string>;
  rename(newName: string): Promise<DocStore>;
}

export class DriveDoc implements DocStore {
  readonly shareId = null;
  constructor(readonly path: string) {}

  async load(): Promise<NotebookFile> {
    const m = await contents.get(this.path, { type: 'notebook', content: true });
    return { content: m.content, writable: m.writable !== false, lastModified: m.last_modified, name: m.name, path: m.path,
      running: (m as any).skylab?.running };
  }

  async save(content: unknown, opts: { keepalive?: boolean } = {}): Promise<string> {
    if (opts.keepalive) {
      // A save while the page goes away: fetch with keepalive (survives the unload).
      const body = JSON.stringify({ type: 'notebook', format: 'json', content });
      const xsrf = document.cookie.split('; ').find(c => c.startsWith('_xsrf='))?.slice(6) ?? '';
      void fetch('/api/contents/' + encodePath(this.path), {
        method: 'PUT', body, keepalive: true, credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-XSRFToken': decodeURIComponent(xsrf) },
      });
      return '';
    }
    const m = await contents.save(this.path, { type: 'notebook', format: 'json', content: content as any });
    return m.last_modified;
  }

  async modified(): Promise<string> {
    const m = await contents.get(this.path, { content: false });
    return m.last_modified;
  }

  async rename(newName: string): Promise<DocStore> {
    const dir = this.path.includes('/') ? this.path.slice(0, this.path.lastIndexOf('/') + 1) : '';
    const m = await contents.rename(this.path, dir + newName);
    return new DriveDoc(m.path);
  }
}

export class SharedDoc implements DocStore {
  constructor(readonly shareId: string, private sub: string, public path: string) {}

  private url(): string {
    return `/api/skylab/shared/${this.shareId}/contents${this.sub ? '/' + encodePath(this.sub) : ''}`;
  }

  async load(): Promise<NotebookFile> {
    const m: any = await api('GET', this.url() + '?type=notebook&content=1');
    this.path = m.name;
    return { content: m.content, writable: m.writable !== false, lastModified: m.last_modified, name: m.name, path: m.path,
      running: (m as any).skylab?.running };
  }

  async save(content: unknown): Promise<string> {
    const m: any = await api('PUT', this.url(), { type: 'notebook', format: 'json', content });
    return m.last_modified;
  }

  async modified(): Promise<string> {
    const m: any = await api('GET', this.url() + '?content=0');
    return m.last_modified;
  }

  async rename(): Promise<DocStore> {
    throw new Error('A notebook shared with you cannot be renamed');
  }
}
