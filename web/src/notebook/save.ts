// The save controller: PutSaver for a page that saves by PUT (no live
// co-editing): autosave after changes, the "changed elsewhere" conflict
// dialog, the keepalive save when the tab goes away, and the localStorage
// backup of every keystroke. LiveSaver for a live co-edited page: the server
// saves, the page only shows the session's status.
import { contents, notebookUrl } from '../api';
import { errorText } from '../drive/drive';
import { openDialog, toast } from '../ui/dialog';
import type { Cell, CellJSON } from './cell';
import type { DocStore } from './document';
import { text } from './outputs';

/** What the controller needs from the page. */
export interface SaveHost {
  readonly doc: DocStore;
  readonly cells: Cell[];
  readOnly: boolean;
  /** The key that names this notebook's local state (backups are stored under it). */
  sessionPath(): string;
  /** The notebook as saved (.ipynb JSON). */
  toJSON(): any;
  showReadOnlyBanner(): void;
}

/** How the page saves (or does not). */
export interface SaveController {
  /** Changes not saved yet. */
  readonly dirty: boolean;
  /** The notebook changed (cells, sources, outputs, metadata). */
  markDirty(): void;
  /** Saves now if there are unsaved changes (Ctrl+S, before rename or copy). */
  saveNow(): Promise<void>;
  /** The page is hidden or goes away: keep what is unsaved. */
  flush(leaving: boolean): void;
  /** Shows a state in the save-state label. */
  setState(s: string): void;
}

/** The save-state label (span.save-state) of a live co-edited page: the session's status text. */
export function liveStatus(el: HTMLElement, t: string) {
  el.textContent = t;
  el.dataset.state = t === 'All changes saved' || t === 'View only' ? 'saved' : 'dirty';
}

/** A live co-edited page (or one not loaded yet): the server saves, nothing here does. */
export class LiveSaver implements SaveController {
  readonly dirty = false;
  constructor(private stateEl: HTMLElement) {}
  markDirty() {}
  async saveNow() {}
  flush() {}
  setState(t: string) {
    liveStatus(this.stateEl, t);
  }
}

export class PutSaver implements SaveController {
  dirty = false;
  private dirtySince = 0;
  private changeSeq = 0;
  private saving: Promise<void> | null = null;
  private saveTimer = 0;
  private lastSaved = '';
  /** Another tab or person saved the file since this page loaded or saved it: saves wait for the user's choice. */
  private conflict = false;
  private backupTimer = 0;
  private loadedAt = '';

  /** @param stateEl the save-state label in the top bar */
  constructor(private host: SaveHost, private stateEl: HTMLElement) {}

  /** A change: saves 1 s after the last change, and at least every 5 s while changes go on. */
  markDirty() {
    if (this.host.readOnly) return;
    this.changeSeq++;
    this.scheduleBackup();
    const now = Date.now();
    if (!this.dirty) {
      this.dirty = true;
      this.dirtySince = now;
      this.setState('Unsaved changes');
    }
    const due = Math.min(now + 1000, this.dirtySince + 5000);
    clearTimeout(this.saveTimer);
    this.saveTimer = window.setTimeout(() => {
      this.saveTimer = 0;
      void this.saveNow();
    }, Math.max(0, due - now));
  }

  setState(s: string) {
    this.stateEl.textContent = s;
    this.stateEl.dataset.state = s === 'All changes saved' ? 'saved' : s.startsWith('Saving') ? 'saving' : s.startsWith('Save failed') ? 'failed' : 'dirty';
  }

  async saveNow(): Promise<void> {
    if (this.host.readOnly) return;
    clearTimeout(this.saveTimer);
    this.saveTimer = 0;
    if (this.saving) {
      await this.saving;
      if (this.dirty) return this.saveNow();
      return;
    }
    if (!this.dirty) return;
    const seq = this.changeSeq;
    this.dirtySince = Date.now(); // changes from now on wait at most 5 s for the next save
    this.setState('Saving…');
    this.saving = (async () => {
      try {
        if (await this.changedElsewhere()) return;
        this.lastSaved = await this.host.doc.save(this.host.toJSON());
        if (seq === this.changeSeq) {
          this.dirty = false;
          this.setState('All changes saved');
          this.dropBackup();
        } else {
          this.setState('Unsaved changes');
        }
      } catch (e: any) {
        const status = e?.response?.status ?? e?.status;
        if (status === 403 && this.host.doc.shareId) {
          this.host.readOnly = true;
          this.host.showReadOnlyBanner();
        }
        this.setState('Save failed — retrying');
        this.writeBackup();
        clearTimeout(this.saveTimer);
        this.saveTimer = window.setTimeout(() => void this.saveNow(), 5000);
      }
    })();
    await this.saving;
    this.saving = null;
    if (this.dirty && seq !== this.changeSeq && !this.saveTimer) {
      this.changeSeq--;
      this.markDirty();
    }
  }

  /**
   * Whether the file on the server is newer than what this page loaded or
   * last saved (another tab, a collaborator with edit rights, a restore):
   * then nothing is overwritten silently. The user chooses: keep theirs
   * (reload), overwrite with this page's version, or save this page's
   * version as a copy. Autosave waits meanwhile; the local backup keeps
   * every keystroke.
   */
  private async changedElsewhere(): Promise<boolean> {
    if (this.conflict) {
      this.setState('Changed elsewhere — not saved');
      return true;
    }
    const base = this.lastSaved || this.loadedAt;
    if (!base) return false;
    let now = '';
    try {
      now = await this.host.doc.modified();
    } catch {
      return false; // the save itself reports what is wrong
    }
    if (!now || new Date(now).getTime() <= new Date(base).getTime() + 1) return false;
    this.conflict = true;
    this.writeBackup();
    this.setState('Changed elsewhere — not saved');
    void this.resolveConflict(now);
    return true;
  }

  private async resolveConflict(theirs: string) {
    const path = this.host.doc.path;
    const when = new Date(theirs).toLocaleTimeString();
    const d = openDialog('This notebook changed elsewhere',
      `“${path}” was saved from another tab or by someone else at ${when}, after you opened it. ` +
      'Your changes here are not saved yet.',
      [{ label: 'Save mine as a copy', value: 'copy' }, { label: 'Reload theirs', value: 'reload' },
        { label: 'Overwrite with mine', value: 'overwrite', primary: true }]);
    const choice = await d.result;
    if (choice === 'reload') {
      this.dirty = false;
      this.dropBackup();
      location.reload();
      return;
    }
    if (choice === 'copy') {
      try {
        const dir = path.includes('/') ? path.slice(0, path.lastIndexOf('/') + 1) : '';
        const stem = path.slice(dir.length).replace(/\.ipynb$/, '');
        const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
        const m = await contents.save(`${dir}${stem} (my changes ${stamp}).ipynb`, { type: 'notebook', format: 'json', content: this.host.toJSON() as any });
        toast(`Your version is saved as ${m.name}`, { label: 'Open', run: () => window.open(notebookUrl(m.path), '_blank') });
        this.dirty = false;
        this.dropBackup();
        location.reload();
      } catch (e) {
        toast('Could not save a copy: ' + errorText(e));
        this.conflict = false; // asks again at the next save
      }
      return;
    }
    if (choice === 'overwrite') {
      this.lastSaved = theirs; // this page has now seen their version
      this.conflict = false;
      await this.saveNow();
      return;
    }
    this.conflict = false; // dismissed: asks again at the next save
    this.setState('Unsaved changes');
  }

  /** The page goes away or is hidden: keep a local copy and (leaving) send what is unsaved (keepalive). */
  flush(leaving: boolean) {
    if (!this.dirty || this.host.readOnly) return;
    this.writeBackup();
    if (this.conflict) return; // the local copy only: never overwrite their version unasked
    if (leaving) {
      const content = this.host.toJSON();
      const size = JSON.stringify(content).length;
      if (size < 60000 && !this.host.doc.shareId) void this.host.doc.save(content, { keepalive: true });
      else void this.saveNow();
    }
  }

  private backupKey() {
    return 'skylab.backup.' + this.host.sessionPath();
  }

  /**
   * Every keystroke also lands in localStorage (sources and cell order only,
   * a moment after typing stops), so that a crash, a lost network or a
   * closed tab loses nothing the server had not saved yet.
   */
  private writeBackup() {
    try {
      const cells = this.host.cells.map(c => ({ id: c.id, cell_type: c.type, source: c.getSource() }));
      localStorage.setItem(this.backupKey(), JSON.stringify({ base: this.lastSaved || this.loadedAt, at: Date.now(), cells }));
    } catch {
      /* storage full: the server save is still retried */
    }
  }

  private scheduleBackup() {
    clearTimeout(this.backupTimer);
    this.backupTimer = window.setTimeout(() => {
      if (this.dirty) this.writeBackup();
    }, 400);
  }

  /**
   * Notes when the loaded file was last modified (the base of conflict
   * checks) and returns the backup merged into the file's cells (outputs
   * from the file), when the backup is newer and differs.
   */
  readBackup(lastModified: string, fileCells: CellJSON[]): CellJSON[] | null {
    this.loadedAt = lastModified;
    try {
      const b = JSON.parse(localStorage.getItem(this.backupKey()) || 'null');
      if (!b) return null;
      // Only if the file did not change on the server since the backup's base.
      if (!b.base || new Date(b.base).getTime() < new Date(lastModified).getTime() - 1) {
        localStorage.removeItem(this.backupKey());
        return null;
      }
      const byId = new Map(fileCells.map(c => [c.id, c]));
      const merged: CellJSON[] = b.cells.map((c: CellJSON) => {
        const f = byId.get(c.id);
        return f && f.cell_type === c.cell_type ? { ...f, source: c.source } : { id: c.id, cell_type: c.cell_type, source: c.source };
      });
      const same = merged.length === fileCells.length && merged.every((c, i) => c.id === fileCells[i].id && text(c.source) === text(fileCells[i].source));
      if (same) {
        localStorage.removeItem(this.backupKey());
        return null;
      }
      return merged;
    } catch {
      return null;
    }
  }

  private dropBackup() {
    localStorage.removeItem(this.backupKey());
  }
}
