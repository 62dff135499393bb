// Rows of a "qk" payload (attnscope/encode_qk.py): exact attention recomputed here from float16 queries and keys and
// each row's log-sum-exp, as attnscope/qk.py does,
//     w[i, j] = exp(s - lse[i]),   s = softcap(q_i . k_j * scaling)   where the mask rule allows (i, j),
// so a row costs O(k d) and a window of the views only its cells. Layers whose queries and keys the payload does not
// carry are read from the server when the page has one (spec.fetchRows, set by the web app): their heads hold the
// blocks fetched so far, note the blocks a draw missed, and the view asks for them (kind.flush) and redraws when they
// arrive. Every head here reads like decode.js's Head: row(i, c0, c1), col(j, r0, r1), get(i, j).

const STREAM_BLOCKS = 96;  // fetched blocks kept per kind (oldest dropped first)
const STREAM_MAX = 1 << 21;  // weights asked for at once at most (the server's limit: attnscope/server/payloads.py)

// float16 values coded as low bytes then high bytes, deflated, in base64 ("f16planes") -> their bits, Uint16Array.
function halfPlanes(text, n) {
  const b = inflate(bytesOf(text), 2 * n), out = new Uint16Array(n);
  if (b.length < 2 * n) throw new Error("attnscope: a q/k array in the payload is too short");
  for (let i = 0; i < n; i++) out[i] = b[i] | (b[n + i] << 8);
  return out;
}

// The texts of head (li, hi)'s query, key and LSE arrays ([q, k, lse]), or null while the page still reads one of them
// (a saved page sends them after the view's script: {"blob": n}, read through kind.blob).
function qkTexts(kind, li, hi) {
  const s = kind.spec.qk, got = [s.query[li][hi], s.key[li][s.kv[hi]], s.lse[li][hi]];
  const texts = got.map((v) => (typeof v === "string" ? v : v && kind.blob ? kind.blob(v.blob) : null));
  return texts.includes(null) ? null : texts;
}

// Rows of one head of a carried layer, recomputed from its queries (one head), keys (its key/value head) and LSEs
// (`texts`: qkTexts). Keys are held as float32 (the inner loop reads them all); queries stay float16 bits, one row's
// made float on use.
class QKHead {
  constructor(kind, li, hi, texts) {
    const s = kind.spec.qk, q = kind.q, k = kind.k, d = s.d, kv = s.kv[hi];
    Object.assign(this, { q, k, d, scaling: s.scaling, softcap: s.softcap, causal: s.causal, window: s.windows[li] });
    this.query = halfPlanes(texts[0], q * d);
    this.keys = kind.cached("k" + li + "," + kv, () => {
      const bits = halfPlanes(texts[1], k * d), t = halfTable(), out = new Float32Array(k * d);
      for (let n = 0; n < out.length; n++) out[n] = t[bits[n]];
      return out;
    });
    this.lse = new Float32Array(bytesOf(texts[2]).buffer);
    this.rows = new Map();  // whole rows computed lately (a focused token is redrawn often)
    this.at = -1;  // the query whose vector is in this.vec
    this.vec = new Float64Array(d);
  }
  // Query vector i as numbers (the last one asked for is kept).
  qvec(i) {
    if (this.at !== i) {
      const t = halfTable(), d = this.d;
      for (let c = 0; c < d; c++) this.vec[c] = t[this.query[i * d + c]];
      this.at = i;
    }
    return this.vec;
  }
  // The keys [lo, hi) row i may attend to (attnscope.qk.MaskRule.key_range).
  keyRange(i) {
    const hi = this.causal ? Math.min(this.k, i + 1) : this.k;
    return [this.window === null || this.window === undefined ? 0 : Math.max(0, i - this.window + 1), hi];
  }
  score(i, j) {
    const d = this.d, kj = j * d, Q = this.qvec(i), K = this.keys;
    let dot = 0;
    for (let c = 0; c < d; c++) dot += Q[c] * K[kj + c];
    const s = dot * this.scaling;
    return this.softcap ? this.softcap * Math.tanh(s / this.softcap) : s;
  }
  // [null, weights of keys c0..c1-1, c0]: only the allowed keys are computed, the rest are 0.
  row(i, c0 = 0, c1 = this.k) {
    const whole = c0 === 0 && c1 === this.k;
    if (whole && this.rows.has(i)) return [null, this.rows.get(i), 0];
    const out = new Float32Array(c1 - c0), [lo, hi] = this.keyRange(i), lse = this.lse[i];
    const d = this.d, Q = this.qvec(i), K = this.keys, scaling = this.scaling, cap = this.softcap;
    for (let j = Math.max(c0, lo); j < Math.min(c1, hi); j++) {  // score() written out: the hot loop
      let dot = 0;
      for (let c = 0, kj = j * d; c < d; c++) dot += Q[c] * K[kj + c];
      const s = dot * scaling;
      out[j - c0] = Math.exp((cap ? cap * Math.tanh(s / cap) : s) - lse);
    }
    if (whole) {
      if (this.rows.size >= 16) this.rows.delete(this.rows.keys().next().value);
      this.rows.set(i, out);
    }
    return [null, out, c0];
  }
  // Weights of key j for queries r0..r1-1 (a column).
  col(j, r0, r1) {
    const out = new Float32Array(r1 - r0);
    for (let i = r0; i < r1; i++) out[i - r0] = this.get(i, j);
    return out;
  }
  get(i, j) {
    const [lo, hi] = this.keyRange(i);
    return j >= lo && j < hi ? Math.exp(this.score(i, j) - this.lse[i]) : 0;
  }
}

// Blocks of rows fetched from the server for one kind: {li, hi, r0, r1, c0, c1, w (Float32Array, row-major)}.
class RowStream {
  constructor(kind, fetchRows) {
    Object.assign(this, { kind, fetchRows, blocks: [], pending: [], busy: false, error: null, requests: 0, redraw: null });
  }
  find(li, hi, r0, r1, c0, c1) {
    for (let n = this.blocks.length - 1; n >= 0; n--) {
      const b = this.blocks[n];
      if (b.li === li && b.hi === hi && b.r0 <= r0 && r1 <= b.r1 && b.c0 <= c0 && c1 <= b.c1) return b;
    }
    return null;
  }
  // A draw needed rows r0..r1-1 x keys c0..c1-1 of head (li, hi) and found them missing. Needs of the same keys
  // whose rows touch are merged (a window's rows, read one after the other, become one block), for every head.
  want(li, hi, r0, r1, c0, c1) {
    let need = this.pending.find((n) => n.li === li && n.c0 === c0 && n.c1 === c1 && r0 <= n.r1 && r1 >= n.r0);
    if (!need) this.pending.push(need = { li, r0, r1, c0, c1, heads: new Set() });
    need.r0 = Math.min(need.r0, r0);
    need.r1 = Math.max(need.r1, r1);
    need.heads.add(hi);
  }
  // Ask for the first missing block (one request at a time: the next draw asks for what is still missing). A
  // window grows by its own size on each side, so that small moves are served from what came.
  flush() {
    if (this.busy || this.error || !this.pending.length) return;
    const need = Object.assign({}, this.pending[0]), { q, k } = this.kind, spec = this.kind.spec;
    let heads = [...need.heads].sort((a, b) => a - b);
    if (need.r1 - need.r0 > 1 && need.c1 - need.c0 > 1) {
      const dr = need.r1 - need.r0, dc = need.c1 - need.c0;
      const grown = [Math.max(0, need.r0 - dr), Math.min(q, need.r1 + dr), Math.max(0, need.c0 - dc), Math.min(k, need.c1 + dc)];
      if ((grown[1] - grown[0]) * (grown[3] - grown[2]) * heads.length <= STREAM_MAX) [need.r0, need.r1, need.c0, need.c1] = grown;
    }
    heads = heads.slice(0, Math.max(1, Math.floor(STREAM_MAX / ((need.r1 - need.r0) * (need.c1 - need.c0)))));
    this.busy = true;
    this.requests++;
    this.fetchRows({ kind: this.kind.name, layer: spec.layers[need.li], heads: heads.map((h) => spec.heads[h]),
      rows: [need.r0, need.r1], keys: [need.c0, need.c1] }).then((got) => {
      heads.forEach((hi, n) => {
        this.blocks.push({ li: need.li, hi, r0: need.r0, r1: need.r1, c0: need.c0, c1: need.c1, w: valuesOf(got.data[n], got.dtype) });
        if (this.blocks.length > STREAM_BLOCKS) this.blocks.shift();
      });
    }, (err) => {
      this.error = err && err.message ? err.message : String(err);
    }).then(() => {
      this.busy = false;
      this.pending = [];  // the redraw asks again for what is still missing
      if (this.redraw) this.redraw();
    });
  }
}

// One head of a layer the payload does not carry, read from the blocks its kind's RowStream fetched. Missing
// weights read as 0 (get: NaN) until their block arrives.
class StreamedHead {
  constructor(stream, li, hi) {
    Object.assign(this, { stream, li, hi, q: stream.kind.q, k: stream.kind.k });
  }
  row(i, c0 = 0, c1 = this.k) {
    const b = this.stream.find(this.li, this.hi, i, i + 1, c0, c1);
    if (!b) {
      this.stream.want(this.li, this.hi, i, i + 1, c0, c1);
      return [null, new Float32Array(c1 - c0), c0];
    }
    const at = (i - b.r0) * (b.c1 - b.c0) + c0 - b.c0;
    return [null, b.w.subarray(at, at + c1 - c0), c0];
  }
  col(j, r0, r1) {
    const b = this.stream.find(this.li, this.hi, r0, r1, j, j + 1), out = new Float32Array(r1 - r0);
    if (!b) { this.stream.want(this.li, this.hi, r0, r1, j, j + 1); return out; }
    for (let i = r0; i < r1; i++) out[i - r0] = b.w[(i - b.r0) * (b.c1 - b.c0) + j - b.c0];
    return out;
  }
  get(i, j) {
    const b = this.stream.find(this.li, this.hi, i, i + 1, j, j + 1);
    return b ? b.w[(i - b.r0) * (b.c1 - b.c0) + j - b.c0] : NaN;
  }
}

// Where the rows of layer li (head hi, when given) of a "qk" kind come from: "payload" (recomputed here), "server"
// or null (overview only).
function rowsOf(kind, li, hi) {
  const s = kind.spec, query = s.form === "qk" ? s.qk.query[li] : true;
  if (query && (hi === undefined || query === true || query[hi])) return "payload";
  return s.fetchRows ? "server" : null;
}

// The head (li, hi) of a "qk" kind: recomputed, streamed, or null when its layer is not carried; undefined while the
// page still reads its vectors (kind.waiting: the view's next kind.flush asks it to draw again shortly).
function qkHead(kind, li, hi) {
  const where = rowsOf(kind, li, hi);
  if (where === "payload") {
    const texts = qkTexts(kind, li, hi);
    if (!texts) { kind.waiting = true; return undefined; }
    return new QKHead(kind, li, hi, texts);
  }
  if (where === null) return null;
  if (!kind.stream) kind.stream = new RowStream(kind, kind.spec.fetchRows);
  return new StreamedHead(kind.stream, li, hi);
}

// What a "qk" kind holds, for the caption: "exact rows recomputed from float16 q/k for layers 0-7 (...); others:
// overview only".
function qkNote(kind) {
  const s = kind.spec.qk, carried = s.layers, served = !!kind.spec.fetchRows;
  if (!carried.length) return served ? "exact rows computed by the server as they come into view (q/k form)"
    : "overview only: this file carries no queries and keys (pass exact_layers= or a larger budget_mb=)";
  const err = s.error === null ? "" : ` (largest difference from float32 on sampled rows: ${Number(s.error).toExponential(1)})`;
  const all = carried.length === kind.layers.length;
  const others = all ? "" : served ? "; other layers: rows computed by the server" : "; other layers: overview only";
  return `exact rows recomputed from float16 q/k for ${all ? "every layer" : "layers " + spans(carried)}${err}${others}`;
}

// The toolbar's short form of qkNote ("" when every layer's rows can be read).
function qkBadge(kind) {
  const s = kind.spec.qk;
  if (s.layers.length === kind.layers.length || kind.spec.fetchRows) return "";
  return s.layers.length ? `exact rows: layers ${spans(s.layers)} \u00b7 others: overview only` : "overview only";
}

// [0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"
function spans(list) {
  const out = [];
  for (let a = 0; a < list.length;) {
    let b = a;
    while (b + 1 < list.length && list[b + 1] === list[b] + 1) b++;
    out.push(b > a ? `${list[a]}-${list[b]}` : String(list[a]));
    a = b + 1;
  }
  return out.join(", ");
}

// Why layer li of a kind shows no rows right now ("" when it does): still being read, not carried, or the server
// failed.
function rowsProblem(kind, li) {
  if (kind.spec.form !== "qk") return "";
  if (kind.waiting) return `reading the queries and keys of layer ${kind.layers[li]}\u2026`;
  if (rowsOf(kind, li) === null) {
    const carried = kind.spec.qk.layers;
    return `layer ${kind.layers[li]}: overview only (this file carries the queries and keys of ` +
      (carried.length ? `layers ${spans(carried)})` : "no layer)");
  }
  return kind.stream && kind.stream.error ? `could not fetch rows: ${kind.stream.error}` : "";
}

// The queries and keys of head (li, hi) when its layer is on the server only (the neuron view needs them, not just
// rows): fetched once through spec.fetchVectors, then the head is recomputed here; done() redraws. Returns what is
// happening ("" when there is no server to ask).
function loadVectors(kind, li, hi, done) {
  const s = kind.spec, qk = s.qk, key = li + "," + hi;
  if (!s.fetchVectors) return "";
  if (kind.vectorError) return `could not fetch the query and key vectors: ${kind.vectorError}`;
  kind.loading = kind.loading || new Set();
  if (!kind.loading.has(key)) {
    kind.loading.add(key);
    s.fetchVectors({ kind: kind.name, layer: s.layers[li], head: s.heads[hi] }).then((got) => {
      if (!qk.query[li]) for (const [part, n] of [["query", s.heads.length], ["key", qk.kvHeads.length], ["lse", s.heads.length]]) qk[part][li] = new Array(n).fill(null);
      qk.query[li][hi] = got.query;
      qk.key[li][qk.kv[hi]] = got.key;
      qk.lse[li][hi] = got.lse;
      kind.cache.delete("a" + li + "," + hi);
    }, (err) => {
      kind.vectorError = err && err.message ? err.message : String(err);
    }).then(() => { kind.loading.delete(key); done(); });
  }
  return `fetching the query and key vectors of layer ${s.layers[li]}, head ${s.heads[hi]}\u2026`;
}
