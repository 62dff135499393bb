// Disagreement view: for one layer and query token, raw attention, attention rollout and each context-mixing
// measure as bar charts over the keys (each titled with its Spearman rank correlation with attention), beside the
// layer x head grid coloured by how much one measure disagrees with each head. Bars and grid are canvases; every
// token is drawn as text (fillText) or set with textContent.

const DIS_BAR_H = 54;     // px: height of one bar chart
const DIS_WIDTH = 760;    // px: the bar charts' width budget
const DIS_GRID = 340;     // px: the grid's longest side
const DIS_LABEL_H = 64;   // px: the rotated key labels under the bars

views.disagreement = function renderDisagreement(root, p, options) {
  const o = Object.assign({ prettify: true, theme: "auto", rolled: false }, options);
  const ui = frame(root, p, o, "disagreement");
  const L = p.layers, H = p.heads, n = p.n;
  const byName = new Map(p.series.map((s) => [s.name, s]));
  const floats = (b64) => new Float32Array(bytesOf(b64).buffer);
  const rho = {}, grid = {};
  for (const [k, v] of Object.entries(p.rho)) rho[k] = floats(v);
  for (const [k, v] of Object.entries(p.grid)) grid[k] = floats(v);
  const measures = Object.keys(p.grid);
  const st = {
    layer: Math.min(L - 1, Math.max(0, o.layer ?? L - 1)), query: Math.min(n - 1, Math.max(0, o.query ?? 0)),
    head: Number.isInteger(o.head) ? o.head : null, measure: measures.includes(o.measure) ? o.measure : measures[0],
    rolled: !!o.rolled,
  };
  const cache = new Map();
  // One series' row over the keys at (layer, query): a head's, or the mean of the heads (st.head null).
  function row(s, layer, query, head) {
    const key = `${s.name}|${layer}|${head}`;
    let m = cache.get(key);
    if (!m) {
      if (!s.perHead) m = valuesOf(s.values[layer], "f16");
      else if (head !== null) m = valuesOf(s.values[layer][head], "f16");
      else {
        m = new Float32Array(n * n);
        for (let h = 0; h < H; h++) {
          const v = valuesOf(s.values[layer][h], "f16");
          for (let i = 0; i < v.length; i++) m[i] += v[i] / H;
        }
      }
      if (cache.size > 64) cache.delete(cache.keys().next().value);
      cache.set(key, m);
    }
    return m.subarray(query * n, query * n + n);
  }
  const rhoOf = (name, layer, query, head) => rho[name] ? rho[name][(layer * (H + 1) + (head === null ? H : head)) * n + query] : NaN;
  // attention and its rollout always; each measure per layer, or (rolled) its rollout where it has one
  const shown = () => p.series.filter((s) => {
    if (s.name === p.attention || s.name === "rollout") return true;
    if (s.rolled) return st.rolled;
    return !st.rolled || !byName.has(s.name + "_rollout");
  });
  const colorOf = (s) => s.name === p.attention ? THEMES[ui.theme].heat[4].slice(1) : rgbList(PALETTE[(p.series.indexOf(s) + 1) % PALETTE.length]);

  // ---- toolbar
  const layerSel = selectControl("Layer", Array.from({ length: L }, (_, l) => ({ value: l, text: String(l) })), st.layer,
    (l) => { st.layer = l; draw(); });
  const headItems = [{ value: null, text: "mean of heads" }, ...Array.from({ length: H }, (_, h) => ({ value: h, text: String(h) }))];
  const headSel = selectControl("Head", headItems, st.head, (h) => { st.head = h; draw(); });
  const tokenTexts = () => shownTokens(p.tokens, p.labels, o.prettify);  // what is drawn for each token (core.js)
  const querySel = selectControl("Query", tokenTexts().map((t, i) => ({ value: i, text: `${i}: ${t}`, title: p.tokens[i] })),
    st.query, (q) => { st.query = q; draw(); });
  const gridSel = selectControl("Grid", measures.map((m) => ({ value: m, text: byName.get(m).label })), st.measure,
    (m) => { st.measure = m; draw(); });
  const rolledBox = el("input");
  rolledBox.type = "checkbox";
  rolledBox.checked = st.rolled;
  rolledBox.addEventListener("change", () => { st.rolled = rolledBox.checked; layoutBars(); draw(); });
  const rolledField = el("label", "as-field");
  rolledField.title = "Show the layer-level measures rolled out across layers (their papers' aggregation)";
  rolledField.append(rolledBox, el("span", "as-label", "measures rolled out"));
  ui.bar.append(layerSel.node, headSel.node, querySel.node, gridSel.node, rolledField);

  // ---- bars | grid
  const layout = el("div", "as-dis");
  const bars = el("div", "as-dis-bars");
  const side = el("div", "as-dis-side");
  const gridTitle = el("div", "as-dis-title");
  const gridCanvas = el("canvas", "as-dis-grid");
  const gridNote = el("div", "as-label as-dis-note");
  side.append(gridTitle, gridCanvas, gridLegend(), gridNote);
  layout.append(bars, side);
  ui.body.append(layout);
  const cw = Math.max(3, Math.min(36, Math.floor(DIS_WIDTH / Math.max(1, n))));
  let panels = [], labelCanvas = null;

  function rgbList(hex) { return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)); }

  function gridLegend() {
    const wrap = el("span", "as-legend");
    const c = el("canvas", "as-legend-bar");
    c.width = 128; c.height = 1;
    const ctx = c.getContext("2d"), img = ctx.createImageData(128, 1), lut = heatLut(ui.theme);
    for (let x = 0; x < 128; x++) img.data.set(lut.subarray(Math.round((x / 127) * 255) * 4, Math.round((x / 127) * 255) * 4 + 4), x * 4);
    ctx.putImageData(img, 0, 0);
    wrap.append(el("span", "as-label", "0 same ranking"), c, el("span", "as-label", "1 reversed"));
    return wrap;
  }

  function layoutBars() {
    bars.textContent = "";
    panels = shown().map((s) => {
      const box = el("div", "as-dis-row");
      const head = el("div", "as-dis-head");
      const name = el("span", "as-dis-name", s.label);
      const stat = el("span", "as-dis-rho");
      head.append(name, stat);
      const canvas = el("canvas", "as-dis-bar");
      canvas.dataset.series = s.name;
      box.append(head, canvas);
      bars.append(box);
      canvas.addEventListener("mousemove", (e) => hoverBar(e, s, canvas));
      canvas.addEventListener("mouseleave", () => ui.tip.hide());
      canvas.addEventListener("click", (e) => pickKey(e, canvas));
      return { s, canvas, stat, ctx: fitCanvas(canvas, n * cw, DIS_BAR_H) };
    });
    labelCanvas = el("canvas", "as-dis-labels");
    labelCanvas.title = "Click a token to make it the query";
    labelCanvas.addEventListener("click", (e) => pickKey(e, labelCanvas));
    bars.append(labelCanvas);
  }

  function keyAt(e, canvas) {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - r.left) / cw);
    return j >= 0 && j < n ? j : -1;
  }
  function pickKey(e, canvas) {
    const j = keyAt(e, canvas);
    if (j >= 0) { st.query = j; draw(); }
  }
  function hoverBar(e, s, canvas) {
    const j = keyAt(e, canvas);
    if (j < 0) { ui.tip.hide(); return; }
    const v = row(s, st.layer, st.query, s.perHead ? st.head : null);
    const text = tokenTexts();
    ui.tip.show([`${s.label}`, `query ${st.query}: ${text[st.query]}`, `key ${j}: ${text[j]}`, `value ${fmt(v[j], 4)}`],
      e.clientX, e.clientY);
  }

  function drawBars() {
    const th = THEMES[ui.theme];
    const visible = p.causal ? st.query + 1 : n;
    for (const pn of panels) {
      const { s, ctx, stat } = pn;
      const v = row(s, st.layer, st.query, s.perHead ? st.head : null);
      let max = 0;
      for (let j = 0; j < n; j++) max = Math.max(max, v[j]);
      ctx.clearRect(0, 0, n * cw, DIS_BAR_H);
      ctx.fillStyle = th.grid;
      ctx.globalAlpha = 0.35;
      ctx.fillRect(st.query * cw, 0, cw, DIS_BAR_H);  // the query token's own column
      ctx.globalAlpha = 1;
      ctx.fillRect(0, DIS_BAR_H - 1, n * cw, 1);
      const [r, g, b] = colorOf(s);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      for (let j = 0; j < visible; j++) {
        const h = max > 0 ? Math.round((v[j] / max) * (DIS_BAR_H - 4)) : 0;
        if (h > 0) ctx.fillRect(j * cw + 1, DIS_BAR_H - 1 - h, Math.max(1, cw - 2), h);
      }
      const rr = s.name === p.attention ? NaN : rhoOf(s.name, st.layer, st.query, st.head);
      stat.textContent = s.name === p.attention ? `max ${fmt(max, 3)}`
        : `\u03c1 ${Number.isFinite(rr) ? fmt(rr, 2) : "n/a"} vs attention \u00b7 max ${fmt(max, 3)}`;
      stat.dataset.rho = Number.isFinite(rr) ? String(rr) : "";
      pn.canvas.dataset.max = String(max);
    }
    const ctx = fitCanvas(labelCanvas, n * cw + DIS_LABEL_H, DIS_LABEL_H);  // room for the last rotated label
    ctx.font = TOKEN_FONT;
    ctx.textBaseline = "middle";
    const text = tokenTexts();
    for (let j = 0; j < n; j++) {
      ctx.save();
      ctx.translate(j * cw + cw / 2, 4);
      ctx.rotate(Math.PI / 3);
      ctx.fillStyle = j === st.query ? th.fg : th.muted;
      ctx.font = (j === st.query ? "600 " : "") + TOKEN_FONT;
      ctx.fillText(text[j].slice(0, 14), 0, 0);
      ctx.restore();
    }
  }

  function drawGrid() {
    const g = grid[st.measure], cell = Math.max(6, Math.min(28, Math.floor(DIS_GRID / Math.max(L, H))));
    const ctx = fitCanvas(gridCanvas, H * cell, L * cell), lut = heatLut(ui.theme), th = THEMES[ui.theme];
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const d = g[l * H + h];
        if (Number.isFinite(d)) {
          const b = Math.max(0, Math.min(255, Math.round(d * 255))) * 4;
          ctx.fillStyle = `rgb(${lut[b]},${lut[b + 1]},${lut[b + 2]})`;
        } else ctx.fillStyle = th.grid;
        ctx.fillRect(h * cell, l * cell, cell - 1, cell - 1);
      }
    }
    ctx.strokeStyle = th.fg;
    ctx.lineWidth = 2;
    if (st.head === null) ctx.strokeRect(1, st.layer * cell + 1, H * cell - 3, cell - 3);
    else ctx.strokeRect(st.head * cell + 1, st.layer * cell + 1, cell - 3, cell - 3);
    gridCanvas.dataset.cell = String(cell);
    gridTitle.textContent = `Disagreement with attention: ${byName.get(st.measure).label}`;
    let mean = 0, count = 0;
    for (const d of g) if (Number.isFinite(d)) { mean += d; count++; }
    gridNote.textContent = `rows: layers 0\u2013${L - 1}, columns: heads 0\u2013${H - 1}; (1 \u2212 \u03c1) / 2 averaged over query rows` +
      (count ? `; mean ${fmt(mean / count, 3)}` : "") + "; click a head to show it";
  }

  function gridAt(e) {
    const r = gridCanvas.getBoundingClientRect(), cell = Number(gridCanvas.dataset.cell);
    const h = Math.floor((e.clientX - r.left) / cell), l = Math.floor((e.clientY - r.top) / cell);
    return h >= 0 && h < H && l >= 0 && l < L ? { l, h } : null;
  }
  gridCanvas.addEventListener("mousemove", (e) => {
    const at = gridAt(e);
    if (!at) { ui.tip.hide(); return; }
    const d = grid[st.measure][at.l * H + at.h];
    ui.tip.show([`layer ${at.l} \u00b7 head ${at.h}`, `${byName.get(st.measure).label}`,
      `disagreement ${Number.isFinite(d) ? fmt(d, 3) : "n/a"} (mean \u03c1 ${Number.isFinite(d) ? fmt(1 - 2 * d, 2) : "n/a"})`],
    e.clientX, e.clientY);
  });
  gridCanvas.addEventListener("mouseleave", () => ui.tip.hide());
  gridCanvas.addEventListener("click", (e) => {
    const at = gridAt(e);
    if (at) { st.layer = at.l; st.head = at.h; draw(); }
  });

  function caption() {
    const parts = [];
    if (p.meta && p.meta.model) parts.push(p.meta.model);
    parts.push(`${L} layers \u00d7 ${H} heads`, `${n} tokens`);
    parts.push(`measures: ${p.series.filter((s) => s.name !== p.attention && !s.rolled).map((s) => s.label).join("; ")}`);
    const v = verifiedNote(p.meta && p.meta.verified);
    if (v) parts.push(v.text);
    ui.caption.textContent = parts.join(" \u00b7 ");
    ui.caption.classList.toggle("as-warn", v !== null && !v.ok);
    if (v) ui.caption.dataset.verified = v.ok ? "ok" : "failed";
  }

  function draw() {
    layerSel.set(st.layer);
    headSel.set(st.head);
    querySel.set(st.query);
    gridSel.set(st.measure);
    drawBars();
    drawGrid();
    root.dataset.layer = String(st.layer);
    root.dataset.query = String(st.query);
    root.dataset.head = st.head === null ? "mean" : String(st.head);
    root.dataset.measure = st.measure;
  }

  layoutBars();
  caption();
  draw();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      for (const k of ["layer", "query", "head", "measure"]) if (next[k] !== undefined) st[k] = next[k];
      if (next.rolled !== undefined) { st.rolled = !!next.rolled; rolledBox.checked = st.rolled; layoutBars(); }
      draw();
    },
    destroy() { root.textContent = ""; },
    // test hook: what is drawn, as numbers
    current() {
      const rows = {};
      for (const pn of panels) {
        const s = pn.s, v = row(s, st.layer, st.query, s.perHead ? st.head : null);
        rows[s.name] = { values: Array.from(v), rho: s.name === p.attention ? null : rhoOf(s.name, st.layer, st.query, st.head) };
      }
      return { layer: st.layer, query: st.query, head: st.head, measure: st.measure, rolled: st.rolled, rows,
        grid: Array.from(grid[st.measure]) };
    },
  };
};
