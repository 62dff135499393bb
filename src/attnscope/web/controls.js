// attnscope controls: the view frame (toolbar, body, caption, tooltip) and the few widgets the toolbars use.

// Clear root and lay out a view: {bar, badge, body, caption, tip, theme, setTheme(wanted)} (setTheme: "auto" reads
// the page's, see core.js resolveTheme).
function frame(root, payload, options, name) {
  root.textContent = "";
  root.classList.add("as-root");
  if (options.embedded) root.classList.add("as-embedded");
  root.setAttribute("data-view", name);
  const bar = el("div", "as-bar");
  const badge = el("span", "as-badge");  // the kept attention mass, at the toolbar's end (CSS order)
  badge.hidden = true;
  bar.append(badge);
  const body = el("div", "as-body");
  const caption = el("div", "as-caption");
  root.append(bar, body);
  if (!options.embedded) root.append(caption);
  const tip = tooltip(root);
  const ui = {
    bar, badge, body, caption, tip, theme: "light",
    setTheme(wanted) { ui.theme = resolveTheme(root, wanted); root.setAttribute("data-theme", ui.theme); },
  };
  ui.setTheme(options.theme);
  return ui;
}

// Model, size and how much of the attention the view holds: all of it, or (pruned) the mean and worst row's kept
// fraction, who cut the rows and whether the size budget lowered the asked mass. `badge` (optional) gets the short
// form for the toolbar.
function describe(caption, payload, kind, badge) {
  const parts = [];
  if (payload.meta && payload.meta.model) parts.push(payload.meta.model);
  parts.push(`${kind.layers.length} layers \u00d7 ${kind.heads.length} heads`);
  parts.push(kind.q === kind.k ? `${kind.q} tokens` : `${kind.q} \u00d7 ${kind.k} tokens`);
  const s = kind.spec, pct = (v) => (100 * v).toFixed(1) + "%";
  let short = "";
  if (s.form === "pruned") {
    const p = s.pruning || {};
    let how = "";
    if (p.source === "trace") how = " (rows as pruned in the trace)";
    else if (p.source === "view") how = ` (each row cut to its largest weights up to ${pct(p.mass)} of its attention, at most ${p.topK} keys)`;
    parts.push(`pruned: keeps ${pct(s.keptMass)} of the attention on average, worst row ${pct(s.minKeptMass)}${how}`);
    if (p.lowered) parts.push(`lowered from ${pct(p.askedMass)} to fit the ${p.budgetMb} MB budget (budget_mb=)`);
    short = `pruned \u00b7 ${pct(s.keptMass)} kept \u00b7 worst row ${pct(s.minKeptMass)}`;
  } else if (s.form === "dense") {
    parts.push("nothing pruned: all attention kept");
  } else if (s.form === "qk") {
    parts.push(qkNote(kind));
    short = qkBadge(kind);
  } else if (s.qkv) {
    parts.push("weights recomputed from q and k: nothing pruned");
  }
  const checked = payload.meta && payload.meta.verified, v = verifiedNote(checked);
  if (v) parts.push(v.text);
  caption.textContent = parts.join(" \u00b7 ");
  caption.classList.toggle("as-warn", s.form === "pruned" || (v !== null && !v.ok));
  if (v) caption.dataset.verified = v.ok ? "ok" : "failed";
  if (v && !v.ok) short = (short ? short + " \u00b7 " : "") + (checked.ok === false ? `\u26a0 not verified: layer ${checked.layer}` : "\u26a0 not verified");
  if (badge) {
    badge.textContent = short;
    badge.title = caption.textContent;
    badge.hidden = !short;
  }
}

// The footer's verified-capture note (payload.meta.verified, see attnscope.capture.verify): a "verified" mark when
// weights x values reproduced every attention module's output, else a warning naming the worst layer.
function verifiedNote(v) {
  if (!v) return null;
  if (v.ok === true) return { ok: true, text: `\u2713 verified: weights \u00d7 values reproduce every layer's output (max diff ${Number(v.maxAbsDiff).toExponential(1)})` };
  const kind = v.kind && v.kind !== "self" ? ` (${v.kind} attention)` : "";
  const why = v.problem || `layer ${v.layer}`;
  return { ok: false, text: (v.ok === false ? "\u26a0 NOT verified" : "\u26a0 could not be verified") + `${kind}: ${why}` };
}

// A search box for long token lists: find(text, step) runs on typing (step 0), Enter (+1), Shift+Enter and the
// arrow buttons (-1/+1). {node, status(text), reset()}.
function searchControl(find) {
  const box = el("span", "as-field as-search");
  const input = el("input", "as-search-input");
  input.type = "search";
  input.placeholder = "Find token";
  input.setAttribute("aria-label", "Find a token");
  const prev = el("button", "as-search-btn", "\u25b2"), next = el("button", "as-search-btn", "\u25bc");
  prev.type = next.type = "button";
  prev.title = "Previous match (Shift+Enter)";
  next.title = "Next match (Enter)";
  const count = el("span", "as-label as-search-count");
  box.append(input, prev, next, count);
  input.addEventListener("input", () => find(input.value, 0));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); find(input.value, e.shiftKey ? -1 : 1); }
  });
  prev.addEventListener("click", () => find(input.value, -1));
  next.addEventListener("click", () => find(input.value, 1));
  return {
    node: box,
    status(text) { count.textContent = text; },
    reset() { input.value = ""; count.textContent = ""; },
  };
}

function tooltip(root) {
  const tip = el("div", "as-tip");
  tip.hidden = true;
  root.append(tip);
  return {
    show(lines, clientX, clientY) {
      tip.textContent = lines.join("\n");
      tip.hidden = false;
      const r = root.getBoundingClientRect();
      const x = clientX - r.left + 14, y = clientY - r.top + 14;
      tip.style.left = Math.max(0, Math.min(x, r.width - tip.offsetWidth - 4)) + "px";
      tip.style.top = y + "px";
    },
    hide() { tip.hidden = true; },
  };
}

function field(label, control) {
  const wrap = el("label", "as-field");
  wrap.append(el("span", "as-label", label), control);
  return wrap;
}

// A <select> of {value, text} items; onChange gets the chosen value (as given in items).
function selectControl(label, items, value, onChange) {
  const sel = el("select", "as-select");
  let current = items;
  const fill = (list, v) => {
    current = list;
    sel.textContent = "";
    list.forEach((it, i) => {
      const opt = el("option", null, it.text);
      opt.value = String(i);
      if (it.title) opt.title = it.title;
      sel.append(opt);
    });
    set(v);
  };
  const set = (v) => {
    const i = current.findIndex((it) => it.value === v);
    sel.value = String(Math.max(0, i));
  };
  sel.addEventListener("change", () => onChange(current[Number(sel.value)].value));
  fill(items, value);
  return { node: field(label, sel), select: sel, set, fill };
}

// A row of toggle buttons where one is on (the pair filter).
function segmented(label, items, value, onChange) {
  const group = el("span", "as-seg");
  group.setAttribute("role", "group");
  const buttons = items.map((it) => {
    const b = el("button", "as-seg-btn", it.text);
    b.type = "button";
    b.dataset.value = it.value;
    b.addEventListener("click", () => { set(it.value); onChange(it.value); });
    group.append(b);
    return b;
  });
  const set = (v) => buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.value === v)));
  set(value);
  const wrap = el("span", "as-field");
  wrap.append(el("span", "as-label", label), group);
  return { node: wrap, set };
}

// Head swatches: click toggles a head, double click shows it alone (again: all heads).
function swatches(kind, selected, onChange) {
  const row = el("div", "as-swatches");
  let buttons = [];
  const paint = () => buttons.forEach((b, hi) => b.setAttribute("aria-pressed", String(selected.has(hi))));
  const build = (k) => {
    row.textContent = "";
    row.append(el("span", "as-label", "Heads"));
    const n = Math.max(...k.heads) + 1;
    buttons = k.heads.map((h, hi) => {
      const b = el("button", "as-swatch", h);
      b.type = "button";
      b.title = `head ${h}: click to toggle, double click to show it alone`;
      b.style.setProperty("--as-c", headColor(h, n));
      b.addEventListener("click", () => {
        if (selected.has(hi)) selected.delete(hi); else selected.add(hi);
        paint();
        onChange();
      });
      b.addEventListener("dblclick", () => {
        const solo = selected.size === 1 && selected.has(hi);
        selected.clear();
        if (solo) k.heads.forEach((_, i) => selected.add(i)); else selected.add(hi);
        paint();
        onChange();
      });
      row.append(b);
      return b;
    });
    paint();
  };
  build(kind);
  return { node: row, rebuild: (k, sel) => { selected = sel; build(k); } };
}

function kindControl(kinds, kind, onChange) {
  if (kinds.size < 2) return null;
  const items = [...kinds.keys()].map((k) => ({ value: k, text: KIND_LABEL[k] || k }));
  return selectControl("Attention", items, kind.name, onChange);
}

function layerItems(kind) {
  return kind.layers.map((l, li) => ({ value: li, text: String(l) }));
}

function filterControl(payload, kind, value, onChange) {
  const fs = filtersOf(payload, kind);
  if (fs.length < 2) return null;
  return segmented("Pairs", fs.map((f) => ({ value: f.name, text: f.label })), value, onChange);
}

// Colour scale legend for heatmaps (square-root scale, as the payload's bytes).
function legend(theme) {
  const wrap = el("span", "as-legend");
  const c = el("canvas", "as-legend-bar");
  c.width = 128; c.height = 1;
  const ctx = c.getContext("2d"), img = ctx.createImageData(128, 1), lut = heatLut(theme);
  for (let x = 0; x < 128; x++) {
    const b = Math.round((x / 127) * 255);
    img.data.set(lut.subarray(b * 4, b * 4 + 4), x * 4);
  }
  ctx.putImageData(img, 0, 0);
  wrap.append(el("span", "as-label", "0"), c, el("span", "as-label", "1 (\u221a scale)"));
  return wrap;
}

// The generation-step slider of a trace made with generate=N: a native range (keyboard accessible) over steps 0..n,
// previous / next / play buttons, a status line and "All" to leave stepping. onStep(s) gets the step, or null for
// "All". {node, set(step, n), status(text), stop()}; set() never calls onStep.
function stepControl(onStep) {
  const wrap = el("span", "as-field as-stepper");
  const button = (text, title) => {
    const b = el("button", "as-step-btn", text);
    b.type = "button";
    b.title = title;
    return b;
  };
  const prev = button("\u2039", "Previous generation step");
  const range = el("input", "as-step-range");
  range.type = "range";
  range.min = "0";
  range.step = "1";
  range.setAttribute("aria-label", "Generation step");
  range.title = "Generation step: the prompt and the first s generated tokens; lines show what the last of them " +
    "attended to when the model chose the next token";
  const next = button("\u203a", "Next generation step");
  const play = button("\u25b6", "Play the generation steps");
  const all = button("All", "Leave stepping: every token and all its lines");
  const status = el("span", "as-label as-step-status");
  wrap.append(el("span", "as-label", "Step"), prev, range, next, play, all, status);
  let timer = null;
  const go = (s) => {
    const v = Math.max(0, Math.min(Number(range.max), s));
    range.value = String(v);
    onStep(v);
    return v;
  };
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
    play.textContent = "\u25b6";
    play.setAttribute("aria-pressed", "false");
  };
  range.addEventListener("input", () => { stop(); onStep(Number(range.value)); });
  prev.addEventListener("click", () => { stop(); go(Number(range.value) - 1); });
  next.addEventListener("click", () => { stop(); go(Number(range.value) + 1); });
  all.addEventListener("click", () => { stop(); onStep(null); });
  play.addEventListener("click", () => {
    if (timer !== null) { stop(); return; }
    const n = Number(range.max);
    if (!wrap.classList.contains("as-stepping") || Number(range.value) >= n) go(0);
    play.textContent = "\u25a0";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => { if (go(Number(range.value) + 1) >= n) stop(); }, 900);
  });
  return {
    node: wrap,
    set(step, n) {
      range.max = String(n);
      range.value = String(step === null ? n : step);
      wrap.classList.toggle("as-stepping", step !== null);
      all.disabled = step === null;
    },
    status(text) { status.textContent = text; },
    stop,
  };
}

// A panel that shows one head (or text) enlarged: a bar with its title and a close button over a root a view draws
// in. Returns {node, title, root, close}; the panel starts hidden.
function detailPanel(cls) {
  const node = el("div", cls);
  node.hidden = true;
  const bar = el("div", "as-detail-bar");
  const title = el("span", "as-detail-title");
  const close = el("button", "as-close", "\u00d7");
  close.type = "button";
  close.title = "Close";
  bar.append(title, close);
  const root = el("div", "attnscope");
  node.append(bar, root);
  return { node, title, root, close };
}
