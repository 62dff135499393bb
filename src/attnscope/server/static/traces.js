// Trace browser: saved trace files in the server's --traces folder, traces logged to MLflow, traces in memory.
// Opening one (a POST: the server refuses it from other sites) loads it on the server and shows it on the explore
// page (/?trace=ID).
import { api, bytes, el, errorText, showStatus, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

function explore(info) {
  location.href = `/?trace=${encodeURIComponent(info.id)}`;
}

async function openWith(path, body, button) {
  button.disabled = true;
  showStatus($("status"), "Opening\u2026", "busy");
  try {
    explore(await api(path, { method: "POST", body }));
  } catch (err) {
    button.disabled = false;
    showStatus($("status"), errorText(err), "error");
  }
}

function openButton(path, body, label) {
  const b = el("button", { type: "button", class: "small" }, label || "open");
  b.addEventListener("click", () => openWith(path, body, b));
  return b;
}

async function files(dir) {
  const body = $("files").tBodies[0], crumbs = $("crumbs");
  let listing;
  try {
    listing = await api("/api/files", { params: { dir } });
  } catch (err) {
    $("files-hint").textContent = err.status === 404 ? "(start the server with --traces DIR to browse a folder)" : "";
    $("files").hidden = true;
    if (err.status !== 404) showStatus($("status"), errorText(err), "error");
    return;
  }
  crumbs.textContent = "";
  const parts = listing.dir ? listing.dir.split("/") : [];
  const crumb = (label, target) => el("a", { href: "#", "data-dir": target, onclick: (e) => { e.preventDefault(); files(target); } }, label);
  crumbs.append(crumb("traces folder", ""));
  parts.forEach((p, i) => crumbs.append(" / ", crumb(p, parts.slice(0, i + 1).join("/"))));
  body.textContent = "";
  for (const e of listing.entries) {
    if (e.type === "dir") {
      body.append(el("tr", { class: "dir" }, el("td", null, crumb(e.name + "/", e.path)), el("td"), el("td", null, when(e.mtime)), el("td")));
    } else {
      body.append(el("tr", { "data-path": e.path }, el("td", { class: "name" }, e.name), el("td", { class: "num" }, bytes(e.size)),
        el("td", null, when(e.mtime)), el("td", null, openButton("/api/files/trace", { path: e.path }))));
    }
  }
  if (!listing.entries.length) body.append(el("tr", null, el("td", { colspan: 4, class: "empty" }, "no trace files here")));
  $("files-hint").textContent = listing.truncated ? "(first entries only)" : "";
}

async function runs() {
  const body = $("runs").tBodies[0];
  let data;
  try {
    data = await api("/api/mlflow/runs");
  } catch (err) {
    $("mlflow-hint").textContent = `(${errorText(err)})`;
    return;
  }
  $("mlflow-hint").textContent = `(${data.uri})`;
  body.textContent = "";
  for (const r of data.runs) {
    const cell = el("td", { class: "traces" });
    for (const t of r.traces) {
      const latest = t.steps.length ? t.steps[t.steps.length - 1] : null;
      cell.append(el("span", { class: "trace-name" }, t.name + (t.steps.length ? ` (${t.steps.length} steps)` : "")),
        openButton("/api/mlflow/trace", { run: r.run_id, name: t.name, step: latest }, latest === null ? "open" : `open step ${latest}`));
    }
    body.append(el("tr", { "data-run": r.run_id }, el("td", { title: r.run_id }, r.run_name || r.run_id),
      el("td", null, r.experiment), el("td", null, when(r.start_time / 1000)), cell));
  }
  if (!data.runs.length) body.append(el("tr", null, el("td", { colspan: 4, class: "empty" }, data.note || "no runs with attnscope traces")));
}

async function memory() {
  const body = $("memory").tBodies[0];
  const data = await api("/api/traces");
  $("memory-hint").textContent = `(${data.traces.length} traces, ${bytes(data.bytes)})`;
  body.textContent = "";
  for (const t of data.traces) {
    const from = t.source.type === "file" ? t.source.path : t.source.type === "mlflow" ? `MLflow ${t.source.run.slice(0, 8)}` : "typed";
    const text = t.text || "";
    const go = el("button", { type: "button", class: "small" }, "open");
    go.addEventListener("click", () => explore(t));
    body.append(el("tr", null, el("td", null, t.model || ""), el("td", { class: "text", title: text }, text.length > 80 ? text.slice(0, 79) + "\u2026" : text),
      el("td", null, from), el("td", { class: "num" }, Object.values(t.tokens).join(" / ")), el("td", null, go)));
  }
  if (!data.traces.length) body.append(el("tr", null, el("td", { colspan: 5, class: "empty" }, "nothing yet")));
}

async function main() {
  if (!(await startPage("/traces"))) return;
  try {
    await Promise.all([files(""), runs(), memory()]);
  } catch (err) {
    showStatus($("status"), errorText(err), "error");
  }
}

main();
