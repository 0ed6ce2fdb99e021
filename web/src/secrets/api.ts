// /api/skylab/secrets: names and notebook grants (values go in, never out).
import { api } from '../api';

export interface SecretInfo {
  name: string;
  /** Notebook paths that have access. */
  grants: string[];
  updated: string;
}

export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

const enc = encodeURIComponent;

export const listSecrets = () => api<SecretInfo[]>('GET', '/api/skylab/secrets');
export const putSecret = (name: string, value: string) => api('PUT', `/api/skylab/secrets/${enc(name)}`, { value });
export const deleteSecret = (name: string) => api('DELETE', `/api/skylab/secrets/${enc(name)}`);
export const setAccess = (name: string, path: string, on: boolean) =>
  api(on ? 'PUT' : 'DELETE', `/api/skylab/secrets/${enc(name)}/grants`, { path });
