// attnscope decoding, shared by every view: quantized values, base64 and z85 text, inflate, one head's weights.
// Python (attnscope/encode.py, attnscope/codec.py) writes what this reads; nothing here touches the page.

// "sqrt8": byte b stands for (b / 255)^2. "f16": little-endian IEEE half floats. Dense heads are base64 strings;
// pruned heads and thumbnails are raw-deflate streams in z85 text (attnscope/codec.py documents both).
const SQRT8 = new Float32Array(256).map((_, b) => (b / 255) * (b / 255));
let HALF = null;

function halfTable() {
  if (HALF === null) {
    HALF = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      HALF[h] = e === 0 ? sign * f * 2 ** -24 : e === 31 ? (f ? NaN : sign * Infinity) : sign * (1 + f / 1024) * 2 ** (e - 15);
    }
  }
  return HALF;
}

function bytesOf(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function decodeValues(b, code) {
  if (code === "sqrt8") {
    const out = new Float32Array(b.length);
    for (let i = 0; i < b.length; i++) out[i] = SQRT8[b[i]];
    return out;
  }
  const t = halfTable(), out = new Float32Array(b.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = t[b[2 * i] | (b[2 * i + 1] << 8)];
  return out;
}

function valuesOf(b64, code) {
  return decodeValues(bytesOf(b64), code);
}

function toSqrt8(w) {
  return w <= 0 ? 0 : w >= 1 ? 255 : Math.round(Math.sqrt(w) * 255);
}

// z85: base 85, 5 characters per 4 bytes (big-endian), over the alphabet of attnscope/codec.py.
const Z85 = "!#$%()*+,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz{|";
const Z85_VALUE = new Uint8Array(256).fill(255);
for (let i = 0; i < 85; i++) Z85_VALUE[Z85.charCodeAt(i)] = i;

function unz85(s) {
  const n = (s.length / 5) | 0, out = new Uint8Array(n * 4), Z = Z85_VALUE;
  let bad = 0;
  for (let p = 0, o = 0; o < 4 * n; p += 5, o += 4) {
    const a = Z[s.charCodeAt(p) & 255], b = Z[s.charCodeAt(p + 1) & 255], c = Z[s.charCodeAt(p + 2) & 255];
    const d = Z[s.charCodeAt(p + 3) & 255], e = Z[s.charCodeAt(p + 4) & 255];
    bad |= a | b | c | d | e;
    const v = (((a * 85 + b) * 85 + c) * 85 + d) * 85 + e;
    out[o] = v >>> 24; out[o + 1] = (v >>> 16) & 255; out[o + 2] = (v >>> 8) & 255; out[o + 3] = v & 255;
  }
  if (bad & 128 || s.length % 5) throw new Error("attnscope: corrupt z85 text in the payload");
  return out;
}

// Inflate a raw deflate stream (RFC 1951): the decoder for what Python's zlib wrote. sizeHint: expected length.
const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
  4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
let FIXED = null;

// Canonical Huffman code from code lengths, as a lookup table on the next input bits (LSB first). Its first `bits`
// (<= 10) entries are indexed by that many bits: symbol << 4 | code length (0: no such code), or, for codes longer
// than that, -(offset << 4 | extra) pointing at a second-level table indexed by `extra` further bits.
function huffman(lengths) {
  let max = 0;
  for (const len of lengths) if (len > max) max = len;
  const bits = Math.min(max, 10), slots = 1 << bits, count = new Uint16Array(16), next = new Uint16Array(16);
  for (const len of lengths) count[len]++;
  count[0] = 0;
  for (let len = 1, code = 0; len < 16; len++) { code = (code + count[len - 1]) << 1; next[len] = code; }
  const revs = new Int32Array(lengths.length), extra = new Uint8Array(slots), offset = new Int32Array(slots);
  for (let sym = 0; sym < lengths.length; sym++) {
    const len = lengths[sym];
    if (!len) continue;
    let c = next[len]++, rev = 0;
    for (let b = 0; b < len; b++) { rev = (rev << 1) | (c & 1); c >>= 1; }
    revs[sym] = rev;
    if (len > bits) extra[rev & (slots - 1)] = Math.max(extra[rev & (slots - 1)], len - bits);
  }
  let size = slots;
  for (let p = 0; p < slots; p++) if (extra[p]) { offset[p] = size; size += 1 << extra[p]; }
  const table = new Int32Array(size);
  for (let p = 0; p < slots; p++) if (extra[p]) table[p] = -((offset[p] << 4) | extra[p]);
  for (let sym = 0; sym < lengths.length; sym++) {
    const len = lengths[sym], rev = revs[sym];
    if (!len) continue;
    if (len <= bits) {
      for (let i = rev; i < slots; i += 1 << len) table[i] = (sym << 4) | len;
    } else {
      const p = rev & (slots - 1);
      for (let i = rev >>> bits; i < 1 << extra[p]; i += 1 << (len - bits)) table[offset[p] + i] = (sym << 4) | len;
    }
  }
  return { table, bits };
}

// The entry of the code at the start of bit buffer bb (which holds at least 15 bits).
function lookup(h, bb) {
  const e = h.table[bb & ((1 << h.bits) - 1)];
  return e >= 0 ? e : h.table[(-e >> 4) + ((bb >>> h.bits) & ((1 << (-e & 15)) - 1))];
}

// The decoder's state lives in one object passed to plain functions (closures over hot variables are slow).
function inflate(src, sizeHint) {
  const z = { src, pos: 0, bb: 0, bc: 0, out: new Uint8Array(Math.max(64, sizeHint || src.length * 4)), op: 0 };
  for (let last = 0; !last;) {
    last = getBits(z, 1);
    const type = getBits(z, 2);
    if (type === 0) {  // stored: to a byte boundary, giving back the whole bytes read ahead
      z.bc -= z.bc & 7; z.pos -= z.bc >> 3; z.bb = 0; z.bc = 0;
      const len = src[z.pos] | (src[z.pos + 1] << 8);
      z.pos += 4;
      if (z.pos + len > src.length) inflateFail();
      z.out = grow(z.out, z.op, len);
      z.out.set(src.subarray(z.pos, z.pos + len), z.op);
      z.op += len; z.pos += len;
    } else if (type === 1) {
      if (FIXED === null) {
        const l = new Uint8Array(288).fill(8, 0, 144).fill(9, 144, 256).fill(7, 256, 280).fill(8, 280, 288);
        FIXED = [huffman(l), huffman(new Uint8Array(30).fill(5))];
      }
      codes(z, FIXED[0], FIXED[1]);
    } else if (type === 2) {
      const nlit = getBits(z, 5) + 257, ndist = getBits(z, 5) + 1, ncl = getBits(z, 4) + 4, cl = new Uint8Array(19);
      for (let i = 0; i < ncl; i++) cl[CL_ORDER[i]] = getBits(z, 3);
      const clh = huffman(cl), lens = new Uint8Array(nlit + ndist);
      for (let i = 0; i < lens.length;) {
        const s = getSym(z, clh);
        if (s < 16) { lens[i++] = s; continue; }
        const rep = s === 16 ? 3 + getBits(z, 2) : s === 17 ? 3 + getBits(z, 3) : 11 + getBits(z, 7);
        if ((s === 16 && i === 0) || i + rep > lens.length) inflateFail();
        lens.fill(s === 16 ? lens[i - 1] : 0, i, i + rep);
        i += rep;
      }
      codes(z, huffman(lens.subarray(0, nlit)), huffman(lens.subarray(nlit)));
    } else {
      inflateFail();
    }
  }
  return z.out.subarray(0, z.op);
}

function inflateFail() {
  throw new Error("attnscope: corrupt deflate stream in the payload");
}

function getBits(z, n) {
  while (z.bc < n) { z.bb |= (z.pos < z.src.length ? z.src[z.pos] : 0) << z.bc; z.pos++; z.bc += 8; }
  const v = z.bb & ((1 << n) - 1);
  z.bb >>>= n; z.bc -= n;
  return v;
}

function getSym(z, h) {
  while (z.bc < 15) { z.bb |= (z.pos < z.src.length ? z.src[z.pos] : 0) << z.bc; z.pos++; z.bc += 8; }
  const e = lookup(h, z.bb), len = e & 15;
  if (!len) inflateFail();
  z.bb >>>= len; z.bc -= len;
  return e >> 4;
}

function grow(out, op, n) {
  if (op + n <= out.length) return out;
  let m = out.length * 2;
  while (m < op + n) m *= 2;
  const bigger = new Uint8Array(m);
  bigger.set(out.subarray(0, op));
  return bigger;
}

// One block's literals, lengths and distances, with the bit reads written out on local copies of the state: the
// buffer is refilled to at least 25 bits, enough for a code (<= 15 bits) and a length's extra bits (<= 5);
// distances refill again for their <= 13.
function codes(z, lit, dist) {
  const src = z.src, end = src.length, lt = lit.table, lb = lit.bits, lm = (1 << lb) - 1;
  let { pos, bb, bc, out, op } = z;
  for (;;) {
    while (bc < 25) { bb |= (pos < end ? src[pos] : 0) << bc; pos++; bc += 8; }
    let e = lt[bb & lm];
    if (e < 0) e = lt[(-e >> 4) + ((bb >>> lb) & ((1 << (-e & 15)) - 1))];
    let len = e & 15;
    if (!len) inflateFail();
    bb >>>= len; bc -= len;
    const s = e >> 4;
    if (s < 256) {
      if (op === out.length) out = grow(out, op, 1);
      out[op++] = s;
      continue;
    }
    if (s === 256) break;
    const li = s - 257;
    if (li >= 29) inflateFail();
    const le = LEN_EXTRA[li], length = LEN_BASE[li] + (bb & ((1 << le) - 1));
    bb >>>= le; bc -= le;
    while (bc < 25) { bb |= (pos < end ? src[pos] : 0) << bc; pos++; bc += 8; }
    e = lookup(dist, bb); len = e & 15;
    if (!len) inflateFail();
    bb >>>= len; bc -= len;
    const di = e >> 4;
    if (di >= 30) inflateFail();
    const de = DIST_EXTRA[di];
    while (bc < de) { bb |= (pos < end ? src[pos] : 0) << bc; pos++; bc += 8; }
    const d = DIST_BASE[di] + (bb & ((1 << de) - 1));
    bb >>>= de; bc -= de;
    if (d > op) inflateFail();
    if (op + length > out.length) out = grow(out, op, length);
    for (const stop = op + length; op < stop; op++) out[op] = out[op - d];
  }
  Object.assign(z, { pos, bb, bc, out, op });
}

function inflate85(text, sizeHint) {
  return inflate(unz85(text), sizeHint);
}

// One head's weights [q, k]: dense (Float32Array, row-major) or pruned (CSR, keys increasing within a row) behind
// the same reading methods (recompute.js's heads of q/k payloads read alike).
class Head {
  constructor(q, k, dense, indptr, indices, values) {
    Object.assign(this, { q, k, dense, indptr, indices, values });
  }
  // [indices or null (= base, base+1, ...), weights, base] of query row i at keys c0..c1-1 (default: all)
  row(i, c0 = 0, c1 = this.k) {
    if (this.dense) return [null, this.dense.subarray(i * this.k + c0, i * this.k + c1), c0];
    let a = this.indptr[i], b = this.indptr[i + 1];
    if (c0 > 0) a = this.seek(a, b, c0);
    if (c1 < this.k) b = this.seek(a, b, c1);
    return [this.indices.subarray(a, b), this.values.subarray(a, b), 0];
  }
  // The first entry in a..b-1 whose key is >= j (pruned rows keep their keys in increasing order).
  seek(a, b, j) {
    while (a < b) {
      const mid = (a + b) >> 1;
      if (this.indices[mid] < j) a = mid + 1; else b = mid;
    }
    return a;
  }
  // Weights of key j for queries r0..r1-1 (a column).
  col(j, r0, r1) {
    const out = new Float32Array(r1 - r0);
    for (let i = r0; i < r1; i++) out[i - r0] = this.get(i, j);
    return out;
  }
  get(i, j) {
    if (this.dense) return this.dense[i * this.k + j];
    let lo = this.indptr[i], hi = this.indptr[i + 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1, v = this.indices[mid];
      if (v === j) return this.values[mid];
      if (v < j) lo = mid + 1; else hi = mid;
    }
    return 0;
  }
}

// A pruned head's item ({nnz, countBytes, counts, gaps, far, values}: attnscope/codec.py) -> Head.
function prunedHead(q, k, item, code) {
  const cb = item.countBytes, nnz = item.nnz, counts = inflate85(item.counts, q * cb);
  const indptr = new Uint32Array(q + 1);
  for (let i = 0; i < q; i++) {
    let c = 0;
    for (let t = cb - 1; t >= 0; t--) c = c * 256 + counts[i * cb + t];
    indptr[i + 1] = indptr[i] + c;
  }
  if (indptr[q] !== nnz) throw new Error("attnscope: a pruned head's counts do not add up");
  const first = inflate85(item.gaps, nnz), far = inflate85(item.far, 64), indices = new Uint32Array(nnz);
  for (let i = 0, e = 0, f = 0; i < q; i++) {
    let key = 0;
    for (const end = indptr[i + 1]; e < end; e++) {
      let b = first[e], gap = b & 127;
      for (let shift = 128; b & 128; shift *= 128) { b = far[f++]; gap += (b & 127) * shift; }
      key += gap;
      indices[e] = key;
    }
  }
  return new Head(q, k, null, indptr, indices, decodeValues(inflate85(item.values, nnz * (code === "f16" ? 2 : 1)), code));
}

