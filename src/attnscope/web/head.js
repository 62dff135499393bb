// Head view: query tokens (left) joined to key tokens (right) by lines, one colour per head, opacity = weight.
// Lines are bucketed by opacity into a few paths per head and stroked on one canvas (no DOM node per pair).

const BOX = 36;          // px of weight boxes beside each token column (shown while a token is in focus)
const LEVELS = 64;       // opacity buckets; weights below 1/(2*LEVELS) are not drawn (they would be invisible)

views.head = function renderHead(root, payload, options) {
  const o = Object.assign({ prettify: true, theme: "auto", filter: "All" }, options);
  const kinds = kindsOf(payload);
  const ui = frame(root, payload, o, "head");
  const st = { kind: kinds.get(o.kind) || kinds.values().next().value, li: 0, sel: new Set(), filter: null, focus: null, pinned: false };

  function startKind(kind, layer, heads) {
    st.kind = kind;
    st.li = Math.max(0, kind.layers.indexOf(layer));
    st.sel = new Set(heads ? heads.map((h) => kind.heads.indexOf(h)).filter((i) => i >= 0) : kind.heads.map((_, i) => i));
  }
  startKind(st.kind, o.layer, o.heads);

  // ---- toolbar
  const kindSel = kindControl(kinds, st.kind, (name) => { startKind(kinds.get(name)); rebuild(); });
  const layerSel = selectControl("Layer", layerItems(st.kind), st.li, (li) => { st.li = li; draw(); });
  let filterSel = null;
  const filterSlot = el("span", "as-slot");
  if (kindSel) ui.bar.append(kindSel.node);
  ui.bar.append(layerSel.node, filterSlot);
  const sw = swatches(st.kind, st.sel, () => draw());
  ui.bar.append(sw.node);

  // ---- body: left tokens | canvas | right tokens
  const wrap = el("div", "as-head");
  const left = el("div", "as-col as-left");
  const right = el("div", "as-col as-right");
  const canvas = el("canvas", "as-lines");
  wrap.append(left, canvas, right);
  ui.body.append(wrap);
  let geo = null;  // {rows: [r0, r1], cols: [c0, c1], width, height}

  function columnWidth(tokens) {
    let w = 24;
    for (const t of tokens) w = Math.max(w, textWidth(tokenText(t, o.prettify), TOKEN_FONT));
    return Math.min(Math.ceil(w) + 12, 180);
  }

  function fillColumn(col, tokens, [a, b], side) {
    col.textContent = "";
    const frag = document.createDocumentFragment();
    for (let i = a; i < b; i++) {
      const s = el("span", "as-tok", tokenText(tokens[i], o.prettify));
      s.title = tokens[i];
      s.dataset.i = String(i);
      s.dataset.side = side;
      frag.append(s);
    }
    col.append(frag);
  }

  function rebuild() {
    const kind = st.kind;
    const fs = filtersOf(payload, kind);
    const f = pickFilter(fs, st.filter === null ? o.filter : st.filter);
    st.filter = f.name;
    st.focus = null; st.pinned = false;
    if (kindSel) kindSel.set(kind.name);
    layerSel.fill(layerItems(kind), st.li);
    filterSlot.textContent = "";
    filterSel = filterControl(payload, kind, st.filter, (name) => { st.filter = name; rebuild(); });
    if (filterSel) filterSlot.append(filterSel.node);
    sw.rebuild(kind, st.sel);
    describe(ui.caption, payload, kind);
    fillColumn(left, kind.queryTokens, f.rows, "q");
    fillColumn(right, kind.keyTokens, f.cols, "k");
    left.style.width = columnWidth(kind.queryTokens.slice(f.rows[0], f.rows[1])) + "px";
    right.style.width = columnWidth(kind.keyTokens.slice(f.cols[0], f.cols[1])) + "px";
    const height = Math.max(f.rows[1] - f.rows[0], f.cols[1] - f.cols[0], 1) * ROW;
    const width = 2 * BOX + 200;
    geo = { rows: f.rows, cols: f.cols, width, height };
    fitCanvas(canvas, width, height);
    draw();
  }

  function draw() {
    const ctx = canvas.getContext("2d");
    const { rows: [r0, r1], cols: [c0, c1], width, height } = geo;
    ctx.clearRect(0, 0, width, height);
    const kind = st.kind, x0 = BOX + 2, x1 = width - BOX - 2, nHeads = Math.max(...kind.heads) + 1;
    const yq = (i) => (i - r0) * ROW + ROW / 2, yk = (j) => (j - c0) * ROW + ROW / 2;
    const focus = st.focus, sel = [...st.sel].sort((a, b) => a - b), bw = Math.max(2, Math.floor(BOX / Math.max(1, sel.length)));
    let drawn = 0;
    sel.forEach((hi, s) => {
      const head = kind.head(st.li, hi), color = headColor(kind.heads[hi], nHeads);
      const paths = [];
      const add = (i, j, w) => {
        const lvl = Math.round(w * LEVELS);
        if (lvl < 1) return;
        const p = paths[lvl] || (paths[lvl] = new Path2D());
        p.moveTo(x0, yq(i));
        p.lineTo(x1, yk(j));
        drawn++;
      };
      ctx.fillStyle = color;
      if (!focus || focus.side === "q") {
        const a = focus ? focus.i : r0, b = focus ? focus.i + 1 : r1;
        for (let i = a; i < b; i++) {
          const [idx, val] = head.row(i);
          for (let t = 0; t < val.length; t++) {
            const j = idx ? idx[t] : t;
            if (j < c0 || j >= c1) continue;
            add(i, j, val[t]);
            if (focus && val[t] > 0) {
              ctx.globalAlpha = Math.min(1, val[t]);
              ctx.fillRect(x1 + 2 + s * bw, yk(j) - ROW / 2 + 2, bw - 1, ROW - 4);
            }
          }
        }
      } else {
        for (let i = r0; i < r1; i++) {
          const w = head.get(i, focus.i);
          add(i, focus.i, w);
          if (w > 0) {
            ctx.globalAlpha = Math.min(1, w);
            ctx.fillRect(x0 - 2 - (s + 1) * bw, yq(i) - ROW / 2 + 2, bw - 1, ROW - 4);
          }
        }
      }
      ctx.strokeStyle = color;
      ctx.lineWidth = focus ? 2 : 1 / ctx.getTransform().a;  // one device pixel: Skia's fast hairline path
      paths.forEach((p, lvl) => {
        if (!p) return;
        ctx.globalAlpha = Math.min(1, lvl / LEVELS);
        ctx.stroke(p);
      });
    });
    ctx.globalAlpha = 1;
    root.dataset.lines = String(drawn);
    for (const [col, side] of [[left, "q"], [right, "k"]]) {
      for (const s of col.children) s.classList.toggle("as-on", !!focus && focus.side === side && s.dataset.i === String(focus.i));
    }
  }

  // ---- interactions: hover a token for only its lines, click to pin it
  const tokenOf = (e) => {
    const t = e.target.closest && e.target.closest(".as-tok");
    return t && wrap.contains(t) ? { side: t.dataset.side, i: Number(t.dataset.i) } : null;
  };
  const same = (a, b) => !!a && !!b && a.side === b.side && a.i === b.i;
  wrap.addEventListener("mouseover", (e) => {
    const t = tokenOf(e);
    if (!t || st.pinned || same(t, st.focus)) return;
    st.focus = t;
    draw();
  });
  wrap.addEventListener("mouseleave", () => {
    if (st.pinned || !st.focus) return;
    st.focus = null;
    draw();
  });
  wrap.addEventListener("click", (e) => {
    const t = tokenOf(e);
    if (!t) return;
    if (st.pinned && same(t, st.focus)) { st.pinned = false; } else { st.pinned = true; st.focus = t; }
    draw();
  });

  rebuild();
  return {
    update(next) {
      Object.assign(o, next);
      if (next.theme) root.setAttribute("data-theme", resolveTheme(root, next.theme));
      if (next.kind && kinds.get(next.kind)) {
        startKind(kinds.get(next.kind), next.layer, next.heads);
        st.filter = null;
      } else {
        if (next.layer !== undefined) st.li = Math.max(0, st.kind.layers.indexOf(next.layer));
        if (next.heads) startKind(st.kind, st.kind.layers[st.li], next.heads);
      }
      if (next.filter) st.filter = next.filter;
      rebuild();
    },
    destroy() { root.textContent = ""; },
  };
};
