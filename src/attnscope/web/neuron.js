// Neuron view: for one layer, head and query token, how attention is computed: the query vector, every key
// vector, their element-wise product, the scaled dot product and the softmax, as colour bars
// (blue positive, orange negative, intensity = magnitude), with lines to the keys weighted by attention.
// Keys sit in the token window (window.js): only those on screen are drawn, so it works at any length; the query is
// picked by clicking a token, from the toolbar, or by search. q/k payloads give the exact softmax of the model's own
// rule (window, soft-capping, sinks: recompute.js); a layer whose vectors are on the server is fetched on first use.

const N_FONT = "10.5px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
const QUERY_LIST = 1024;  // up to this many queries the toolbar lists them all; past it, a number field

// "[CLS] and [SEP]": the names of the tokens Hide sinks leaves out.
function neuronSinkNames(labels) {
  return labels.length === 1 ? labels[0] : labels.slice(0, -1).join(", ") + " and " + labels[labels.length - 1];
}

views.neuron = function renderNeuron(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "neuron");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, hi: 0, query: 0, last: null, match: null };
  const startKind = (kind) => {
    st.kind = kind;
    st.li = Math.max(0, kind.layers.indexOf(o.layer));
    st.hi = Math.max(0, kind.heads.indexOf(o.head));
    st.query = Math.min(kind.q - 1, Math.max(0, o.query === undefined ? 0 : o.query));
  };
  startKind(st.kind);

  const kindSel = kindControl(kinds, st.kind, (name) => { startKind(kinds.get(name)); rebuild(); });
  const layerSel = selectControl("Layer", [], 0, (li) => { st.li = li; draw(); });
  const headSel = selectControl("Head", [], 0, (hi) => { st.hi = hi; draw(); });
  const querySel = selectControl("Query", [], 0, (i) => pick(i));
  const queryNum = el("input", "as-select as-query-num");
  queryNum.type = "number";
  queryNum.min = "0";
  queryNum.setAttribute("aria-label", "Query token index");
  queryNum.addEventListener("change", () => pick(Math.round(Number(queryNum.value)) || 0));
  const queryField = field("Query", queryNum);
  const search = searchControl((text, step) => find(text, step));
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(layerSel.node, headSel.node, querySel.node, queryField, search.node);
  // Hide sinks (views/_units.py sinks_payload): the keys left out of the lines and bars, what they held said below
  const sinks = payload.sinks, sinkNote = el("div", "as-units-note");
  st.hide = !!(sinks && o.hideSinks);
  sinkNote.hidden = true;
  let hideBtn = null;
  if (sinks) {
    hideBtn = el("button", "as-units-btn", "Hide sinks");
    hideBtn.type = "button";
    hideBtn.title = `Leave out ${neuronSinkNames(sinks.labels)} and say how much of this query's attention they held`;
    hideBtn.setAttribute("aria-pressed", String(st.hide));
    hideBtn.addEventListener("click", () => { st.hide = !st.hide; hideBtn.setAttribute("aria-pressed", String(st.hide)); draw(); });
    ui.bar.append(hideBtn);
  }

  const header = el("div", "as-nheader");
  const pane = el("div", "as-neuron");
  const left = el("div", "as-col as-left"), right = el("div", "as-col as-right");
  const leftIn = el("div", "as-colin"), rightIn = el("div", "as-colin");
  const cq = el("canvas", "as-qvec"), ck = el("canvas", "as-kvec"), note = el("div", "as-note");
  note.hidden = true;
  left.append(leftIn);
  right.append(rightIn);
  pane.append(left, cq, right, ck, note);
  const win = tokenWindow(pane, moved);
  ui.body.append(header, win.node, sinkNote);
  let geo = null;

  function width(shown) {
    let w = 24;
    for (const t of shown) w = Math.max(w, textWidth(t, TOKEN_FONT));
    return Math.min(Math.ceil(w) + 12, 160);
  }

  function label(tokens, side) {
    const shown = st.kind.texts(side, o.prettify);
    return (i) => {
      const s = el("span", "as-tok", shown[i]);
      s.title = tokens[i];
      s.dataset.i = String(i);
      s.dataset.side = side;
      return s;
    };
  }

  function rebuild() {
    const kind = st.kind, d = kind.spec.qkv ? kind.spec.qkv.d : kind.spec.qk.d, long = kind.q > QUERY_LIST;
    if (kindSel) kindSel.set(kind.name);
    layerSel.fill(layerItems(kind), st.li);
    headSel.fill(kind.heads.map((h, hi) => ({ value: hi, text: String(h) })), st.hi);
    querySel.node.hidden = long;
    queryField.hidden = !long;
    search.node.hidden = Math.max(kind.q, kind.k) <= WINDOW;
    search.reset();
    if (long) queryNum.max = String(kind.q - 1);
    else querySel.fill(kind.queryTokens.map((t, i) => ({ value: i, text: `${i}: ${kind.texts("q", o.prettify)[i]}`, title: t })), st.query);
    describe(ui.caption, payload, kind, ui.badge);
    const f = fitNeuron(availableWidth(root), d, width(kind.texts("q", o.prettify)), width(kind.texts("k", o.prettify))), { cw, vec } = f;
    left.style.width = f.left + "px";
    right.style.width = f.right + "px";
    win.size(Math.max(kind.q, kind.k));
    geo = { d, cw, vec, num: f.num, gap: f.gap, wq: vec + 10 + f.lines, wk: 2 * vec + 2 * f.gap + 2 * f.num + 6 };
    fitCanvas(cq, geo.wq, win.g.height);
    fitCanvas(ck, geo.wk, win.g.height);
    header.textContent = "";
    const spacer = (w) => { const s = el("span", "as-nh"); s.style.width = w + "px"; return s; };
    const titled = (w, text) => { const s = spacer(w); s.textContent = text; return s; };
    header.append(spacer(parseFloat(left.style.width)), titled(geo.wq, "query q"),
      spacer(parseFloat(right.style.width)), titled(vec + f.gap, "key k"), titled(vec + f.gap, "q \u00d7 k"),
      titled(f.num + 6, "score"), titled(f.num, "softmax"));
    win.reveal(st.query);
  }

  // The window moved: labels of the tokens on screen, then the bars.
  function moved(g) {
    fillWindow(leftIn, g, 0, st.kind.q, label(st.kind.queryTokens, "q"));
    fillWindow(rightIn, g, 0, st.kind.k, label(st.kind.keyTokens, "k"));
    root.dataset.window = `${g.v0},${g.v1}`;
    draw();
  }

  // Query i becomes the one explained (kept on screen).
  function pick(i) {
    st.query = Math.max(0, Math.min(st.kind.q - 1, i));
    if (st.query < win.g.v0 || st.query >= win.g.v1) win.reveal(st.query); else draw();
  }

  // Search the query tokens (window.js's findToken); the match becomes the query.
  function find(text, step) {
    const hit = findToken(st.kind.queryTokens, st.kind.texts("q", o.prettify), [0, st.kind.q], text, step, st.match, win.g.v0);
    if (!hit || !hit.n) { st.match = null; search.status(hit ? "no match" : ""); return; }
    st.match = hit.i;
    search.status(`${hit.k} / ${hit.n}`);
    st.query = hit.i;
    win.reveal(hit.i);
  }

  // The query vector, key vectors, scores and weights of the current query, or null with the reason in st.why.
  // q/k payloads: the model's own rule and each row's log-sum-exp (recompute.js); qkv payloads: q.k * scaling +
  // bias under the causal mask, softmax.
  function compute() {
    const kind = st.kind, i = st.query;
    if (kind.spec.form === "qk") return computeQK(kind, i);
    const v = kind.vectors(st.li, st.hi);
    if (!v) { st.why = kind.sourceNote(); return null; }  // fetched by the page: drawn when they arrive
    const { d } = v;
    const q = v.q.subarray(i * d, (i + 1) * d);
    const masked = (j) => kind.spec.causal && kind.spec.query === kind.spec.key && j > i;
    const scores = new Float32Array(kind.k), weights = new Float32Array(kind.k);
    let top = -Infinity;
    for (let j = 0; j < kind.k; j++) {
      if (masked(j)) { scores[j] = -Infinity; continue; }
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[c] * v.k[j * d + c];
      scores[j] = dot * v.scaling + (v.bias ? v.bias[i * kind.k + j] : 0);
      top = Math.max(top, scores[j]);
    }
    let sum = 0;
    for (let j = 0; j < kind.k; j++) { weights[j] = Number.isFinite(scores[j]) ? Math.exp(scores[j] - top) : 0; sum += weights[j]; }
    for (let j = 0; j < kind.k; j++) weights[j] /= sum || 1;
    return { scaling: v.scaling, q, keys: v.k, scores, weights, masked };
  }

  function computeQK(kind, i) {
    const head = kind.head(st.li, st.hi);
    if (!(head instanceof QKHead)) {  // not in the payload: fetched from the server, or overview only
      st.why = loadVectors(kind, st.li, st.hi, draw) || rowsProblem(kind, st.li);
      return null;
    }
    const [lo, hi] = head.keyRange(i), scores = new Float32Array(kind.k).fill(-Infinity);
    for (let j = lo; j < hi; j++) scores[j] = head.score(i, j);
    return { scaling: head.scaling, q: Float32Array.from(head.qvec(i)), keys: head.keys, scores,
      weights: head.row(i)[1], masked: (j) => j < lo || j >= hi };
  }

  function maxAbs(arr, a = 0, b = arr.length) {
    let m = 0;
    for (let t = a; t < b; t++) if (Number.isFinite(arr[t])) m = Math.max(m, Math.abs(arr[t]));
    return m;
  }

  function draw() {
    const kind = st.kind, { d, cw, vec, wq, wk, num, gap } = geo, { height, v0, v1 } = win.g, y = win.y, i = st.query;
    const th = THEMES[ui.theme];
    const a = cq.getContext("2d"), b = ck.getContext("2d");
    a.clearRect(0, 0, wq, height);
    b.clearRect(0, 0, wk, height);
    for (const s of leftIn.children) s.classList.toggle("as-on", s.dataset.i === String(i));
    if (kind.q <= QUERY_LIST) querySel.set(i); else queryNum.value = String(i);
    const r = compute();
    st.last = r;
    note.textContent = r ? "" : st.why || "";
    note.hidden = !note.textContent;
    if (!r) { kind.flush(draw); return; }  // vectors still being read: drawn again shortly
    const hidden = new Set(st.hide ? sinks.positions[kind.spec.key] || [] : []);
    let held = 0;
    for (const j of hidden) held += r.weights[j] || 0;
    sinkNote.textContent = hidden.size ? `${neuronSinkNames(sinks.labels)} hidden: ${sinks.labels.length === 1 ? "it" : "they"} ` +
      `held ${Math.round(100 * held)} % of this query's attention \u00b7 colours scale to the largest weight shown` : "";
    sinkNote.hidden = !hidden.size;
    st.held = hidden.size ? held : null;
    // the query vector at the query's row (at the window's edge when it is off screen), lines to the keys on screen
    const yi = Math.max(ROW / 2, Math.min(height - ROW / 2, y(i))) - ROW / 2, qmax = maxAbs(r.q);
    for (let c = 0; c < d; c++) { a.fillStyle = signColor(r.q[c], qmax); a.fillRect(c * cw, yi + 3, cw, ROW - 6); }
    a.strokeStyle = th.muted;
    a.strokeRect(0.5, yi + 2.5, vec - 1, ROW - 5);
    const ka = Math.min(kind.k, v0), kb = Math.min(kind.k, v1);
    let wmax = 0;  // the largest weight shown (hidden keys left out)
    for (let j = 0; j < kind.k; j++) if (!hidden.has(j)) wmax = Math.max(wmax, r.weights[j]);
    a.strokeStyle = "rgb(47,122,214)";
    a.lineWidth = 2;
    for (let j = ka; j < kb; j++) {
      if (r.weights[j] <= 0 || hidden.has(j)) continue;
      a.globalAlpha = Math.min(1, r.weights[j] / (wmax || 1));
      a.beginPath(); a.moveTo(vec + 6, yi + ROW / 2); a.lineTo(wq - 2, y(j)); a.stroke();
    }
    a.globalAlpha = 1;
    // per key on screen: key vector, q x k, scaled q.k, softmax weight (colours scaled over every key)
    const kmax = maxAbs(r.keys), smax = maxAbs(r.scores), prod = new Float32Array((kb - ka) * d);
    let pmax = 0;
    for (let j = 0; j < kind.k; j++) {
      if (r.masked(j)) continue;
      for (let c = 0; c < d; c++) {
        const p = r.q[c] * r.keys[j * d + c];
        pmax = Math.max(pmax, Math.abs(p));
        if (j >= ka && j < kb) prod[(j - ka) * d + c] = p;
      }
    }
    b.font = N_FONT;
    b.textBaseline = "middle";
    b.textAlign = "right";
    for (let j = ka; j < kb; j++) {
      const top = y(j) - ROW / 2;
      for (let c = 0; c < d; c++) {
        b.fillStyle = signColor(r.keys[j * d + c], kmax); b.fillRect(c * cw, top + 3, cw, ROW - 6);
        b.fillStyle = signColor(prod[(j - ka) * d + c], pmax); b.fillRect(vec + gap + c * cw, top + 3, cw, ROW - 6);
      }
      const xs = 2 * vec + 2 * gap, xw = xs + num + 6;
      if (r.masked(j) || hidden.has(j)) {
        b.fillStyle = th.muted;
        b.fillText(hidden.has(j) ? "hidden" : "masked", xs + num - 4, top + ROW / 2);
        continue;
      }
      b.fillStyle = signColor(r.scores[j], smax); b.fillRect(xs, top + 2, num, ROW - 4);
      b.fillStyle = signColor(r.weights[j], wmax); b.fillRect(xw, top + 2, num, ROW - 4);
      b.fillStyle = th.fg;
      b.fillText(fmt(r.scores[j], 2), xs + num - 4, top + ROW / 2);
      b.fillText(fmt(r.weights[j], 3), xw + num - 4, top + ROW / 2);
    }
  }

  leftIn.addEventListener("click", (e) => {
    const t = e.target.closest && e.target.closest(".as-tok");
    if (t) pick(Number(t.dataset.i));
  });
  ck.addEventListener("mousemove", (e) => {
    const { d, cw, vec, gap } = geo, r = st.last, kind = st.kind;
    const rect = ck.getBoundingClientRect(), x = e.clientX - rect.left;
    const j = Math.floor((e.clientY - rect.top + win.g.top) / ROW);
    if (!r || j < 0 || j >= kind.k) { ui.tip.hide(); return; }
    const tok = kind.keyTokens[j], lines = [`key ${j}: ${tok}`];
    const c = Math.floor((x < vec + gap ? x : x - vec - gap) / cw);
    if (x < vec) lines.push(`k[${c}] = ${fmt(r.keys[j * d + c])}`);
    else if (x >= vec + gap && x < 2 * vec + gap) lines.push(`q[${c}] \u00d7 k[${c}] = ${fmt(r.q[c] * r.keys[j * d + c])}`);
    else if (x >= 2 * vec + 2 * gap) lines.push(`q\u00b7k \u00d7 ${fmt(r.scaling, 4)} = ${fmt(r.scores[j])}`, `softmax = ${fmt(r.weights[j])}`);
    else { ui.tip.hide(); return; }
    ui.tip.show(lines, e.clientX, e.clientY);
  });
  ck.addEventListener("mouseleave", () => ui.tip.hide());

  rebuild();
  const stopWatching = watchWidth(root, () => rebuild());  // fit.js: lay out again when the width changes
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) ui.setTheme(next.theme);
      if ("hideSinks" in next && hideBtn) { st.hide = !!next.hideSinks; hideBtn.setAttribute("aria-pressed", String(st.hide)); }
      startKind(kinds.get(next.kind || st.kind.name) || st.kind);
      rebuild();
    },
    // What is drawn now (for tests and scripts): original layer/head, query index and the softmax weights.
    current() {
      const k = st.kind;
      return { kind: k.name, layer: k.layers[st.li], head: k.heads[st.hi], query: st.query,
        weights: st.last ? Array.from(st.last.weights) : null, hidden: st.hide, held: st.held, note: sinkNote.textContent };
    },
    destroy() { stopWatching(); root.textContent = ""; },
  };
};
