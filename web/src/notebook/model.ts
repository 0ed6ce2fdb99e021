// The notebook model: the ordered cells (each with its element in the cell
// list), the selected cell, and the cell operations (insert, delete, move,
// change type, copy/paste) with their undo history. Every operation that
// changes the notebook tells the live session (when co-edited) and marks
// the page dirty; a viewer of a live notebook cannot change it.
import { toast } from '../ui/dialog';
import { h } from '../ui/dom';
import { Cell, type CellHost, type CellJSON, type CellType } from './cell';
import type { CollabSession } from './collab';
import { UndoHistory } from './undo';

/** What the model needs from the page. */
export interface ModelHost {
  /** The host of every cell the model makes (the page). */
  readonly cellHost: CellHost;
  /** The live co-editing session (null: the page saves by PUT). */
  readonly collab: CollabSession | null;
  markDirty(): void;
  /** The cell list's headings may have changed. */
  updateToc(): void;
}

export class NotebookModel {
  readonly cells: Cell[] = [];
  /** The index of the selected cell. */
  active = 0;
  /** The cell list (div.cells), in the cells' order. */
  readonly list = h('div.cells', { role: 'list', 'aria-label': 'Notebook cells' });
  private history = new UndoHistory();
  private clipboard: CellJSON[] = [];

  constructor(private host: ModelHost) {}

  /** A viewer of a live notebook: no cell operations. */
  private locked(): boolean {
    const live = this.host.collab;
    return !!live && !live.writable;
  }

  /** Builds the loaded notebook's cells (no undo step, nothing sent to a live session). */
  load(cells: CellJSON[]) {
    const frag = document.createDocumentFragment();
    for (const c of cells) {
      const cell = new Cell(c, this.host.cellHost);
      this.cells.push(cell);
      frag.append(cell.el);
    }
    this.list.append(frag);
  }

  index(cell: Cell): number {
    return this.cells.indexOf(cell);
  }

  byId(id: string | undefined): Cell | undefined {
    return this.cells.find(c => c.id === id);
  }

  /** Selects cell i (clamped to the notebook), scrolling it into view unless scroll is false. */
  select(i: number, scroll = true) {
    if (!this.cells.length) return;
    i = Math.max(0, Math.min(i, this.cells.length - 1));
    this.cells[this.active]?.el.classList.remove('selected');
    this.active = i;
    const el = this.cells[i].el;
    el.classList.add('selected');
    if (scroll) el.scrollIntoView({ block: 'nearest' });
  }

  /** Inserts a new cell (of type, or a copy of json under a new id) at index at; undoable. */
  insertAt(type: CellType, at: number, focus: boolean, json?: CellJSON): Cell {
    if (this.locked()) return this.cells[this.active];
    const cell = new Cell(json ? { ...json, id: undefined } : { cell_type: type, source: '' }, this.host.cellHost);
    this.place(cell, at);
    this.history.push({ label: 'insert cell', undo: () => this.remove(cell), redo: () => this.place(cell, at) });
    this.host.markDirty();
    if (focus) {
      this.select(at);
      cell.focusEditor();
    }
    return cell;
  }

  /** Puts a cell into the notebook at index at (clamped); the live session hears of it. */
  place(cell: Cell, at: number) {
    at = Math.min(at, this.cells.length);
    this.cells.splice(at, 0, cell);
    const next = this.list.children[at];
    this.list.insertBefore(cell.el, next ?? null);
    cell.materialize();
    this.host.updateToc();
    this.host.collab?.inserted(cell);
  }

  /**
   * Takes a cell out; the live session hears of it. A notebook keeps at least
   * one cell: the last one is replaced by a blank one, placed before the
   * removal so that a live session sends its insert before the delete (the
   * server never sees an empty notebook from one client). `keepOne` false: a
   * collaborator's delete, applied as sequenced (when it empties the
   * notebook, the server's blank cell follows).
   */
  remove(cell: Cell, keepOne = true) {
    const i = this.index(cell);
    if (i < 0) return;
    if (keepOne && this.cells.length === 1) this.place(new Cell({ cell_type: 'code', source: '' }, this.host.cellHost), 1);
    this.cells.splice(i, 1);
    cell.el.remove();
    this.host.collab?.removed(cell);
    this.select(Math.min(i, this.cells.length - 1), false);
    this.host.updateToc();
  }

  /** Deletes cells (default: the selected one); undoable, and the toast offers Undo. */
  deleteCells(cells = [this.cells[this.active]]) {
    if (this.locked()) return;
    const placed = cells.map(c => ({ c, i: this.index(c) })).filter(x => x.i >= 0);
    for (const { c } of placed) this.remove(c);
    const step = {
      label: 'delete cell',
      undo: () => {
        for (const { c, i } of placed) this.place(c, i);
        this.select(placed[0].i);
      },
      redo: () => placed.forEach(({ c }) => this.remove(c)),
    };
    this.history.push(step);
    this.host.markDirty();
    toast(placed.length > 1 ? `${placed.length} cells deleted` : 'Cell deleted', { label: 'Undo', run: () => this.undo() });
  }

  /** Moves the selected cell up (-1) or down (1); undoable. */
  moveCell(dir: -1 | 1) {
    if (this.locked()) return;
    const i = this.active;
    const j = i + dir;
    if (j < 0 || j >= this.cells.length) return;
    const swap = (a: number, b: number) => {
      const cell = this.cells[a];
      this.cells.splice(a, 1);
      this.cells.splice(b, 0, cell);
      cell.el.remove();
      this.list.insertBefore(cell.el, this.list.children[b] ?? null);
      this.select(b);
      this.host.updateToc();
      this.host.collab?.moved(cell);
    };
    swap(i, j);
    this.history.push({ label: 'move cell', undo: () => swap(j, i), redo: () => swap(i, j) });
    this.host.markDirty();
  }

  /** A cell moved by the live session (another editor): no undo step, nothing sent back. */
  moveTo(cell: Cell, index: number) {
    this.cells.splice(this.index(cell), 1);
    this.cells.splice(index, 0, cell);
    cell.el.remove();
    this.list.insertBefore(cell.el, this.list.children[index] ?? null);
  }

  /** Changes the selected cell's type (its outputs come back on undo). */
  changeType(t: CellType) {
    if (this.locked()) return;
    const cell = this.cells[this.active];
    const old = cell.type;
    if (old === t) return;
    const outputs = cell.toJSON().outputs;
    cell.setType(t);
    this.history.push({
      label: 'change cell type',
      undo: () => {
        cell.setType(old);
        if (outputs) cell.outputs.set(outputs);
      },
      redo: () => cell.setType(t),
    });
    this.host.markDirty();
    this.host.updateToc();
  }

  undo() {
    if (!this.history.undo()) return void toast('Nothing to undo');
    this.host.markDirty();
  }

  redo() {
    if (this.history.redo()) this.host.markDirty();
  }

  copy(cell: Cell) {
    this.clipboard = [cell.toJSON()];
  }

  cut(cell: Cell) {
    this.clipboard = [cell.toJSON()];
    this.deleteCells();
  }

  canPaste(): boolean {
    return this.clipboard.length > 0;
  }

  /** Pastes the copied cells below the selected one and selects the first. */
  paste() {
    for (const [n, j] of this.clipboard.entries()) this.insertAt(j.cell_type, this.active + 1 + n, false, j);
    this.select(this.active + 1);
  }
}
