// Entry point: signs the user in (or sends them to /login) and routes
// by path: /, /drive → Drive; /notebooks/<path> → the editor.
import './style.css';
import 'katex/dist/katex.min.css';
import { signIn, whoami } from './api';
import './files/colab_files';

async function main(): Promise<void> {
  const me = await whoami();
  if (!me) return signIn();
  const app = document.getElementById('app')!;
  const p = location.pathname;
  if (p.startsWith('/notebooks/') || /^\/shared\/[0-9a-f]{24,48}/.test(p)) {
    const path = p.startsWith('/notebooks/') ? p.slice('/notebooks/'.length).split('/').map(decodeURIComponent).join('/') : '';
    const { openNotebookPage } = await import('./notebook/page');
    await openNotebookPage(app, path, me);
  } else {
    const { openDrivePage } = await import('./drive/drive');
    const view = p.startsWith('/shared') ? 'shared' : p.startsWith('/recent') ? 'recent' : 'mine';
    await openDrivePage(app, me, view);
  }
}

main().catch(err => {
  console.error(err);
  const app = document.getElementById('app');
  if (app) app.textContent = 'Skylab could not start: ' + (err?.message || err);
});
