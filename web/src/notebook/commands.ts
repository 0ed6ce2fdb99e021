// The command layer: every action of the notebook page has an id, a label,
// its shortcut text and an enabled test; the menus, the runtime menu, the
// command palette and the keymap all run commands by id.
import { openDialog } from '../ui/dialog';
import { clear, h } from '../ui/dom';
import { closeMenus, type MenuItem } from '../ui/menu';

export interface Command {
  id: string;
  label: string;
  keys?: string;
  run: () => void | Promise<void>;
  enabled?: () => boolean;
}

export const isMac = /Mac/.test(navigator.platform);
/** The modifier as shown in shortcuts. */
export const MOD = isMac ? '⌘' : 'Ctrl';

export class CommandRegistry extends Map<string, Command> {
  add(id: string, label: string, run: () => void | Promise<void>, keys?: string, enabled?: () => boolean) {
    this.set(id, { id, label, run, keys, enabled });
  }

  /** Runs a command by id (whether or not it is enabled, like a shortcut). */
  exec(id: string) {
    void this.get(id)!.run();
  }

  /** The menu entry of a registered command. */
  menuItem(id: string): MenuItem {
    const cmd = this.get(id)!;
    return { label: cmd.label, shortcut: cmd.keys, run: () => void cmd.run(), disabled: cmd.enabled ? () => !cmd.enabled!() : false, id };
  }

  /** The command palette: the enabled commands, filtered as the user types. */
  palette() {
    closeMenus();
    const input = h('input.text.palette-input', { type: 'text', placeholder: 'Search commands', 'aria-label': 'Search commands' });
    const list = h('div.palette-list', { role: 'listbox' });
    const body = h('div.palette', null, input, list);
    const d = openDialog('Command palette', body, [], { initialFocus: input });
    let sel = 0;
    let shown: Command[] = [];
    const render = () => {
      const q = input.value.toLowerCase();
      shown = [...this.values()].filter(c => c.label.toLowerCase().includes(q) && (!c.enabled || c.enabled()));
      sel = Math.min(sel, Math.max(0, shown.length - 1));
      clear(list);
      shown.forEach((c, i) => {
        const b = h('button.palette-item', { role: 'option', 'aria-selected': String(i === sel), class: i === sel ? 'palette-item sel' : 'palette-item' },
          h('span', { text: c.label }), c.keys ? h('kbd', { text: c.keys }) : null);
        b.addEventListener('click', () => {
          d.close('run');
          void c.run();
        });
        list.append(b);
      });
    };
    input.addEventListener('input', () => ((sel = 0), render()));
    input.addEventListener('keydown', e => {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        sel = (sel + (e.key === 'ArrowDown' ? 1 : -1) + shown.length) % Math.max(shown.length, 1);
        render();
        list.children[sel]?.scrollIntoView({ block: 'nearest' });
      } else if (e.key === 'Enter') {
        e.preventDefault();
        e.stopPropagation();
        const c = shown[sel];
        d.close('run');
        if (c) void c.run();
      }
    });
    render();
  }
}

/** The "Keyboard shortcuts" dialog. */
export function shortcutsHelp() {
  const rows: [string, string][] = [
    ['Shift+Enter', 'Run cell, select next'], [`${MOD}+Enter`, 'Run cell'], ['Alt+Enter', 'Run cell, insert below'],
    ['Esc / Enter', 'Command mode / edit mode'], ['A / B', 'Insert cell above / below (command mode)'], ['D D', 'Delete cell (command mode)'],
    ['M / Y', 'To text / to code (command mode)'], ['Z', 'Undo cell operation (command mode)'], ['C / X / V', 'Copy / cut / paste cell'],
    ['J / K', 'Next / previous cell'], [`${MOD}+M B/A/D/M/Y/Z`, 'Colab style cell commands'], [`${MOD}+Shift+P`, 'Command palette'],
    ['Tab / Shift+Tab', 'Complete / show documentation'], [`${MOD}+S`, 'Save'],
  ];
  const table = h('table.shortcuts', null, ...rows.map(([k, v]) => h('tr', null, h('td', null, h('kbd', { text: k })), h('td', { text: v }))));
  openDialog('Keyboard shortcuts', table, [{ label: 'Close', value: 'ok', primary: true }]);
}
