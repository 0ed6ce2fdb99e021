// The undo history of cell operations (insert, delete, move, change type):
// each operation records how to undo and redo itself. Text edits inside a
// cell are undone by its editor, not here.

export interface UndoStep {
  label: string;
  undo: () => void;
  redo: () => void;
}

export class UndoHistory {
  private undoStack: UndoStep[] = [];
  private redoStack: UndoStep[] = [];

  /** @param limit how many steps are kept (the oldest go first) */
  constructor(private limit = 200) {}

  /** Records a step that was just done; what could be redone is dropped. */
  push(s: UndoStep) {
    this.undoStack.push(s);
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
  }

  /** Undoes the last step; false when there is none. */
  undo(): boolean {
    const s = this.undoStack.pop();
    if (!s) return false;
    s.undo();
    this.redoStack.push(s);
    return true;
  }

  /** Redoes the last undone step; false when there is none. */
  redo(): boolean {
    const s = this.redoStack.pop();
    if (!s) return false;
    s.redo();
    this.undoStack.push(s);
    return true;
  }
}
