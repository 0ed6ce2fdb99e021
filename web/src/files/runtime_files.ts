// Client of the runtime files API (/api/skylab/runtimes/{id}/files, see
// docs/files.md): listings, chunked uploads with progress, downloads.
import { api, encodePath } from '../api';

/** Raw bytes per upload request; the server accepts up to 32 MiB. */
export const CHUNK_BYTES = 8 << 20;
/** Downloads up to this size go through fetch (errors shown); larger ones stream to disk. */
const FETCH_DOWNLOAD_LIMIT = 256 << 20;

export interface RuntimeEntry {
  name: string;
  path: string;
  type: 'file' | 'directory';
  size: number | null;
  last_modified: string;
}

export function filesUrl(kernelId: string, path: string): string {
  const p = path.replace(/^\/+|\/+$/g, '');
  return `/api/skylab/runtimes/${encodeURIComponent(kernelId)}/files${p ? '/' + encodePath(p) : '/'}`;
}

export async function listDir(kernelId: string, path: string): Promise<RuntimeEntry[]> {
  const m = await api<{ content: RuntimeEntry[] }>('GET', filesUrl(kernelId, path));
  return m.content;
}

export function makeDir(kernelId: string, path: string): Promise<unknown> {
  return api('POST', filesUrl(kernelId, path), { type: 'directory' });
}

export function removePath(kernelId: string, path: string): Promise<unknown> {
  return api('DELETE', filesUrl(kernelId, path));
}

export function renamePath(kernelId: string, path: string, to: string): Promise<unknown> {
  return api('PATCH', filesUrl(kernelId, path), { path: to });
}

function xsrfToken(): string {
  const m = /(?:^|;\s*)_xsrf=([^;]*)/.exec(document.cookie);
  return m ? decodeURIComponent(m[1]) : '';
}

/** One PUT of raw bytes; `onProgress` gets the bytes of this body sent so far. */
function putBytes(url: string, body: Blob, onProgress: (sent: number) => void, signal?: AbortSignal): Promise<any> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    const token = xsrfToken();
    if (token) xhr.setRequestHeader('X-XSRFToken', token);
    xhr.upload.onprogress = e => onProgress(e.loaded);
    xhr.onload = () => {
      let data: any = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new Error((data && data.message) || `Upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error('Upload failed: the connection to the server was lost'));
    xhr.onabort = () => reject(new DOMException('Upload cancelled', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(body);
  });
}

/**
 * Uploads `file` to `dir/file.name` in the runtime, in CHUNK_BYTES chunks
 * (a partial upload never shows as a file). `onProgress(done, total)`.
 */
export async function uploadFile(
  kernelId: string,
  dir: string,
  file: File,
  onProgress: (done: number, total: number) => void,
  signal?: AbortSignal,
): Promise<void> {
  const path = (dir ? dir.replace(/\/+$/, '') + '/' : '') + file.name;
  const url = filesUrl(kernelId, path);
  const total = file.size;
  if (total <= CHUNK_BYTES) {
    await putBytes(url, file, sent => onProgress(Math.min(sent, total), total), signal);
    onProgress(total, total);
    return;
  }
  let offset = 0;
  let n = 1;
  while (offset < total) {
    const end = Math.min(offset + CHUNK_BYTES, total);
    const last = end >= total;
    const start = offset;
    await putBytes(`${url}?chunk=${last ? -1 : n}`, file.slice(start, end), sent => onProgress(start + sent, total), signal);
    offset = end;
    n++;
    onProgress(offset, total);
  }
}

/** Saves `url` (an attachment) on the user's computer as `name`. */
export async function saveUrl(url: string, name: string, size?: number): Promise<void> {
  const a = document.createElement('a');
  a.download = name;
  a.rel = 'noopener';
  if (size !== undefined && size > FETCH_DOWNLOAD_LIMIT) {
    // Large: let the browser stream it to disk (Content-Disposition: attachment).
    a.href = url;
  } else {
    const res = await fetch(url, { credentials: 'same-origin' });
    if (!res.ok) {
      let message = `${res.status} ${res.statusText}`;
      try {
        message = (await res.json()).message || message;
      } catch {
        /* not JSON */
      }
      throw new Error(message);
    }
    a.href = URL.createObjectURL(await res.blob());
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  }
  document.body.append(a);
  a.click();
  a.remove();
}
