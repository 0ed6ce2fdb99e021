// The keymap: document-level keys (command mode, Colab's Ctrl+M chords,
// palette, save, run) and the keys every cell editor binds (run, escape).
import type { KeyBinding } from '@codemirror/view';
import type { Cell, CellType } from './cell';
import { isMac, type CommandRegistry } from './commands';

/** What the keymap drives on the page. */
export interface KeymapHost {
  readonly cells: Cell[];
  readonly active: number;
  readonly commands: CommandRegistry;
  saveNow(): Promise<void>;
  runAll(): Promise<void>;
  run(cells: Cell[]): void;
  select(i: number, scroll?: boolean): void;
  commandMode(): void;
  insert(type: CellType, offset: 0 | 1, focus: boolean): Cell;
  changeType(t: CellType): void;
  undo(): void;
  deleteCells(): void;
  copyCell(cell: Cell): void;
  runAndAdvance(cell: Cell): void;
  runInPlace(cell: Cell): void;
  runAndInsert(cell: Cell): void;
}

/** Ctrl+M then this key runs the command (both modes). */
const CHORDS: Record<string, string> = { b: 'insert-code', a: 'insert-above', d: 'delete-cell', m: 'to-markdown', y: 'to-code', z: 'undo', i: 'interrupt', '.': 'restart', k: 'move-up', j: 'move-down', h: 'shortcuts' };

export class Keymap {
  private chord = false;
  private dPressed = 0;

  constructor(private host: KeymapHost) {}

  /** The bindings of a cell's editor (edit mode). */
  cellKeys(cell: Cell): KeyBinding[] {
    const p = this.host;
    return [
      { key: 'Shift-Enter', run: () => (p.runAndAdvance(cell), true) },
      { key: 'Mod-Enter', run: () => (p.runInPlace(cell), true) },
      { key: 'Alt-Enter', run: () => (p.runAndInsert(cell), true) },
      { key: 'Escape', run: () => (p.commandMode(), true) },
      { key: 'Mod-s', run: () => (void p.saveNow(), true) },
    ];
  }

  /** The document's keydown handler. */
  onKey(e: KeyboardEvent) {
    const p = this.host;
    const mod = isMac ? e.metaKey : e.ctrlKey;
    const target = e.target as HTMLElement;
    const inEditor = !!target.closest?.('.cm-editor');
    const inField = !inEditor && (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement || target.isContentEditable);
    if (document.querySelector('.overlay')) return; // a dialog has the keyboard
    if (mod && e.shiftKey && (e.key === 'P' || e.key === 'p')) {
      e.preventDefault();
      return p.commands.palette();
    }
    if (mod && (e.key === 's' || e.key === 'S')) {
      e.preventDefault();
      return void p.saveNow();
    }
    if (mod && e.key === 'F9') return (e.preventDefault(), void p.runAll());
    if (mod && e.key === 'F8') return (e.preventDefault(), p.run(p.cells.slice(0, p.active)));
    if (mod && e.key === 'F10') return (e.preventDefault(), p.run(p.cells.slice(p.active)));
    // Colab's Ctrl+M chords, in both modes.
    if (mod && (e.key === 'm' || e.key === 'M')) {
      e.preventDefault();
      this.chord = true;
      return;
    }
    if (this.chord) {
      this.chord = false;
      const k = e.key.toLowerCase();
      if (CHORDS[k]) {
        e.preventDefault();
        p.commands.exec(CHORDS[k]);
      }
      return;
    }
    if (inEditor || inField) return;
    // Command mode.
    const cell = p.cells[p.active];
    if (!cell) return;
    const key = e.key;
    if (e.shiftKey && key === 'Enter') return (e.preventDefault(), p.runAndAdvance(cell));
    if (mod && key === 'Enter') return (e.preventDefault(), p.runInPlace(cell));
    if (e.altKey && key === 'Enter') return (e.preventDefault(), p.runAndInsert(cell));
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (key === 'Enter') {
      e.preventDefault();
      cell.edit();
      cell.focusEditor();
    } else if (key === 'ArrowDown' || key === 'j') {
      e.preventDefault();
      p.select(p.active + 1);
      p.commandMode();
    } else if (key === 'ArrowUp' || key === 'k') {
      e.preventDefault();
      p.select(p.active - 1);
      p.commandMode();
    } else if (key === 'a') p.insert('code', 0, true);
    else if (key === 'b') p.insert('code', 1, true);
    else if (key === 'm') p.changeType('markdown');
    else if (key === 'y') p.changeType('code');
    else if (key === 'z') p.undo();
    else if (key === 'c') p.copyCell(cell);
    else if (key === 'x') p.commands.exec('cut-cell');
    else if (key === 'v') p.commands.exec('paste-cell');
    else if (key === 'd') {
      const now = Date.now();
      if (now - this.dPressed < 600) {
        this.dPressed = 0;
        p.deleteCells();
      } else this.dPressed = now;
    }
  }
}
