"""BertViz in the bench environment (``.bench/``, git-ignored), as a user runs it, and what "drawn" means for it.

BertViz 1.4.1 is installed with ``pip --no-deps --target .bench/site`` (its views import only IPython and torch,
which the project venv has), so the project's resolver is never touched. Its views ask cdnjs for require.js 2.3.6,
d3 5.7.0 and jQuery 2.0.0; those come from npm into ``.bench/npm`` and are served for the CDN URLs by request
interception (npm has no jQuery 2.0.0: 2.1.0, the oldest 2.x there, stands in; BertViz uses only ``$(...)``,
``.append``, ``.val``, ``.on``, ``.empty``, ``.attr``). npm's require.js ships unminified.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / ".bench"
SITE = BENCH / "site"
NPM = BENCH / "npm"
BERTVIZ = "bertviz==1.4.1"
NPM_PACKAGES = ("d3@5.7.0", "jquery@2.1.0", "requirejs@2.3.6")

_CDN = "https://cdnjs.cloudflare.com/ajax/libs/"
CDN = {
    _CDN + "require.js/2.3.6/require.min.js": NPM / "node_modules/requirejs/require.js",
    _CDN + "d3/5.7.0/d3.min.js": NPM / "node_modules/d3/dist/d3.min.js",
    _CDN + "jquery/2.0.0/jquery.min.js": NPM / "node_modules/jquery/dist/jquery.min.js",
}


def install() -> None:
    """Install BertViz and the JS files it fetches, once (progress on stderr)."""
    if not (SITE / "bertviz").is_dir():
        print(f"installing {BERTVIZ} into {SITE}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(SITE),
                        BERTVIZ], check=True)
    if not all(p.is_file() for p in CDN.values()):
        print(f"installing {' '.join(NPM_PACKAGES)} into {NPM}", file=sys.stderr, flush=True)
        subprocess.run(["npm", "install", "--prefix", str(NPM), "--no-audit", "--no-fund", "--save-exact",
                        *NPM_PACKAGES], check=True, stdout=subprocess.DEVNULL)
    missing = [str(p) for p in CDN.values() if not p.is_file()]
    if missing:
        raise RuntimeError(f"npm did not provide {missing}")
    if str(SITE) not in sys.path:
        sys.path.insert(0, str(SITE))


def document(fragment: str) -> str:
    """A notebook output fragment as a file a browser opens (the same wrapper for both tools)."""
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{fragment}\n</body></html>\n'


def build(view: str, attention, tokens: list[str]) -> tuple[str, float]:
    """BertViz's ``view`` ("head" or "model") HTML for a tuple of ``[1, H, n, n]`` tensors; and build seconds."""
    install()
    import bertviz

    fn = bertviz.head_view if view == "head" else bertviz.model_view
    t = time.perf_counter()
    html = fn(attention, tokens, html_action="return").data
    return document(html), time.perf_counter() - t


def drawn(view: str, layers: int, heads: int, n: int) -> str:
    """JS condition for "BertViz has drawn": every SVG line of the default layer (head view) or of every
    layer x head thumbnail (model view) is in the page."""
    if view == "head":
        return (f"(g => g && g.getElementsByTagName('line').length === {heads * n * n})"
                "(document.getElementById('attention'))")
    return (f"document.getElementsByClassName('attn_background').length === {layers * heads} && "
            f"document.getElementsByTagName('line').length === {layers * heads * n * n}")
