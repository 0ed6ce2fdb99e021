// Merge on resync (co-editing, docs/architecture.md): when the server sends a
// cell's whole text (`reset`: a client too far behind, or another epoch after
// a server restart or a reloaded document), the client's unsent edits are
// rebased over what changed on the server since the text they were made on
// (their base): a character diff from the base to the server's text, and
// ChangeSet.map. Pure functions over @codemirror/state: the app's session and
// the node test client use this same module.
import { ChangeSet, Text } from '@codemirror/state';

export interface Change { from: number; to: number; insert: string }

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The changes that turn `a` into `b` (positions in `a`, UTF-16 units, in
 * order, not overlapping): common prefix and suffix, then Myers' O(ND) diff
 * of the middle. When the middle differs by more than the work budget
 * allows, lines are diffed first and the changed runs of lines by character
 * (diff-match-patch's line mode); a run still beyond the budget is replaced
 * as a whole (exact, only coarser).
 */
export function diffText(a: string, b: string): Change[] {
  return diff(a, b, true);
}

function budget(n: number, m: number): number {
  // Work is about (n + m) * D; bound it (1 MiB sources stay fast).
  return Math.min(n + m, 2000, Math.floor(2e7 / (n + m)));
}

function diff(a: string, b: string, lineMode: boolean): Change[] {
  let p = 0;
  const pmax = Math.min(a.length, b.length);
  while (p < pmax && a.charCodeAt(p) === b.charCodeAt(p)) p++;
  if (p > 0 && isHigh(a.charCodeAt(p - 1))) p--; // never inside a surrogate pair
  let s = 0;
  const smax = pmax - p;
  while (s < smax && a.charCodeAt(a.length - 1 - s) === b.charCodeAt(b.length - 1 - s)) s++;
  if (s > 0 && isLow(a.charCodeAt(a.length - s))) s--;
  const A = a.slice(p, a.length - s), B = b.slice(p, b.length - s);
  if (!A.length && !B.length) return [];
  if (!A.length || !B.length) return [{ from: p, to: p + A.length, insert: B }];
  const maxD = budget(A.length, B.length);
  const regions = maxD > 0 ? myers(A, B, maxD) : null;
  if (regions) return regions.map(([x0, x1, y0, y1]) => ({ from: p + x0, to: p + x1, insert: B.slice(y0, y1) }));
  const byLine = lineMode ? diffLines(A, B) : null;
  if (!byLine) return [{ from: p, to: p + A.length, insert: B }];
  return byLine.map(c => ({ from: p + c.from, to: p + c.to, insert: c.insert }));
}

/** Lines as one character each, diffed; changed runs of lines then by character. Null: too many lines. */
function diffLines(A: string, B: string): Change[] | null {
  const codes = new Map<string, number>();
  const lines = (s: string) => s.match(/[^\n]*\n|[^\n]+$/g) ?? [];
  const la = lines(A), lb = lines(B);
  const encode = (ls: string[]) => {
    let out = '';
    for (const l of ls) {
      let c = codes.get(l);
      if (c === undefined) {
        c = codes.size;
        codes.set(l, c);
      }
      out += String.fromCharCode(c);
    }
    return out;
  };
  const ea = encode(la), eb = encode(lb);
  if (codes.size >= 0xd800) return null; // beyond the BMP's plain characters
  const maxD = budget(ea.length, eb.length);
  const regions = maxD > 0 ? myers(ea, eb, maxD) : null;
  if (!regions) return null;
  const offA = [0], offB = [0];
  for (const l of la) offA.push(offA[offA.length - 1] + l.length);
  for (const l of lb) offB.push(offB[offB.length - 1] + l.length);
  const out: Change[] = [];
  for (const [x0, x1, y0, y1] of regions) {
    const from = offA[x0], to = offA[x1], ins = B.slice(offB[y0], offB[y1]);
    for (const c of diff(A.slice(from, to), ins, false)) out.push({ from: from + c.from, to: from + c.to, insert: c.insert });
  }
  return out;
}

/** Changed regions [aFrom, aTo, bFrom, bTo] of the shortest edit script, or null beyond maxD. */
function myers(A: string, B: string, maxD: number): number[][] | null {
  const n = A.length, m = B.length;
  const off = maxD + 1;
  const v = new Int32Array(2 * maxD + 3);
  v[off + 1] = 0;
  const trace: Int32Array[] = [];
  let found = -1;
  for (let d = 0; d <= maxD && found < 0; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2)); // v[k] for k in [-d-1, d+1] before step d
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && A.charCodeAt(x) === B.charCodeAt(y)) { x++; y++; }
      v[off + k] = x;
      if (x >= n && y >= m) { found = d; break; }
    }
  }
  if (found < 0) return null;
  // Walk back: one edit per step, in reverse.
  const edits: [boolean, number, number][] = []; // [is insertion, a position, b position]
  let x = n, y = m;
  for (let d = found; d > 0; d--) {
    const V = trace[d];
    const at = (k: number) => V[k + d + 1];
    const k = x - y;
    const down = k === -d || (k !== d && at(k - 1) < at(k + 1));
    const pk = down ? k + 1 : k - 1;
    const px = at(pk), py = px - pk;
    edits.push(down ? [true, px, py] : [false, px, py]);
    x = px;
    y = py;
  }
  edits.reverse();
  const regions: number[][] = [];
  let cur: number[] | null = null;
  for (const [ins, ax, by] of edits) {
    if (!cur || cur[1] !== ax || cur[3] !== by) {
      cur = [ax, ax, by, by];
      regions.push(cur);
    }
    if (ins) cur[3] = by + 1;
    else cur[1] = ax + 1;
  }
  return regions;
}

/** The diff from `a` to `b` as a ChangeSet on `a`. */
export function diffChanges(a: string, b: string): ChangeSet {
  return ChangeSet.of(diffText(a, b), a.length);
}

function cost(cs: ChangeSet): number {
  let n = 0;
  cs.iterChanges((fa, ta, _fb, _tb, ins) => { n += ta - fa + ins.length; });
  return n;
}

function compose(list: readonly ChangeSet[]): ChangeSet | null {
  return list.length ? list.reduce((a, b) => a.compose(b)) : null;
}

/**
 * Unsent edits of one cell rebased onto the server's text. `base`: the text
 * they were made on; `sent`: those among them that were pushed and never
 * confirmed (the server may have applied them before the connection, or the
 * server, went away); `unsent`: the rest, in order. Returns the changes to
 * apply to `server` (null: nothing to apply).
 *
 * Whether the sent ones reached the server cannot be known once the log that
 * would confirm them is gone (another epoch); the diff says: they are taken
 * as applied (not sent twice) when the server's text lies on a shortest edit
 * path from the base through them (edit distances add up: base → base+sent
 * → server), else they are rebased with the rest. Text that merely looks
 * alike (another token typed at the same spot) does not add up, so it is
 * never dropped; the price is a rare double when a collaborator already
 * changed the very text that was in flight.
 */
export function rebaseUnsent(base: string, server: string, sent: readonly ChangeSet[], unsent: readonly ChangeSet[]): ChangeSet | null {
  const all = compose([...sent, ...unsent]);
  if (!all || all.length !== base.length) return null;
  const d = diffChanges(base, server);
  if (sent.length) {
    const applied = compose(sent)!.apply(Text.of(base.split('\n'))).toString();
    const d2 = diffChanges(applied, server);
    if (cost(diffChanges(base, applied)) + cost(d2) === cost(d)) {
      const rest = compose(unsent);
      return rest ? rest.map(d2) : null;
    }
  }
  return all.map(d);
}
