// Matrix view: one head as a heatmap (queries are rows, keys are columns, square-root colour scale) with token
// labels, painted as one ImageData; hovering a cell shows its exact weight.

views.matrix = function renderMatrix(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "matrix");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, hi: 0, filter: o.filter };
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

  const grid = el("div", "as-matrix");
  const corner = el("div", "as-corner");
  const colLabels = el("div", "as-mcols");
  const rowLabels = el("div", "as-mrows");
  const plot = el("div", "as-plot");
  const canvas = el("canvas", "as-heat");
  const cursor = el("div", "as-cursor"), rowMark = el("div", "as-rowmark");
  cursor.hidden = true;
  plot.append(canvas, rowMark, cursor);
  grid.append(corner, colLabels, rowLabels, plot);
  ui.body.append(grid);
  let geo = null;

  function labels(box, tokens, [a, b], cell, vertical) {
    box.textContent = "";
    const size = Math.min(12.5, cell - 2), show = cell >= 9;
    box.classList.toggle("as-hidden-labels", !show);
    let longest = 0;
    for (let i = a; i < b; i++) {
      const s = el("span", "as-mlabel", tokenText(tokens[i], o.prettify));
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
    describe(ui.caption, payload, kind);
    const nr = f.rows[1] - f.rows[0], nc = f.cols[1] - f.cols[0];
    const cell = Math.max(2, Math.min(26, Math.floor(720 / Math.max(nr, nc, 1))));  // labels show from 9 px
    const colH = labels(colLabels, kind.keyTokens, f.cols, cell, true);
    const rowW = labels(rowLabels, kind.queryTokens, f.rows, cell, false);
    grid.style.gridTemplateColumns = `${rowW}px ${nc * cell}px`;
    grid.style.gridTemplateRows = `${colH}px ${nr * cell}px`;
    canvas.width = Math.max(1, nc);
    canvas.height = Math.max(1, nr);
    canvas.style.width = nc * cell + "px";
    canvas.style.height = nr * cell + "px";
    geo = { rows: f.rows, cols: f.cols, cell, nr, nc };
    const qm = o.query;
    rowMark.hidden = !(qm !== undefined && qm >= f.rows[0] && qm < f.rows[1]);
    if (!rowMark.hidden) Object.assign(rowMark.style, { top: (qm - f.rows[0]) * cell + "px", height: cell + "px", width: nc * cell + "px" });
    paint();
  }

  function paint() {
    const kind = st.kind, { rows: [r0, r1], cols: [c0, c1], nc, nr } = geo;
    const head = kind.head(st.li, st.hi), lut = heatLut(ui.theme);
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(Math.max(1, nc), Math.max(1, nr)), px = img.data;
    for (let p = 0; p < px.length; p += 4) { px[p] = lut[0]; px[p + 1] = lut[1]; px[p + 2] = lut[2]; px[p + 3] = 255; }
    for (let i = r0; i < r1; i++) {
      const [idx, val] = head.row(i);
      for (let t = 0; t < val.length; t++) {
        const j = idx ? idx[t] : t;
        if (j < c0 || j >= c1) continue;
        const v = toSqrt8(val[t]) * 4, d = ((i - r0) * nc + (j - c0)) * 4;
        px[d] = lut[v]; px[d + 1] = lut[v + 1]; px[d + 2] = lut[v + 2];
      }
    }
    ctx.putImageData(img, 0, 0);
    layerSel.set(st.li);
    headSel.set(st.hi);
  }

  function mark(box, i) {
    for (const s of box.children) s.classList.toggle("as-on", s.dataset.i === String(i));
  }

  canvas.addEventListener("mousemove", (e) => {
    const { rows: [r0], cols: [c0], cell, nr, nc } = geo, kind = st.kind;
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((e.clientX - rect.left) / cell), r = Math.floor((e.clientY - rect.top) / cell);
    if (c < 0 || r < 0 || c >= nc || r >= nr) return;
    const i = r0 + r, j = c0 + c, w = kind.head(st.li, st.hi).get(i, j);
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

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) { ui.theme = resolveTheme(root, next.theme); root.setAttribute("data-theme", ui.theme); }
      if (next.kind || next.layer !== undefined || next.head !== undefined) startKind(kinds.get(next.kind || st.kind.name) || st.kind);
      if (next.filter) st.filter = next.filter;
      rebuild();
    },
    destroy() { root.textContent = ""; },
  };
};
