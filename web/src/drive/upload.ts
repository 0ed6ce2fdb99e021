// Uploads files into the Drive with the Contents API, as JupyterLab does:
// small files in one PUT, large ones in 1 MiB chunks (`chunk`: 1, 2, …, -1).
import { contents } from '../api';
import { formatBytes, h } from '../ui/dom';
import { toast } from '../ui/dialog';

const CHUNK = 1024 * 1024;

function base64(blob: Blob): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const s = r.result as string;
      resolve(s.slice(s.indexOf(',') + 1));
    };
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

export async function uploadFiles(files: File[], dir: string, host: HTMLElement): Promise<void> {
  const panel = h('div.uploads', { role: 'status', 'aria-label': 'Uploads' });
  document.body.append(panel);
  try {
    for (const f of files) {
      const path = dir ? `${dir}/${f.name}` : f.name;
      const bar = h('progress', { max: 100, value: 0, 'aria-label': `Uploading ${f.name}` });
      const label = h('span.up-label', { text: `${f.name} (${formatBytes(f.size)})` });
      const item = h('div.upload-item', null, label, bar);
      panel.append(item);
      try {
        if (f.name.endsWith('.ipynb') && f.size < 64 * CHUNK) {
          const content = JSON.parse(await f.text());
          await contents.save(path, { type: 'notebook', format: 'json', content });
        } else if (f.size <= CHUNK) {
          await contents.save(path, { type: 'file', format: 'base64', content: await base64(f) });
        } else {
          const n = Math.ceil(f.size / CHUNK);
          for (let i = 0; i < n; i++) {
            const chunk = i === n - 1 ? -1 : i + 1;
            const content = await base64(f.slice(i * CHUNK, (i + 1) * CHUNK));
            await contents.save(path, { type: 'file', format: 'base64', content, chunk } as any);
            bar.value = Math.round(((i + 1) / n) * 100);
          }
        }
        bar.value = 100;
        item.classList.add('done');
      } catch (e: any) {
        item.classList.add('failed');
        toast(`Upload of ${f.name} failed: ${e?.message ?? e}`);
      }
    }
  } finally {
    setTimeout(() => panel.remove(), 2500);
  }
  void host;
}
