// The minimap: the whole sequence (one filter's block of it) as a block-max overview beside a view's window of tokens,
// the window outlined on it; a click or drag on it moves the window there. The head and matrix views share it. It is
// painted from the heads' thumbnails (kind.thumb: shipped with pruned and q/k payloads, pooled from the weights
// otherwise), so it costs the same at any length.

const MINIMAP = 240;  // px: the minimap's longer side at most

// onJump(i, j): the query and key token under the pointer. {node, paint(thumbs, f, theme), mark(rows, cols)}
function minimap(label, onJump) {
  const node = el("div", "as-mside"), wrap = el("div", "as-ovwrap");
  const canvas = el("canvas", "as-overview"), box = el("div", "as-viewport");
  wrap.append(canvas, box);
  node.append(el("div", "as-label", label), wrap);
  let at = null;  // {r0, c0 (first token of the first cell), k (px per token)}

  // thumbs: the thumbnails of the heads shown (all of one shape; their maximum is drawn), f: {rows, cols} filter.
  function paint(thumbs, f, theme) {
    const t = thumbs[0], b = t.block, lut = heatLut(theme);
    const ra = Math.floor(f.rows[0] / b), rb = Math.max(ra + 1, Math.ceil(f.rows[1] / b));
    const ca = Math.floor(f.cols[0] / b), cb = Math.max(ca + 1, Math.ceil(f.cols[1] / b));
    const g = Math.max(1, Math.ceil(Math.max(rb - ra, cb - ca) / MINIMAP));
    const h = Math.ceil((rb - ra) / g), w = Math.ceil((cb - ca) / g), pooled = new Uint8Array(w * h);
    for (const th of thumbs) {
      for (let r = ra; r < rb; r++) {
        const src = r * th.cols, dst = (((r - ra) / g) | 0) * w;
        for (let c = ca; c < cb; c++) {
          const v = th.bytes[src + c], o = dst + (((c - ca) / g) | 0);
          if (v > pooled[o]) pooled[o] = v;
        }
      }
    }
    const scale = MINIMAP / Math.max(w, h, MINIMAP / 8);  // px per cell (at most 8)
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = w * scale + "px";
    canvas.style.height = h * scale + "px";
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h);
    for (let p = 0; p < pooled.length; p++) img.data.set(lut.subarray(pooled[p] * 4, pooled[p] * 4 + 4), p * 4);
    ctx.putImageData(img, 0, 0);
    at = { r0: ra * b, c0: ca * b, k: scale / (b * g) };
  }

  // Outline query tokens rows[0]..rows[1]-1 x key tokens cols[0]..cols[1]-1.
  function mark(rows, cols) {
    const { r0, c0, k } = at;
    Object.assign(box.style, { left: (cols[0] - c0) * k + "px", top: (rows[0] - r0) * k + "px",
      width: Math.max(3, (cols[1] - cols[0]) * k) + "px", height: Math.max(3, (rows[1] - rows[0]) * k) + "px" });
    node.dataset.mark = `${rows[0]},${rows[1]},${cols[0]},${cols[1]}`;
  }

  const jump = (e) => {
    const rect = canvas.getBoundingClientRect();
    onJump(at.r0 + (e.clientY - rect.top) / at.k, at.c0 + (e.clientX - rect.left) / at.k);
  };
  canvas.addEventListener("mousedown", (e) => {
    e.preventDefault();
    jump(e);
    const up = () => { window.removeEventListener("mousemove", jump); window.removeEventListener("mouseup", up); };
    window.addEventListener("mousemove", jump);
    window.addEventListener("mouseup", up);
  });
  return { node, paint, mark };
}
