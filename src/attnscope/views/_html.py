"""HTML assembly: the views' JavaScript and CSS (shipped in ``attnscope/web``) inlined beside one JSON payload.

A fragment is::

    <div class="attnscope-output" data-attnscope="ID">
      <div class="attnscope" id="ID" data-view="model">     the view's root
        <div class="as-fallback">...</div>                  one line: why the picture, how to get the view
        <img class="as-picture" src="data:image/png;...">   the view's initial state (views/picture.py)
      </div>
      <!--attnscope:ID
        <style>...</style>                                  every rule scoped under .attnscope
        <script type="application/json" id="ID-data">{"view": ..., "options": ..., "payload": ...}</script>
        <script>(function(){ ...core, views, boot... boot("ID"); })();</script>
      -->
      <script>(loader.js)("ID");</script>
    </div>

Where scripts run, the loader puts the commented style, payload and code in place and the code draws the view
over the fallback line and the picture. Where they do not, the page shows the line and the picture: sanitizers that
strip scripts (JupyterLab's for untrusted outputs, GitHub's) drop the comment and the loader, and sanitizers that
escape what they do not allow (nbconvert's ``sanitize_html``) drop the comment, so at most the loader's few lines
show as text instead of the whole payload.

The script defines no globals and finds its root through ``document.currentScript`` (falling back to the id), so
any number of views live in one notebook. Nothing is fetched: it works offline, from a file, in any notebook.
"""

from __future__ import annotations

import hashlib
import html
import itertools
from typing import TYPE_CHECKING

from ..encode import script_json
from ..encode_qk import split_vectors
from .assets import loader, script, styles

if TYPE_CHECKING:
    from .picture import Picture

_counter = itertools.count(1)


def new_id(data: str) -> str:
    """A deterministic element id: a digest of the data plus a per-process counter (unique per display)."""
    return f"attnscope-{hashlib.sha1(data.encode('ascii')).hexdigest()[:8]}-{next(_counter)}"


def fragment(view: str, data: dict, *, id: str | None = None, picture: Picture | None = None) -> str:
    """An HTML fragment (notebook output) drawing ``view`` from ``data`` (view, options, payload); ``picture`` is
    shown until the script draws (and where it never runs). The queries and keys of a q/k payload follow the
    loader, one ``attnscope-blob:ID:N`` comment each (:func:`attnscope.encode_qk.split_vectors`)."""
    data, blobs = split_vectors(data)
    text = script_json(data)
    id = id or new_id(text)
    img = ""
    if picture is not None:
        # the source last: where the tag is escaped (nbconvert's sanitize_html) its text runs off the line's end
        img = (f'<img class="as-picture" alt="{html.escape(picture.alt)}" style="max-width:100%;height:auto" '
               f'src="{picture.data_uri()}">')
    return (
        f'<div class="attnscope-output" data-attnscope="{id}">'
        f'<div class="attnscope" id="{id}" data-view="{view}">'
        f'<div class="as-fallback">{fallback(view, picture is not None)}</div>{img}</div>'
        f"<!--attnscope:{id}\n"
        f"<style>{styles(view)}</style>"
        f'<script type="application/json" id="{id}-data">{text}</script>'
        f'<script>(function () {{\n"use strict";\n{script(view)}\nboot("{id}");\n}})();</script>\n-->'
        f'<script>{loader()}("{id}");</script>'
        + "".join(f"<!--attnscope-blob:{id}:{n}\n{blob}-->" for n, blob in enumerate(blobs))  # base64: no ">"
        + "</div>"
    )


def fallback(view: str, pictured: bool) -> str:
    """The line shown where the view's script does not run: what is shown instead and how to let it run."""
    what = f"A static picture of an attnscope {view} view" if pictured else f"An attnscope {view} view"
    return html.escape(
        f"{what}: the interactive view is drawn by JavaScript, which did not run here. To run it: in JupyterLab, "
        "\u201cTrust Notebook\u201d in the command palette (Ctrl+Shift+C); in classic Notebook, File \u203a Trust "
        "Notebook; in VS Code, trust the notebook or its workspace when asked; or run the cell again."
    )


def document(view: str, data: dict, *, title: str, id: str | None = None, picture: Picture | None = None) -> str:
    """A standalone HTML document (opens from disk, no network) holding one view."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{html.escape(title)}</title>"
        "</head><body class=\"attnscope-page\">\n"
        f"{fragment(view, data, id=id, picture=picture)}\n</body></html>\n"
    )
