// Icons of the Files panel and the upload/download outputs, drawn like
// ui/icons.ts (inline SVG, no icon or emoji font needed).
import { icon } from '../ui/icons';

const PATHS: Record<string, string> = {
  upload: '<path d="M12 16V4M7 9l5-5 5 5"/><path d="M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3"/>',
  download: '<path d="M12 4v12M7 11l5 5 5-5"/><path d="M4 16v3a1 1 0 0 0 1 1h14a1 1 0 0 0 1-1v-3"/>',
  refresh: '<path d="M20 12a8 8 0 1 1-2.34-5.66"/><path d="M20 4v5h-5"/>',
  rename: '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="M13.5 6.5l4 4"/>',
  newfolder: '<path d="M3 6.5A1.5 1.5 0 0 1 4.5 5H9l2 2h8.5A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"/><path d="M12 10v6M9 13h6"/>',
  up: '<path d="M12 19V6M6 11l6-6 6 6"/>',
};

/** An icon of ui/icons.ts, or one of the Files panel's own. */
export function fileIcon(name: string, size = 18): SVGSVGElement {
  const svg = icon(name, size);
  if (PATHS[name]) svg.innerHTML = PATHS[name];
  return svg;
}
