// The server connection: @jupyterlab/services settings (cookie session,
// `_xsrf` echoed as X-XSRFToken by the library) and small helpers for
// Skylab's own REST routes.
import { ContentsManager, ServerConnection } from '@jupyterlab/services';

export const serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings({
  baseUrl: location.origin + '/',
  wsUrl: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/',
  appendToken: false,
});

export const contents = new ContentsManager({ serverSettings });

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

/** Calls a Skylab REST route; JSON in and out; throws ApiError with the server's message. */
export async function api<T = any>(method: string, url: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  const res = await ServerConnection.makeRequest(serverSettings.baseUrl + url.replace(/^\//, ''), init, serverSettings);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: any = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) throw new ApiError(res.status, (data && data.message) || `${res.status} ${res.statusText}`);
  return data as T;
}

export interface Me {
  username: string;
  admin: boolean;
  outputOrigin: string;
}

let me: Me | null = null;

export async function whoami(): Promise<Me | null> {
  if (me) return me;
  const res = await fetch('/api/me', { credentials: 'same-origin' });
  if (res.status === 401 || res.status === 403) return null;
  const j = await res.json();
  me = { username: j.identity.username, admin: !!j.skylab?.admin, outputOrigin: j.skylab?.output_origin || '' };
  return me;
}

export function signIn(): void {
  location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
}

/** Encodes a Drive path for a URL, keeping the slashes. */
export function encodePath(p: string): string {
  return p.split('/').map(encodeURIComponent).join('/');
}

export function notebookUrl(path: string): string {
  return '/notebooks/' + encodePath(path);
}

/** Recently opened notebooks (this browser), newest first. */
export function recentFiles(): { path: string; opened: string }[] {
  try {
    return JSON.parse(localStorage.getItem('skylab.recent') || '[]');
  } catch {
    return [];
  }
}

export function noteRecent(path: string): void {
  const list = recentFiles().filter(r => r.path !== path);
  list.unshift({ path, opened: new Date().toISOString() });
  localStorage.setItem('skylab.recent', JSON.stringify(list.slice(0, 50)));
}

export function forgetRecent(path: string, renamedTo?: string): void {
  let list = recentFiles();
  if (renamedTo) list = list.map(r => (r.path === path ? { ...r, path: renamedTo } : r));
  else list = list.filter(r => r.path !== path);
  localStorage.setItem('skylab.recent', JSON.stringify(list));
}
