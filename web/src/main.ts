// Entry point: signs the user in (or sends them to /login) and routes
// by path: /, /drive → Drive; /notebooks/<path> → the editor.
import './style.css';
import 'katex/dist/katex.min.css';
import { signIn, whoami } from './api';
import './files/colab_files';
import './notebook/datatable';
import { openDrivePage } from './drive/drive';
import { openNotebookPage, prefetchNotebook } from './notebook/page';

async function main(): Promise<void> {
  performance.mark('skylab-start');
  const p = location.pathname;
  const isNotebook = p.startsWith('/notebooks/');
  const path = isNotebook ? p.slice('/notebooks/'.length).split('/').map(decodeURIComponent).join('/') : '';
  // The notebook's file is fetched while we learn who we are.
  const prefetch = isNotebook ? prefetchNotebook(path) : null;
  const me = await whoami();
  if (!me) return signIn();
  const app = document.getElementById('app')!;
  if (isNotebook || /^\/shared\/[0-9a-f]{24,48}/.test(p)) {
    await openNotebookPage(app, path, me, prefetch);
  } else {
    const view = p.startsWith('/shared') ? 'shared' : p.startsWith('/recent') ? 'recent' : 'mine';
    await openDrivePage(app, me, view);
  }
}

main().catch(err => {
  console.error(err);
  const app = document.getElementById('app');
  if (app) app.textContent = 'Skylab could not start: ' + (err?.message || err);
});
