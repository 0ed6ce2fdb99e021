// `files.download()` and `files.upload()` from notebook code (python/skylab/
// files.py, also google.colab.files), the browser side; protocol in
// docs/files.md.
//  - download: an output of type application/vnd.skylab.download+json; we
//    fetch the bytes from the runtime files API (or the Drive) and save them.
//  - upload: an input_request whose prompt starts with "skylab.files.upload:";
//    we show a file picker in the cell's output, upload the files straight
//    into the runtime (chunked, with progress) and answer with their names.
import { encodePath } from '../api';
import { registerMimeRenderer, registerStdinHandler, type OutputContext, type StdinRequest } from '../extensions';
import { formatBytes, h } from '../ui/dom';
import { fileIcon } from './file_icons';
import { filesUrl, saveUrl, uploadFile } from './runtime_files';
import './files.css';

export const DOWNLOAD_MIME = 'application/vnd.skylab.download+json';
export const UPLOAD_PROMPT = 'skylab.files.upload:';

/** Download outputs older than this when first seen (a reopened notebook) are not fetched by themselves. */
const LIVE_SECONDS = 120;
const SEEN_KEY = 'skylab.downloads.seen';

interface DownloadData {
  source: 'runtime' | 'drive';
  path: string;
  name: string;
  size: number;
  kernel_id: string;
  id: string;
  time: number;
}

function seenIds(): string[] {
  try {
    return JSON.parse(localStorage.getItem(SEEN_KEY) || '[]');
  } catch {
    return [];
  }
}

/** True the first time `id` is seen in this browser (any tab). */
function firstSight(id: string): boolean {
  const seen = seenIds();
  if (seen.includes(id)) return false;
  seen.push(id);
  localStorage.setItem(SEEN_KEY, JSON.stringify(seen.slice(-200)));
  return true;
}

function downloadUrl(d: DownloadData, ctx: OutputContext): string {
  if (d.source === 'drive') return '/files/' + encodePath(d.path);
  return filesUrl(d.kernel_id || ctx.kernelId || '', d.path);
}

function renderDownload(data: unknown, _md: Record<string, unknown>, el: HTMLElement, ctx: OutputContext): void {
  const d = data as DownloadData;
  if (!d || typeof d.name !== 'string' || typeof d.path !== 'string') {
    el.textContent = 'files.download: malformed output';
    return;
  }
  const url = downloadUrl(d, ctx);
  const status = h('span.download-status', { text: '' });
  const link = h('a.download-link', { href: url, download: d.name, text: d.name });
  const box = h('div.skylab-download', null, h('span.download-icon', null, fileIcon('download', 16)), status, link,
    h('span.download-size', { text: ` (${formatBytes(d.size ?? 0)})` }));
  el.append(box);
  const save = () => {
    status.textContent = 'Downloading ';
    box.classList.remove('failed', 'done');
    saveUrl(url, d.name, d.size).then(
      () => {
        status.textContent = 'Downloaded ';
        box.classList.add('done');
      },
      e => {
        // E.g. the runtime that made the file is gone (404).
        status.textContent = `Download failed (${e instanceof Error ? e.message : e}): `;
        box.classList.add('failed');
      },
    );
  };
  link.addEventListener('click', e => {
    e.preventDefault();
    save();
  });
  const fresh = typeof d.time === 'number' && Date.now() / 1000 - d.time < LIVE_SECONDS;
  if (!fresh || !firstSight(d.id || url)) {
    status.textContent = 'Download ';
    return;
  }
  save();
}

interface UploadRequest {
  'skylab.files': string;
  dir: string;
  kernel_id?: string;
  multiple?: boolean;
}

function parseUploadRequest(prompt: string): UploadRequest | null {
  if (!prompt.startsWith(UPLOAD_PROMPT)) return null;
  try {
    const r = JSON.parse(prompt.slice(UPLOAD_PROMPT.length));
    if (r && r['skylab.files'] === 'upload' && typeof r.dir === 'string') return r;
  } catch {
    /* not ours */
  }
  return null;
}

/** The upload widget in the cell's output; resolves with the reply for the kernel. */
function uploadWidget(req: StdinRequest, u: UploadRequest): Promise<string> {
  const kernelId = req.context.kernelId || u.kernel_id || '';
  return new Promise(resolve => {
    const input = h('input.upload-input', { type: 'file', multiple: u.multiple !== false, 'aria-label': 'Choose files to upload' });
    const choose = h('button.btn.primary', { text: 'Choose files', onclick: () => input.click() });
    const cancel = h('button.btn', { text: 'Cancel upload' });
    const hint = h('span.upload-hint', { text: 'or drop files here' });
    const list = h('div.upload-list');
    const box = h('div.skylab-upload', { role: 'group', 'aria-label': 'Upload files to the runtime' },
      h('div.upload-row', null, choose, hint, cancel), input, list);
    req.outputEl.append(box);
    req.outputEl.classList.add('has-output');
    const abort = new AbortController();
    let busy = false;
    /** Ends the widget; `reply` null: the request is gone, nothing is sent. */
    const finish = (reply: object | null, note: string) => {
      abort.abort();
      input.disabled = true;
      choose.remove();
      cancel.remove();
      hint.textContent = note;
      box.classList.add('finished');
      if (reply) resolve(JSON.stringify(reply));
    };
    cancel.addEventListener('click', () => finish({ cancelled: true }, 'Upload cancelled.'));
    // The cell was interrupted (or the kernel restarted) while the picker was
    // open: the request is over, say so instead of offering a dead picker.
    const kernel = req.context.kernel;
    const onStatus = (_k: unknown, status: string) => {
      if (status !== 'idle' && status !== 'restarting' && status !== 'dead') return;
      setTimeout(() => {
        if (box.classList.contains('finished') || busy) return;
        if (kernel && kernel.status !== 'busy') finish(null, 'The cell stopped before files were chosen.');
      }, 500);
    };
    kernel?.statusChanged.connect(onStatus);
    abort.signal.addEventListener('abort', () => kernel?.statusChanged.disconnect(onStatus));
    const start = async (files: File[]) => {
      if (busy || !files.length) return;
      busy = true;
      choose.disabled = true;
      hint.textContent = '';
      const done: { name: string; size: number }[] = [];
      try {
        for (const f of files) {
          const bar = h('progress', { max: '100', value: '0', 'aria-label': `Uploading ${f.name}` });
          const pct = h('span.upload-pct', { text: '0% done' });
          list.append(h('div.upload-file', null, h('span.upload-name', { text: f.name }),
            h('span.upload-meta', { text: `(${f.type || 'n/a'}) - ${formatBytes(f.size)}` }), bar, pct));
          await uploadFile(kernelId, u.dir, f, (sent, total) => {
            const p = total ? Math.floor((sent / total) * 100) : 100;
            bar.value = p;
            pct.textContent = `${p}% done`;
          }, abort.signal);
          done.push({ name: f.name, size: f.size });
        }
        finish({ files: done }, `${done.length} file${done.length === 1 ? '' : 's'} uploaded.`);
      } catch (e) {
        if (abort.signal.aborted) return;
        finish({ error: e instanceof Error ? e.message : String(e) }, `Upload failed: ${e instanceof Error ? e.message : e}`);
      }
    };
    input.addEventListener('change', () => void start([...(input.files ?? [])]));
    box.addEventListener('dragover', e => {
      e.preventDefault();
      box.classList.add('dragging');
    });
    box.addEventListener('dragleave', () => box.classList.remove('dragging'));
    box.addEventListener('drop', e => {
      e.preventDefault();
      box.classList.remove('dragging');
      void start([...(e.dataTransfer?.files ?? [])]);
    });
  });
}

function handleUpload(req: StdinRequest): Promise<string> | null {
  const u = parseUploadRequest(req.prompt);
  if (!u) return null;
  if (!req.context.kernelId && !u.kernel_id) return Promise.resolve(JSON.stringify({ error: 'no runtime is connected' }));
  return uploadWidget(req, u);
}

registerMimeRenderer(DOWNLOAD_MIME, renderDownload);
registerStdinHandler(handleUpload);
