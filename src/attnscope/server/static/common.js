// attnscope web app: what every page shares. Calling the API (JSON in, {"error"} out), building DOM nodes with
// text only, and drawing a view with the package's own JavaScript (window.attnscope.views, from /assets/views.js).
// Long inputs arrive as a skeleton payload: each head's data is fetched from the server when a view first reads it;
// a trace in the q/k form streams only the blocks of rows a view draws (GET /api/traces/{id}/rows, asynchronously).

const TOKEN_KEY = "attnscope-token";
const KIND_ORDER = ["self", "encoder", "decoder", "cross"];
const MAX_HEADS = 96;  // lazily fetched heads kept per view (the views also cache decoded heads)

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

function getSync(url) {
  const x = new XMLHttpRequest();
  x.open("GET", url, false);  // a view reads heads synchronously; prefetching makes this the rare case
  for (const [k, v] of Object.entries(authHeaders())) x.setRequestHeader(k, v);
  x.send();
  let data = null;
  try { data = JSON.parse(x.responseText); } catch (err) { data = null; }
  if (x.status !== 200) throw new ApiError(x.status, (data && data.error) || `HTTP ${x.status}`);
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

// A view reads heads inside its own event handlers; when the server cannot give one (the trace was dropped from
// its memory, or it stopped), the error surfaces here and is shown in the page's status line.
export function reportErrors(statusNode) {
  window.addEventListener("error", (event) => {
    if (!(event.error instanceof ApiError)) return;
    event.preventDefault();
    showStatus(statusNode, errorText(event.error), "error");
  });
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
function firstKind(payload, wanted) {
  if (wanted && payload.kinds[wanted]) return wanted;
  return KIND_ORDER.find((k) => payload.kinds[k]);
}

// Replace each head's null in a skeleton payload by a getter that fetches it from the server on first read.
function lazify(data, traceId) {
  const filled = [];  // [grid, li, hi] in fetch order, to forget the oldest
  const remember = (grid, li, hi) => {
    filled.push([grid, li, hi]);
    while (filled.length > MAX_HEADS * 3) { const [g, l, h] = filled.shift(); g[l][h] = null; }
  };
  const state = { view: data.view, traceId, dtype: data.dtype, remember, fetched: 0 };
  for (const [kind, spec] of Object.entries(data.payload.kinds)) {
    const raw = { data: spec.data, query: spec.qkv && spec.qkv.query, key: spec.qkv && spec.qkv.key, bias: spec.qkv && spec.qkv.bias };
    spec.lazyRaw = raw;
    const wrap = (grid, qkv) => grid.map((row, li) => new Proxy(row, {
      get(target, prop, receiver) {
        if (typeof prop === "string" && /^\d+$/.test(prop) && target[prop] === null) {
          fill(state, kind, spec, li, qkv ? [Number(prop)] : missingOf(state, spec, li, Number(prop)), qkv, getSync);
        }
        return Reflect.get(target, prop, receiver);
      },
    }));
    if (raw.data) spec.data = wrap(raw.data, false);
    if (raw.query) {
      spec.qkv.query = wrap(raw.query, true);
      spec.qkv.key = wrap(raw.key, true);
      if (raw.bias) spec.qkv.bias = wrap(raw.bias, true);
    }
  }
  return state;
}

// The head view draws every selected head of a layer: fetch the layer's missing heads together.
function missingOf(state, spec, li, hi) {
  if (state.view !== "head") return [hi];
  return spec.heads.map((_, i) => i).filter((i) => spec.lazyRaw.data[li][i] === null);
}

function headUrl(state, kind, spec, li, his, qkv) {
  return apiUrl(`/api/traces/${encodeURIComponent(state.traceId)}/head`, {
    kind, layer: spec.layers[li], heads: his.map((i) => spec.heads[i]), dtype: state.dtype, qkv: qkv ? 1 : 0,
  });
}

function store(state, kind, spec, li, his, qkv, got) {
  const part = got.kinds[kind], raw = spec.lazyRaw;
  his.forEach((hi, j) => {
    if (qkv) {
      raw.query[li][hi] = part.qkv.query[0][j];
      raw.key[li][hi] = part.qkv.key[0][j];
      if (raw.bias) raw.bias[li][hi] = part.qkv.bias[0][j];
      state.remember(raw.query, li, hi); state.remember(raw.key, li, hi);
      if (raw.bias) state.remember(raw.bias, li, hi);
    } else {
      raw.data[li][hi] = part.data[0][j];
      state.remember(raw.data, li, hi);
    }
  });
  state.fetched += his.length;
}

function fill(state, kind, spec, li, his, qkv, get) {
  store(state, kind, spec, li, his, qkv, get(headUrl(state, kind, spec, li, his, qkv)));
}

// Fetch (asynchronously) what the view draws first, so opening it never waits on a synchronous request.
async function prefetch(state, data) {
  const p = data.payload, o = data.options, kind = firstKind(p, o.kind), spec = p.kinds[kind];
  if (!spec || data.view === "model" || spec.form === "qk") return;
  const li = Math.max(0, spec.layers.indexOf(o.layer));
  let his;
  if (data.view === "head") {
    his = o.heads ? o.heads.map((h) => spec.heads.indexOf(h)).filter((i) => i >= 0) : spec.heads.map((_, i) => i);
  } else {
    his = [Math.max(0, spec.heads.indexOf(o.head))];
  }
  const qkv = data.view === "neuron";
  store(state, kind, spec, li, his, qkv, await api(headUrl(state, kind, spec, li, his, qkv)));
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
  let lazy = null;
  if (data.lazy) {
    lazy = lazify(data, traceId);
    await prefetch(lazy, data);
  }
  root.dataset.state = "drawing";
  try {
    const view = window.attnscope.views[data.view](root, data.payload, data.options || {});
    root.attnscope = view;  // as a saved view's root has it (scripts and tests read the view through it)
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
  reportErrors(status);
  try {
    const config = await api("/api/config");
    document.getElementById("version").textContent = "v" + config.version;
    return config;
  } catch (err) {
    showStatus(status, errorText(err), "error");
    return null;
  }
}
