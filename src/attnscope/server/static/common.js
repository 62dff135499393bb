// attnscope web app: what every page shares. Calling the API (JSON in, {"error"} out), building DOM nodes with
// text only, and drawing a view with the package's own JavaScript (window.attnscope.views, from /assets/views.js).
// Long inputs arrive as a deferred payload (heads left out): the views ask the page for the heads they draw and redraw
// when they arrive (payload.fetchHeads, GET /api/traces/{id}/head); a trace in the q/k form streams only the blocks of
// rows a view draws (GET /api/traces/{id}/rows). Every request is asynchronous.

const TOKEN_KEY = "attnscope-token";

// A token given in the address (#token=..., or ?token=...) is kept for this tab and removed from the address bar.
// It lives in sessionStorage (per origin, port included) and travels as a header: never as a cookie, which the
// browser would also send to every other port of this host.
function initToken() {
  const url = new URL(location.href);
  const hash = new URLSearchParams(url.hash.slice(1));
  const given = hash.get("token") || url.searchParams.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    url.searchParams.delete("token");
    hash.delete("token");
    url.hash = hash.toString();
    history.replaceState(null, "", url);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}
const TOKEN = initToken();

export function authHeaders(extra) {
  const headers = Object.assign({}, extra);
  if (TOKEN) headers.Authorization = "Bearer " + TOKEN;
  return headers;
}

// A download link (<a download href="/api/...">): with a token, clicking it fetches the file with the token header
// and saves it under the name the server gives (a plain link could not carry the header).
export function downloadLink(link) {
  link.addEventListener("click", async (event) => {
    if (!TOKEN) return;
    event.preventDefault();
    try {
      const res = await fetch(link.href, { credentials: "same-origin", headers: authHeaders() });
      if (!res.ok) {
        let data = null;
        try { data = await res.json(); } catch (err) { data = null; }
        throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`, res.headers.get("Retry-After"));
      }
      const match = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: match ? match[1] : "" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      const status = document.getElementById("status");
      if (status) showStatus(status, errorText(err), "error");
    }
  });
}

export class ApiError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

export function apiUrl(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  return url;
}

// GET (or POST with a JSON body) -> parsed JSON; any failure -> ApiError with the server's message.
// path: "/api/..." or a URL from apiUrl().
export async function api(path, { method = "GET", body, params } = {}) {
  const init = { method, credentials: "same-origin", headers: authHeaders(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(apiUrl(path, params), init);
  } catch (err) {
    throw new ApiError(0, "the server did not answer; is attnscope serve still running?");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (!res.ok) throw new ApiError(res.status, (data && data.error) || `${res.status} ${res.statusText}`, res.headers.get("Retry-After"));
  return data;
}

// ------------------------------------------------------------------ DOM
// el("div", {class: "x", "data-y": 1}, child, "text") — strings become text nodes, never HTML.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  return node;
}

export function showStatus(node, message, kind) {
  node.textContent = message || "";
  node.dataset.kind = kind || "";
  node.hidden = !message;
}

export function errorText(err) {
  if (err instanceof ApiError && err.status === 429) return `${err.message} (the server is busy: try again in ${err.retryAfter || 1} s)`;
  return err && err.message ? err.message : String(err);
}

export function bytes(n) {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB"];
  let u = -1;
  do { n /= 1000; u++; } while (n >= 1000 && u < units.length - 1);
  return `${n.toFixed(1)} ${units[u]}`;
}

export function fillModels(select, models, chosen) {
  select.textContent = "";
  for (const m of models) {
    const opt = el("option", { value: m.id, title: m.description }, m.id + (m.kind ? ` (${m.kind})` : ""));
    if (m.installed === false) { opt.disabled = true; opt.textContent += " \u2014 not installed"; }
    select.append(opt);
  }
  if (chosen && models.some((m) => m.id === chosen)) select.value = chosen;
}

// ------------------------------------------------------------------ views
// A deferred payload's source of heads: payload.fetchHeads({kind, layer, heads, vectors}) answers with the payload of
// those heads of one layer (web/core.js asks for what a draw missed, and redraws). {fetched, requests, busy}: the
// heads fetched so far and the request in flight.
function serveHeads(data, traceId) {
  const source = { fetched: 0, requests: 0, busy: null };
  data.payload.fetchHeads = ({ kind, layer, heads, vectors }) => {
    source.requests++;
    source.busy = api(`/api/traces/${encodeURIComponent(traceId)}/head`, {
      params: { kind, layer, heads, dtype: data.dtype, qkv: vectors ? 1 : 0 },
    }).then((got) => { source.fetched += heads.length; return got; });
    return source.busy;
  };
  return source;
}

// Resolves once the heads the first draw asked for, and those its redraws asked for, have arrived (or failed: the
// view says so in place), so a page shows a view whole when it opens.
async function settled(source) {
  for (let seen = null; source.busy && source.busy !== seen;) {
    seen = source.busy;
    try { await seen; } catch (err) { /* the view shows why */ }
    await new Promise((resolve) => setTimeout(resolve, 0));  // the redraw runs, and may ask for more
  }
}

// Kinds in the q/k form read the rows they draw from the server: spec.fetchRows({kind, layer, heads, rows: [a, b],
// keys: [c, d]}) resolves to the route's answer (web/recompute.js asks for one block at a time and decodes it), and
// spec.fetchVectors({kind, layer, head}) to one head's queries and keys (the neuron view recomputes from them).
function streamRows(data, traceId) {
  const base = `/api/traces/${encodeURIComponent(traceId)}`;
  for (const spec of Object.values(data.payload.kinds || {})) {  // (the diff view's payload has no kinds)
    if (spec.form !== "qk") continue;
    spec.fetchRows = ({ kind, layer, heads, rows, keys }) => api(`${base}/rows`, {
      params: { kind, layer, heads, start: rows[0], stop: rows[1], key_start: keys[0], key_stop: keys[1] },
    });
    spec.fetchVectors = ({ kind, layer, head }) => api(`${base}/vectors`, { params: { kind, layer, head } });
  }
}

// Draw view data ({view, options, payload, lazy}) into host with the package's view code; returns the view
// ({update, destroy}), its root and the data. A failure is shown in place and thrown.
export async function drawView(host, data, traceId) {
  host.textContent = "";
  const root = el("div", { class: "attnscope", "data-view": data.view });
  host.append(root);
  streamRows(data, traceId);
  const lazy = data.lazy ? serveHeads(data, traceId) : null;
  root.dataset.state = "drawing";
  try {
    const view = window.attnscope.views[data.view](root, data.payload, data.options || {});
    root.attnscope = view;  // as a saved view's root has it (scripts and tests read the view through it)
    if (lazy) await settled(lazy);
    root.dataset.state = "drawn";
    root.dataset.lazy = data.lazy ? "1" : "0";
    return { view, root, lazy, data };
  } catch (err) {
    root.dataset.state = "error";
    root.classList.add("as-error");
    root.textContent = "attnscope could not draw this view: " + errorText(err);
    throw err;
  }
}

function nav(active) {
  const links = [["/", "Explore"], ["/compare", "Compare"], ["/traces", "Traces"], ["/atlas", "Atlas"]];
  const bar = document.querySelector("header nav");
  for (const [href, label] of links) {
    bar.append(el("a", { href, class: href === active ? "on" : null, "aria-current": href === active ? "page" : null }, label));
  }
}

/** Start a page: the navigation bar (``active`` marked), errors reported in #status, the server's configuration
 * fetched and its version shown. Returns the configuration, or null (with the error shown) when it failed. */
export async function startPage(active) {
  nav(active);
  const status = document.getElementById("status");
  try {
    const config = await api("/api/config");
    document.getElementById("version").textContent = "v" + config.version;
    return config;
  } catch (err) {
    showStatus(status, errorText(err), "error");
    return null;
  }
}
