// Placeholder: helper WEB-B replaces this with the runtime's /content browser.
import type { NotebookPageContext } from '../extensions';

export function mountFilesPanel(el: HTMLElement, _ctx: NotebookPageContext): void {
  el.textContent = 'Files: coming soon';
}
