// Compare page: two inputs -> the package's diff view (A, B and B - A on aligned tokens, the most changed heads,
// next-token predictions for causal models), plus a layer x head grid of every head's divergence. Long inputs
// get a diff view of one head at a time: the grid and a ranked table pick the head, the server sends it.
import { api, drawView, el, errorText, fillModels, showStatus, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const CELL = 22;
const st = { config: null, result: null, pick: null, drawn: null, busy: false };

function setBusy(on, message) {
  st.busy = on;
  $("run").disabled = on;
  document.body.classList.toggle("busy", on);
  showStatus($("status"), message || "", on ? "busy" : "");
}

function rankedTable(result) {
  const body = $("ranked").tBodies[0], max = result.ranked.length ? result.ranked[0].divergence || 1 : 1;
  body.textContent = "";
  for (const r of result.ranked) {
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.round((100 * r.divergence) / max)}%`;
    const tr = el("tr", { "data-layer": r.layer, "data-head": r.head, tabindex: 0 },
      el("td", null, r.rank), el("td", null, r.layer), el("td", null, r.head),
      el("td", { class: "num" }, el("span", { class: "bar-wrap" }, bar), r.divergence.toFixed(4)));
    tr.addEventListener("click", () => pick(r.layer, r.head));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(r.layer, r.head); });
    body.append(tr);
  }
}

// Divergence per head as a heatmap (square-root scale, white -> deep orange; dark pages: dark -> orange).
function grid(result) {
  const canvas = $("grid"), div = result.divergence, L = div.length, H = L ? div[0].length : 0;
  let max = 0;
  for (const row of div) for (const v of row) max = Math.max(max, v);
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  const ratio = window.devicePixelRatio || 1;
  canvas.width = H * CELL * ratio; canvas.height = L * CELL * ratio;
  canvas.style.width = H * CELL + "px"; canvas.style.height = L * CELL + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const lo = dark ? [22, 27, 34] : [255, 255, 255], hi = [217, 72, 15];
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const t = max > 0 ? Math.sqrt(div[l][h] / max) : 0;
      const c = lo.map((a, i) => Math.round(a + (hi[i] - a) * t));
      ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      ctx.fillRect(h * CELL, l * CELL, CELL - 1, CELL - 1);
    }
  }
  if (st.pick) {
    ctx.strokeStyle = dark ? "#e6edf3" : "#1f2328";
    ctx.lineWidth = 2;
    ctx.strokeRect(st.pick[1] * CELL + 1, st.pick[0] * CELL + 1, CELL - 3, CELL - 3);
  }
  canvas.title = `max divergence ${max.toFixed(4)} bits`;
}

function mark(layer, head) {
  st.pick = [layer, head];
  for (const tr of $("ranked").tBodies[0].rows) {
    tr.classList.toggle("on", tr.dataset.layer === String(layer) && tr.dataset.head === String(head));
  }
  grid(st.result);
}

async function drawDiff(data) {
  if (st.drawn) st.drawn.view.destroy();
  st.drawn = await drawView($("diff-host"), data, null);
  st.oneHead = data.one_head;
}

// Show a head: the whole diff view moves to it, or (long inputs) the server sends that head's diff view.
async function pick(layer, head) {
  mark(layer, head);
  try {
    if (!st.oneHead) {
      st.drawn.view.update({ layer, head });
      return;
    }
    const r = st.result;
    await drawDiff(await api("/api/compare/diff", { params: { a: r.a.id, b: r.b.id, kind: r.kind, layer, head, theme: "auto" } }));
  } catch (err) {
    showStatus($("status"), errorText(err), "error");
  }
}

async function show(result) {
  st.result = result;
  $("result").hidden = false;
  const compared = result.identical ? "the inputs are identical" : `${result.rows} token positions compared`;
  $("summary").textContent = `${result.a.model} \u00b7 ${result.kind} attention \u00b7 ${compared} \u00b7 ` +
    `${result.divergence.length} layers \u00d7 ${(result.divergence[0] || []).length} heads` +
    (result.diff.one_head ? " \u00b7 long inputs: the diff view holds one head, pick others below" : "");
  $("open-a").href = `/?trace=${encodeURIComponent(result.a.id)}`;
  $("open-b").href = `/?trace=${encodeURIComponent(result.b.id)}`;
  $("ranked-box").hidden = !result.diff.one_head;  // else the diff view lists the ranked heads itself
  rankedTable(result);
  await drawDiff(result.diff);
  const o = result.diff.options;
  mark(o.layer, o.head);
}

async function run(event) {
  if (event) event.preventDefault();
  if (st.busy) return;
  const body = { model: $("model").value, text_a: $("text-a").value, text_b: $("text-b").value };
  if (!body.text_a.trim() || !body.text_b.trim()) { showStatus($("status"), "type both inputs first", "error"); return; }
  setBusy(true, "Running both inputs through the model\u2026");
  try {
    const result = await api("/api/compare", { method: "POST", body });
    setBusy(false);
    await show(result);
  } catch (err) {
    setBusy(false);
    showStatus($("status"), errorText(err), "error");
  }
}

$("grid").addEventListener("click", (e) => {
  if (!st.result) return;
  const r = $("grid").getBoundingClientRect();
  const h = Math.floor((e.clientX - r.left) / CELL), l = Math.floor((e.clientY - r.top) / CELL);
  if (l >= 0 && h >= 0 && l < st.result.divergence.length && h < st.result.divergence[0].length) pick(l, h);
});

// A head picked in the diff view's own list (or its selects) is marked on the grid too.
$("diff-host").addEventListener("click", (e) => {
  const b = e.target.closest && e.target.closest(".as-rank");
  if (!b || !st.drawn) return;
  const p = st.drawn.data.payload;
  mark(p.layers[Number(b.dataset.li)], p.heads[Number(b.dataset.hi)]);
});

async function main() {
  st.config = await startPage("/compare");
  if (!st.config) return;
  fillModels($("model"), st.config.models, new URLSearchParams(location.search).get("model"));
  $("compare").addEventListener("submit", run);
}

main();
