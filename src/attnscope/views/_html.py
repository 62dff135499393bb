"""HTML assembly: the views' JavaScript and CSS (shipped in ``attnscope/web``) inlined beside one JSON payload.

A fragment is::

    <div class="attnscope-output">
      <style>...</style>                                   every rule scoped under .attnscope
      <div class="attnscope" id="ID">(shown until the script runs)</div>
      <script type="application/json" id="ID-data">{"view": ..., "options": ..., "payload": ...}</script>
      <script>(function(){ ...core, views, boot... boot("ID"); })();</script>
    </div>

The script defines no globals and finds its root through ``document.currentScript`` (falling back to the id), so
any number of views live in one notebook. Nothing is fetched: it works offline, from a file, in any notebook.
"""

from __future__ import annotations

import hashlib
import html
import itertools
from functools import cache
from importlib import resources

from ..encode import script_json

#: The JavaScript files each view needs, in load order (core first, boot last).
VIEW_SCRIPTS: dict[str, tuple[str, ...]] = {
    "head": ("core.js", "decode.js", "recompute.js", "controls.js", "window.js", "minimap.js", "head.js"),
    "model": ("core.js", "decode.js", "recompute.js", "controls.js", "window.js", "minimap.js", "head.js", "model.js"),
    "neuron": ("core.js", "decode.js", "recompute.js", "controls.js", "window.js", "neuron.js"),
    "matrix": ("core.js", "decode.js", "recompute.js", "controls.js", "minimap.js", "matrix.js"),
    "diff": ("core.js", "decode.js", "recompute.js", "controls.js", "diff.js"),
}
#: Style sheets a view needs besides style.css.
VIEW_STYLES: dict[str, tuple[str, ...]] = {"diff": ("diff.css",)}
#: The atlas view colours its grid with the model view's ramp and opens exemplar texts in the head view.
VIEW_SCRIPTS["atlas"] = (*VIEW_SCRIPTS["model"], "atlas.js")
VIEW_STYLES["atlas"] = ("atlas.css",)
#: The disagreement view draws an Explanation (attnscope.analysis.explain): bars over the keys, a layer x head grid.
VIEW_SCRIPTS["disagreement"] = ("core.js", "decode.js", "controls.js", "disagreement.js")
VIEW_STYLES["disagreement"] = ("disagreement.css",)

_counter = itertools.count(1)


@cache
def asset(name: str) -> str:
    """The text of one file in ``attnscope/web``."""
    text = (resources.files("attnscope") / "web" / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "<!--" in text:
        raise RuntimeError(f"attnscope/web/{name} contains '</script' or '<!--' and cannot be inlined")
    return text


@cache
def script(view: str) -> str:
    """The JavaScript ``view`` needs (shared code, the view, the boot code), to be wrapped in one IIFE."""
    return "\n".join(asset(name) for name in (*VIEW_SCRIPTS[view], "boot.js"))


@cache
def styles(view: str) -> str:
    """The CSS ``view`` needs (style.css plus its own sheets)."""
    return "".join(asset(name) for name in ("style.css", *VIEW_STYLES.get(view, ())))


def new_id(data: str) -> str:
    """A deterministic element id: a digest of the data plus a per-process counter (unique per display)."""
    return f"attnscope-{hashlib.sha1(data.encode('ascii')).hexdigest()[:8]}-{next(_counter)}"


def fragment(view: str, data: dict, *, id: str | None = None) -> str:
    """An HTML fragment (notebook output) drawing ``view`` from ``data`` (view, options, payload)."""
    text = script_json(data)
    id = id or new_id(text)
    return (
        '<div class="attnscope-output">'
        f"<style>{styles(view)}</style>"
        f'<div class="attnscope" id="{id}" data-view="{view}">'
        '<p class="as-fallback">attnscope view: it is drawn by JavaScript. In Jupyter, trust the notebook '
        "(File &gt; Trust) or run the cell again.</p></div>"
        f'<script type="application/json" id="{id}-data">{text}</script>'
        f'<script>(function () {{\n"use strict";\n{script(view)}\nboot("{id}");\n}})();</script>'
        "</div>"
    )


def document(view: str, data: dict, *, title: str, id: str | None = None) -> str:
    """A standalone HTML document (opens from disk, no network) holding one view."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title>"
        "</head><body class=\"attnscope-page\">\n"
        f"{fragment(view, data, id=id)}\n</body></html>\n"
    )
