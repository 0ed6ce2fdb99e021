'use strict';
// Seeded random edits for the co-editing tests (collab.test.js,
// collab_resync.test.js).

function mulberry32(a) {
  return () => {
    a |= 0; a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Text edits: unique tokens "<name.n>" inserted only between tokens, and
// deletions of filler only (never a '<' or '>'), so every token typed into a
// cell that survives must be there at the end.
function textEdit(rnd, c, id, typed) {
  const text = c.text(id);
  if (rnd() < 0.75 || text.length === 0) {
    const spots = [0];
    let depth = 0;
    for (let i = 0; i < text.length; i++) {
      if (text[i] === '<') depth++;
      if (text[i] === '>') depth--;
      // Never between a token's characters, never inside a surrogate pair.
      if (depth === 0 && !/[\uD800-\uDBFF]/.test(text[i])) spots.push(i + 1);
    }
    const at = spots[Math.floor(rnd() * spots.length)];
    let insert;
    if (rnd() < 0.5) {
      insert = `<${c.name}.${typed.length}>`;
      typed.push({ token: insert, cell: id });
    } else {
      insert = ['x', 'yz', '\n', ' é', '😀', 'abc\ndef'][Math.floor(rnd() * 6)];
    }
    c.edit(id, { from: at, insert });
  } else {
    const from = Math.floor(rnd() * text.length);
    const to = Math.min(text.length, from + 1 + Math.floor(rnd() * 4));
    const part = text.slice(from, to);
    // Filler only: no token character, and not inside a token.
    const before = text.slice(0, from);
    if (/[<>]/.test(part) || before.split('<').length !== before.split('>').length) return;
    // Never split a surrogate pair.
    if (/[\uDC00-\uDFFF]/.test(text[from] || '') || /[\uD800-\uDBFF]/.test(text[to - 1] || '')) return;
    c.edit(id, { from, to });
  }
}

module.exports = { mulberry32, textEdit };
