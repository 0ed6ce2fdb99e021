// Placeholder: helper WEB-B replaces this with the revision history view.
import { showMessage } from '../ui/dialog';

export function openRevisionHistory(path: string, _onRestored: () => void): void {
  showMessage('Revision history', `History of ${path}: coming soon`);
}
