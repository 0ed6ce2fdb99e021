// CodeMirror 6 editors for cells, created lazily (a cell shows a plain
// <pre> until it is near the viewport or focused). Python: highlighting,
// bracket matching, kernel completions (complete_request) and tooltips
// (inspect_request on hover and Shift+Tab).
import { autocompletion, startCompletion, closeBrackets, closeBracketsKeymap, completionKeymap, type CompletionContext, type CompletionResult } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap, indentMore, indentLess } from '@codemirror/commands';
import { markdown } from '@codemirror/lang-markdown';
import { python } from '@codemirror/lang-python';
import { bracketMatching, defaultHighlightStyle, indentOnInput, indentUnit, syntaxHighlighting } from '@codemirror/language';
import { highlightSelectionMatches } from '@codemirror/search';
import { Compartment, EditorState, Prec, type Extension } from '@codemirror/state';
import { drawSelection, EditorView, hoverTooltip, keymap, placeholder, type KeyBinding, type Tooltip } from '@codemirror/view';
import type { Kernel } from '@jupyterlab/services';
import { Ansi } from './ansi';

export interface EditorHooks {
  kernel: () => Kernel.IKernelConnection | null;
  onChange: () => void;
  onFocus: () => void;
  onBlur: () => void;
  keys: KeyBinding[];
  /** Cursor on the first/last line and ArrowUp/Down: move to the neighbour cell. */
  onEdge: (dir: -1 | 1) => boolean;
  /** More extensions (co-editing: live/collab). */
  extra?: Extension[];
}

const theme = EditorView.theme({
  '&': { fontSize: '14px', backgroundColor: 'transparent' },
  '.cm-content': { fontFamily: 'var(--mono)', padding: '6px 0' },
  '.cm-line': { padding: '0 8px' },
  '&.cm-focused': { outline: 'none' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '20px' },
  '.cm-tooltip.cm-tooltip-autocomplete > ul': { fontFamily: 'var(--mono)' },
});

async function kernelComplete(hooks: EditorHooks, ctx: CompletionContext): Promise<CompletionResult | null> {
  const k = hooks.kernel();
  if (!k || k.status === 'dead') return null;
  const word = ctx.matchBefore(/[\w.]*/);
  if (!ctx.explicit && (!word || word.from === word.to)) return null;
  const code = ctx.state.doc.toString();
  try {
    const reply = await k.requestComplete({ code, cursor_pos: ctx.pos });
    const c = reply.content as any;
    if (c.status !== 'ok' || !c.matches?.length) return null;
    const types: Record<string, string> = {};
    for (const t of c.metadata?._jupyter_types_experimental ?? []) types[t.text] = t.type;
    return {
      from: c.cursor_start,
      to: c.cursor_end,
      options: c.matches.slice(0, 500).map((m: string) => ({ label: m, type: typeMap(types[m]) })),
      validFor: /^[\w]*$/,
    };
  } catch {
    return null;
  }
}

function typeMap(t?: string): string | undefined {
  if (!t) return undefined;
  if (t === 'function' || t === 'method') return 'function';
  if (t === 'module') return 'namespace';
  if (t === 'class') return 'class';
  if (t === 'keyword') return 'keyword';
  return 'variable';
}

async function inspect(k: Kernel.IKernelConnection, code: string, pos: number): Promise<HTMLElement | null> {
  const reply = await k.requestInspect({ code, cursor_pos: pos, detail_level: 0 });
  const c = reply.content as any;
  if (c.status !== 'ok' || !c.found) return null;
  const t = c.data?.['text/plain'];
  if (!t) return null;
  const pre = document.createElement('pre');
  pre.className = 'inspect';
  pre.innerHTML = new Ansi().toHtml(String(t).slice(0, 4000));
  return pre;
}

/** Shows an inspect tooltip at the cursor (Shift+Tab). */
function inspectAtCursor(hooks: EditorHooks) {
  return (view: EditorView): boolean => {
    const k = hooks.kernel();
    if (!k) return false;
    const pos = view.state.selection.main.head;
    void inspect(k, view.state.doc.toString(), pos).then(el => {
      if (!el) return;
      const coords = view.coordsAtPos(pos);
      if (!coords) return;
      document.querySelectorAll('.inspect-float').forEach(x => x.remove());
      const box = document.createElement('div');
      box.className = 'inspect-float';
      box.setAttribute('role', 'tooltip');
      box.append(el);
      box.style.left = `${coords.left}px`;
      box.style.top = `${coords.bottom + 4}px`;
      document.body.append(box);
      const close = () => {
        box.remove();
        document.removeEventListener('keydown', close, true);
        document.removeEventListener('mousedown', close, true);
      };
      setTimeout(() => {
        document.addEventListener('keydown', close, true);
        document.addEventListener('mousedown', close, true);
      });
    });
    return true;
  };
}

export function createEditor(parent: HTMLElement, doc: string, kind: 'code' | 'markdown', hooks: EditorHooks): EditorView {
  const lang = new Compartment();
  const extensions: Extension[] = [
    Prec.highest(keymap.of(hooks.keys)),
    history(),
    drawSelection(),
    indentOnInput(),
    indentUnit.of('    '),
    EditorState.tabSize.of(4),
    bracketMatching(),
    closeBrackets(),
    highlightSelectionMatches(),
    syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
    lang.of(kind === 'code' ? python() : markdown()),
    EditorView.lineWrapping,
    theme,
    placeholder(kind === 'code' ? 'Start coding…' : 'Type Markdown and LaTeX: $\\alpha^2$'),
    keymap.of([
      { key: 'ArrowUp', run: v => (v.state.doc.lineAt(v.state.selection.main.head).number === 1 && v.state.selection.main.empty ? hooks.onEdge(-1) : false) },
      { key: 'ArrowDown', run: v => (v.state.doc.lineAt(v.state.selection.main.head).number === v.state.doc.lines && v.state.selection.main.empty ? hooks.onEdge(1) : false) },
      { key: 'Shift-Tab', run: v => (kind === 'code' && v.state.selection.main.empty && inspectAtCursor(hooks)(v)) || indentLess(v) },
      { key: 'Tab', run: v => (kind === 'code' && wordBeforeCursor(v) ? startCompletion(v) : indentMore(v)) },
      ...closeBracketsKeymap,
      ...completionKeymap,
      ...historyKeymap,
      ...defaultKeymap,
    ]),
    EditorView.updateListener.of(u => {
      if (u.docChanged) hooks.onChange();
      if (u.focusChanged) (u.view.hasFocus ? hooks.onFocus : hooks.onBlur)();
    }),
  ];
  if (hooks.extra) extensions.push(...hooks.extra);
  if (kind === 'code') {
    extensions.push(
      autocompletion({ override: [ctx => kernelComplete(hooks, ctx)], activateOnTyping: false, icons: true }),
      hoverTooltip(async (view, pos): Promise<Tooltip | null> => {
        const k = hooks.kernel();
        if (!k || k.status === 'busy') return null;
        const word = view.state.wordAt(pos);
        if (!word) return null;
        const el = await inspect(k, view.state.doc.toString(), word.to).catch(() => null);
        return el ? { pos: word.from, end: word.to, above: false, create: () => ({ dom: el }) } : null;
      }, { hoverTime: 700 }),
    );
  }
  return new EditorView({ doc, extensions, parent });
}

function wordBeforeCursor(v: EditorView): boolean {
  const sel = v.state.selection.main;
  if (!sel.empty) return false;
  const line = v.state.doc.lineAt(sel.head);
  return /[\w.]$/.test(line.text.slice(0, sel.head - line.from));
}
