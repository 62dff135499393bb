// Rows of a "qk" payload (attnscope/encode_qk.py): exact attention recomputed here from float16 queries and keys and
// each row's log-sum-exp, as attnscope/qk.py does,
//     w[i, j] = exp(s - lse[i]),   s = softcap(q_i . k_j * scaling)   where the mask rule allows (i, j),
// so a row costs O(k d) and a window of the views only its cells. Layers whose queries and keys the payload does not
// carry are read from the server when the page has one (spec.fetchRows, set by the web app): their heads hold the
// blocks fetched so far, note the blocks a draw missed, and the view asks for them (kind.flush) and redraws when they
// arrive. Every head here reads like decode.js's Head: row(i, c0, c1), col(j, r0, r1), get(i, j).

const STREAM_BLOCKS = 96;  // fetched blocks kept per kind (oldest dropped first)
const STREAM_MAX = 1 << 21;  // weights asked for at once at most (the server's limit: attnscope/server/payloads.py)

// float16 values coded as low bytes then high bytes, deflated in z85 text ("f16planes") -> Float32Array.
function halfPlanes(text, n) {
  const b = inflate85(text, 2 * n), t = halfTable(), out = new Float32Array(n);
  if (b.length < 2 * n) throw new Error("attnscope: a q/k array in the payload is too short");
  for (let i = 0; i < n; i++) out[i] = t[b[i] | (b[n + i] << 8)];
  return out;
}

// Rows of one head of a carried layer, recomputed from its queries (one head), keys (its key/value head) and LSEs.
class QKHead {
  constructor(kind, li, hi) {
    const s = kind.spec.qk, q = kind.q, k = kind.k, d = s.d, kv = s.kv[hi];
    Object.assign(this, { q, k, d, scaling: s.scaling, softcap: s.softcap, causal: s.causal, window: s.windows[li] });
    this.query = halfPlanes(s.query[li][hi], q * d);
    this.keys = kind.cached("k" + li + "," + kv, () => halfPlanes(s.key[li][kv], k * d));
    this.lse = new Float32Array(bytesOf(s.lse[li][hi]).buffer);
    this.rows = new Map();  // whole rows computed lately (a focused token is redrawn often)
  }
  // The keys [lo, hi) row i may attend to (attnscope.qk.MaskRule.key_range).
  keyRange(i) {
    const hi = this.causal ? Math.min(this.k, i + 1) : this.k;
    return [this.window === null || this.window === undefined ? 0 : Math.max(0, i - this.window + 1), hi];
  }
  score(i, j) {
    const d = this.d, qi = i * d, kj = j * d, Q = this.query, K = this.keys;
    let dot = 0;
    for (let c = 0; c < d; c++) dot += Q[qi + c] * K[kj + c];
    const s = dot * this.scaling;
    return this.softcap ? this.softcap * Math.tanh(s / this.softcap) : s;
  }
  // [null, weights of keys c0..c1-1, c0]: only the allowed keys are computed, the rest are 0.
  row(i, c0 = 0, c1 = this.k) {
    const whole = c0 === 0 && c1 === this.k;
    if (whole && this.rows.has(i)) return [null, this.rows.get(i), 0];
    const out = new Float32Array(c1 - c0), [lo, hi] = this.keyRange(i), lse = this.lse[i];
    for (let j = Math.max(c0, lo); j < Math.min(c1, hi); j++) out[j - c0] = Math.exp(this.score(i, j) - lse);
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
    Object.assign(this, { kind, fetchRows, blocks: [], pending: new Map(), busy: false, error: null, requests: 0,
      redraw: null });
  }
  find(li, hi, r0, r1, c0, c1) {
    for (let n = this.blocks.length - 1; n >= 0; n--) {
      const b = this.blocks[n];
      if (b.li === li && b.hi === hi && b.r0 <= r0 && r1 <= b.r1 && b.c0 <= c0 && c1 <= b.c1) return b;
    }
    return null;
  }
  // A draw needed rows r0..r1-1 x keys c0..c1-1 of head (li, hi) and found them missing: ask for that block (a
  // window grows by its own size on each side, so small moves are served from what came), with the other heads that
  // miss the same block.
  want(li, hi, r0, r1, c0, c1) {
    const { q, k } = this.kind;
    if (r1 - r0 > 1 && c1 - c0 > 1) {
      const dr = r1 - r0, dc = c1 - c0;
      [r0, r1, c0, c1] = [Math.max(0, r0 - dr), Math.min(q, r1 + dr), Math.max(0, c0 - dc), Math.min(k, c1 + dc)];
    }
    const key = [li, r0, r1, c0, c1].join(",");
    if (!this.pending.has(key)) this.pending.set(key, { li, r0, r1, c0, c1, heads: new Set() });
    this.pending.get(key).heads.add(hi);
  }
  // Send the oldest missing block (one request at a time; the rest wait for the next draw), if any.
  flush() {
    if (this.busy || this.error || !this.pending.size) return;
    const [key, need] = this.pending.entries().next().value;
    this.pending.delete(key);
    const area = (need.r1 - need.r0) * (need.c1 - need.c0);
    let heads = [...need.heads].sort((a, b) => a - b);
    heads = heads.slice(0, Math.max(1, Math.floor(STREAM_MAX / Math.max(1, area))));
    this.busy = true;
    this.requests++;
    const spec = this.kind.spec;
    this.fetchRows({ kind: this.kind.name, layer: spec.layers[need.li], heads: heads.map((h) => spec.heads[h]),
      rows: [need.r0, need.r1], keys: [need.c0, need.c1] }).then((got) => {
      heads.forEach((hi, n) => {
        this.blocks.push(Object.assign({ hi, w: valuesOf(got.data[n], got.dtype) }, need));
        if (this.blocks.length > STREAM_BLOCKS) this.blocks.shift();
      });
    }, (err) => {
      this.error = err && err.message ? err.message : String(err);
    }).then(() => {
      this.busy = false;
      this.pending.clear();  // the redraw asks again for what is still missing
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

// Where the rows of layer li of a "qk" kind come from: "payload" (recomputed here), "server" or null (overview only).
function rowsOf(kind, li) {
  const s = kind.spec;
  if (s.form !== "qk") return "payload";
  if (s.qk.query[li]) return "payload";
  return s.fetchRows ? "server" : null;
}

// The head (li, hi) of a "qk" kind: recomputed, streamed, or null when its layer is not carried.
function qkHead(kind, li, hi) {
  const where = rowsOf(kind, li);
  if (where === "payload") return new QKHead(kind, li, hi);
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
  const err = s.error === null ? "" : `, weights within ${Number(s.error).toExponential(1)} of float32`;
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

// Why layer li of a kind shows no rows right now ("" when it does): not carried, or the server failed.
function rowsProblem(kind, li) {
  if (kind.spec.form !== "qk") return "";
  if (rowsOf(kind, li) === null) {
    const carried = kind.spec.qk.layers;
    return `layer ${kind.layers[li]}: overview only (this file carries the queries and keys of ` +
      (carried.length ? `layers ${spans(carried)})` : "no layer)");
  }
  return kind.stream && kind.stream.error ? `could not fetch rows: ${kind.stream.error}` : "";
}
