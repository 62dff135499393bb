// Widget (attnscope.widget, an anywidget front-end module): the view functions above draw into the widget's element,
// and what the user selects is synced with Python: "selected" is [layer, head] (head null while a head view shows
// several heads; null before a model view's thumbnail is clicked), "query" the query token pinned or picked (or
// null). Python may set them too, and the view follows.

function render({ model, el }) {
  const data = JSON.parse(model.get("_data"));
  const root = document.createElement("div");
  root.className = "attnscope";
  el.appendChild(root);
  const view = views[data.view](root, data.payload, data.options || {});
  root.attnscope = view;
  root.dataset.state = "drawn";

  if (typeof view.current !== "function") {  // a view (or a wrapper of one) that does not tell what is selected
    if (window.console) console.warn("attnscope widget: this view does not report its selection; nothing is synced");
    return () => view.destroy();
  }
  const shown = () => {
    const c = view.current();
    const head = c.head !== undefined ? c.head : c.heads.length === 1 ? c.heads[0] : null;
    return { selected: c.layer === null ? null : [c.layer, head], query: c.query };
  };
  let last = "";
  const push = () => {  // the view's state to Python, when it changed
    const s = shown(), key = JSON.stringify(s);
    if (key === last) return;
    last = key;
    model.set("selected", s.selected);
    model.set("query", s.query);
    model.save_changes();
  };
  const later = () => setTimeout(push, 0);  // after the view's own handlers have run
  const types = ["click", "dblclick", "change", "keyup"];
  for (const type of types) root.addEventListener(type, later);

  const pull = () => {  // Python set "selected" or "query": show it
    const sel = model.get("selected"), query = model.get("query");
    if (JSON.stringify({ selected: sel, query }) === last) return;
    if (view.select) view.select(sel ? sel[0] : null, sel ? sel[1] : null);
    else {
      const next = {};
      if (sel) next.layer = sel[0];
      if (sel && sel[1] !== null) next[data.view === "head" ? "heads" : "head"] = data.view === "head" ? [sel[1]] : sel[1];
      if (query !== null && data.view !== "head") next.query = query;
      view.update(next);
    }
    push();
  };
  model.on("change:selected", pull);
  model.on("change:query", pull);
  push();
  return () => {
    model.off("change:selected", pull);
    model.off("change:query", pull);
    view.destroy();
  };
}
