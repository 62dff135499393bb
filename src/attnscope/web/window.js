// The token window of the head and neuron views: a scroller over n virtual token rows whose sticky pane holds the
// view's columns and canvases, at most WINDOW rows high; only the rows on screen are labelled and drawn, so a view
// costs the same at any length. Also the search both views use to jump to a token.

const WINDOW = 40;  // token rows on screen at most; longer inputs scroll

// pane: what stays in view while the track scrolls under it. onMove(g) after the window moved, with
// g = {n, height (px), top (px scrolled), v0, v1 (the virtual rows on screen)}.
// {node, g, size(n), moved(), reveal(v), y(v)}
function tokenWindow(pane, onMove) {
  const node = el("div", "as-scroll"), track = el("div", "as-track");
  track.append(pane);
  node.append(track);
  const g = { n: 0, height: 0, top: 0, v0: 0, v1: 0 };

  // n virtual rows, back at the top.
  function size(n) {
    Object.assign(g, { n: Math.max(1, n), height: Math.min(Math.max(1, n), WINDOW) * ROW, top: 0, v0: 0, v1: 0 });
    node.style.height = g.height + "px";
    track.style.height = g.n * ROW + "px";
    pane.style.height = g.height + "px";
    node.scrollTop = 0;
  }

  function moved() {
    g.top = Math.max(0, Math.min(node.scrollTop, g.n * ROW - g.height));
    g.v0 = Math.floor(g.top / ROW);
    g.v1 = Math.min(g.n, Math.ceil((g.top + g.height) / ROW));
    onMove(g);
  }

  // Scroll so virtual row v is in the middle of the window, and redraw at once.
  function reveal(v) {
    node.scrollTop = Math.max(0, v * ROW + ROW / 2 - g.height / 2);
    moved();
  }

  let asked = false;
  node.addEventListener("scroll", () => {
    if (asked) return;
    asked = true;
    requestAnimationFrame(() => { asked = false; if (Math.round(g.top) !== Math.round(node.scrollTop)) moved(); });
  });
  // y of virtual row v in the pane; rows off screen sit just beyond its edge
  const y = (v) => Math.max(-1, Math.min(g.height + 1, v * ROW + ROW / 2 - g.top));
  return { node, g, size, moved, reveal, y };
}

// Labels of tokens a..b-1 that are on screen (virtual rows g.v0..g.v1-1 from a) into col, shifted with the scroll.
// label(i) -> the span of token i.
function fillWindow(col, g, a, b, label) {
  const frag = document.createDocumentFragment();
  for (let i = a + g.v0; i < Math.min(b, a + g.v1); i++) frag.append(label(i));
  col.textContent = "";
  col.append(frag);
  col.style.transform = `translateY(${g.v0 * ROW - g.top}px)`;
}

// Search tokens r0..r1-1 (the text drawn, `shown`, or the raw token, any case) for `text`: step 0 = the first match at or after
// row `from`, +1/-1 = the match after/before `current`. {i, k (1-based), n} of the match, {n: 0} for none, null for
// an empty text.
function findToken(tokens, shown, [r0, r1], text, step, current, from) {
  const needle = text.trim().toLowerCase();
  if (!needle) return null;
  const hits = [];
  for (let i = r0; i < r1; i++) {
    if (shown[i].toLowerCase().includes(needle) || tokens[i].toLowerCase().includes(needle)) hits.push(i);
  }
  if (!hits.length) return { n: 0 };
  let k;
  if (step === 0 || current === null) k = Math.max(0, hits.findIndex((i) => i >= from));
  else k = (hits.indexOf(current) + step + hits.length) % hits.length;
  if (k < 0 || hits[k] === undefined) k = 0;
  return { i: hits[k], k: k + 1, n: hits.length };
}
