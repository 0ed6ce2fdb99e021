// Extension points of the notebook app. Other modules (the Files panel,
// `files.upload()`/`files.download()` support, ...) plug in here without
// the editor knowing them.
import type { Kernel, ServerConnection } from '@jupyterlab/services';

/** What an extension may know about the notebook an output or prompt belongs to. */
export interface OutputContext {
  /** Id of the kernel (runtime) that produced the output; null when none is connected. */
  kernelId: string | null;
  /** The kernel connection itself (null when none). */
  kernel: Kernel.IKernelConnection | null;
  /** Drive path of the notebook, e.g. "course/lab1.ipynb". */
  path: string;
  /** Id of the cell the output belongs to. */
  cellId: string;
  /** Settings for talking to this server with @jupyterlab/services. */
  serverSettings: ServerConnection.ISettings;
  /** The whole MIME bundle being rendered (a renderer may offer another of its types). */
  bundle?: Record<string, unknown>;
  /** The context as it is now (the runtime may have been connected since the output was rendered). */
  current?: () => OutputContext;
}

/**
 * Renders one MIME bundle entry into `el` (an empty element inside the cell's
 * output area). `data` is the bundle's value for that MIME type, `metadata`
 * the output's metadata for it.
 */
export type MimeRenderer = (
  data: unknown,
  metadata: Record<string, unknown>,
  el: HTMLElement,
  ctx: OutputContext,
) => void | Promise<void>;

const mimeRenderers = new Map<string, MimeRenderer>();

/** Registers a renderer for `mime`; it is preferred over the built-in ones. */
export function registerMimeRenderer(mime: string, render: MimeRenderer): void {
  mimeRenderers.set(mime, render);
}

/** The registered renderer for the first MIME type of `bundle` that has one. */
export function findMimeRenderer(bundle: Record<string, unknown>): { mime: string; render: MimeRenderer } | null {
  for (const [mime, render] of mimeRenderers) if (mime in bundle) return { mime, render };
  return null;
}

/** An `input_request` from the kernel (`input()`, `getpass()`, or a helper asking the browser). */
export interface StdinRequest {
  prompt: string;
  password: boolean;
  /** The cell's output area: a handler may show its own UI there. */
  outputEl: HTMLElement;
  context: OutputContext;
}

/**
 * Looks at a stdin request; returns a Promise of the reply to send to the
 * kernel when it handles the request itself (a special prompt), or
 * null/undefined to let the next handler (finally the plain input box) act.
 */
export type StdinHandler = (req: StdinRequest) => Promise<string> | null | undefined;

const stdinHandlers: StdinHandler[] = [];

/** Adds a stdin handler; handlers are asked in registration order. */
export function registerStdinHandler(handler: StdinHandler): void {
  stdinHandlers.push(handler);
}

/** Asks the handlers in turn; null when none takes the request. */
export function handleStdin(req: StdinRequest): Promise<string> | null {
  for (const h of stdinHandlers) {
    const r = h(req);
    if (r) return r;
  }
  return null;
}

/** What panels of the notebook page (Files, ...) are given. */
export interface NotebookPageContext {
  /** Drive path of the open notebook. */
  readonly path: string;
  readonly serverSettings: ServerConnection.ISettings;
  /** The connected kernel, or null. */
  kernel(): Kernel.IKernelConnection | null;
  /** Calls `cb` whenever the kernel changes (connected, replaced, disconnected). Returns an unsubscribe function. */
  onKernelChanged(cb: (k: Kernel.IKernelConnection | null) => void): () => void;
  /** Connects a runtime if none is (as pressing Connect does) and returns it. */
  ensureKernel(): Promise<Kernel.IKernelConnection>;
}
