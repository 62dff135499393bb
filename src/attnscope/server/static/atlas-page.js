// Atlas page: pick an atlas folder of the server's trace folder (and a second one to compare), draw the package's
// atlas view; clicking an exemplar text captures it with the atlas's model and draws its head view in place.
import { api, drawView, el, errorText, showStatus, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const st = { atlases: [], model: null };

function fill(select, atlases, none) {
  select.textContent = "";
  if (none) select.append(el("option", { value: "" }, none));
  for (const a of atlases) {
    const what = `${a.path} \u2014 ${a.model}, ${a.measured ?? "?"} texts` + (a.complete ? "" : " (unfinished)");
    select.append(el("option", { value: a.path, disabled: !a.complete }, what));
  }
}

// The view's exemplar hook: capture the text with the atlas's model, then draw its head view at (layer, head).
async function openText(text, layer, head, host) {
  host.textContent = "";
  const note = el("p", { class: "as-label" }, "Capturing this text\u2026");
  host.append(note);
  try {
    const trace = await api("/api/capture", { method: "POST", body: { model: st.model, text } });
    const data = await api(`/api/traces/${encodeURIComponent(trace.id)}/view`, { params: { view: "head", layer, heads: head } });
    data.options = Object.assign({}, data.options, { embedded: true });
    await drawView(host, data, trace.id);
  } catch (err) {
    note.textContent = errorText(err);
    note.dataset.kind = "error";
  }
}

// The atlas view reads no trace: drawn here with the package's view code, the exemplar hook added to its options.
function draw(host, data) {
  host.textContent = "";
  const root = el("div", { class: "attnscope", "data-view": "atlas" });
  host.append(root);
  root.dataset.state = "drawing";
  try {
    root.attnscope = window.attnscope.views.atlas(root, data.payload, Object.assign({}, data.options, { openText }));
    root.dataset.state = "drawn";
  } catch (err) {
    root.dataset.state = "error";
    root.textContent = "attnscope could not draw this view: " + errorText(err);
    throw err;
  }
}

async function open(event) {
  if (event) event.preventDefault();
  const path = $("atlas").value, other = $("other").value;
  if (!path) return;
  showStatus($("status"), "Reading the atlas\u2026", "busy");
  try {
    const data = await api("/api/atlas", { params: { path, other: other || null } });
    st.model = data.model;
    $("result").hidden = false;
    draw($("view"), data);
    showStatus($("status"), "", "");
    const url = new URL(location.href);
    url.searchParams.set("path", path);
    if (other) url.searchParams.set("other", other); else url.searchParams.delete("other");
    history.replaceState(null, "", url);
  } catch (err) {
    showStatus($("status"), errorText(err), "error");
  }
}

async function main() {
  if (!(await startPage("/atlas"))) return;
  try {
    st.atlases = (await api("/api/atlases")).atlases;
  } catch (err) {
    showStatus($("status"), errorText(err), "error");
    return;
  }
  if (!st.atlases.length) {
    showStatus($("status"), "no atlas in the trace folder: make one with attnscope corpus MODEL DATA -o FOLDER/atlas", "error");
    return;
  }
  fill($("atlas"), st.atlases);
  fill($("other"), st.atlases, "nothing");
  const params = new URLSearchParams(location.search);
  if (params.get("path")) $("atlas").value = params.get("path");
  if (params.get("other")) $("other").value = params.get("other");
  $("pick").addEventListener("submit", open);
  await open();
}

main();
