// Explore page: pick a model, type text, see it in every view; ?trace=ID&view=V opens a held trace.
import { api, apiUrl, downloadLink, drawView, el, errorText, fillModels, showStatus, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const st = { config: null, trace: null, base: null, view: "head", drawn: null, busy: false, by: "token", hide: false };
const UNITS = { token: "tokens", word: "words", sentence: "sentences", paragraph: "paragraphs" };

function setBusy(on, message) {
  st.busy = on;
  $("run").disabled = on;
  document.body.classList.toggle("busy", on);
  showStatus($("status"), message || "", on ? "busy" : "");
}

function modelKind() {
  const m = st.config.models.find((x) => x.id === $("model").value);
  return m ? m.kind : null;
}

// Only the inputs the chosen model takes (all of them while its kind is unknown).
function showInputs() {
  const kind = modelKind();
  for (const node of document.querySelectorAll("[data-for]")) node.hidden = kind !== null && node.dataset.for !== kind;
  const m = st.config.models.find((x) => x.id === $("model").value);
  $("model-hint").textContent = m ? m.description : "";
}

function viewButtons() {
  const box = $("views");
  box.textContent = "";
  for (const name of st.config.views) {
    const b = el("button", { type: "button", "data-view": name, class: "seg-btn" }, name[0].toUpperCase() + name.slice(1));
    const has = !st.trace || st.trace.views.includes(name);
    b.disabled = !has;
    if (!has) b.title = "this trace has no query/key vectors (inputs over the server's q/k limit drop them)";
    b.setAttribute("aria-pressed", String(name === st.view));
    b.addEventListener("click", () => { st.view = name; render(); });
    box.append(b);
  }
}

function describe(t) {
  const kind = t.kinds[t.default_kind];
  const parts = [t.model, `${kind.layers} layers \u00d7 ${kind.heads} heads`,
    kind.queries === kind.keys ? `${kind.queries} tokens` : `${kind.queries} \u00d7 ${kind.keys} tokens`];
  if (kind.form === "pruned") parts.push(`pruned (keeps ${(100 * kind.kept_mass).toFixed(1)}% of the attention)`);
  if (t.source && t.source.type === "measure") parts.push(`${measureLabel(t.source.method)}, measured on the captured text`);
  if (t.source && t.source.type === "file") parts.push(`file ${t.source.path}`);
  if (t.source && t.source.type === "mlflow") parts.push(`MLflow run ${t.source.run}`);
  return parts.join(" \u00b7 ");
}

// The page's Units and Hide sinks: passed to every view that takes them (by=, hide_sinks=), which starts its own
// controls there; the neuron view hides sinks but has no units (query and key vectors are per token).
const takes = (option) => ((st.config.view_options || {})[st.view] || []).includes(option);
const unitOptions = () => ({ by: takes("by") && st.by !== "token" ? st.by : null, hide_sinks: takes("hide_sinks") && st.hide ? true : null });

function unitControls() {
  const units = el("select", { id: "units" }, ...Object.entries(UNITS).map(([v, text]) => el("option", { value: v }, text)));
  const hide = el("input", { type: "checkbox", id: "hide-sinks" });
  units.value = st.by;
  hide.checked = st.hide;
  units.addEventListener("change", () => { st.by = units.value; render(); });
  hide.addEventListener("change", () => { st.hide = hide.checked; render(); });
  $("theme").closest("label").after(
    el("label", { class: "field", id: "units-field" }, "Units", units),
    el("label", { class: "field", id: "hide-sinks-field", title: "Leave out the first token and [CLS]/[SEP]/BOS; the view says how much attention they held" }, hide, "Hide sinks"));
}

function syncUnits() {
  const units = $("units"), hide = $("hide-sinks");
  units.disabled = !takes("by");
  $("units-field").title = units.disabled ? `units do not apply to the ${st.view} view (its vectors are per token)`
    : "Attention to a word (sentence, paragraph) sums its pieces, attention from one averages them";
  hide.disabled = !takes("hide_sinks");
}

function links() {
  const id = encodeURIComponent(st.trace.id), theme = $("theme").value;
  const opts = { view: st.view, theme: theme === "auto" ? null : theme, ...unitOptions() };
  $("dl-trace").href = apiUrl(`/api/traces/${id}/download/trace`);
  $("dl-html").href = apiUrl(`/api/traces/${id}/download/html`, opts);
  $("dl-png").href = apiUrl(`/api/traces/${id}/download/png`, { ...opts, theme: theme === "light" || theme === "dark" ? theme : null });
}

async function render() {
  if (!st.trace) return;
  viewButtons();
  syncUnits();
  links();
  const url = new URL(location.href);
  url.searchParams.set("trace", st.trace.id);
  url.searchParams.set("view", st.view);
  for (const [k, v] of Object.entries({ by: st.by === "token" ? null : st.by, hide_sinks: st.hide ? 1 : null })) {
    if (v === null) url.searchParams.delete(k); else url.searchParams.set(k, v);
  }
  history.replaceState(null, "", url);
  const theme = $("theme").value;
  try {
    const params = { view: st.view, theme, ...unitOptions() };
    const data = await api(`/api/traces/${encodeURIComponent(st.trace.id)}/view`, { params });
    if (st.drawn) st.drawn.view.destroy();
    st.drawn = await drawView($("view-host"), data, st.trace.id);
    const streamed = Object.values(data.payload.kinds).some((k) => k.form === "qk");
    const lazy = streamed ? " \u00b7 rows are computed by the server as they come into view"
      : data.lazy ? " \u00b7 heads are fetched from the server as you look at them" : "";
    $("info").textContent = describe(st.trace) + lazy;
  } catch (err) {
    showStatus($("status"), errorText(err), "error");
  }
}

function measureLabel(method) {
  const m = (st.config.measures || []).find((x) => x.value === method);
  return m ? m.label : method;
}

// The Measure selector: the captured trace's own attention, or a context-mixing measure of its text (made by the
// server with the trace's model, then drawn by the same views).
async function measure() {
  if (!st.base || st.busy) return;
  const method = $("measure").value, start = performance.now();
  setBusy(true, method ? `Measuring ${measureLabel(method)} (the model runs the text again)\u2026` : "");
  try {
    const id = encodeURIComponent(st.base.id);
    const trace = method ? await api(`/api/traces/${id}/measure`, { method: "POST", body: { method } })
      : await api(`/api/traces/${id}`);
    setBusy(false);
    await open(trace);
    if (method) showStatus($("status"), `measured in ${((performance.now() - start) / 1000).toFixed(1)} s`, "ok");
  } catch (err) {
    setBusy(false);
    $("measure").value = st.trace && st.trace.source.type === "measure" ? st.trace.source.method : "";
    showStatus($("status"), errorText(err), "error");
  }
}

async function open(trace) {
  st.trace = trace;
  const measured = trace.source && trace.source.type === "measure";
  st.base = measured ? { id: trace.source.of } : trace;
  $("measure").value = measured ? trace.source.method : "";
  if (!trace.views.includes(st.view)) st.view = "head";
  $("result").hidden = false;
  await render();
}

async function capture(event) {
  if (event) event.preventDefault();
  if (st.busy) return;
  const text = $("text").value;
  if (!text.trim()) { showStatus($("status"), "type some text first", "error"); return; }
  const kind = modelKind();
  const body = { model: $("model").value, text };
  const pair = $("pair").value.trim(), target = $("target").value.trim(), generate = Number($("generate").value || 0);
  if (pair && (kind === null || kind === "encoder")) body.pair = pair;
  if (target && (kind === null || kind === "encoder-decoder")) body.target = target;
  if (generate > 0 && kind !== "encoder") body.generate = generate;
  const loaded = (st.config.models.find((m) => m.id === body.model) || {}).loaded;
  setBusy(true, loaded ? "Running the model\u2026" : "Loading the model (first use) and running it\u2026");
  const start = performance.now();
  try {
    const trace = await api("/api/capture", { method: "POST", body });
    const m = st.config.models.find((x) => x.id === body.model);
    if (m) m.loaded = true;
    setBusy(false);
    await open(trace);
    showStatus($("status"), `captured in ${((performance.now() - start) / 1000).toFixed(1)} s`, "ok");
  } catch (err) {
    setBusy(false);
    showStatus($("status"), errorText(err), "error");
  }
}

async function main() {
  st.config = await startPage("/");
  if (!st.config) return;
  $("generate").max = String(st.config.limits.max_generate);
  $("text").maxLength = st.config.limits.max_chars;
  const params = new URLSearchParams(location.search);
  fillModels($("model"), st.config.models, params.get("model"));
  showInputs();
  $("model").addEventListener("change", showInputs);
  $("capture").addEventListener("submit", capture);
  $("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) capture(e); });
  $("theme").addEventListener("change", render);
  for (const m of st.config.measures || []) $("measure").append(el("option", { value: m.value }, m.label));
  $("measure").addEventListener("change", measure);
  for (const id of ["dl-trace", "dl-html", "dl-png"]) downloadLink($(id));
  if (params.get("view") && st.config.views.includes(params.get("view"))) st.view = params.get("view");
  if (params.get("by") in UNITS) st.by = params.get("by");
  st.hide = ["1", "true"].includes(params.get("hide_sinks"));
  unitControls();
  if (params.get("trace")) {
    try {
      await open(await api(`/api/traces/${encodeURIComponent(params.get("trace"))}`));
    } catch (err) {
      showStatus($("status"), errorText(err), "error");
    }
  }
}

main();
