// Untrusted HTML and JavaScript outputs render in iframes that load
// /output-frame (on --output-origin when configured). That page is always
// sandboxed without allow-same-origin: an opaque origin, no access to the
// app's cookies, storage or DOM. The frame reports its height by postMessage.

let outputOrigin = '';
const frames = new Map<string, { iframe: HTMLIFrameElement; payload: { html?: string; js?: string } }>();
let listening = false;
let counter = 0;

export function setOutputOrigin(origin: string): void {
  outputOrigin = origin.replace(/\/$/, '');
}

function listen() {
  if (listening) return;
  listening = true;
  window.addEventListener('message', e => {
    const d = e.data;
    if (!d || typeof d !== 'object' || typeof d.frame !== 'string') return;
    const f = frames.get(d.frame);
    if (!f || e.source !== f.iframe.contentWindow) return;
    if (d.type === 'ready') {
      f.iframe.contentWindow!.postMessage({ type: 'render', ...f.payload }, '*');
    } else if (d.type === 'resize' && typeof d.height === 'number') {
      f.iframe.style.height = `${Math.min(Math.max(d.height, 16), 5000)}px`;
    }
  });
}

export function renderInFrame(el: HTMLElement, payload: { html?: string; js?: string }): HTMLIFrameElement {
  listen();
  const token = `f${++counter}-${Math.random().toString(36).slice(2)}`;
  const iframe = document.createElement('iframe');
  iframe.className = 'output-frame';
  iframe.setAttribute('sandbox', 'allow-scripts allow-popups allow-popups-to-escape-sandbox allow-forms allow-modals allow-downloads');
  iframe.setAttribute('title', 'Output');
  iframe.setAttribute('loading', 'lazy');
  iframe.src = `${outputOrigin}/output-frame#${token}`;
  iframe.style.height = '24px';
  frames.set(token, { iframe, payload });
  el.append(iframe);
  // Forget frames that left the page.
  if (counter % 50 === 0) for (const [k, f] of frames) if (!f.iframe.isConnected) frames.delete(k);
  return iframe;
}
