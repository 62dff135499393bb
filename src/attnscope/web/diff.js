// Diff view: one head of two inputs on aligned tokens (A, B and the difference B - A), each compared query row's
// Jensen-Shannon divergence, the heads ranked by how much they changed (click one to show it), and the next-token
// predictions of both inputs. Heatmaps are painted as one ImageData each; labels are text.

const DIFF_PANEL = 300;  // px: the longest side of one heatmap panel
const DIFF_MID = 127;    // index of 0 in the difference colour table (0..254)
const DIFF_INK = {  // ColorBrewer PuOr ends: orange where A attends more, purple where B does
  light: { neg: [230, 97, 1], pos: [94, 60, 153] },
  dark: { neg: [253, 184, 99], pos: [178, 171, 210] },
};

function rgbOf(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

const DIFF_LUTS = {};
// 255 RGBA colours: index DIFF_MID + round(127 * d / max), orange (A more) -> background -> purple (B more),
// intensity on a square-root scale like the weights.
function diffLut(theme) {
  if (!DIFF_LUTS[theme]) {
    const lut = new Uint8ClampedArray(255 * 4), bg = rgbOf(THEMES[theme].bg), ink = DIFF_INK[theme];
    for (let i = 0; i < 255; i++) {
      const t = (i - DIFF_MID) / DIFF_MID, c = t < 0 ? ink.neg : ink.pos, u = Math.sqrt(Math.abs(t));
      for (let j = 0; j < 3; j++) lut[i * 4 + j] = bg[j] + (c[j] - bg[j]) * u;
      lut[i * 4 + 3] = 255;
    }
    DIFF_LUTS[theme] = lut;
  }
  return DIFF_LUTS[theme];
}

// The aligned slots of one axis: a label (shared token, or "A-span -> B-span"), the raw tokens, and which inputs
// have tokens there.
function diffSlots(axis, prettify) {
  const ta = shownTokens(axis.a, axis.aLabels, prettify), tb = shownTokens(axis.b, axis.bLabels, prettify);
  const shown = (toks, a, b) => toks.slice(a, b).join(" ") || "\u2205";
  return axis.slots.map(([a0, a1, b0, b1, shared]) => ({
    label: shared ? ta[a0] : `${shown(ta, a0, a1)} \u2192 ${shown(tb, b0, b1)}`,
    title: shared ? axis.a[a0] : `A: ${axis.a.slice(a0, a1).join(" ") || "(none)"}\nB: ${axis.b.slice(b0, b1).join(" ") || "(none)"}`,
    shared: !!shared, inA: a1 > a0, inB: b1 > b0,
  }));
}

function diffLegend() {
  const wrap = el("span", "as-legend");
  const c = el("canvas", "as-legend-bar");
  c.width = 127; c.height = 1;
  const text = el("span", "as-label");
  wrap.append(el("span", "as-label", "A more"), c, el("span", "as-label", "B more"), text);
  return {
    node: wrap,
    paint(theme, max) {
      const ctx = c.getContext("2d"), img = ctx.createImageData(127, 1), lut = diffLut(theme);
      for (let x = 0; x < 127; x++) img.data.set(lut.subarray(x * 2 * 4, x * 2 * 4 + 4), x * 4);
      ctx.putImageData(img, 0, 0);
      text.textContent = `(\u00b1${fmt(max, 3)}, \u221a scale)`;
    },
  };
}

views.diff = function renderDiff(root, p, options) {
  const o = Object.assign({ prettify: true, theme: "auto" }, options);
  const ui = frame(root, p, o, "diff");
  const [nq, nk] = p.shape, layers = p.layers, heads = p.heads;
  const divergence = new Float32Array(bytesOf(p.divergence).buffer);
  const rowOf = new Map(p.rows.map((slot, r) => [slot, r]));  // query slot -> its compared row
  const st = { li: Math.max(0, layers.indexOf(o.layer)), hi: Math.max(0, heads.indexOf(o.head)) };
  const cache = new Map();
  const decoded = (key, make) => {
    if (!cache.has(key)) {
      if (cache.size >= 96) cache.delete(cache.keys().next().value);
      cache.set(key, make());
    }
    return cache.get(key);
  };
  const weights = (side, li, hi) => decoded(side + li + "," + hi, () => valuesOf(p[side][li][hi], p.dtype));
  const rowDivergence = (li, hi) => decoded("r" + li + "," + hi, () => valuesOf(p.rowDivergence[li][hi], "f16"));
  let qs = null, ks = null;

  // ---- toolbar
  const layerSel = selectControl("Layer", layers.map((l, li) => ({ value: li, text: String(l) })), st.li,
    (li) => { st.li = li; paint(); });
  const headSel = selectControl("Head", heads.map((h, hi) => ({ value: hi, text: String(h) })), st.hi,
    (hi) => { st.hi = hi; paint(); });
  const weightLegend = el("span", "as-slot"), dLegend = diffLegend();
  ui.bar.append(layerSel.node, headSel.node, weightLegend, dLegend.node);

  // ---- the two inputs
  const texts = el("div", "as-diff-texts");
  for (const side of ["a", "b"]) {
    const line = el("div", "as-diff-text");
    line.append(el("span", "as-diff-badge", side.toUpperCase()), el("span", "as-diff-words", p.texts[side]));
    texts.append(line);
  }

  // ---- heatmaps: row labels | A | B | B - A | row divergence
  const main = el("div", "as-diff-main");
  const title = el("div", "as-diff-title");
  const grid = el("div", "as-diff-grid");
  const rowLabels = el("div", "as-mrows");
  const panels = ["A", "B", "B \u2212 A"].map((name) => {
    const plot = el("div", "as-plot"), canvas = el("canvas", "as-heat"), cursor = el("div", "as-cursor");
    cursor.hidden = true;
    plot.append(canvas, cursor);
    return { name, head: el("div", "as-diff-ph", name), cols: el("div", "as-mcols"), plot, canvas, cursor };
  });
  const strip = el("canvas", "as-diff-strip");
  strip.title = `Jensen-Shannon divergence of each compared query row; darkest: ${fmt(p.rowMax, 3)} bits, the largest of any head`;
  const stripHead = el("div", "as-diff-ph", "JS");
  grid.append(el("span"), ...panels.map((x) => x.head), stripHead);
  grid.append(el("span", "as-corner"), ...panels.map((x) => x.cols), el("span"));
  grid.append(rowLabels, ...panels.map((x) => x.plot), strip);
  main.append(title, grid);

  // ---- ranked heads
  const side = el("div", "as-ranked-box");
  side.append(el("div", "as-label", "Most changed heads (JS divergence, bits)"));
  const list = el("ol", "as-ranked");
  const top = p.ranked.length ? divergence[p.ranked[0][0] * heads.length + p.ranked[0][1]] : 0;
  const items = p.ranked.map(([li, hi], r) => {
    const d = divergence[li * heads.length + hi];
    const b = el("button", "as-rank");
    b.type = "button";
    b.dataset.li = String(li);
    b.dataset.hi = String(hi);
    b.title = `layer ${layers[li]}, head ${heads[hi]}: click to show it`;
    const bar = el("span", "as-rank-bar");
    bar.style.width = (top > 0 ? (100 * d) / top : 0).toFixed(1) + "%";
    const track = el("span", "as-rank-track");
    track.append(bar);
    b.append(el("span", "as-rank-n", r + 1), el("span", "as-rank-name", `L${layers[li]} H${heads[hi]}`), track,
      el("span", "as-rank-v", fmt(d, 3)));
    const li_ = el("li");
    li_.append(b);
    list.append(li_);
    return b;
  });
  side.append(list);
  list.addEventListener("click", (e) => {
    const b = e.target.closest && e.target.closest(".as-rank");
    if (!b) return;
    st.li = Number(b.dataset.li);
    st.hi = Number(b.dataset.hi);
    paint();
  });

  const layout = el("div", "as-diff");
  layout.append(main, side);
  ui.body.append(texts, layout);
  if (p.next) ui.body.append(nextTable(p.next));
  let geo = null;

  function nextTable(next) {
    const table = el("table", "as-next");
    table.append(el("caption", null, "Next-token predictions: probability after each input"));
    const head = el("tr");
    for (const h of ["#", "after A", "p", "p after B", "after B", "p", "p after A"]) head.append(el("th", null, h));
    const thead = el("thead");
    thead.append(head);
    const body = el("tbody");
    for (let r = 0; r < Math.max(next.a.length, next.b.length); r++) {
      const row = el("tr");
      row.append(el("td", "as-num", r + 1));
      for (const x of [next.a[r], next.b[r]]) {
        const tok = el("td", "as-next-tok", x ? (o.prettify === false ? x.token : x.label) : "");
        if (x) tok.title = JSON.stringify(x.text);
        row.append(tok, el("td", "as-num", x ? fmt(x.prob, 3) : ""), el("td", "as-num as-muted", x ? fmt(x.other, 3) : ""));
      }
      body.append(row);
    }
    table.append(thead, body);
    return table;
  }

  function labels(box, slots, cell, vertical) {
    box.textContent = "";
    const size = Math.min(12.5, cell - 2), show = cell >= 9;
    box.classList.toggle("as-hidden-labels", !show);
    let longest = 0;
    slots.forEach((s, i) => {
      const span = el("span", "as-mlabel" + (s.shared ? "" : " as-changed"), s.label);
      span.title = s.title;
      span.dataset.i = String(i);
      span.style[vertical ? "width" : "height"] = cell + "px";
      span.style.fontSize = size + "px";
      box.append(span);
      if (show) longest = Math.max(longest, textWidth(s.label, `${s.shared ? 400 : 600} ${size}px system-ui, sans-serif`));
    });
    return show ? Math.min(Math.ceil(longest) + 12, 140) : 0;
  }

  function layoutGrid() {
    qs = diffSlots(p.query, o.prettify);
    ks = p.key ? diffSlots(p.key, o.prettify) : qs;
    const cell = Math.max(2, Math.min(24, Math.floor(DIFF_PANEL / Math.max(nq, nk, 1))));
    let colH = 0;
    for (const x of panels) {
      colH = labels(x.cols, ks, cell, true);
      x.canvas.width = Math.max(1, nk);
      x.canvas.height = Math.max(1, nq);
      x.canvas.style.width = nk * cell + "px";
      x.canvas.style.height = nq * cell + "px";
    }
    const rowW = labels(rowLabels, qs, cell, false);
    const sw = Math.max(cell, 10);
    strip.width = 1;
    strip.height = Math.max(1, nq);
    strip.style.width = sw + "px";
    strip.style.height = nq * cell + "px";
    grid.style.gridTemplateColumns = `${rowW}px repeat(3, ${nk * cell}px) ${sw}px`;
    grid.style.gridTemplateRows = `auto ${colH}px ${nq * cell}px`;
    geo = { cell };
    weightLegend.textContent = "";
    weightLegend.append(legend(ui.theme));
  }

  function paint() {
    const { li, hi } = st, A = weights("a", li, hi), B = weights("b", li, hi), rd = rowDivergence(li, hi);
    const heat = heatLut(ui.theme), dl = diffLut(ui.theme), gap = rgbOf(THEMES[ui.theme].grid);
    let max = 0, top = 0;  // the largest |B - A|, and the largest weight shown (colours scale to it when p.scaled)
    for (let i = 0; p.scaled && i < nq; i++) {
      for (let j = 0; j < nk; j++) top = Math.max(top, qs[i].inA ? A[i * nk + j] : 0, qs[i].inB ? B[i * nk + j] : 0);
    }
    const gain = p.scaled && top > 0 ? 1 / top : 1;
    for (let i = 0; i < nq; i++) {
      if (!qs[i].inA || !qs[i].inB) continue;
      for (let j = 0; j < nk; j++) max = Math.max(max, Math.abs(B[i * nk + j] - A[i * nk + j]));
    }
    const images = panels.map((x) => x.canvas.getContext("2d").createImageData(Math.max(1, nk), Math.max(1, nq)));
    const put = (img, d, lut, idx) => { img.data[d] = lut[idx]; img.data[d + 1] = lut[idx + 1]; img.data[d + 2] = lut[idx + 2]; img.data[d + 3] = 255; };
    const blank = (img, d) => { img.data[d] = gap[0]; img.data[d + 1] = gap[1]; img.data[d + 2] = gap[2]; img.data[d + 3] = 255; };
    for (let i = 0; i < nq; i++) {
      const inA = qs[i].inA, inB = qs[i].inB;
      for (let j = 0; j < nk; j++) {
        const n = i * nk + j, d = n * 4;
        if (inA) put(images[0], d, heat, toSqrt8(A[n] * gain) * 4); else blank(images[0], d);
        if (inB) put(images[1], d, heat, toSqrt8(B[n] * gain) * 4); else blank(images[1], d);
        if (inA && inB) put(images[2], d, dl, (DIFF_MID + Math.round((max > 0 ? (B[n] - A[n]) / max : 0) * DIFF_MID)) * 4);
        else blank(images[2], d);
      }
    }
    panels.forEach((x, t) => x.canvas.getContext("2d").putImageData(images[t], 0, 0));
    const sctx = strip.getContext("2d"), simg = sctx.createImageData(1, Math.max(1, nq));
    for (let i = 0; i < nq; i++) {
      if (rowOf.has(i)) put(simg, i * 4, heat, toSqrt8(p.rowMax > 0 ? rd[rowOf.get(i)] / p.rowMax : 0) * 4);
      else blank(simg, i * 4);
    }
    sctx.putImageData(simg, 0, 0);
    dLegend.paint(ui.theme, max);
    const end = weightLegend.querySelector(".as-label:last-child");
    if (end) end.textContent = `${p.scaled ? fmt(top, 3) : 1} (\u221a scale)`;
    const d = divergence[li * heads.length + hi];
    let rank = 1;
    for (const v of divergence) if (v > d) rank++;
    title.textContent = `Layer ${layers[li]} \u00b7 head ${heads[hi]} \u00b7 JS divergence ${fmt(d, 3)} bits \u00b7 rank ${rank} of ${divergence.length}`;
    layerSel.set(li);
    headSel.set(hi);
    items.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.li) === li && Number(b.dataset.hi) === hi)));
    root.dataset.layer = String(layers[li]);
    root.dataset.head = String(heads[hi]);
    root.dataset.maxDiff = String(max);
    if (o.onHead) o.onHead(layers[li], heads[hi]);
  }

  function describeDiff() {
    const parts = [];
    if (p.meta && p.meta.model) parts.push(p.meta.model);
    parts.push(`${KIND_LABEL[p.kind] || p.kind} attention`, `${layers.length} layers \u00d7 ${heads.length} heads`);
    const changed = qs.filter((s) => !s.shared).length;
    parts.push(`${nq} aligned tokens` + (changed ? `, ${changed} differing span${changed > 1 ? "s" : ""}` : ", identical"));
    let mean = 0;
    for (const v of divergence) mean += v / divergence.length;
    parts.push(`mean JS divergence ${fmt(mean, 3)} bits over ${p.rows.length} compared rows`);
    const v = verifiedNote(p.meta && p.meta.verified);
    if (v) parts.push(v.text);
    ui.caption.textContent = parts.join(" \u00b7 ");
    ui.caption.classList.toggle("as-warn", v !== null && !v.ok);
    if (v) ui.caption.dataset.verified = v.ok ? "ok" : "failed";
  }

  // ---- hover: the same cell outlined in all three panels, its weights in the tooltip
  function mark(box, i) {
    for (const s of box.children) s.classList.toggle("as-on", s.dataset.i === String(i));
  }
  function hover(e, canvas) {
    const rect = canvas.getBoundingClientRect(), cell = geo.cell;
    const c = Math.floor((e.clientX - rect.left) / cell), r = Math.floor((e.clientY - rect.top) / cell);
    if (c < 0 || r < 0 || c >= nk || r >= nq) return;
    for (const x of panels) {
      Object.assign(x.cursor.style, { left: c * cell + "px", top: r * cell + "px", width: cell + "px", height: cell + "px" });
      x.cursor.hidden = false;
      mark(x.cols, c);
    }
    mark(rowLabels, r);
    root.dataset.hover = `${r},${c}`;
    const n = r * nk + c, a = weights("a", st.li, st.hi)[n], b = weights("b", st.li, st.hi)[n];
    const inA = qs[r].inA, inB = qs[r].inB;
    const lines = [`query: ${qs[r].label}`, `key: ${ks[c].label}`, `A ${inA ? fmt(a, 4) : "\u2014"}`, `B ${inB ? fmt(b, 4) : "\u2014"}`];
    if (inA && inB) lines.push(`B \u2212 A ${b - a >= 0 ? "+" : ""}${fmt(b - a, 4)}`);
    if (rowOf.has(r)) lines.push(`row JS ${fmt(rowDivergence(st.li, st.hi)[rowOf.get(r)], 4)} bits`);
    ui.tip.show(lines, e.clientX, e.clientY);
  }
  function leave() {
    for (const x of panels) { x.cursor.hidden = true; mark(x.cols, -1); }
    mark(rowLabels, -1);
    ui.tip.hide();
  }
  for (const x of panels) {
    x.canvas.addEventListener("mousemove", (e) => hover(e, x.canvas));
    x.canvas.addEventListener("mouseleave", leave);
  }

  layoutGrid();
  describeDiff();
  paint();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if (next.layer !== undefined && layers.includes(next.layer)) st.li = layers.indexOf(next.layer);
      if (next.head !== undefined && heads.includes(next.head)) st.hi = heads.indexOf(next.head);
      layoutGrid();
      paint();
    },
    destroy() { root.textContent = ""; },
  };
};

// ---- Units and Hide sinks: the controls of web/units.js. A state changes which tokens line up and every head's
// divergence, so the payload carries the comparison at each state the controls offer (views/_diff_units.py) and a
// switch redraws the view from that state's payload, on the same head; the note says what the hidden tokens held
// in each input.
function withDiffUnits(render) {
  return function renderDiffWithUnits(root, payload, options) {
    const u = payload.units;
    if (options.embedded || !u) return render(root, payload, options);
    const [level0, hide0, renorm0] = u.state.split("|");
    const st = { level: level0, hide: hide0 === "1", renorm: renorm0 === "1" };
    const at = { layer: options.layer, head: options.head };
    const note = el("div", "as-units-note");
    const key = (s) => `${s.level}|${s.hide ? 1 : 0}|${s.hide && s.renorm ? 1 : 0}`;
    const shownOf = (s) => (key(s) === u.state ? payload : u.variants[key(s)]);
    let view = null, shown = payload;

    function draw() {
      if (view) view.destroy();
      shown = shownOf(st);
      view = render(root, shown, Object.assign({}, options, at, {
        onHead(layer, head) { at.layer = layer; at.head = head; writeNote(); },
      }));
      const bar = root.querySelector(":scope > .as-bar");
      if (bar) bar.append(controls());
      root.append(note);
      writeNote();
    }

    // A state the payload lacks: the nearest one it has (sinks shown, then not renormalised).
    function settle() {
      if (!shownOf(st)) st.renorm = false;
      if (!shownOf(st)) st.hide = false;
    }

    function controls() {
      const wrap = el("span", "as-slot as-units");
      const items = ["token", ...u.levels].map((l) => ({ value: l, text: LEVEL_TEXT[l] }));
      const sel = selectControl("Units", items, st.level, (l) => { st.level = l; settle(); draw(); });
      sel.select.title = "Tokens, or words, sentences, paragraphs: both inputs compared again over those units";
      wrap.append(sel.node);
      if (u.sinks) {
        const hidden = Object.assign({}, st, { hide: true }), why = u.missing[key(hidden)];
        const hide = toggle("Hide sinks", st.hide, why ? `Not at this level: ${why}` : "Leave out " +
          `${names(diffSinkNames(u.sinks.labels))} in both inputs and say how much attention they held; colours scale ` +
          "to what is shown", (on) => { st.hide = on; settle(); draw(); });
        hide.disabled = !!why && !st.hide;
        wrap.append(hide);
        if (st.hide) {
          const renormed = Object.assign({}, st, { renorm: true }), gone = u.missing[key(renormed)];
          const renorm = toggle("Renormalise", st.renorm, gone ? `Not at this level: ${gone}` : "Divide each row " +
            "by what is shown", (on) => { st.renorm = on; settle(); draw(); });
          renorm.disabled = !!gone && !st.renorm;
          wrap.append(renorm);
        }
      }
      return wrap;
    }

    function writeNote() {
      const parts = [];
      if (st.level !== "token") {
        const w = LEVEL_ONE[st.level];
        parts.push(`${LEVEL_TEXT[st.level]}: attention to a ${w} sums its pieces, attention from a ${w} averages ` +
          "them; both inputs lined up and compared over them");
      }
      if (st.hide && u.sinks) {
        const li = shown.layers.indexOf(at.layer), hi = shown.heads.indexOf(at.head);
        if (li >= 0 && hi >= 0) parts.push(diffHeldText(u.sinks, li, hi));
        parts.push("colours scale to the largest weight shown");
        if (st.renorm) parts.push("rows renormalised over what is shown");
      }
      note.textContent = parts.join(" \u00b7 ");
      note.hidden = !parts.length;
    }

    draw();
    return {
      update(next) {
        if (["by", "hideSinks", "renormalize"].some((k) => k in next)) {
          if ("by" in next) st.level = u.levels.includes(next.by) ? next.by : "token";
          if ("hideSinks" in next) st.hide = !!next.hideSinks && !!u.sinks;
          if ("renormalize" in next) st.renorm = !!next.renormalize;
          settle();
          draw();
        } else {
          if (next.layer !== undefined) at.layer = next.layer;
          if (next.head !== undefined) at.head = next.head;
          Object.assign(options, next);
          view.update(next);
        }
      },
      destroy() { if (view) view.destroy(); },
      units: { state: () => Object.assign({}, st), note: () => note.textContent },  // test hook
    };
  };
}

function diffSinkNames(labels) {
  return [...new Set([...labels.a, ...labels.b])];
}

// "first token hidden: it held 71 % of this head's attention in A, 64 % in B" (shares of head li, hi).
function diffHeldText(sinks, li, hi) {
  const pct = (v) => `${Math.round(100 * v)} %`, { a, b } = sinks.labels;
  const ha = pct(sinks.held.a[li][hi]), hb = pct(sinks.held.b[li][hi]);
  const it = (labels) => (labels.length === 1 ? "it" : "they");
  if (a.join("\u0000") === b.join("\u0000")) {
    return `${names(a)} hidden: ${it(a)} held ${ha} of this head's attention in A, ${hb} in B`;
  }
  const side = (name, labels, share) => (labels.length ? `in ${name} ${names(labels)} (${share})` : `nothing in ${name}`);
  return `hidden: ${side("A", a, ha)}, ${side("B", b, hb)} of this head's attention`;
}

views.diff = withDiffUnits(views.diff);
