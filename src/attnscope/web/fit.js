// Fitting a view to its container: the width the view may use, a ResizeObserver (on the view's own container,
// scoped to this view) that lays it out again when that width changes, and the layouts of the model view's grid and
// the neuron view's columns for a given width.

// The width in CSS px that root's content may use: its container's content box less root's own padding, border and
// margin. null while root is not in a laid-out page (JupyterLab may run a view before its output is attached).
function availableWidth(root) {
  const box = root.parentElement;
  if (!box || !root.isConnected || !box.clientWidth) return null;
  const px = (style, ...names) => names.reduce((sum, n) => sum + (parseFloat(style[n]) || 0), 0);
  const b = getComputedStyle(box), r = getComputedStyle(root);
  return Math.floor(box.clientWidth - px(b, "paddingLeft", "paddingRight")
    - px(r, "paddingLeft", "paddingRight", "borderLeftWidth", "borderRightWidth", "marginLeft", "marginRight"));
}

// Call relayout(width) whenever the width root may use changes (at most once per frame); returns stop().
function watchWidth(root, relayout) {
  if (typeof ResizeObserver === "undefined" || !root.parentElement) return () => {};
  let last = availableWidth(root), queued = false;
  const observer = new ResizeObserver(() => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      const width = availableWidth(root);
      if (width !== null && width !== last) { last = width; relayout(width); }
    });
  });
  observer.observe(root.parentElement);
  return () => observer.disconnect();
}

// The model view's thumbnail side for `heads` columns after a label column of `labelWidth` px, `gap` px apart:
// as large as the width allows, at most `most` (the size it has on a wide page), at least 6 px.
function fitCell(width, heads, labelWidth, gap, most) {
  if (width === null) return most;
  return Math.max(6, Math.min(most, Math.floor((width - labelWidth) / heads) - gap));
}

// The neuron view's columns for `d`-dimensional vectors and token columns `left`/`right` px wide, compressed to
// `width` when they do not fit: first the lines between query and keys, then the token columns (labels are cut
// with an ellipsis), then the vector cells, then the numbers and the gaps. {cw (px per vector cell, may be
// fractional), vec, lines, num, gap, left, right}.
function fitNeuron(width, d, left, right) {
  const g = { cw: Math.max(2, Math.min(8, Math.floor(192 / d))), lines: 150, num: 54, gap: 12, left, right };
  const total = () => g.left + g.right + 3 * d * g.cw + 10 + g.lines + 2 * g.gap + 2 * g.num + 6;
  let over = width === null ? 0 : total() - width;
  const take = (key, least, times) => {
    if (over <= 0 || g[key] <= least) return;
    const cut = Math.min(g[key] - least, over / times);
    g[key] -= cut;
    over -= cut * times;
  };
  take("lines", 40, 1);
  const cols = g.left + g.right, keep = Math.min(cols, 120);
  if (over > 0 && cols > keep) {
    const cut = Math.min(cols - keep, over), share = g.left / cols;
    g.left -= cut * share;
    g.right -= cut * (1 - share);
    over -= cut;
  }
  take("cw", 0.5, 3 * d);
  take("num", 38, 2);
  take("gap", 4, 2);
  g.left = Math.floor(g.left);
  g.right = Math.floor(g.right);
  g.lines = Math.floor(g.lines);
  g.vec = d * g.cw;
  return g;
}
