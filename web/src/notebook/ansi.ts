// ANSI escape sequences (SGR colours) to HTML, with the state carried
// across chunks, and carriage returns applied per line as a terminal does
// (so `\r`-redrawn progress bars such as tqdm's stay one line).

const COLORS = ['#000000', '#c91b00', '#00a600', '#a08700', '#0225c7', '#c930c7', '#00a2a8', '#bfbfbf'];
const BRIGHT = ['#686868', '#ff6e67', '#32c72c', '#c7b400', '#6871ff', '#ff77ff', '#4cd8de', '#ffffff'];

function color256(n: number): string {
  if (n < 8) return COLORS[n];
  if (n < 16) return BRIGHT[n - 8];
  if (n < 232) {
    n -= 16;
    const v = (x: number) => (x ? 55 + x * 40 : 0);
    return `rgb(${v(Math.floor(n / 36))},${v(Math.floor(n / 6) % 6)},${v(n % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, c => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : '&quot;'));
}

/** Stateful converter: feed it text in pieces; colours carry over. */
export class Ansi {
  private fg: string | null = null;
  private bg: string | null = null;
  private bold = false;
  private italic = false;
  private underline = false;

  toHtml(text: string): string {
    // eslint-disable-next-line no-control-regex
    const re = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]/g;
    let out = '';
    let last = 0;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text))) {
      if (m.index > last) out += this.span(text.slice(last, m.index));
      last = re.lastIndex;
      if (m[2] === 'm') this.sgr(m[1]);
    }
    if (last < text.length) out += this.span(text.slice(last));
    return out;
  }

  private span(s: string): string {
    const e = escapeHtml(s);
    if (!this.fg && !this.bg && !this.bold && !this.italic && !this.underline) return e;
    let st = '';
    if (this.fg) st += `color:${this.fg};`;
    if (this.bg) st += `background:${this.bg};`;
    if (this.bold) st += 'font-weight:bold;';
    if (this.italic) st += 'font-style:italic;';
    if (this.underline) st += 'text-decoration:underline;';
    return `<span style="${st}">${e}</span>`;
  }

  private sgr(params: string): void {
    const p = params === '' ? [0] : params.split(';').map(x => parseInt(x, 10) || 0);
    for (let i = 0; i < p.length; i++) {
      const c = p[i];
      if (c === 0) {
        this.fg = this.bg = null;
        this.bold = this.italic = this.underline = false;
      } else if (c === 1) this.bold = true;
      else if (c === 3) this.italic = true;
      else if (c === 4) this.underline = true;
      else if (c === 22) this.bold = false;
      else if (c === 23) this.italic = false;
      else if (c === 24) this.underline = false;
      else if (c >= 30 && c <= 37) this.fg = COLORS[c - 30];
      else if (c >= 90 && c <= 97) this.fg = BRIGHT[c - 90];
      else if (c >= 40 && c <= 47) this.bg = COLORS[c - 40];
      else if (c >= 100 && c <= 107) this.bg = BRIGHT[c - 100];
      else if (c === 39) this.fg = null;
      else if (c === 49) this.bg = null;
      else if ((c === 38 || c === 48) && p[i + 1] === 5) {
        const col = color256(p[i + 2] ?? 0);
        if (c === 38) this.fg = col;
        else this.bg = col;
        i += 2;
      } else if ((c === 38 || c === 48) && p[i + 1] === 2) {
        const col = `rgb(${p[i + 2] ?? 0},${p[i + 3] ?? 0},${p[i + 4] ?? 0})`;
        if (c === 38) this.fg = col;
        else this.bg = col;
        i += 4;
      }
    }
  }
}

/** Applies `\r` (back to the line start, later text overwrites) and `\b` within one line. */
export function applyCarriageReturns(line: string): string {
  if (line.indexOf('\r') < 0 && line.indexOf('\b') < 0) return line;
  let cur = '';
  for (const seg of line.split('\r')) {
    let s = seg;
    if (s.indexOf('\b') >= 0) {
      let t = '';
      for (const ch of s) t = ch === '\b' ? t.slice(0, -1) : t + ch;
      s = t;
    }
    cur = s + cur.slice(s.length);
  }
  return cur;
}

/** A whole stream text as a terminal would show it: `\r\n` is a newline, `\r` overwrites. */
export function terminalText(text: string): string {
  return text.replace(/\r+\n/g, '\n').split('\n').map(applyCarriageReturns).join('\n');
}

/** Removes ANSI escapes (for copying, searching and counting). */
export function stripAnsi(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]/g, '');
}
