// The form of a code cell (Colab's `#@title` / `#@param` / `#@markdown`):
// widgets built from the pure parser in forms.ts. Editing a field rewrites
// that line of the cell's source (through the host, so the editor's undo
// history has it); "Show code"/"Hide code" sets Colab's `cellView` metadata.
// Everything from the source is shown as text (textContent, attribute
// values) or through the app's Markdown sanitizer, never as raw HTML.
import { h } from '../ui/dom';
import { codeHidden, paramEdit, parseForm, type FormModel, type FormParam, type SourceEdit } from './forms';
import { renderMarkdownFragment } from './markdown';
import './forms.css';

export interface FormHost {
  source(): string;
  /** Applies an edit made by a field to the cell's source. */
  apply(edit: SourceEdit): void;
  metadata(): Record<string, unknown>;
  /** The user showed or hid the code (metadata already updated). */
  toggled(hidden: boolean): void;
  /** `run: "auto"`: a field's value was committed. */
  run(): void;
}

let uid = 0;

export class FormView {
  readonly el: HTMLElement;
  model: FormModel | null = null;
  private applying = false;
  private timer = 0;
  private lastSource: string | null = null;

  constructor(private host: FormHost) {
    this.el = h('div.cell-form', { hidden: true });
    // As in Colab, a double-click on the form (not on a field) shows the code.
    this.el.addEventListener('dblclick', e => {
      if ((e.target as HTMLElement).closest('input, select, button, label, a') || !this.hidden()) return;
      this.setHidden(false);
    });
  }

  /** Focuses the first field (or the Show code button). */
  focus() {
    (this.el.querySelector<HTMLElement>('.form-field input, .form-field select') ?? this.el.querySelector<HTMLElement>('button'))?.focus();
  }

  private setHidden(hide: boolean) {
    this.host.metadata().cellView = hide ? 'form' : 'code';
    this.host.toggled(hide);
    this.render(true);
  }

  /** The metadata changed from outside (a collaborator): re-render the toggle. */
  refresh() {
    if (this.model) this.render(true);
  }

  /** Whether the code should be hidden now. */
  hidden(): boolean {
    return codeHidden(this.model, this.host.metadata());
  }

  /** The source changed (not by this form): re-parse soon. */
  sourceChanged() {
    if (this.applying) return;
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.update(), 150);
  }

  /** Re-parses and re-renders now. Returns whether the cell has a form. */
  update(): boolean {
    clearTimeout(this.timer);
    const src = this.host.source();
    if (src === this.lastSource) return !!this.model;
    this.lastSource = src;
    this.model = parseForm(src);
    this.render();
    return !!this.model;
  }

  private render(force = false) {
    const m = this.model;
    const active = document.activeElement;
    if (!force && active && active !== document.body && this.el.contains(active) && active.tagName !== 'BUTTON') return; // never pull a field away from the user's typing
    this.el.textContent = '';
    this.el.hidden = !m;
    if (!m) return;
    const hidden = this.hidden();
    const toggle = h('button.btn.link.form-toggle', { type: 'button', text: hidden ? 'Show code' : 'Hide code' });
    toggle.addEventListener('click', e => {
      e.stopPropagation();
      this.setHidden(!this.hidden());
      this.el.querySelector<HTMLElement>('.form-toggle')?.focus();
    });
    this.el.append(h('div.form-head', null, m.title ? h('div.form-title', { text: m.title }) : h('div.form-title'), toggle));
    for (const item of m.items) {
      if (item.kind === 'markdown') {
        const d = h('div.markdown.form-md');
        d.append(renderMarkdownFragment(item.text));
        this.el.append(d);
      } else {
        this.el.append(this.field(item));
      }
    }
  }

  private field(p: FormParam): HTMLElement {
    const id = `form-field-${++uid}`;
    const label = h('label.form-label', { for: id, text: p.name });
    let input: HTMLInputElement | HTMLSelectElement;
    let extra: HTMLElement | null = null;
    const read = (): string | number | boolean => (input instanceof HTMLInputElement && input.type === 'checkbox' ? input.checked : input.value);
    switch (p.type) {
      case 'boolean':
        input = h('input', { type: 'checkbox', id });
        input.checked = p.value === true;
        break;
      case 'slider': {
        input = h('input', { type: 'range', id, min: String(p.min), max: String(p.max), step: String(p.step) });
        input.value = String(p.value);
        const shown = h('output.form-slider-value', { for: id, text: String(p.value) });
        input.addEventListener('input', () => (shown.textContent = (input as HTMLInputElement).value));
        extra = shown;
        break;
      }
      case 'number':
      case 'integer':
        input = h('input', { type: 'number', id, step: p.type === 'integer' ? '1' : 'any' });
        input.value = String(p.value);
        break;
      case 'date':
        input = h('input', { type: 'date', id });
        input.value = String(p.value);
        break;
      case 'dropdown':
        if (p.allowInput) {
          const listId = `${id}-list`;
          input = h('input', { type: 'text', id, list: listId, autocomplete: 'off' });
          input.value = String(p.value);
          const dl = h('datalist', { id: listId });
          for (const o of p.options ?? []) dl.append(h('option', { value: o.label }));
          extra = dl;
        } else {
          const sel = h('select', { id });
          let found = false;
          for (const o of p.options ?? []) {
            const opt = h('option', { value: o.label, text: o.label });
            if (o.label === String(p.value)) (opt.selected = true), (found = true);
            sel.append(opt);
          }
          if (!found) {
            const opt = h('option', { value: String(p.value), text: String(p.value) });
            opt.selected = true;
            opt.disabled = true;
            sel.prepend(opt);
          }
          input = sel;
        }
        break;
      case 'string':
        input = h('input', { type: 'text', id, placeholder: p.placeholder ?? '' });
        input.value = String(p.value);
        break;
      default:
        input = h('input.raw', { type: 'text', id, spellcheck: 'false' });
        input.value = String(p.value);
    }
    input.dataset.param = p.name;
    const write = (commit: boolean) => {
      const src = this.host.source();
      const edit = paramEdit(src, p, read());
      input.classList.toggle('invalid', !edit);
      if (edit) {
        this.applying = true;
        try {
          this.host.apply(edit);
        } finally {
          this.applying = false;
        }
        this.lastSource = this.host.source();
      }
      if (commit && edit && this.model?.runAuto) this.host.run();
    };
    input.addEventListener('input', () => write(false));
    input.addEventListener('change', () => write(true));
    return h('div.form-field', { 'data-type': p.type }, label, input, extra);
  }
}
