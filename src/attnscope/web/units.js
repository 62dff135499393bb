// Units and sinks, for every view of weights: the toolbar's "Units" (tokens, words, sentences, paragraphs) and
// "Hide sinks" controls. The payload carries each level's unit spans and labels and what the sinks held
// (attnscope/views/_units.py); the view then draws a payload derived here from the token-level one, whose heads are
// computed from the token rows when first read, so no second copy of the weights travels:
// - attention TO a unit is the SUM of the weights on its pieces, attention FROM a unit the MEAN of its pieces' rows
//   (Clark et al. 2019), as attnscope.aggregate computes it;
// - hidden tokens leave rows and columns; the note says what they held (shares measured in Python on the tokens),
//   colours scale to the largest weight shown, and "Renormalise" divides each row by what is shown, marked as such;
// - a learned sink (rows summing below 1) becomes a token of its own, <sink>, first; it is never renormalised away.
// Views read derived heads like any other: row() and col() give the colour values (weights x gain, the gain making
// the largest weight shown full colour when sinks are hidden), get() the weight itself (tooltips).

const LEVEL_TEXT = { token: "tokens", word: "words", sentence: "sentences", paragraph: "paragraphs" };
const LEVEL_ONE = { word: "word", sentence: "sentence", paragraph: "paragraph" };
const SINK = "<sink>";

// A head over units: CSR rows of colour values, gain = colour value / weight.
class ShownHead extends Head {
  constructor(q, k, indptr, indices, values, gain) {
    super(q, k, null, indptr, indices, values);
    this.gain = gain;
  }
  get(i, j) { return super.get(i, j) / this.gain; }
  col(j, r0, r1) {
    const out = super.col(j, r0, r1);  // super.col reads get(): weights, made colour values again
    for (let i = 0; i < out.length; i++) out[i] *= this.gain;
    return out;
  }
}

// Wrap a view's render so it gets the controls and draws the derived payload (an embedded view draws as given).
function withUnits(render) {
  return function renderWithUnits(root, payload, options) {
    if (options.embedded || !payload.units) return render(root, payload, options);
    const u = payload.units;
    const st = { level: u.levels.includes(options.by) ? options.by : "token", hide: !!options.hideSinks,
      renorm: !!options.renormalize };
    let view = null, shown = payload, reads = new Map(), timer = null;
    const note = el("div", "as-units-note");

    function onRead(kind, li, hi) {  // the heads on screen: those read since the last note
      if (!st.hide) return;
      reads.set(kind + " " + li + " " + hi, [kind, li, hi]);
      if (timer === null) timer = setTimeout(writeNote, 0);
    }

    function draw() {
      if (view) view.destroy();
      reads = new Map();
      shown = derive(payload, st, onRead);
      const o = Object.assign({}, options);
      if (o.query !== undefined && shown !== payload) delete o.query;  // a token index: no unit row is marked
      view = render(root, shown, o);
      const bar = root.querySelector(":scope > .as-bar");
      if (bar) bar.append(controls());
      root.append(note);
      writeNote();
    }

    function controls() {
      const wrap = el("span", "as-slot as-units");
      const items = ["token", ...u.levels].map((l) => ({ value: l, text: LEVEL_TEXT[l] }));
      const sel = selectControl("Units", items, st.level, (l) => { st.level = l; draw(); });
      sel.select.title = "Tokens, or words, sentences, paragraphs: attention to a unit sums its pieces, attention " +
        "from a unit averages them";
      wrap.append(sel.node);
      if (u.sinks) {
        const hide = toggle("Hide sinks", st.hide, `Leave out ${names(u.sinks.labels)} and say how much ` +
          "attention they held; colours scale to what is shown", (on) => { st.hide = on; draw(); });
        wrap.append(hide);
        if (st.hide) {
          wrap.append(toggle("Renormalise", st.renorm, "Divide each row by what is shown (a learned sink keeps its " +
            "share)", (on) => { st.renorm = on; draw(); }));
        }
      }
      return wrap;
    }

    function writeNote() {
      timer = null;
      const parts = [];
      if (st.level !== "token") {
        const w = LEVEL_ONE[st.level];
        parts.push(`${LEVEL_TEXT[st.level]}: attention to a ${w} sums its pieces, attention from a ${w} averages them`);
      }
      if (st.hide && u.sinks) {
        const held = [...reads.values()].map(([k, li, hi]) => payload.kinds[k].sinkHeld[li][hi]);
        parts.push(heldText(u.sinks.labels, held));
        parts.push("colours scale to the largest weight shown");
        if (st.renorm) parts.push("rows renormalised over what is shown");
        if (Object.values(payload.kinds).some((s) => s.learned)) parts.push(`the learned sink is shown as ${SINK}`);
      }
      note.textContent = parts.join(" \u00b7 ");
      note.hidden = !parts.length;
    }

    draw();
    return {
      update(next) {
        const mine = ["by", "hideSinks", "renormalize"].filter((key) => key in next);
        if (mine.length) {
          if ("by" in next) st.level = u.levels.includes(next.by) ? next.by : "token";
          if ("hideSinks" in next) st.hide = !!next.hideSinks;
          if ("renormalize" in next) st.renorm = !!next.renormalize;
          Object.assign(options, next);
          draw();
        } else {
          view.update(next);
        }
      },
      destroy() { if (view) view.destroy(); },
      current: () => (view && view.current ? view.current() : null),  // the selection (layer, head), for widgets
      select: (layer, head) => view && view.select && view.select(layer, head),
      get probe() { return view.probe; },
      units: {  // test hook: the state, the drawn payload's tokens, a weight as drawn
        state: () => Object.assign({}, st),
        tokens: (stream) => shown.tokens[stream].slice(),
        weight(kindName, layer, head, i, j) {
          const spec = shown.kinds[kindName], h = spec.shown(spec.layers.indexOf(layer), spec.heads.indexOf(head));
          return h.get(i, j);
        },
        gain(kindName, layer, head) {
          const spec = shown.kinds[kindName];
          return spec.shown(spec.layers.indexOf(layer), spec.heads.indexOf(head)).gain;
        },
        note: () => note.textContent,
      },
    };
  };
}

function toggle(label, on, title, onChange) {
  const b = el("button", "as-units-btn", label);
  b.type = "button";
  b.title = title;
  b.setAttribute("aria-pressed", String(on));
  b.addEventListener("click", () => onChange(b.getAttribute("aria-pressed") !== "true"));
  return b;
}

function names(labels) {
  return labels.length === 1 ? labels[0] : labels.slice(0, -1).join(", ") + " and " + labels[labels.length - 1];
}

// "first token hidden: it held 71 % of this head's attention"; several heads: the mean and the range.
function heldText(labels, held) {
  const who = names(labels), it = labels.length === 1 ? "it" : "they", pct = (v) => `${Math.round(100 * v)} %`;
  if (!held.length) return `${who} hidden`;
  if (held.length === 1) return `${who} hidden: ${it} held ${pct(held[0])} of this head's attention`;
  const mean = held.reduce((a, b) => a + b, 0) / held.length;
  const lo = Math.min(...held), hi = Math.max(...held);
  return `${who} hidden: ${it} held ${pct(mean)} of these ${held.length} heads' attention on average ` +
    `(${Math.round(100 * lo)}-${Math.round(100 * hi)} %)`;
}

// ------------------------------------------------------------------ the derived payload
// The payload a view draws for state {level, hide, renorm}: the same object when nothing is derived.
function derive(payload, st, onRead) {
  if (st.level === "token" && !st.hide) return payload;
  const u = payload.units, out = Object.assign({}, payload, { tokens: {}, labels: {}, segments: {}, kinds: {} });
  const withSink = new Set(Object.values(payload.kinds).filter((s) => st.hide && s.learned).map((s) => s.key));
  const maps = {};
  for (const [stream, tokens] of Object.entries(payload.tokens)) {
    const hidden = st.hide && u.sinks ? u.sinks.positions[stream] || [] : [];
    maps[stream] = unitMap(u.streams[stream], tokens, st, withSink.has(stream), hidden);
    out.tokens[stream] = maps[stream].labels;
    out.labels[stream] = unitMap(u.streams[stream], labelsOf(payload, stream), st, withSink.has(stream), hidden).labels;
  }
  for (const [name, seg] of Object.entries(payload.segments || {})) {
    const m = maps[seg.stream];
    if (m) out.segments[name] = Object.assign({}, seg, m.span(seg.start, seg.end));
  }
  for (const [name, spec] of Object.entries(payload.kinds)) {
    const source = new Kind(name, spec, payload), rows = maps[spec.query], cols = maps[spec.key];
    const d = {
      query: spec.query, key: spec.key, shape: [rows.units.length, cols.units.length], layers: spec.layers,
      heads: spec.heads, causal: spec.causal, form: spec.form, dtype: spec.dtype, keptMass: spec.keptMass,
      minKeptMass: spec.minKeptMass, pruning: spec.pruning, thumbSize: spec.thumbSize,
      onRead: (li, hi) => onRead(name, li, hi),
    };
    const made = new Map();
    d.shown = (li, hi) => {
      const key = li + "," + hi;
      if (!made.has(key)) {
        const head = source.head(li, hi);
        if (!head) return head;  // not here yet (fetched by the page) or not carried
        made.set(key, shownHead(head, rows, cols, learnedRows(spec, li, hi), st));
      }
      return made.get(key);
    };
    out.kinds[name] = d;
  }
  return out;
}

// One stream's units for the state: {units: [{members: [token rows]}], labels, colOf (token -> unit or -1),
// span(start, end) -> {start, end} in units}. Units made only of hidden tokens are dropped; a learned sink is unit 0.
function unitMap(levels, tokens, st, sink, hiddenTokens) {
  const hidden = new Set(hiddenTokens);
  let spans, labels;
  if (st.level === "token" || !levels || !levels[st.level]) {
    spans = tokens.map((_, i) => [i, i + 1]);
    labels = tokens;
  } else {
    const lv = levels[st.level], pick = st.hide && lv.apart ? lv.apart : lv;
    spans = pick.spans;
    labels = pick.labels;
  }
  const units = [], out = [], colOf = new Int32Array(tokens.length).fill(-1);
  if (sink) { units.push({ members: [] }); out.push(SINK); }
  spans.forEach(([s, e], n) => {
    const members = [];
    for (let i = s; i < e; i++) if (!hidden.has(i)) members.push(i);
    if (!members.length) return;
    for (const i of members) colOf[i] = units.length;
    units.push({ members });
    out.push(labels[n]);
  });
  return {
    units, labels: out, colOf,
    span(start, end) {
      let a = -1, b = -1;
      for (let i = start; i < end; i++) if (colOf[i] >= 0) { if (a < 0) a = colOf[i]; b = colOf[i] + 1; }
      if (a < 0) { a = b = sink ? 1 : 0; for (let i = 0; i < start; i++) if (colOf[i] >= 0) a = b = colOf[i] + 1; }
      return { start: a, end: b };
    },
  };
}

// Per query row of head (li, hi), the mass its learned sink took (sqrt8 bytes from Python), or null.
function learnedRows(spec, li, hi) {
  return spec.learned ? valuesOf(spec.learned[li][hi], "sqrt8") : null;
}

// A head over units from a token head: sums over key pieces, means over query pieces, hidden tokens left out.
function shownHead(head, rows, cols, learned, st) {
  const Q = rows.units.length, K = cols.units.length, sinkCol = cols.units.length && !cols.units[0].members.length;
  const acc = new Float64Array(K), touched = new Int32Array(K), seen = new Uint8Array(K);
  const indptr = new Uint32Array(Q + 1), idx = [], val = [];
  let max = 0;
  for (let r = 0; r < Q; r++) {
    const members = rows.units[r].members;
    let n = 0;
    const add = (c, w) => {
      if (!seen[c]) { seen[c] = 1; touched[n++] = c; }
      acc[c] += w;
    };
    for (const i of members) {
      const [ix, vs, base] = head.row(i);
      for (let t = 0; t < vs.length; t++) {
        const c = cols.colOf[ix ? ix[t] : base + t];
        if (c >= 0 && vs[t] !== 0) add(c, vs[t]);
      }
      if (sinkCol && learned) add(0, learned[i]);
    }
    const keys = Array.from(touched.subarray(0, n)).sort((a, b) => a - b);
    let total = 0;
    for (const c of keys) total += acc[c];
    const scale = st.renorm && total > 0 ? 1 / total : members.length ? 1 / members.length : 0;
    for (const c of keys) {
      const w = acc[c] * scale;
      idx.push(c);
      val.push(w);
      if (w > max) max = w;
      acc[c] = 0;
      seen[c] = 0;
    }
    indptr[r + 1] = idx.length;
  }
  const gain = st.hide && max > 0 ? 1 / max : 1;
  const values = new Float32Array(val.length);
  for (let t = 0; t < val.length; t++) values[t] = val[t] * gain;
  return new ShownHead(Q, K, indptr, Uint32Array.from(idx), values, gain);
}

for (const name of ["head", "model", "matrix"]) if (views[name]) views[name] = withUnits(views[name]);
