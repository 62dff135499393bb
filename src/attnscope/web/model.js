// Model view: a grid of layer x head heatmap thumbnails (one small canvas each, painted from per-head
// block-max thumbnails); click one to open it as a head view beside the grid, which decodes only that head.

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
  let detailView = null;
  let cells = [];

  function paint(canvas, kind, li, hi, f) {
    const t = kind.thumb(li, hi), b = t.block;
    const ra = Math.floor(f.rows[0] / b), rb = Math.ceil(f.rows[1] / b);
    const ca = Math.floor(f.cols[0] / b), cb = Math.ceil(f.cols[1] / b);
    const w = Math.max(1, cb - ca), h = Math.max(1, rb - ra);
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), lut = heatLut(ui.theme);
    const px = img.data;
    for (let r = 0; r < h; r++) {
      const src = (ra + r) * t.cols + ca;
      for (let c = 0; c < w; c++) {
        const v = t.bytes[src + c] * 4, d = (r * w + c) * 4;
        px[d] = lut[v]; px[d + 1] = lut[v + 1]; px[d + 2] = lut[v + 2]; px[d + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    return [w, h];
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

    const H = kind.heads.length;
    const cell = Math.max(30, Math.min(84, Math.floor(880 / H) - 4));
    grid.textContent = "";
    grid.style.gridTemplateColumns = `auto repeat(${H}, ${cell}px)`;
    grid.append(el("span", "as-corner", "L \\ H"));
    kind.heads.forEach((h) => grid.append(el("span", "as-hlabel", h)));
    cells = [];
    kind.layers.forEach((l, li) => {
      grid.append(el("span", "as-llabel", l));
      kind.heads.forEach((h, hi) => {
        const c = el("canvas", "as-thumb");
        const [w, hgt] = paint(c, kind, li, hi, f);
        const scale = cell / Math.max(w, hgt);
        c.style.width = Math.round(w * scale) + "px";
        c.style.height = Math.round(hgt * scale) + "px";
        c.title = `layer ${l} \u00b7 head ${h}: click for its head view`;
        c.tabIndex = 0;
        c.dataset.li = String(li);
        c.dataset.hi = String(hi);
        if (st.picked && st.picked[0] === li && st.picked[1] === hi) c.classList.add("as-picked");
        grid.append(c);
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
  grid.addEventListener("keydown", (e) => {
    const c = e.target.closest && e.target.closest(".as-thumb");
    if (c && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); openDetail(Number(c.dataset.li), Number(c.dataset.hi)); }
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
    probe: probe(kinds, () => (detailView ? detailView.probe.decoded() : 0)),
  };
};
