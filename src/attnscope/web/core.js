// attnscope core, shared by every view: lazy payload decoding, heads fetched from the page, tokens, colours, themes,
// small DOM helpers.
// Python inlines this file with the view files inside one function per output, so nothing here is global.

const views = {};  // view name -> render(root, payload, options) returning {update, destroy}

const ROW = 18;  // px per token row in the head and neuron views
const TOKEN_FONT = "12.5px system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif";
const KIND_ORDER = ["self", "encoder", "decoder", "cross"];
const KIND_LABEL = { self: "Self", encoder: "Encoder", decoder: "Decoder", cross: "Cross" };

const CACHE_LIMIT = 48;  // decoded heads kept per kind (a 256-token dense head is 256 KB)

// One attention kind of the payload: its tokens, included layers/heads, and heads decoded on first use.
class Kind {
  constructor(name, spec, payload) {
    this.name = name;
    this.spec = spec;
    [this.q, this.k] = spec.shape;
    this.layers = spec.layers;
    this.heads = spec.heads;
    this.blob = payload.blob || null;  // arrays sent after the view's script (boot.js's blobReader)
    this.source = payload.fetchHeads ? headSource(payload.fetchHeads) : null;  // heads a deferred payload left out
    this.queryTokens = payload.tokens[spec.query];  // raw tokenizer strings
    this.keyTokens = payload.tokens[spec.key];
    this.queryLabels = labelsOf(payload, spec.query);  // what is drawn (Python's display labels)
    this.keyLabels = spec.key === spec.query ? this.queryLabels : labelsOf(payload, spec.key);
    this.cache = new Map();
    this.decoded = 0;  // heads decoded so far (a test hook: views decode only what they show)
  }
  // The strings drawn for the query ("q") or key ("k") tokens: the display labels, or the raw tokens when prettify
  // is false.
  texts(side, prettify) {
    if (prettify === false) return side === "q" ? this.queryTokens : this.keyTokens;
    return side === "q" ? this.queryLabels : this.keyLabels;
  }
  // make() once per key; a missing result (null or undefined: a head not here yet) is not kept.
  cached(key, make) {
    let v = this.cache.get(key);
    if (v === undefined) {
      v = make();
      if (v === undefined || v === null) return v;
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value);
      this.cache.set(key, v);
    }
    return v;
  }
  // The reader of one head (Head, or for "qk" payloads recompute.js's heads); null for a layer of a "qk" payload
  // whose rows are neither in it nor on a server (its overview is all there is); undefined while it is being fetched
  // (a deferred payload: the view draws what it has, and kind.flush redraws when the head arrives).
  head(li, hi) {
    if (this.spec.onRead) this.spec.onRead(li, hi);  // units.js: which heads are on screen, for its note
    return this.cached("a" + li + "," + hi, () => {
      const s = this.spec;
      if (!s.shown && s.form !== "qk" && s.data[li][hi] === null) return this.missing("weights", li, hi);
      this.decoded++;
      if (s.shown) return s.shown(li, hi);  // units.js: words, sentences or hidden sinks, from the token heads
      if (s.form === "qk") return qkHead(this, li, hi);
      const item = s.data[li][hi];
      if (typeof item === "string") return new Head(this.q, this.k, valuesOf(item, s.dtype));
      return prunedHead(this.q, this.k, item, s.dtype);
    });
  }
  // Whether layer li has rows to read (every layer, except those of a "qk" payload with neither q/k nor a server).
  hasRows(li) {
    return this.spec.form !== "qk" || rowsOf(this, li) !== null;
  }
  // A head a deferred payload left out: asked for from the page (undefined until it arrives), or null when no page
  // holds one. part: "weights" or "vectors".
  missing(part, li, hi) {
    if (!this.source) return null;
    this.source.want(this, part, li, hi);
    return undefined;
  }
  // Why some heads are not drawn yet ("" when all are): being fetched, or the page could not fetch them.
  sourceNote() {
    const s = this.source;
    if (!s) return "";
    if (s.error) return `could not fetch heads: ${s.error}`;
    return s.waiting() ? "fetching heads\u2026" : "";
  }
  // Ask for the heads and rows the last draw missed (heads from the page's source, rows streamed from a server:
  // recompute.js), or draw again shortly when vectors the draw needed were not read yet (a page still loading);
  // onArrive redraws.
  flush(onArrive) {
    if (this.waiting) {
      this.waiting = false;
      setTimeout(onArrive, 50);
    }
    if (this.source) this.source.flush(onArrive);
    if (!this.stream) return;
    this.stream.redraw = onArrive;
    this.stream.flush();
  }
  // Block-max thumbnail {rows, cols, block, bytes (sqrt8)} at most `size` (default spec.thumbSize) a side: shipped
  // pooled for pruned and q/k payloads (at their own size), else pooled here from the head's weights.
  thumb(li, hi, size) {
    const s = this.spec, want = size || s.thumbSize || Math.max(this.q, this.k);
    return this.cached("t" + li + "," + hi + (s.thumb ? "" : "," + want), () => {
      const t = s.thumb, { q, k } = this;
      if (t) {
        const size = t.shape[0] * t.shape[1];
        return { rows: t.shape[0], cols: t.shape[1], block: t.block, bytes: inflate85(t.data[li][hi], size).subarray(0, size) };
      }
      const b = Math.max(1, Math.ceil(Math.max(q, k) / want));
      const rows = Math.ceil(q / b), cols = Math.ceil(k / b), out = new Uint8Array(rows * cols);
      if (s.form === "dense" && s.dtype === "sqrt8" && b === 1 && !s.shown) return { rows, cols, block: 1, bytes: bytesOf(s.data[li][hi]) };
      const h = this.head(li, hi);
      if (!h) return h;  // not here yet
      for (let i = 0; i < q; i++) {
        const [idx, val] = h.row(i), base = ((i / b) | 0) * cols;
        for (let t2 = 0; t2 < val.length; t2++) {
          const v = toSqrt8(val[t2]), o = base + (((idx ? idx[t2] : t2) / b) | 0);
          if (v > out[o]) out[o] = v;
        }
      }
      return { rows, cols, block: b, bytes: out };
    });
  }
  // Query/key vectors of one head for the neuron view: {d, scaling, q [q*d], k [k*d], bias [q*k] or null}; undefined
  // while they are fetched, null when they are not here (see head()).
  vectors(li, hi) {
    return this.cached("v" + li + "," + hi, () => {
      const v = this.spec.qkv;
      if (v.query[li][hi] === null) return this.missing("vectors", li, hi);
      return {
        d: v.d, scaling: v.scaling,
        q: valuesOf(v.query[li][hi], "f16"), k: valuesOf(v.key[li][hi], "f16"),
        bias: v.bias ? valuesOf(v.bias[li][hi], "f16") : null,
      };
    });
  }
}

// ------------------------------------------------------------------ heads fetched from the page
// A deferred payload (attnscope/encode_deferred.py) has null where each head's data goes, and the page holding it
// gives payload.fetchHeads({kind, layer, heads, vectors}) -> a Promise of the payload of those heads of one layer
// (attnscope/encode.py's layout; vectors: the neuron view's query/key vectors). A draw that reads a missing head
// asks for it (Kind.missing) and draws what it has; kind.flush then sends one request (the heads one layer lacks, all
// the draw missed of it) and every view that flushed redraws when it is answered (it asks for what is still
// missing). Never a synchronous request. At most FETCHED_MAX heads are kept; the oldest go back to null.
const FETCHED_MAX = 96;
const SOURCES = new WeakMap();  // fetchHeads -> its HeadSource, shared by every view and unit state of the payload

function headSource(fetchHeads) {
  if (!SOURCES.has(fetchHeads)) SOURCES.set(fetchHeads, new HeadSource(fetchHeads));
  return SOURCES.get(fetchHeads);
}

class HeadSource {
  constructor(fetchHeads) {
    Object.assign(this, { fetchHeads, pending: [], busy: false, error: null, redraws: new Set(), kept: [] });
    this.requests = 0;  // a test hook
  }
  want(kind, part, li, hi) {
    let need = this.pending.find((n) => n.kind === kind.name && n.part === part && n.li === li);
    if (!need) this.pending.push(need = { kind: kind.name, spec: kind.spec, part, li, heads: new Set() });
    need.heads.add(hi);
  }
  waiting() {
    return this.busy || this.pending.length > 0;
  }
  flush(redraw) {
    if (this.error || (!this.busy && !this.pending.length)) return;
    this.redraws.add(redraw);
    if (this.busy) return;
    const need = this.pending[0], his = [...need.heads].sort((a, b) => a - b), s = need.spec;
    this.busy = true;
    this.requests++;
    this.fetchHeads({ kind: need.kind, layer: s.layers[need.li], heads: his.map((hi) => s.heads[hi]), vectors: need.part === "vectors" })
      .then((got) => this.store(need, his, got.kinds[need.kind]), (err) => {
        this.error = err && err.message ? err.message : String(err);
      })
      .then(() => {
        this.busy = false;
        this.pending = [];  // the redraws ask again for what is still missing
        const redraws = [...this.redraws];
        this.redraws.clear();
        for (const f of redraws) f();
      });
  }
  // The answer's heads (one layer: [0][j] is his[j]) into the payload's grids.
  store(need, his, got) {
    const s = need.spec, parts = need.part === "vectors" ? ["query", "key", "bias"].filter((p) => s.qkv[p]) : ["data"];
    his.forEach((hi, j) => {
      const grids = parts.map((p) => (p === "data" ? s.data : s.qkv[p]));
      parts.forEach((p, n) => { grids[n][need.li][hi] = (p === "data" ? got.data : got.qkv[p])[0][j]; });
      this.kept.push([grids, need.li, hi]);
    });
    while (this.kept.length > FETCHED_MAX) {
      const [grids, li, hi] = this.kept.shift();
      for (const g of grids) g[li][hi] = null;
    }
  }
}

// Test hook on every view (root.attnscope.probe): rows read back as the view decoded them, and decode counts.
function probe(kinds, extra) {
  return {
    row(kindName, layer, head, i) {
      const kind = kinds.get(kindName), h = kind.head(kind.layers.indexOf(layer), kind.heads.indexOf(head));
      const [idx, val] = h.row(i);
      return { indices: idx ? Array.from(idx) : null, values: Array.from(val) };
    },
    decoded() {
      let n = extra ? extra() : 0;
      for (const k of kinds.values()) n += k.decoded;
      return n;
    },
  };
}

function kindsOf(payload) {
  const out = new Map();
  for (const name of KIND_ORDER) if (payload.kinds[name]) out.set(name, new Kind(name, payload.kinds[name], payload));
  return out;
}

// Sentence-pair (or prompt/generated) filters as index ranges of one matrix: never copies of it.
function filtersOf(payload, kind) {
  const segs = Object.entries(payload.segments || {});
  const rows = segs.filter(([, s]) => s.stream === kind.spec.query);
  const cols = segs.filter(([, s]) => s.stream === kind.spec.key);
  const out = [{ name: "All", label: "All", rows: [0, kind.q], cols: [0, kind.k] }];
  if (rows.length * cols.length < 2) return out;
  const causal = kind.spec.causal && kind.spec.query === kind.spec.key;
  for (const [a, sa] of rows) {
    for (const [b, sb] of cols) {
      if (causal && sa.end <= sb.start) continue;  // every key comes after every query: masked, nothing to show
      out.push({ name: a + "->" + b, label: a + "\u2192" + b, rows: [sa.start, sa.end], cols: [sb.start, sb.end] });
    }
  }
  return out;
}

function pickFilter(filters, name) {
  return filters.find((f) => f.name === name) || filters[0];
}

// ------------------------------------------------------------------ tokens
// Tokens are shown as Python made them, never prettified here: payload.labels[stream] holds the display labels of
// attnscope.tokens.prettify_tokens (what the figures show) that differ from the raw strings, by token position (a
// list with nulls, or {position: label}: attnscope/encode.py's token_labels), payload.tokens[stream] the raw strings
// (titles, prettify=false).
function labelsOf(payload, stream) {
  return shownTokens(payload.tokens[stream], payload.labels && payload.labels[stream], true);
}

// What is drawn for raw tokens `tokens` whose labels are `labels` (by position; a missing one: the raw token).
function shownTokens(tokens, labels, prettify) {
  return prettify === false || !labels ? tokens : tokens.map((t, i) => labels[i] ?? t);
}

// ------------------------------------------------------------------ colours and themes
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#edc948",
  "#76b7b2", "#ff9da7", "#9c755f", "#17becf", "#bcbd22", "#8c564b"];

function headColor(head, nHeads) {
  return nHeads <= PALETTE.length ? PALETTE[head % PALETTE.length] : `hsl(${Math.round((head * 360) / nHeads)}, 62%, 54%)`;
}

const THEMES = {
  light: { bg: "#ffffff", fg: "#1f2328", muted: "#6e7781", grid: "#d8dee4",
    heat: [[0, 255, 255, 255], [0.25, 206, 224, 242], [0.5, 120, 172, 220], [0.75, 40, 108, 180], [1, 8, 48, 107]] },
  dark: { bg: "#16181d", fg: "#e6e8eb", muted: "#8b949e", grid: "#30363d",
    heat: [[0, 22, 24, 29], [0.25, 38, 62, 112], [0.5, 34, 122, 168], [0.75, 88, 192, 186], [1, 236, 250, 196]] },
};

// 256 RGBA colours interpolated along colour stops [[t, r, g, b], ...] (t from 0 to 1).
function stopsLut(stops) {
  const lut = new Uint8ClampedArray(1024);
  for (let b = 0; b < 256; b++) {
    const t = b / 255;
    let s = 1;
    while (s < stops.length - 1 && stops[s][0] < t) s++;
    const [t0, ...c0] = stops[s - 1], [t1, ...c1] = stops[s], u = (t - t0) / (t1 - t0);
    for (let c = 0; c < 3; c++) lut[b * 4 + c] = c0[c] + (c1[c] - c0[c]) * u;
    lut[b * 4 + 3] = 255;
  }
  return lut;
}

const LUTS = {};
// 256 RGBA colours indexed by a sqrt8 byte: the heatmap colour scale of a theme.
function heatLut(theme) {
  if (!LUTS[theme]) LUTS[theme] = stopsLut(THEMES[theme].heat);
  return LUTS[theme];
}

// "auto" follows the notebook (JupyterLab, VS Code, Colab) or, in a saved file, the system setting.
function resolveTheme(root, wanted) {
  if (wanted === "light" || wanted === "dark") return wanted;
  const body = root.ownerDocument.body, html = root.ownerDocument.documentElement;
  const jp = body && body.getAttribute("data-jp-theme-light");
  if (jp !== null && jp !== undefined) return jp === "false" ? "dark" : "light";
  if (body && /\bvscode-(dark|high-contrast)\b/.test(body.className)) return "dark";
  if (body && /\bvscode-light\b/.test(body.className)) return "light";
  if (html && html.getAttribute("theme") === "dark") return "dark";
  const page = body && body.classList.contains("attnscope-page");
  if (page && window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches) return "dark";
  return "light";
}

// Positive blue, negative orange, alpha = |v| / max (the neuron view's colour bars).
function signColor(v, max) {
  const a = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
  return v >= 0 ? `rgba(47,122,214,${a.toFixed(3)})` : `rgba(240,128,32,${a.toFixed(3)})`;
}

// ------------------------------------------------------------------ DOM helpers
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

let MEASURE = null;
function textWidth(text, font) {
  if (MEASURE === null) MEASURE = document.createElement("canvas").getContext("2d");
  MEASURE.font = font;
  return MEASURE.measureText(text).width;
}

// Size a canvas for crisp lines on high-DPI screens (capped so very tall canvases stay drawable).
function fitCanvas(canvas, w, h) {
  const ratio = Math.max(0.25, Math.min(window.devicePixelRatio || 1, 32000 / Math.max(w, h, 1)));
  canvas.width = Math.max(1, Math.round(w * ratio));
  canvas.height = Math.max(1, Math.round(h * ratio));
  canvas.style.width = w + "px";
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return ctx;
}

function fmt(v, digits) {
  if (!Number.isFinite(v)) return v > 0 ? "\u221e" : v < 0 ? "\u2212\u221e" : "n/a";
  return v.toFixed(digits === undefined ? 4 : digits).replace("-", "\u2212");
}
