// Placeholder: helper WEB-B replaces this with the sharing dialog.
import { showMessage } from '../ui/dialog';

export function openShareDialog(path: string): void {
  showMessage('Share', `Sharing ${path}: coming soon`);
}
