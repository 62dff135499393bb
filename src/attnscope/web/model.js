// Model view: a grid of layer x head heatmap thumbnails, painted from per-head block-max thumbnails into one
// canvas; click one to open it as a head view beside the grid, which decodes only that head. With head metrics in
// the payload ("Colour by"), each thumbnail sits on a frame coloured by its head's value, and "Sort" orders each
// layer's heads by it (highest first; each cell then names its head).

const GAP = 4;  // px between thumbnails
// Frame colours of a metric, low to high (attnscope/figures/model.py uses the same): more contrast = higher value.
const METRIC_RAMP = {
  light: [[0, 254, 217, 118], [1 / 3, 253, 141, 60], [2 / 3, 227, 26, 28], [1, 128, 0, 38]],
  dark: [[0, 106, 27, 61], [1 / 3, 215, 48, 31], [2 / 3, 252, 141, 89], [1, 254, 224, 139]],
};

views.model = function renderModel(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "model");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, filter: o.filter, picked: null,
    metric: o.metric || null, sort: !!o.sort };

  const kindSel = kindControl(kinds, st.kind, (name) => { st.kind = kinds.get(name); closeDetail(); rebuild(); });
  const filterSlot = el("span", "as-slot"), metricSlot = el("span", "as-slot"), legendSlot = el("span", "as-slot");
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(filterSlot, metricSlot, legendSlot);

  const layout = el("div", "as-model");
  const grid = el("div", "as-grid");
  const { node: detail, title: detailTitle, root: detailRoot, close } = detailPanel("as-detail");
  detail.style.maxWidth = "100%";  // a narrow page: the enlarged head scrolls inside its panel, below the grid
  layout.append(grid, detail);
  ui.body.append(layout);
  const canvas = el("canvas", "as-thumbs");
  let detailView = null;
  let cells = [];
  let geo = [];  // [li][hi] -> {x, y, w, h, rows, cols}: where each thumbnail is drawn, in canvas pixels

  // Every thumbnail is painted into one canvas under the grid (one canvas per head costs seconds of compositing at
  // 32 x 32); a transparent button per head sits over its cell for hover, focus and click. Each thumbnail is
  // block-max pooled again to the cell's device pixels, then scaled up by a whole number (crisp, maxima kept).
  // `m` (or null): {value(li, hi), pos[li][hi] (column), lut, lo, hi}; frames are the cell's square under the thumbnail.
  function paintGrid(kind, f, cell, m) {
    const L = kind.layers.length, H = kind.heads.length, step = cell + GAP;
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 3)), full = Math.floor(cell * dpr);
    const inset = m ? Math.max(2, Math.round(full * 0.05)) : 0, size = full - 2 * inset;
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
        const fx = Math.round((m ? m.pos[li][hi] : hi) * step * dpr), fy = Math.round(li * step * dpr);
        const x0 = fx + inset + ((size - cols * u) >> 1), y0 = fy + inset + ((size - rows * u) >> 1);
        if (m) fillRect(px, cw, fx, fy, full, full, m.colour(li, hi));
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
        row.push({ x: x0, y: y0, w: cols * u, h: rows * u, rows, cols, frame: m ? { x: fx, y: fy, size: full } : null });
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
    const m = metricOf(kind);
    metricSlot.textContent = "";
    if (kind.spec.metrics) metricSlot.append(...metricControls(kind));
    legendSlot.textContent = "";
    legendSlot.append(legend(ui.theme));
    if (m) legendSlot.append(metricLegend(m));
    describe(ui.caption, payload, kind, ui.badge);

    const L = kind.layers.length, H = kind.heads.length, sorted = !!m && st.sort;
    const wide = Math.max(26, Math.min(84, Math.floor(880 / H) - GAP));  // the thumbnails' size on a wide page
    const cell = fitCell(availableWidth(root), H, labelWidth(kind, sorted), GAP, wide);  // fit.js
    grid.textContent = "";
    grid.style.gridTemplateColumns = `auto repeat(${H}, ${cell}px)`;
    grid.style.gridTemplateRows = `auto repeat(${L}, ${cell}px)`;
    const place = (node, r, c) => { node.style.gridArea = `${r} / ${c}`; grid.append(node); };
    place(el("span", "as-corner", sorted ? "L \\ rank" : "L \\ H"), 1, 1);
    kind.heads.forEach((h, hi) => place(el("span", "as-hlabel", sorted ? "#" + (hi + 1) : h), 1, hi + 2));
    kind.layers.forEach((l, li) => place(el("span", "as-llabel", l), li + 2, 1));
    canvas.style.gridArea = `2 / 2 / span ${L} / span ${H}`;
    grid.append(canvas);
    paintGrid(kind, f, cell, m);
    cells = [];
    kind.layers.forEach((l, li) => {
      kind.heads.forEach((h, hi) => {
        const c = el("button", "as-thumb");
        c.type = "button";
        c.title = headTitle(kind, li, hi);
        const label = labelOf(kind, li, hi);
        c.setAttribute("aria-label", `layer ${l}, head ${h}` + (label ? `, ${label}` : ""));
        c.dataset.li = String(li);
        c.dataset.hi = String(hi);
        if (sorted) c.append(el("span", "as-hnum", h));
        if (st.picked && st.picked[0] === li && st.picked[1] === hi) c.classList.add("as-picked");
        place(c, li + 2, (m ? m.pos[li][hi] : hi) + 2);
        cells.push(c);
      });
    });
  }

  // The grid's first column (the corner's text, the layer numbers) and its gap to the thumbnails, in px.
  function labelWidth(kind, sorted) {
    const font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
    const texts = [sorted ? "L \\ rank" : "L \\ H", ...kind.layers.map(String)];
    return Math.ceil(Math.max(...texts.map((t) => textWidth(t, font)))) + 4 + GAP + 2;
  }

  // ---- head metrics: "Colour by" and "Sort", the frame colours, the legend and each head's tooltip
  function metricControls(kind) {
    const names = kind.spec.metrics.names;
    if (st.metric !== null && !names.includes(st.metric)) st.metric = null;
    const items = [{ value: null, text: "none" }].concat(names.map((n) => ({ value: n, text: n })));
    const sel = selectControl("Colour by", items, st.metric, (name) => { st.metric = name; rebuild(); });
    sel.select.title = "Colour each head's frame by a statistic of its attention (attnscope.analysis.head_metrics)";
    const sort = el("button", "as-toggle", "Sort");
    sort.type = "button";
    sort.title = "Order each layer's heads by the chosen metric, highest first";
    sort.disabled = st.metric === null;
    sort.setAttribute("aria-pressed", String(st.sort && st.metric !== null));
    sort.addEventListener("click", () => { st.sort = !st.sort; rebuild(); });
    return [sel.node, sort];
  }

  function metricOf(kind) {
    const ms = kind.spec.metrics;
    if (!ms || st.metric === null || !ms.values[st.metric]) return null;
    const values = ms.values[st.metric];
    let lo = Infinity, hi = -Infinity;
    for (const row of values) for (const v of row) if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (lo > hi) { lo = 0; hi = 1; }
    const lut = rampLut(ui.theme), grid = hexRgb(THEMES[ui.theme].grid);
    const key = (v) => (v === null ? -Infinity : v);
    const pos = values.map((row) => {
      const out = row.map((_, hi2) => hi2);
      if (st.sort) {
        const order = row.map((_, hi2) => hi2).sort((a, b) => key(row[b]) - key(row[a]) || a - b);
        order.forEach((h2, p) => { out[h2] = p; });
      }
      return out;
    });
    const colour = (li, hi2) => {
      const v = values[li][hi2];
      if (v === null) return grid;
      const b = Math.round((hi > lo ? (v - lo) / (hi - lo) : 1) * 255) * 4;
      return [lut[b], lut[b + 1], lut[b + 2]];
    };
    return { name: st.metric, lo, hi, pos, colour };
  }

  function metricLegend(m) {
    const wrap = el("span", "as-legend as-mlegend");
    const c = el("canvas", "as-legend-bar as-metric-bar");
    c.width = 128; c.height = 1;
    const ctx = c.getContext("2d"), img = ctx.createImageData(128, 1), lut = rampLut(ui.theme);
    for (let x = 0; x < 128; x++) {
      const b = Math.round((x / 127) * 255) * 4;
      img.data.set(lut.subarray(b, b + 4), x * 4);
    }
    ctx.putImageData(img, 0, 0);
    c.title = `frame colour: ${m.name} from ${num(m.lo)} (left) to ${num(m.hi)} (right) over the heads shown`;
    wrap.append(el("span", "as-label", m.name), el("span", "as-label as-mmin", num(m.lo)), c,
      el("span", "as-label as-mmax", num(m.hi)));
    return wrap;
  }

  function labelOf(kind, li, hi) {
    const ms = kind.spec.metrics;
    return ms ? ms.labels[ms.label[li][hi]] : "";
  }

  function headTitle(kind, li, hi) {
    const lines = [`layer ${kind.layers[li]} \u00b7 head ${kind.heads[hi]}`];
    const ms = kind.spec.metrics;
    if (ms) {
      lines[0] += ` \u00b7 ${labelOf(kind, li, hi)}`;
      const names = st.metric ? [st.metric].concat(ms.names.filter((n) => n !== st.metric)) : ms.names;
      const parts = names.map((n) => `${n} ${ms.values[n][li][hi] === null ? "n/a" : num(ms.values[n][li][hi])}`);
      for (let i = 0; i < parts.length; i += 4) lines.push(parts.slice(i, i + 4).join(" \u00b7 "));
    }
    lines.push("click for its head view");
    return lines.join("\n");
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
  const stopWatching = watchWidth(root, () => rebuild());  // fit.js: lay out again when the width changes
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if (next.kind && kinds.get(next.kind)) { st.kind = kinds.get(next.kind); closeDetail(); }
      if (next.filter) st.filter = next.filter;
      if (next.metric !== undefined) st.metric = next.metric || null;
      if (next.sort !== undefined) st.sort = !!next.sort;
      rebuild();
      if (detailView) detailView.update({ filter: st.filter, theme: ui.theme });
    },
    destroy() { stopWatching(); root.textContent = ""; },
    // The head enlarged by a click (original layer and head, null when none) and the query token pinned in it.
    current() {
      const k = st.kind, p = st.picked, d = p && detailView ? detailView.current() : null;
      return { kind: k.name, layer: p ? k.layers[p[0]] : null, head: p ? k.heads[p[1]] : null, query: d ? d.query : null };
    },
    // Enlarge the head (layer, head) as a click on its thumbnail does; (null, null) closes it.
    select(layer, head) {
      const li = st.kind.layers.indexOf(layer), hi = st.kind.heads.indexOf(head);
      if (li >= 0 && hi >= 0) openDetail(li, hi); else closeDetail();
    },
    probe: Object.assign(probe(kinds, () => (detailView ? detailView.probe.decoded() : 0)), {
      cell: (li, hi) => geo[li][hi],  // where thumbnail (li, hi) is drawn in canvas.as-thumbs (and its frame)
    }),
  };
};

const RAMPS = {};
// 256 RGBA colours of a theme's metric ramp (METRIC_RAMP), low to high.
function rampLut(theme) {
  if (!RAMPS[theme]) RAMPS[theme] = stopsLut(METRIC_RAMP[theme]);
  return RAMPS[theme];
}

function hexRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

// Paint an opaque w x h rectangle of colour [r, g, b] into RGBA pixels `px` of a canvas `cw` pixels wide (clipped).
function fillRect(px, cw, x, y, w, h, [r, g, b]) {
  const ch = px.length / 4 / cw;
  for (let yy = y; yy < Math.min(y + h, ch); yy++) {
    for (let d = (yy * cw + x) * 4, end = d + Math.min(w, cw - x) * 4; d < end; d += 4) {
      px[d] = r; px[d + 1] = g; px[d + 2] = b; px[d + 3] = 255;
    }
  }
}

// A metric value to 3 significant digits ("0.362", "23.3"); 100 and above as whole numbers ("1234").
function num(v) {
  return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3)));
}
