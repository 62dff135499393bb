// Matrix view: one head as a heatmap (queries are rows, keys are columns, square-root colour scale) with token
// labels, painted as one ImageData; hovering a cell shows its exact weight. Past FULL tokens it shows a window of
// SPAN x SPAN cells with labels beside the minimap, a block-max overview of the whole head; click or drag on the
// minimap, or scroll over the window, to move it. Only the window's cells are read (for q/k payloads: recomputed or
// fetched as they come into view).

const FULL = 80;       // up to this many rows and columns the whole matrix is drawn with labels
const SPAN = 64;       // rows and columns of the window past that

views.matrix = function renderMatrix(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "matrix");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, hi: 0, filter: o.filter, r: 0, c: 0 };
  const startKind = (kind) => {
    st.kind = kind;
    st.li = Math.max(0, kind.layers.indexOf(o.layer));
    st.hi = Math.max(0, kind.heads.indexOf(o.head));
  };
  startKind(st.kind);

  const kindSel = kindControl(kinds, st.kind, (name) => { startKind(kinds.get(name)); rebuild(); });
  const layerSel = selectControl("Layer", [], 0, (li) => { st.li = li; paint(); });
  const headSel = selectControl("Head", [], 0, (hi) => { st.hi = hi; paint(); });
  const filterSlot = el("span", "as-slot"), legendSlot = el("span", "as-slot");
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(layerSel.node, headSel.node, filterSlot, legendSlot);

  const layout = el("div", "as-mlayout");
  const grid = el("div", "as-matrix");
  const corner = el("div", "as-corner");
  const colLabels = el("div", "as-mcols");
  const rowLabels = el("div", "as-mrows");
  const plot = el("div", "as-plot");
  const canvas = el("canvas", "as-heat");
  const cursor = el("div", "as-cursor"), rowMark = el("div", "as-rowmark"), note = el("div", "as-note");
  cursor.hidden = true;
  note.hidden = true;
  plot.append(canvas, rowMark, cursor, note);
  grid.append(corner, colLabels, rowLabels, plot);
  // the minimap centres the window on the token clicked
  const side = minimap("Whole head (block max): click or drag to move the window", (i, j) => {
    st.r = Math.round(i - geo.f.rows[0] - geo.sr / 2);
    st.c = Math.round(j - geo.f.cols[0] - geo.sc / 2);
    place();
  });
  layout.append(grid, side.node);
  ui.body.append(layout);
  let geo = null;  // {f: filter, nr, nc, windowed, rows: [a, b], cols: [a, b], cell, sr, sc}

  function labels(box, tokens, shown, [a, b], cell, vertical) {
    box.textContent = "";
    const size = Math.min(12.5, cell - 2), show = cell >= 9;
    box.classList.toggle("as-hidden-labels", !show);
    let longest = 0;
    for (let i = a; i < b; i++) {
      const s = el("span", "as-mlabel", shown[i]);
      s.title = tokens[i];
      s.dataset.i = String(i);
      s.style[vertical ? "width" : "height"] = cell + "px";
      s.style.fontSize = size + "px";
      box.append(s);
      if (show) longest = Math.max(longest, textWidth(s.textContent, `${size}px system-ui, sans-serif`));
    }
    return show ? Math.min(Math.ceil(longest) + 10, 140) : 0;
  }

  function rebuild() {
    const kind = st.kind;
    const f = pickFilter(filtersOf(payload, kind), st.filter);
    st.filter = f.name;
    if (kindSel) kindSel.set(kind.name);
    layerSel.fill(layerItems(kind), st.li);
    headSel.fill(kind.heads.map((h, hi) => ({ value: hi, text: String(h) })), st.hi);
    filterSlot.textContent = "";
    const fc = filterControl(payload, kind, st.filter, (name) => { st.filter = name; rebuild(); });
    if (fc) filterSlot.append(fc.node);
    legendSlot.textContent = "";
    legendSlot.append(legend(ui.theme));
    describe(ui.caption, payload, kind, ui.badge);
    const nr = f.rows[1] - f.rows[0], nc = f.cols[1] - f.cols[0];
    const windowed = Math.max(nr, nc) > FULL;
    geo = { f, nr, nc, windowed };
    side.node.hidden = !windowed;
    const qm = o.query;
    const hasQuery = qm !== undefined && qm >= f.rows[0] && qm < f.rows[1];
    st.r = hasQuery ? qm - f.rows[0] - (SPAN >> 1) : 0;
    st.c = hasQuery && nr === nc ? st.r : 0;
    place();
  }

  // Put the window at (st.r, st.c) (clamped), label it and paint.
  function place() {
    const { f, nr, nc, windowed } = geo, kind = st.kind;
    const sr = windowed ? Math.min(SPAN, nr) : nr, sc = windowed ? Math.min(SPAN, nc) : nc;
    st.r = Math.max(0, Math.min(st.r, nr - sr));
    st.c = Math.max(0, Math.min(st.c, nc - sc));
    const rows = [f.rows[0] + st.r, f.rows[0] + st.r + sr], cols = [f.cols[0] + st.c, f.cols[0] + st.c + sc];
    const cell = Math.max(2, Math.min(26, Math.floor(720 / Math.max(sr, sc, 1))));  // labels show from 9 px
    const colH = labels(colLabels, kind.keyTokens, kind.texts("k", o.prettify), cols, cell, true);
    const rowW = labels(rowLabels, kind.queryTokens, kind.texts("q", o.prettify), rows, cell, false);
    grid.style.gridTemplateColumns = `${rowW}px ${sc * cell}px`;
    grid.style.gridTemplateRows = `${colH}px ${sr * cell}px`;
    canvas.width = Math.max(1, sc);
    canvas.height = Math.max(1, sr);
    canvas.style.width = sc * cell + "px";
    canvas.style.height = sr * cell + "px";
    Object.assign(geo, { rows, cols, cell, sr, sc });
    root.dataset.window = `${rows[0]},${rows[1]},${cols[0]},${cols[1]}`;
    const qm = o.query;
    rowMark.hidden = !(qm !== undefined && qm >= rows[0] && qm < rows[1]);
    if (!rowMark.hidden) Object.assign(rowMark.style, { top: (qm - rows[0]) * cell + "px", height: cell + "px", width: sc * cell + "px" });
    paint();
  }

  // The window's cells (only those are read), then the minimap with the window outlined.
  function paint() {
    const kind = st.kind, { rows: [r0, r1], cols: [c0, c1], sc, sr } = geo;
    const head = kind.head(st.li, st.hi), lut = heatLut(ui.theme);
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(Math.max(1, sc), Math.max(1, sr)), px = img.data;
    for (let p = 0; p < px.length; p += 4) { px[p] = lut[0]; px[p + 1] = lut[1]; px[p + 2] = lut[2]; px[p + 3] = 255; }
    for (let i = r0; head && i < r1; i++) {
      const [idx, val, base] = head.row(i, c0, c1);
      for (let t = 0; t < val.length; t++) {
        const j = idx ? idx[t] : base + t;
        const v = toSqrt8(val[t]) * 4, d = ((i - r0) * sc + (j - c0)) * 4;
        px[d] = lut[v]; px[d + 1] = lut[v + 1]; px[d + 2] = lut[v + 2];
      }
    }
    ctx.putImageData(img, 0, 0);
    note.textContent = rowsProblem(kind, st.li) || kind.sourceNote();
    note.hidden = !note.textContent;
    layerSel.set(st.li);
    headSel.set(st.hi);
    const thumb = geo.windowed ? kind.thumb(st.li, st.hi, MINIMAP) : null;
    if (thumb) {  // (a head still being fetched: painted on the redraw)
      side.paint([thumb], geo.f, ui.theme);
      side.mark(geo.rows, geo.cols);
    }
    kind.flush(paint);
  }

  function mark(box, i) {
    for (const s of box.children) s.classList.toggle("as-on", s.dataset.i === String(i));
  }

  canvas.addEventListener("mousemove", (e) => {
    const { rows: [r0], cols: [c0], cell, sr, sc } = geo, kind = st.kind;
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((e.clientX - rect.left) / cell), r = Math.floor((e.clientY - rect.top) / cell);
    if (c < 0 || r < 0 || c >= sc || r >= sr) return;
    const i = r0 + r, j = c0 + c, head = kind.head(st.li, st.hi), w = head ? head.get(i, j) : NaN;
    Object.assign(cursor.style, { left: c * cell + "px", top: r * cell + "px", width: cell + "px", height: cell + "px" });
    cursor.hidden = false;
    mark(rowLabels, i);
    mark(colLabels, j);
    root.dataset.hover = `${i},${j}`;
    ui.tip.show([`query ${i}: ${kind.queryTokens[i]}`, `key ${j}: ${kind.keyTokens[j]}`,
      `weight ${fmt(w, 4)}`], e.clientX, e.clientY);
  });
  canvas.addEventListener("mouseleave", () => {
    cursor.hidden = true;
    ui.tip.hide();
    mark(rowLabels, -1);
    mark(colLabels, -1);
  });
  // scrolling over the window pans it: vertical moves rows, horizontal (or Shift) moves columns
  plot.addEventListener("wheel", (e) => {
    if (!geo.windowed) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 1 : e.deltaMode === 2 ? geo.sr : 1 / geo.cell;
    const dx = e.shiftKey ? e.deltaY : e.deltaX, dy = e.shiftKey ? 0 : e.deltaY;
    st.r += Math.round(dy * unit);
    st.c += Math.round(dx * unit);
    place();
  }, { passive: false });

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if (next.kind || next.layer !== undefined || next.head !== undefined) startKind(kinds.get(next.kind || st.kind.name) || st.kind);
      if (next.filter) st.filter = next.filter;
      rebuild();
    },
    destroy() { root.textContent = ""; },
    // What is shown (for widgets and tests): original layer and head, and the query row marked (query=) or null.
    current() {
      const k = st.kind;
      return { kind: k.name, layer: k.layers[st.li], head: k.heads[st.hi], query: o.query === undefined ? null : o.query };
    },
    probe: probe(kinds),
  };
};
