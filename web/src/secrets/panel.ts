// The Secrets panel of the notebook page (Colab's key icon): the user's
// secrets by name, a "Notebook access" switch per secret for this notebook,
// new secrets, new values, deletion. Values are written, never read back:
// the server does not list them (docs/secrets.md).
import { confirmDialog, toast } from '../ui/dialog';
import { clear, h } from '../ui/dom';
import { icon } from '../ui/icons';
import { deleteSecret, listSecrets, putSecret, SECRET_NAME, setAccess, type SecretInfo } from './api';
import './secrets.css';

/**
 * Mounts the panel in `el`. `notebookPath` is the path the notebook's
 * kernel session is bound to (what access is granted to: for a notebook
 * shared with the user, the `.shared/<id>/<name>` path of their session).
 */
export function mountSecretsPanel(el: HTMLElement, notebookPath: () => string): { refresh(): void } {
  return new SecretsPanel(el, notebookPath);
}

/** The key icon of the side rail. */
export function keyIcon(): SVGSVGElement {
  const t = document.createElement('template');
  t.innerHTML = '<svg class="icon icon-key" width="20" height="20" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><circle cx="8" cy="15" r="4"/><path d="M10.8 12.2L19 4M16 7l2.5 2.5M14 9l2 2"/></svg>';
  return t.content.firstChild as SVGSVGElement;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function normalized(path: string): string {
  return path.replace(/^\/+|\/+$/g, '');
}

class SecretsPanel {
  private readonly list = h('ul.secrets-list', { role: 'list' });
  private readonly status = h('div.secrets-status', { role: 'status', 'aria-live': 'polite' });

  constructor(private readonly el: HTMLElement, private readonly notebookPath: () => string) {
    clear(el);
    el.classList.add('secrets-panel');
    const add = h('button.btn.secrets-add', { text: '+ Add new secret', onclick: () => this.addRow() });
    el.append(
      h('p.secrets-intro', { text: 'Keep keys, tokens and passwords here instead of in the notebook. Values are private to you and reach only the notebooks you give access.' }),
      this.list, add, this.status,
      h('div.secrets-usage', null,
        h('div', { text: 'Access a secret in Python:' }),
        h('pre', { text: 'from google.colab import userdata\nuserdata.get(\'secretName\')' })));
    this.refresh();
  }

  async refresh(): Promise<void> {
    try {
      const secrets = await listSecrets();
      clear(this.list);
      for (const s of secrets) this.list.append(this.row(s));
      if (!secrets.length) this.list.append(h('li.secrets-none', { text: 'No secrets yet.' }));
      this.status.textContent = '';
    } catch (e) {
      this.status.textContent = 'Could not load secrets: ' + message(e);
    }
  }

  private access(s: SecretInfo): boolean {
    const me = normalized(this.notebookPath());
    return s.grants.some(g => normalized(g) === me);
  }

  private switchFor(name: () => string, on: boolean, saved: () => boolean): HTMLInputElement {
    const sw = h('input.secret-access', { type: 'checkbox', role: 'switch', title: 'Notebook access', 'aria-label': 'Notebook access' });
    sw.checked = on;
    sw.addEventListener('change', async () => {
      if (!saved()) return; // a new secret: access is given when it is saved
      const want = sw.checked;
      try {
        await setAccess(name(), this.notebookPath(), want);
        toast(want ? `This notebook can read ${name()}` : `This notebook can no longer read ${name()}`);
      } catch (e) {
        sw.checked = !want;
        toast('Could not change access: ' + message(e));
      }
    });
    return sw;
  }

  private row(s: SecretInfo): HTMLElement {
    const value = h('input.secret-value', { type: 'password', placeholder: 'New value', 'aria-label': `Value of ${s.name}`, autocomplete: 'off', spellcheck: 'false' });
    const save = async () => {
      if (!value.value) return;
      try {
        await putSecret(s.name, value.value);
        value.value = '';
        toast(`Saved a new value for ${s.name}`);
      } catch (e) {
        toast('Could not save: ' + message(e));
      }
    };
    value.addEventListener('keydown', e => {
      e.stopPropagation();
      if (e.key === 'Enter') void save();
    });
    value.addEventListener('change', () => void save());
    const del = h('button.btn.icon.secret-delete', { title: 'Delete secret', 'aria-label': `Delete ${s.name}` }, icon('trash', 16));
    del.addEventListener('click', async () => {
      if (!(await confirmDialog('Delete secret', `Delete ${s.name}? Notebooks that read it will fail.`, 'Delete'))) return;
      try {
        await deleteSecret(s.name);
      } catch (e) {
        toast('Could not delete: ' + message(e));
      }
      void this.refresh();
    });
    return h('li.secret-row', { 'data-name': s.name },
      this.switchFor(() => s.name, this.access(s), () => true),
      h('span.secret-name', { text: s.name, title: s.name }),
      value, del);
  }

  private addRow(): void {
    this.list.querySelector('.secrets-none')?.remove();
    const name = h('input.secret-name-input', { type: 'text', placeholder: 'Name', 'aria-label': 'Secret name', autocomplete: 'off', spellcheck: 'false' });
    const value = h('input.secret-value', { type: 'password', placeholder: 'Value', 'aria-label': 'Secret value', autocomplete: 'off', spellcheck: 'false' });
    const sw = this.switchFor(() => name.value, false, () => false);
    const save = h('button.btn.primary.secret-save', { text: 'Save' });
    const cancel = h('button.btn.icon', { title: 'Discard', 'aria-label': 'Discard', text: '✕' });
    const row = h('li.secret-row.new', null, sw, name, value, save, cancel);
    for (const i of [name, value]) i.addEventListener('keydown', e => {
      e.stopPropagation();
      if (e.key === 'Enter') save.click();
    });
    cancel.addEventListener('click', () => row.remove());
    save.addEventListener('click', async () => {
      const n = name.value.trim();
      if (!SECRET_NAME.test(n)) {
        toast('A name is a letter or _ then letters, digits or _ (at most 128)');
        name.focus();
        return;
      }
      try {
        await putSecret(n, value.value);
        if (sw.checked) await setAccess(n, this.notebookPath(), true);
        value.value = '';
        await this.refresh();
      } catch (e) {
        toast('Could not save: ' + message(e));
      }
    });
    this.list.append(row);
    name.focus();
  }
}
