// Loader, inlined after each view (views/_html.py). The view's style, payload and code travel inside the HTML
// comment "attnscope:ID ..." just before this script, so that a sanitizer which escapes what it does not allow
// (nbconvert's sanitize_html) drops them with the comment instead of printing them; this puts them in place of the
// comment, the code as a new script element, which runs at once. The comment's box is this script's parent
// (JupyterLab, VS Code, a page), else the parent of the element with the view's id (classic Notebook runs scripts
// detached from their place), retried while the output is not yet in the page. Kept short: where a sanitizer
// escapes it, it shows as text.
(function (i) {
  var s = document.currentScript, m = "attnscope:" + i;
  (function go(n) {
    var b = s && s.parentNode, c, t, x, r;
    if (!b || !b.getAttribute || b.getAttribute("data-attnscope") !== i) b = (document.getElementById(i) || {}).parentNode;
    if (!b) return n < 100 && setTimeout(function () { go(n + 1); }, 50);
    for (c = b.firstChild; c && !(c.nodeType === 8 && c.data.indexOf(m) === 0); c = c.nextSibling);
    if (!c) return;
    t = document.createElement("template");
    t.innerHTML = c.data.slice(m.length);
    x = t.content.querySelector("script:not([type])");
    x.parentNode.removeChild(x);
    b.replaceChild(t.content, c);
    r = document.createElement("script");
    r.textContent = x.textContent;
    b.insertBefore(r, b.lastChild);
  })(0);
})
