// Boot: find this output's root element and JSON payload, then draw the view into it.
// The root is looked up next to the running script element (JupyterLab and VS Code may run it before the output is
// attached to the page), else by id (classic Notebook runs scripts detached from their place).

function boot(id) {
  const me = document.currentScript;
  const near = (suffix) => {
    const scope = me && me.parentNode;
    return (scope && scope.querySelector(`[id="${id}${suffix}"]`)) || document.getElementById(id + suffix);
  };
  const start = (tries) => {
    const root = near(""), dataEl = near("-data");
    if (!root || !dataEl) {
      if (tries < 100) setTimeout(() => start(tries + 1), 50);
      return;
    }
    if (root.dataset.state) return;  // already drawn (the same output shown twice)
    root.dataset.state = "drawing";
    try {
      const data = JSON.parse(dataEl.textContent);
      data.payload.blob = blobReader(root.parentNode, id);
      const render = views[data.view];
      if (!render) throw new Error(`unknown view ${JSON.stringify(data.view)}`);
      root.attnscope = render(root, data.payload, data.options || {});
      // canvases rasterize lazily; reading a pixel makes the "drawn" time include that work
      for (const c of root.querySelectorAll("canvas")) c.getContext("2d").getImageData(0, 0, 1, 1);
      root.dataset.state = "drawn";
      root.dataset.drawnMs = performance.now().toFixed(1);
    } catch (err) {
      root.dataset.state = "error";
      root.textContent = "attnscope could not draw this view: " + (err && err.message ? err.message : String(err));
      root.classList.add("as-error");
      if (window.console) console.error(err);
    }
  };
  start(0);
}

// The large arrays that follow the view's script ("attnscope-blob:ID:N" comments after it, views/_html.py), read
// when a view first needs one: the view draws before the browser has read them. n -> text, or null while not yet
// read (the page is still loading).
function blobReader(box, id) {
  const prefix = `attnscope-blob:${id}:`, found = new Map();
  let last = null;  // the last child looked at: blobs arrive after it
  return (n) => {
    if (!found.has(n) && box) {
      for (let c = last ? last.nextSibling : box.firstChild; c; c = c.nextSibling) {
        last = c;
        if (c.nodeType === 8 && c.data.startsWith(prefix)) {
          const cut = c.data.indexOf("\n");
          found.set(Number(c.data.slice(prefix.length, cut)), c.data.slice(cut + 1));
        }
      }
    }
    return found.has(n) ? found.get(n) : null;
  };
}
