"""The files in ``attnscope/web`` that pages inline: each view's JavaScript and CSS (which files: the registry,
:data:`attnscope.views.registry.VIEWS`), read once and checked to be safe inside a ``<script>`` or ``<style>``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from .registry import VIEWS, spec


@cache
def asset(name: str) -> str:
    """The text of one file in ``attnscope/web``."""
    text = (resources.files("attnscope") / "web" / name).read_text(encoding="utf-8")
    if "</script" in text.lower() or "<!--" in text or "-->" in text or "--!>" in text:
        raise RuntimeError(f"attnscope/web/{name} contains '</script', '<!--', '-->' or '--!>' and cannot be inlined")
    return text


def scripts(view: str) -> str:
    """The JavaScript files ``view`` needs (shared code first, the view's own after), joined."""
    return "\n".join(asset(name) for name in spec(view).scripts)


@cache
def script(view: str) -> str:
    """What a saved page runs for ``view``: its scripts and the boot code, to be wrapped in one IIFE."""
    return scripts(view) + "\n" + asset("boot.js")


@cache
def styles(view: str) -> str:
    """The CSS ``view`` needs (style.css plus its own sheets)."""
    return "".join(asset(name) for name in ("style.css", *spec(view).styles))


def every_script() -> str:
    """Every view's JavaScript, each file once, in an order that serves them all (the web app loads this)."""
    names = dict.fromkeys(name for s in VIEWS.values() for name in s.scripts)
    last = [name for name in names if name == "units.js"]  # it wraps the views of weights: after all of them
    return "\n".join(asset(name) for name in [*(n for n in names if n not in last), *last])


def every_style() -> str:
    """Every view's style sheets, style.css first, each once."""
    names = dict.fromkeys(["style.css", *(n for s in VIEWS.values() for n in s.styles)])
    return "\n".join(asset(name) for name in names)


@cache
def loader() -> str:
    """web/loader.js on one line without its comments and the spaces around punctuation (it follows every view, and
    shows as text where a sanitizer escapes it; none of its strings holds a space)."""
    lines = (line.strip() for line in asset("loader.js").splitlines())
    code = " ".join(line for line in lines if line and not line.startswith("//"))
    return re.sub(r"\s*([{}();,=!&|<>+?:])\s*", r"\1", code)
