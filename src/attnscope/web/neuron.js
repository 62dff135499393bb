// Neuron view: for one layer, head and query token, how attention is computed: the query vector, every key
// vector, their element-wise product, the scaled dot product and the softmax, as colour bars
// (blue positive, orange negative, intensity = magnitude), with lines to the keys weighted by attention.

const N_GAP = 12, N_NUM = 54, N_LINES = 150;
const N_FONT = "10.5px system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";

views.neuron = function renderNeuron(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "neuron");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, hi: 0, query: 0 };
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
  const querySel = selectControl("Query", [], 0, (i) => { st.query = i; draw(); });
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(layerSel.node, headSel.node, querySel.node);

  const header = el("div", "as-nheader");
  const wrap = el("div", "as-neuron");
  const left = el("div", "as-col as-left");
  const right = el("div", "as-col as-right");
  const cq = el("canvas", "as-qvec"), ck = el("canvas", "as-kvec");
  wrap.append(left, cq, right, ck);
  ui.body.append(header, wrap);
  let geo = null;

  function fill(col, tokens, side) {
    col.textContent = "";
    tokens.forEach((t, i) => {
      const s = el("span", "as-tok", tokenText(t, o.prettify));
      s.title = t;
      s.dataset.i = String(i);
      s.dataset.side = side;
      col.append(s);
    });
    let w = 24;
    for (const t of tokens) w = Math.max(w, textWidth(tokenText(t, o.prettify), TOKEN_FONT));
    col.style.width = Math.min(Math.ceil(w) + 12, 160) + "px";
  }

  function rebuild() {
    const kind = st.kind, d = kind.spec.qkv.d;
    if (kindSel) kindSel.set(kind.name);
    layerSel.fill(layerItems(kind), st.li);
    headSel.fill(kind.heads.map((h, hi) => ({ value: hi, text: String(h) })), st.hi);
    querySel.fill(kind.queryTokens.map((t, i) => ({ value: i, text: `${i}: ${tokenText(t, o.prettify)}`, title: t })), st.query);
    describe(ui.caption, payload, kind, ui.badge);
    fill(left, kind.queryTokens, "q");
    fill(right, kind.keyTokens, "k");
    const cw = Math.max(2, Math.min(8, Math.floor(192 / d)));
    const vec = d * cw, height = Math.max(kind.q, kind.k) * ROW;
    geo = { d, cw, vec, height, wq: vec + 10 + N_LINES, wk: 2 * vec + 2 * N_GAP + 2 * N_NUM + 6 };
    fitCanvas(cq, geo.wq, height);
    fitCanvas(ck, geo.wk, height);
    header.textContent = "";
    const spacer = (w) => { const s = el("span", "as-nh"); s.style.width = w + "px"; return s; };
    const titled = (w, text) => { const s = spacer(w); s.textContent = text; return s; };
    header.append(spacer(parseFloat(left.style.width)), titled(geo.wq, "query q"),
      spacer(parseFloat(right.style.width)), titled(vec + N_GAP, "key k"), titled(vec + N_GAP, "q \u00d7 k"),
      titled(N_NUM + 6, "score"), titled(N_NUM, "softmax"));
    draw();
  }

  // Scores and weights of the current query: q.k * scaling + bias, causal mask, softmax.
  function compute() {
    const kind = st.kind, v = kind.vectors(st.li, st.hi), { d } = v, i = st.query;
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
    return { v, q, scores, weights, masked };
  }

  function maxAbs(arr) { let m = 0; for (const x of arr) if (Number.isFinite(x)) m = Math.max(m, Math.abs(x)); return m; }

  function draw() {
    const kind = st.kind, { d, cw, vec, height, wq, wk } = geo, r = compute(), i = st.query;
    const th = THEMES[ui.theme];
    const a = cq.getContext("2d"), b = ck.getContext("2d");
    a.clearRect(0, 0, wq, height);
    b.clearRect(0, 0, wk, height);
    // query vector at the query's row, then lines to every key
    const yi = i * ROW, qmax = maxAbs(r.q);
    for (let c = 0; c < d; c++) { a.fillStyle = signColor(r.q[c], qmax); a.fillRect(c * cw, yi + 3, cw, ROW - 6); }
    a.strokeStyle = th.muted;
    a.strokeRect(0.5, yi + 2.5, vec - 1, ROW - 5);
    const wmax = maxAbs(r.weights);
    a.strokeStyle = "rgb(47,122,214)";
    a.lineWidth = 2;
    for (let j = 0; j < kind.k; j++) {
      if (r.weights[j] <= 0) continue;
      a.globalAlpha = Math.min(1, r.weights[j] / (wmax || 1));
      a.beginPath(); a.moveTo(vec + 6, yi + ROW / 2); a.lineTo(wq - 2, j * ROW + ROW / 2); a.stroke();
    }
    a.globalAlpha = 1;
    // per key: key vector, q x k, scaled q.k, softmax weight
    const kmax = maxAbs(r.v.k), prod = new Float32Array(kind.k * d);
    for (let j = 0; j < kind.k; j++) for (let c = 0; c < d; c++) prod[j * d + c] = r.masked(j) ? 0 : r.q[c] * r.v.k[j * d + c];
    const pmax = maxAbs(prod), smax = maxAbs(r.scores);
    b.font = N_FONT;
    b.textBaseline = "middle";
    b.textAlign = "right";
    for (let j = 0; j < kind.k; j++) {
      const y = j * ROW;
      for (let c = 0; c < d; c++) {
        b.fillStyle = signColor(r.v.k[j * d + c], kmax); b.fillRect(c * cw, y + 3, cw, ROW - 6);
        b.fillStyle = signColor(prod[j * d + c], pmax); b.fillRect(vec + N_GAP + c * cw, y + 3, cw, ROW - 6);
      }
      const xs = 2 * vec + 2 * N_GAP, xw = xs + N_NUM + 6;
      if (r.masked(j)) {
        b.fillStyle = th.muted;
        b.fillText("masked", xs + N_NUM - 4, y + ROW / 2);
        continue;
      }
      b.fillStyle = signColor(r.scores[j], smax); b.fillRect(xs, y + 2, N_NUM, ROW - 4);
      b.fillStyle = signColor(r.weights[j], wmax); b.fillRect(xw, y + 2, N_NUM, ROW - 4);
      b.fillStyle = th.fg;
      b.fillText(fmt(r.scores[j], 2), xs + N_NUM - 4, y + ROW / 2);
      b.fillText(fmt(r.weights[j], 3), xw + N_NUM - 4, y + ROW / 2);
    }
    querySel.set(i);
    for (const s of left.children) s.classList.toggle("as-on", s.dataset.i === String(i));
    st.last = r;
  }

  left.addEventListener("click", (e) => {
    const t = e.target.closest && e.target.closest(".as-tok");
    if (t) { st.query = Number(t.dataset.i); draw(); }
  });
  ck.addEventListener("mousemove", (e) => {
    const { d, cw, vec } = geo, r = st.last, kind = st.kind;
    const rect = ck.getBoundingClientRect(), x = e.clientX - rect.left, j = Math.floor((e.clientY - rect.top) / ROW);
    if (!r || j < 0 || j >= kind.k) { ui.tip.hide(); return; }
    const tok = kind.keyTokens[j], lines = [`key ${j}: ${tok}`];
    const c = Math.floor((x < vec + N_GAP ? x : x - vec - N_GAP) / cw);
    if (x < vec) lines.push(`k[${c}] = ${fmt(r.v.k[j * d + c])}`);
    else if (x >= vec + N_GAP && x < 2 * vec + N_GAP) lines.push(`q[${c}] \u00d7 k[${c}] = ${fmt(r.q[c] * r.v.k[j * d + c])}`);
    else if (x >= 2 * vec + 2 * N_GAP) lines.push(`q\u00b7k \u00d7 ${fmt(r.v.scaling, 4)} = ${fmt(r.scores[j])}`, `softmax = ${fmt(r.weights[j])}`);
    else { ui.tip.hide(); return; }
    ui.tip.show(lines, e.clientX, e.clientY);
  });
  ck.addEventListener("mouseleave", () => ui.tip.hide());

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) { ui.theme = resolveTheme(root, next.theme); root.setAttribute("data-theme", ui.theme); }
      startKind(kinds.get(next.kind || st.kind.name) || st.kind);
      rebuild();
    },
    // What is drawn now (for tests and scripts): original layer/head, query index and the softmax weights.
    current() {
      const k = st.kind;
      return { kind: k.name, layer: k.layers[st.li], head: k.heads[st.hi], query: st.query, weights: Array.from(st.last.weights) };
    },
    destroy() { root.textContent = ""; },
  };
};
