// Head view: query tokens (left) joined to key tokens (right) by lines, one colour per head, opacity = weight.
// Tokens sit in a scrolling window of at most WINDOW rows: only the labels on screen exist in the DOM, and only
// lines between tokens on screen are drawn (a focused token's lines to tokens off screen end at the window's
// edge); beside it the minimap shows the whole sequence with the window marked (click it to go there). Only the
// weights drawn are read: for q/k payloads they are recomputed (or fetched from the server) as they come into view.
// Lines are bucketed by opacity into a few paths per head and stroked on one canvas.
// A trace made with generate=N gets a step slider: at step s the view holds the prompt and the first s generated
// tokens, and draws the row of the last of them (what it attended to when the model chose the next token).

const BOX = 36;          // px of weight boxes beside each token column (shown while a token is in focus)
const LEVELS = 64;       // opacity buckets; weights below 1/(2*LEVELS) are not drawn (they would be invisible)
const BOLD_FONT = "italic 600 " + TOKEN_FONT;  // the widest a token label gets (focused, generated)

views.head = function renderHead(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "head");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, sel: new Set(), filter: null,
    focus: null, pinned: false, match: null, step: null };

  function startKind(kind, layer, heads) {
    st.kind = kind;
    st.li = Math.max(0, kind.layers.indexOf(layer));
    st.sel = new Set(heads ? heads.map((h) => kind.heads.indexOf(h)).filter((i) => i >= 0) : kind.heads.map((_, i) => i));
  }
  startKind(st.kind, o.layer, o.heads);

  // ---- toolbar
  const kindSel = kindControl(kinds, st.kind, (name) => { startKind(kinds.get(name)); rebuild(); });
  const layerSel = selectControl("Layer", layerItems(st.kind), st.li, (li) => { st.li = li; draw(); });
  const filterSlot = el("span", "as-slot");
  const search = searchControl((text, step) => find(text, step));
  const stepSlot = el("span", "as-slot");
  const stepper = stepControl((s) => { st.step = s; rebuild(); });
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(layerSel.node, filterSlot, search.node, stepSlot);
  const sw = swatches(st.kind, st.sel, () => draw());
  ui.bar.append(sw.node);

  // ---- body: the token window (window.js), whose pane holds left tokens | canvas | right tokens, and the minimap
  const pane = el("div", "as-head");
  const left = el("div", "as-col as-left"), right = el("div", "as-col as-right");
  const leftIn = el("div", "as-colin"), rightIn = el("div", "as-colin");
  const canvas = el("canvas", "as-lines"), note = el("div", "as-note");
  note.hidden = true;
  left.append(leftIn);
  right.append(rightIn);
  pane.append(left, canvas, right, note);
  const win = tokenWindow(pane, scrolled);
  const mini = minimap("Whole sequence (block max of the heads shown): click to go there", (i) => win.reveal(i - geo.rows[0]));
  const layout = el("div", "as-hlayout");
  layout.append(win.node, mini.node);
  ui.body.append(layout);
  let geo = null;  // {rows: [r0, r1], cols: [c0, c1], width} (the window's own geometry: win.g)
  let painted = "";  // what the minimap shows (layer, heads, filter, theme): repainted when that changes

  function columnWidth(shown) {
    let w = 24;
    for (const t of shown) w = Math.max(w, textWidth(t, BOLD_FONT));  // a focused token is bold
    return Math.min(Math.ceil(w) + 12, 180);
  }

  // The generated tokens of this kind's query stream ({start, n}), or null when the trace was not made with generate=N.
  function generatedOf(kind) {
    const g = (payload.segments || {}).generated;
    return g && g.stream === kind.spec.query && g.end > g.start ? { start: g.start, n: g.end - g.start } : null;
  }

  function rebuild() {
    const kind = st.kind, gen = generatedOf(kind);
    if (!gen) st.step = null;
    else if (st.step !== null) st.step = Math.max(0, Math.min(gen.n, Math.round(st.step)));
    let f = pickFilter(filtersOf(payload, kind), st.step !== null ? "All" : st.filter === null ? o.filter : st.filter);
    st.filter = f.name;
    const last = st.step === null ? null : gen.start + st.step - 1;  // the query row drawn at this step
    if (last !== null) f = { rows: [0, last + 1], cols: kind.spec.key === kind.spec.query ? [0, last + 1] : [0, kind.k] };
    st.focus = null; st.pinned = false; st.match = null;
    if (kindSel) kindSel.set(kind.name);
    layerSel.fill(layerItems(kind), st.li);
    filterSlot.textContent = "";
    const fc = filterControl(payload, kind, st.filter, (name) => { st.filter = name; st.step = null; rebuild(); });
    if (fc) filterSlot.append(fc.node);
    if (gen) {  // the stepper stays in place while stepping, so the range keeps the keyboard focus
      stepper.set(st.step, gen.n);
      stepper.status(stepStatus(kind, gen, last));
      if (!stepSlot.contains(stepper.node)) stepSlot.append(stepper.node);
    } else {
      stepper.stop();
      stepSlot.textContent = "";
    }
    sw.rebuild(kind, st.sel);
    describe(ui.caption, payload, kind, ui.badge);
    left.style.width = columnWidth(kind.texts("q", o.prettify).slice(f.rows[0], f.rows[1])) + "px";
    right.style.width = columnWidth(kind.texts("k", o.prettify).slice(f.cols[0], f.cols[1])) + "px";
    const n = Math.max(f.rows[1] - f.rows[0], f.cols[1] - f.cols[0], 1);
    geo = { rows: f.rows, cols: f.cols, width: 2 * BOX + 200 };
    win.size(n);
    search.node.hidden = n <= WINDOW;
    mini.node.hidden = n <= WINDOW;
    painted = "";
    search.reset();
    fitCanvas(canvas, geo.width, win.g.height);
    if (last === null) { win.moved(); return; }
    st.focus = { side: "q", i: last };
    st.pinned = true;
    win.reveal(last);
  }

  // The stepper's status, e.g. 2/3 . "sat" -> "on": the step, the query token drawn and the token chosen after it.
  function stepStatus(kind, gen, last) {
    if (last === null) return `${gen.n} generated`;
    const t = (i) => `"${kind.texts("q", o.prettify)[i]}"`;
    const chose = last + 1 < kind.q ? ` \u2192 ${t(last + 1)}` : "";
    return `${st.step}/${gen.n} \u00b7 ${t(last)}${chose}`;
  }

  // The window moved (or was rebuilt): labels for the rows on screen, then the lines.
  function scrolled(g) {
    fill(leftIn, st.kind.queryTokens, geo.rows, "q");
    fill(rightIn, st.kind.keyTokens, geo.cols, "k");
    root.dataset.window = `${g.v0},${g.v1}`;
    draw();
  }

  function fill(col, tokens, [a, b], side) {
    const kind = st.kind, gen = generatedOf(kind);
    const genFrom = gen && (side === "q" || kind.spec.key === kind.spec.query) ? gen.start : Infinity;
    const shown = kind.texts(side, o.prettify);
    fillWindow(col, win.g, a, b, (i) => {
      const s = el("span", i >= genFrom ? "as-tok as-gen" : "as-tok", shown[i]);
      s.title = i >= genFrom ? `${tokens[i]} (generated)` : tokens[i];
      s.dataset.i = String(i);
      s.dataset.side = side;
      return s;
    });
  }

  function draw() {
    const ctx = canvas.getContext("2d");
    const { rows: [r0, r1], cols: [c0, c1], width } = geo, { height, v0, v1 } = win.g, y = win.y;
    ctx.clearRect(0, 0, width, height);
    const kind = st.kind, x0 = BOX + 2, x1 = width - BOX - 2, nHeads = Math.max(...kind.heads) + 1;
    const onQ = (i) => i - r0 >= v0 && i - r0 < v1, onK = (j) => j - c0 >= v0 && j - c0 < v1;
    const focus = st.focus, sel = [...st.sel].sort((a, b) => a - b), bw = Math.max(2, Math.floor(BOX / Math.max(1, sel.length)));
    let drawn = 0;
    const off = { above: 0, below: 0 };
    sel.forEach((hi, s) => {
      const head = kind.head(st.li, hi), color = headColor(kind.heads[hi], nHeads);
      if (!head) return;  // a layer of a q/k file whose rows it does not carry: the minimap is all there is
      const paths = [];
      const add = (i, j, w) => {
        const lvl = Math.round(w * LEVELS);
        if (lvl < 1) return;
        const p = paths[lvl] || (paths[lvl] = new Path2D());
        const yi = y(i - r0), yj = y(j - c0);
        p.moveTo(x0, yi);
        p.lineTo(x1, yj);
        if (focus) {
          const far = focus.side === "q" ? yj : yi;
          if (far < 0) off.above++; else if (far > height) off.below++;
        }
        drawn++;
      };
      ctx.fillStyle = color;
      if (!focus) {  // the window's rows, at the keys on screen
        for (let i = r0 + v0; i < Math.min(r1, r0 + v1); i++) {
          const [idx, val, base] = head.row(i, c0 + v0, Math.min(c1, c0 + v1));
          for (let t = 0; t < val.length; t++) add(i, idx ? idx[t] : base + t, val[t]);
        }
      } else if (focus.side === "q") {
        const [idx, val, base] = head.row(focus.i, c0, c1);
        for (let t = 0; t < val.length; t++) {
          const j = idx ? idx[t] : base + t;
          add(focus.i, j, val[t]);
          if (val[t] > 0 && onK(j)) {
            ctx.globalAlpha = Math.min(1, val[t]);
            ctx.fillRect(x1 + 2 + s * bw, y(j - c0) - ROW / 2 + 2, bw - 1, ROW - 4);
          }
        }
      } else {
        const col = head.col(focus.i, r0, r1);
        for (let i = r0; i < r1; i++) {
          const w = col[i - r0];
          add(i, focus.i, w);
          if (w > 0 && onQ(i)) {
            ctx.globalAlpha = Math.min(1, w);
            ctx.fillRect(x0 - 2 - (s + 1) * bw, y(i - r0) - ROW / 2 + 2, bw - 1, ROW - 4);
          }
        }
      }
      ctx.strokeStyle = color;
      ctx.lineWidth = focus ? 2 : 1 / ctx.getTransform().a;  // one device pixel: Skia's fast hairline path
      paths.forEach((p, lvl) => {
        if (!p) return;
        ctx.globalAlpha = Math.min(1, lvl / LEVELS);
        ctx.stroke(p);
      });
    });
    ctx.globalAlpha = 1;
    edgeNotes(ctx, off, focus, x0, x1, height);
    root.dataset.lines = String(drawn);
    note.textContent = rowsProblem(kind, st.li) || kind.sourceNote();
    note.hidden = !note.textContent;
    if (!mini.node.hidden) paintMinimap(sel);
    kind.flush(draw);
    const stepRow = st.step === null ? -1 : geo.rows[1] - 1;
    for (const [col, side] of [[leftIn, "q"], [rightIn, "k"]]) {
      for (const s of col.children) {
        const i = Number(s.dataset.i);
        s.classList.toggle("as-on", !!focus && focus.side === side && focus.i === i);
        s.classList.toggle("as-match", side === "q" && st.match === i);
        s.classList.toggle("as-step", side === "q" && i === stepRow);
      }
    }
  }

  // The whole sequence: the block-max overview of the heads shown, the window marked.
  function paintMinimap(sel) {
    const kind = st.kind, f = geo, g = win.g, what = [kind.name, st.li, sel.join(" "), f.rows, f.cols, ui.theme].join(",");
    const thumbs = what !== painted && sel.length ? sel.map((hi) => kind.thumb(st.li, hi, MINIMAP)) : null;
    if (thumbs && thumbs.every((t) => t)) {  // (a head still being fetched: painted on the redraw)
      mini.paint(thumbs, f, ui.theme);
      painted = what;
    }
    if (painted) mini.mark([f.rows[0] + g.v0, Math.min(f.rows[1], f.rows[0] + g.v1)], [f.cols[0] + g.v0, Math.min(f.cols[1], f.cols[0] + g.v1)]);
  }

  // How many of the focused token's lines leave the window, at the edge they leave by.
  function edgeNotes(ctx, off, focus, x0, x1, height) {
    if (!focus || (!off.above && !off.below)) return;
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = THEMES[ui.theme].muted;
    ctx.textAlign = focus.side === "q" ? "right" : "left";
    const x = focus.side === "q" ? x1 - 4 : x0 + 4;
    if (off.above) { ctx.textBaseline = "top"; ctx.fillText(`\u25b2 ${off.above} off screen`, x, 2); }
    if (off.below) { ctx.textBaseline = "bottom"; ctx.fillText(`\u25bc ${off.below} off screen`, x, height - 2); }
  }

  // Search the query tokens of the current filter (window.js's findToken); the match is pinned, so its lines show.
  function find(text, step) {
    const hit = findToken(st.kind.queryTokens, st.kind.texts("q", o.prettify), geo.rows, text, step, st.match, geo.rows[0] + win.g.v0);
    if (!hit || !hit.n) { st.match = null; search.status(hit ? "no match" : ""); draw(); return; }
    st.match = hit.i;
    st.focus = { side: "q", i: st.match };
    st.pinned = true;
    search.status(`${hit.k} / ${hit.n}`);
    win.reveal(st.match - geo.rows[0]);
  }

  // ---- interactions: hover a token for only its lines, click to pin it (the window scrolls by itself)
  const tokenOf = (e) => {
    const t = e.target.closest && e.target.closest(".as-tok");
    return t && pane.contains(t) ? { side: t.dataset.side, i: Number(t.dataset.i) } : null;
  };
  const same = (a, b) => !!a && !!b && a.side === b.side && a.i === b.i;
  pane.addEventListener("mouseover", (e) => {
    const t = tokenOf(e);
    if (!t || st.pinned || same(t, st.focus)) return;
    st.focus = t;
    draw();
  });
  pane.addEventListener("mouseleave", () => {
    if (st.pinned || !st.focus) return;
    st.focus = null;
    draw();
  });
  pane.addEventListener("click", (e) => {
    const t = tokenOf(e);
    if (!t) return;
    if (st.pinned && same(t, st.focus)) { st.pinned = false; st.match = null; } else { st.pinned = true; st.focus = t; }
    draw();
  });

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if (next.kind && kinds.get(next.kind)) {
        startKind(kinds.get(next.kind), next.layer, next.heads);
        st.filter = null;
      } else {
        if (next.layer !== undefined) st.li = Math.max(0, st.kind.layers.indexOf(next.layer));
        if (next.heads) startKind(st.kind, st.kind.layers[st.li], next.heads);
      }
      if (next.filter) { st.filter = next.filter; st.step = null; }
      if (next.step !== undefined) st.step = next.step;
      rebuild();
    },
    destroy() { stepper.stop(); root.textContent = ""; },
    // What is shown (for widgets and tests): original layer and heads, and the query token pinned by a click or null.
    current() {
      const k = st.kind, f = st.focus;
      return { kind: k.name, layer: k.layers[st.li], heads: [...st.sel].sort((a, b) => a - b).map((hi) => k.heads[hi]),
        query: st.pinned && f && f.side === "q" ? f.i : null };
    },
    probe: Object.assign(probe(kinds), { step: () => st.step }),
  };
};
