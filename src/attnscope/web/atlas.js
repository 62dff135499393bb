// Atlas view: what every head does across a corpus. A layer x head grid painted into one canvas, each cell coloured
// by a corpus statistic of the chosen metric (the model view's ramp; with a second atlas, B - A on a diverging ramp);
// hovering a head shows its distribution over the texts and its pattern labels; clicking it lists its exemplar texts
// (strongest query -> key marked); clicking an exemplar opens that text's head view: embedded in the file for the
// top few, captured by the web app (options.openText) for any, else a note says how to get it.

const ATLAS_GAP = 2;  // px between cells
// B - A: orange where A is higher, blue where B is (as the diff view and attnscope/figures/style.py's themes)
const DIVERGING = {
  light: [[0, 255, 127, 14], [0.5, 255, 255, 255], [1, 31, 119, 180]],
  dark: [[0, 240, 136, 62], [0.5, 22, 24, 29], [1, 88, 166, 255]],
};
const DIV_LUTS = {};
function divergingLut(theme) {
  if (!DIV_LUTS[theme]) DIV_LUTS[theme] = stopsLut(DIVERGING[theme]);
  return DIV_LUTS[theme];
}

views.atlas = function renderAtlas(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", stat: "mean" }, options);
  const meta = payload.meta, L = meta.layers, H = meta.heads, other = payload.other;
  const ui = frame(root, payload, o, "atlas");
  const st = { metric: meta.metrics.includes(o.metric) ? o.metric : meta.metrics[0], stat: o.stat,
    show: other ? (o.show || "delta") : "a", picked: null, hover: null };
  const hists = {};

  // ---- toolbar
  const metricSel = selectControl("Colour by", meta.metrics.map((m) => ({ value: m, text: m })), st.metric,
    (m) => { st.metric = m; paint(); showPicked(); });
  metricSel.select.title = "A head metric, measured on every text of the corpus";
  const statSel = selectControl("Statistic", [["mean", "mean"], ["p10", "10th percentile"], ["p50", "median"],
    ["p90", "90th percentile"]].map(([value, text]) => ({ value, text })), st.stat, (s) => { st.stat = s; paint(); });
  ui.bar.append(metricSel.node, statSel.node);
  let showSeg = null;
  if (other) {
    showSeg = segmented("Show", [{ value: "a", text: "A" }, { value: "b", text: "B" }, { value: "delta", text: "B \u2212 A" }],
      st.show, (v) => { st.show = v; paint(); });
    ui.bar.append(showSeg.node);
  }
  const legendSlot = el("span", "as-slot");
  ui.bar.append(legendSlot);

  // ---- layout: grid | side panel (hovered head's distribution, picked head's exemplars) ; head view below
  const layout = el("div", "as-atlas");
  const gridBox = el("div", "as-atlas-grid");
  const canvas = el("canvas", "as-atlas-cells");
  canvas.setAttribute("role", "img");
  canvas.tabIndex = 0;
  gridBox.append(canvas);
  const side = el("div", "as-atlas-side");
  const info = el("div", "as-atlas-info");
  const histCanvas = el("canvas", "as-atlas-hist");
  const infoText = el("div", "as-atlas-stats");
  info.append(infoText, histCanvas);
  const list = el("div", "as-atlas-exemplars");
  side.append(info, list);
  layout.append(gridBox, side);
  const { node: detail, title: detailTitle, root: detailRoot, close } = detailPanel("as-detail as-atlas-detail");
  ui.body.append(layout, detail);
  close.addEventListener("click", () => { detail.hidden = true; detailRoot.textContent = ""; });
  const counts = meta.counts || {};
  ui.caption.textContent = `${meta.model} \u00b7 ${L} layers \u00d7 ${H} heads \u00b7 ${counts.measured || 0} texts measured` +
    (other ? ` \u00b7 B: ${other.meta.model} (${(other.meta.counts || {}).measured || 0} texts)` : "") +
    " \u00b7 hover a head for its distribution, click it for its exemplar texts";

  // ---- values
  function gridOf(which) {
    const src = which === "b" ? other : payload;
    return src.stats[st.stat][st.metric];
  }
  function valueAt(li, hi) {
    if (st.show === "delta") {
      const a = payload.stats[st.stat][st.metric][li][hi], b = other.stats[st.stat][st.metric][li][hi];
      return a === null || b === null ? null : b - a;
    }
    return gridOf(st.show)[li][hi];
  }
  function range() {
    let lo = Infinity, hi = -Infinity;
    for (let li = 0; li < L; li++) for (let h = 0; h < H; h++) {
      const v = valueAt(li, h);
      if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    if (lo > hi) { lo = 0; hi = 1; }
    if (st.show === "delta") { const m = Math.max(Math.abs(lo), Math.abs(hi), 1e-9); return [-m, m]; }
    return [lo, hi];
  }

  // ---- painting: one ImageData for every cell, labels drawn on top
  let geo = null;
  function paint() {
    const cell = Math.max(12, Math.min(34, Math.floor(560 / Math.max(H, L * 0.8))));
    const left = 28, top = 18, step = cell + ATLAS_GAP;
    const w = left + H * step, h = top + L * step;
    const dpr = Math.max(1, Math.min(window.devicePixelRatio || 1, 3));
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = w + "px";
    canvas.style.height = h + "px";
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(canvas.width, canvas.height), px = img.data;
    const [lo, hi] = range(), lut = st.show === "delta" ? divergingLut(ui.theme) : rampLut(ui.theme);
    const none = hexRgb(THEMES[ui.theme].grid);
    for (let li = 0; li < L; li++) {
      for (let h2 = 0; h2 < H; h2++) {
        const v = valueAt(li, h2);
        let rgb = none;
        if (v !== null) {
          const b = Math.round(Math.max(0, Math.min(1, hi > lo ? (v - lo) / (hi - lo) : 1)) * 255) * 4;
          rgb = [lut[b], lut[b + 1], lut[b + 2]];
        }
        fillRect(px, canvas.width, Math.round((left + h2 * step) * dpr), Math.round((top + li * step) * dpr),
          Math.round(cell * dpr), Math.round(cell * dpr), rgb);
      }
    }
    ctx.putImageData(img, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = THEMES[ui.theme].muted;
    ctx.font = "10px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    const every = Math.ceil(14 / step);
    for (let h2 = 0; h2 < H; h2 += every) ctx.fillText(String(h2), left + h2 * step + cell / 2, top - 3);
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let li = 0; li < L; li += Math.ceil(12 / step)) ctx.fillText(String(li), left - 5, top + li * step + cell / 2);
    if (st.picked) {
      const [pl, ph] = st.picked;
      ctx.strokeStyle = THEMES[ui.theme].fg;
      ctx.lineWidth = 2;
      ctx.strokeRect(left + ph * step - 1, top + pl * step - 1, cell + 2, cell + 2);
    }
    geo = { left, top, step, cell, dpr };
    canvas.setAttribute("aria-label", `${L} x ${H} heads coloured by ${st.stat} ${st.metric}`);
    legendSlot.textContent = "";
    legendSlot.append(legendOf(lo, hi));
  }

  function legendOf(lo, hi) {
    const wrap = el("span", "as-legend");
    const c = el("canvas", "as-legend-bar");
    c.width = 128; c.height = 1;
    const ctx = c.getContext("2d"), img = ctx.createImageData(128, 1);
    const lut = st.show === "delta" ? divergingLut(ui.theme) : rampLut(ui.theme);
    for (let x = 0; x < 128; x++) { const b = Math.round((x / 127) * 255) * 4; img.data.set(lut.subarray(b, b + 4), x * 4); }
    ctx.putImageData(img, 0, 0);
    const what = (st.show === "delta" ? "B \u2212 A " : "") + `${st.stat} ${st.metric}`;
    wrap.append(el("span", "as-label", what), el("span", "as-label as-mmin", num(lo)), c, el("span", "as-label as-mmax", num(hi)));
    return wrap;
  }

  function headAt(e) {
    const r = canvas.getBoundingClientRect(), x = e.clientX - r.left - geo.left, y = e.clientY - r.top - geo.top;
    const hi = Math.floor(x / geo.step), li = Math.floor(y / geo.step);
    if (x < 0 || y < 0 || hi >= H || li >= L || x - hi * geo.step > geo.cell || y - li * geo.step > geo.cell) return null;
    return [li, hi];
  }

  // ---- hover: the head's statistics, label shares and distribution over the texts
  function histOf(metric) {
    if (!hists[metric]) {
      const b = bytesOf(payload.hist[metric]);
      hists[metric] = new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    }
    return hists[metric];
  }
  function describeHead(li, hi) {
    const labels = meta.labels, shares = payload.shares[li][hi];
    const top = shares.map((s, i) => [s, i]).filter(([s]) => s > 0).sort((a, b) => b[0] - a[0]).slice(0, 3);
    const v = (stat) => { const x = payload.stats[stat][st.metric][li][hi]; return x === null ? "n/a" : num(x); };
    const lines = [`layer ${li} \u00b7 head ${hi}` + (payload.label[li][hi] >= 0 ? ` \u00b7 ${labels[payload.label[li][hi]]}` : ""),
      `${st.metric}: mean ${v("mean")} \u00b7 p10 ${v("p10")} \u00b7 median ${v("p50")} \u00b7 p90 ${v("p90")}`,
      "labels: " + top.map(([s, i]) => `${labels[i]} ${(100 * s).toFixed(0)}%`).join(", ")];
    if (other) {
      const a = payload.stats.mean[st.metric][li][hi], b = other.stats.mean[st.metric][li][hi];
      const lb = other.label[li][hi];
      lines.push(`B: mean ${b === null ? "n/a" : num(b)}` + (a !== null && b !== null ? ` (${b - a >= 0 ? "+" : ""}${num(b - a)})` : "") +
        (lb >= 0 ? ` \u00b7 ${labels[lb]}` : ""));
    }
    infoText.textContent = lines.join("\n");
    drawHist(li, hi);
  }
  function drawHist(li, hi) {
    const bins = meta.bins, counts2 = histOf(st.metric).subarray((li * H + hi) * bins, (li * H + hi + 1) * bins);
    const w = 240, h = 64, ctx = fitCanvas(histCanvas, w, h);
    ctx.clearRect(0, 0, w, h);
    let max = 1;
    for (const c of counts2) max = Math.max(max, c);
    ctx.fillStyle = THEMES[ui.theme].muted;
    const bw = w / bins;
    for (let i = 0; i < bins; i++) {
      const bh = (counts2[i] / max) * (h - 12);
      ctx.fillRect(i * bw + 0.5, h - 12 - bh, Math.max(1, bw - 1), bh);
    }
    const [lo, hi2] = meta.ranges[st.metric];
    ctx.fillStyle = THEMES[ui.theme].fg;
    ctx.font = "10px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    ctx.textAlign = "left";
    ctx.fillText(num(lo), 0, h);
    ctx.textAlign = "right";
    ctx.fillText(num(hi2), w, h);
    ctx.textAlign = "center";
    ctx.fillText(`${st.metric} over the texts`, w / 2, h);
    histCanvas.dataset.head = `${li},${hi}`;
  }

  // ---- click: the head's exemplar texts; click one for its head view
  function showPicked() {
    if (!st.picked) return;
    const [li, hi] = st.picked, ex = ((payload.exemplars[st.metric] || [])[li] || [])[hi] || [];
    list.textContent = "";
    list.append(el("div", "as-atlas-title", `Texts where layer ${li} \u00b7 head ${hi} is highest on ${st.metric}`));
    if (!ex.length) list.append(el("div", "as-label", "no exemplars"));
    ex.forEach(([ti, value, pq, pk], rank) => {
      const t = payload.texts[ti], item = el("button", "as-exemplar");
      item.type = "button";
      item.dataset.text = String(ti);
      item.dataset.rank = String(rank);
      const embedded = payload.embedded[`${ti}:${li}`];
      item.classList.toggle("as-has-view", !!embedded || typeof o.openText === "function");
      item.append(el("span", "as-exemplar-value", value === null ? "n/a" : num(value)), tokenLine(t, pq, pk));
      item.title = `text ${t.id}: ${t.text}\nstrongest weight: ${t.tokens[pq]} \u2192 ${t.tokens[pk]}` +
        (embedded || typeof o.openText === "function" ? "\nclick for its head view" : "");
      item.addEventListener("click", () => openText(ti, li, hi));
      list.append(item);
    });
  }
  function tokenLine(t, pq, pk) {
    const line = el("span", "as-exemplar-text"), tokens = t.tokens, shown = shownTokens(tokens, t.labels, o.prettify);
    const a = Math.max(0, Math.min(pq, pk) - 12), b = Math.min(tokens.length, Math.max(pq, pk) + 13);
    if (a > 0) line.append(el("span", "as-ellipsis", "\u2026 "));
    for (let i = a; i < b; i++) {
      const cls = i === pq && i === pk ? "as-xtok as-peak-q as-peak-k" : i === pq ? "as-xtok as-peak-q" : i === pk ? "as-xtok as-peak-k" : "as-xtok";
      line.append(el("span", cls, shown[i]), " ");
    }
    if (b < tokens.length) line.append(el("span", "as-ellipsis", "\u2026"));
    return line;
  }
  function openText(ti, li, hi) {
    const t = payload.texts[ti], embedded = payload.embedded[`${ti}:${li}`];
    detail.hidden = false;
    detailTitle.textContent = `Text ${t.id} \u00b7 layer ${li} \u00b7 head ${hi}`;
    detailRoot.textContent = "";
    detailRoot.dataset.text = String(ti);
    const opts = { layer: li, heads: [hi], theme: ui.theme, prettify: o.prettify, embedded: true };
    if (embedded) {
      views.head(detailRoot, embedded, opts);
    } else if (typeof o.openText === "function") {
      o.openText(t.text, li, hi, detailRoot);
    } else {
      detailRoot.append(el("p", "as-label", "This text's head view is not in this file (it carries the top " +
        `${Object.keys(payload.embedded).length} exemplars). Open the atlas in the web app (attnscope serve --traces ` +
        "FOLDER holding it, page Atlas) to capture any exemplar, or make the file with a larger embed=."));
    }
  }

  canvas.addEventListener("mousemove", (e) => {
    const at = headAt(e);
    canvas.style.cursor = at ? "pointer" : "default";
    if (at && (!st.hover || at[0] !== st.hover[0] || at[1] !== st.hover[1])) { st.hover = at; describeHead(at[0], at[1]); }
  });
  canvas.addEventListener("click", (e) => {
    const at = headAt(e);
    if (!at) return;
    st.picked = at;
    paint();
    describeHead(at[0], at[1]);
    showPicked();
  });

  paint();
  const best = bestHead();
  describeHead(best[0], best[1]);
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if (next.metric && meta.metrics.includes(next.metric)) { st.metric = next.metric; metricSel.set(st.metric); }
      if (next.stat) { st.stat = next.stat; statSel.set(st.stat); }
      if (next.show && other) { st.show = next.show; showSeg.set(st.show); }
      paint();
      showPicked();
    },
    destroy() { root.textContent = ""; },
    probe: {
      // where head (layer, head) is drawn in canvas.as-atlas-cells, in canvas pixels, and the value it shows
      cell: (li, hi) => ({ x: Math.round((geo.left + hi * geo.step) * geo.dpr), y: Math.round((geo.top + li * geo.step) * geo.dpr),
        size: Math.round(geo.cell * geo.dpr), css: { x: geo.left + hi * geo.step + geo.cell / 2, y: geo.top + li * geo.step + geo.cell / 2 } }),
      value: (li, hi) => valueAt(li, hi),
      range,
    },
  };

  function bestHead() {
    let best = [0, 0], bv = -Infinity;
    for (let li = 0; li < L; li++) for (let h2 = 0; h2 < H; h2++) {
      const v = valueAt(li, h2);
      if (v !== null && v > bv) { bv = v; best = [li, h2]; }
    }
    return best;
  }
};
