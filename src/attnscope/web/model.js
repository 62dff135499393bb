// Model view: a grid of layer x head heatmap thumbnails, painted from per-head block-max thumbnails into one
// canvas; click one to open it as a head view beside the grid, which decodes only that head.

const GAP = 4;  // px between thumbnails

views.model = function renderModel(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "model");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, filter: o.filter, picked: null };

  const kindSel = kindControl(kinds, st.kind, (name) => { st.kind = kinds.get(name); closeDetail(); rebuild(); });
  const filterSlot = el("span", "as-slot"), legendSlot = el("span", "as-slot");
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(filterSlot, legendSlot);

  const layout = el("div", "as-model");
  const grid = el("div", "as-grid");
  const detail = el("div", "as-detail");
  detail.hidden = true;
  const detailHead = el("div", "as-detail-bar");
  const detailTitle = el("span", "as-detail-title");
  const close = el("button", "as-close", "\u00d7");
  close.type = "button";
  close.title = "Close";
  detailHead.append(detailTitle, close);
  const detailRoot = el("div", "attnscope");
  detail.append(detailHead, detailRoot);
  layout.append(grid, detail);
  ui.body.append(layout);
  const canvas = el("canvas", "as-thumbs");
  let detailView = null;
  let cells = [];
  let geo = [];  // [li][hi] -> {x, y, w, h, rows, cols}: where each thumbnail is drawn, in canvas pixels

  // Every thumbnail is painted into one canvas under the grid (one canvas per head costs seconds of compositing at
  // 32 x 32); a transparent button per head sits over its cell for hover, focus and click. Each thumbnail is
  // block-max pooled again to the cell's device pixels, then scaled up by a whole number (crisp, maxima kept).
  function paintGrid(kind, f, cell) {
    const L = kind.layers.length, H = kind.heads.length, step = cell + GAP;
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 3)), size = Math.floor(cell * dpr);
    const cw = Math.round((H * step - GAP) * dpr), ch = Math.round((L * step - GAP) * dpr);
    canvas.width = cw;
    canvas.height = ch;
    canvas.style.width = H * step - GAP + "px";
    canvas.style.height = L * step - GAP + "px";
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(cw, ch), px = img.data, lut = heatLut(ui.theme);
    geo = [];
    for (let li = 0; li < L; li++) {
      const row = [];
      for (let hi = 0; hi < H; hi++) {
        const t = kind.thumb(li, hi), b = t.block;
        const ra = Math.floor(f.rows[0] / b), rb = Math.max(ra + 1, Math.ceil(f.rows[1] / b));
        const ca = Math.floor(f.cols[0] / b), cb = Math.max(ca + 1, Math.ceil(f.cols[1] / b));
        const g = Math.max(1, Math.ceil(Math.max(rb - ra, cb - ca) / size));
        const rows = Math.ceil((rb - ra) / g), cols = Math.ceil((cb - ca) / g);
        const u = Math.max(1, Math.floor(size / Math.max(rows, cols)));
        const x0 = Math.round(hi * step * dpr) + ((size - cols * u) >> 1), y0 = Math.round(li * step * dpr) + ((size - rows * u) >> 1);
        const pooled = new Uint8Array(rows * cols);
        for (let r = ra; r < rb; r++) {
          const src = r * t.cols, dst = (((r - ra) / g) | 0) * cols;
          for (let c = ca; c < cb; c++) {
            const v = t.bytes[src + c], o2 = dst + (((c - ca) / g) | 0);
            if (v > pooled[o2]) pooled[o2] = v;
          }
        }
        for (let r = 0; r < rows * u; r++) {
          let d = ((y0 + r) * cw + x0) * 4;
          const src = ((r / u) | 0) * cols;
          for (let c = 0; c < cols * u; c++, d += 4) {
            const v = pooled[src + ((c / u) | 0)] * 4;
            px[d] = lut[v]; px[d + 1] = lut[v + 1]; px[d + 2] = lut[v + 2]; px[d + 3] = 255;
          }
        }
        row.push({ x: x0, y: y0, w: cols * u, h: rows * u, rows, cols });
      }
      geo.push(row);
    }
    ctx.putImageData(img, 0, 0);
  }

  function rebuild() {
    const kind = st.kind;
    const f = pickFilter(filtersOf(payload, kind), st.filter);
    st.filter = f.name;
    if (kindSel) kindSel.set(kind.name);
    filterSlot.textContent = "";
    const fc = filterControl(payload, kind, st.filter, (name) => {
      st.filter = name;
      rebuild();
      if (detailView) detailView.update({ filter: name });
    });
    if (fc) filterSlot.append(fc.node);
    legendSlot.textContent = "";
    legendSlot.append(legend(ui.theme));
    describe(ui.caption, payload, kind, ui.badge);

    const L = kind.layers.length, H = kind.heads.length;
    const cell = Math.max(26, Math.min(84, Math.floor(880 / H) - GAP));
    grid.textContent = "";
    grid.style.gridTemplateColumns = `auto repeat(${H}, ${cell}px)`;
    grid.style.gridTemplateRows = `auto repeat(${L}, ${cell}px)`;
    const place = (node, r, c) => { node.style.gridArea = `${r} / ${c}`; grid.append(node); };
    place(el("span", "as-corner", "L \\ H"), 1, 1);
    kind.heads.forEach((h, hi) => place(el("span", "as-hlabel", h), 1, hi + 2));
    kind.layers.forEach((l, li) => place(el("span", "as-llabel", l), li + 2, 1));
    canvas.style.gridArea = `2 / 2 / span ${L} / span ${H}`;
    grid.append(canvas);
    paintGrid(kind, f, cell);
    cells = [];
    kind.layers.forEach((l, li) => {
      kind.heads.forEach((h, hi) => {
        const c = el("button", "as-thumb");
        c.type = "button";
        c.title = `layer ${l} \u00b7 head ${h}: click for its head view`;
        c.setAttribute("aria-label", `layer ${l}, head ${h}`);
        c.dataset.li = String(li);
        c.dataset.hi = String(hi);
        if (st.picked && st.picked[0] === li && st.picked[1] === hi) c.classList.add("as-picked");
        place(c, li + 2, hi + 2);
        cells.push(c);
      });
    });
  }

  function openDetail(li, hi) {
    const kind = st.kind, layer = kind.layers[li], head = kind.heads[hi];
    st.picked = [li, hi];
    cells.forEach((c) => c.classList.toggle("as-picked", c.dataset.li === String(li) && c.dataset.hi === String(hi)));
    detailTitle.textContent = `Layer ${layer} \u00b7 head ${head}`;
    detail.hidden = false;
    const opts = { kind: kind.name, layer, heads: [head], filter: st.filter };
    if (detailView) detailView.update(opts);
    else detailView = views.head(detailRoot, payload, Object.assign({ theme: ui.theme, prettify: o.prettify, embedded: true }, opts));
    if (detail.scrollIntoView && detail.getBoundingClientRect().top > (window.innerHeight || 0)) detail.scrollIntoView({ block: "nearest" });
  }

  function closeDetail() {
    st.picked = null;
    detail.hidden = true;
    cells.forEach((c) => c.classList.remove("as-picked"));
  }

  grid.addEventListener("click", (e) => {
    const c = e.target.closest && e.target.closest(".as-thumb");
    if (c) openDetail(Number(c.dataset.li), Number(c.dataset.hi));
  });
  close.addEventListener("click", closeDetail);

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) { ui.theme = resolveTheme(root, next.theme); root.setAttribute("data-theme", ui.theme); }
      if (next.kind && kinds.get(next.kind)) { st.kind = kinds.get(next.kind); closeDetail(); }
      if (next.filter) st.filter = next.filter;
      rebuild();
      if (detailView) detailView.update({ filter: st.filter, theme: ui.theme });
    },
    destroy() { root.textContent = ""; },
    probe: Object.assign(probe(kinds, () => (detailView ? detailView.probe.decoded() : 0)), {
      cell: (li, hi) => geo[li][hi],  // where thumbnail (li, hi) is drawn in canvas.as-thumbs
    }),
  };
};
