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
