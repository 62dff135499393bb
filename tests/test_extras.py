"""Optional pieces stay optional: without matplotlib (extra [figures]) or gguf / accelerate (extra [gguf]) the core
works, and what needs them says which extra to install."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import attnscope
from attnscope.capture import models
from attnscope.errors import MissingExtraError


def _without(monkeypatch, *modules: str) -> None:
    """Make ``modules`` unimportable and forget every attnscope.figures module, restored after the test."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    for name in [m for m in sys.modules if m == "attnscope.figures" or m.startswith("attnscope.figures.")]:
        monkeypatch.delitem(sys.modules, name)


def test_the_core_needs_neither_matplotlib_nor_gguf():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = " ".join(project["dependencies"])
    assert not any(name in core for name in ("matplotlib", "gguf", "accelerate"))
    extras = project["optional-dependencies"]
    assert [d.split(">")[0] for d in extras["figures"]] == ["matplotlib"]
    assert [d.split(">")[0] for d in extras["gguf"]] == ["gguf", "accelerate"]
    torch = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert "==" not in torch, "users get a range of torch releases, not one patch release"


def test_views_draw_without_matplotlib_and_figures_name_their_extra(monkeypatch, make_trace, tmp_path):
    _without(monkeypatch, "matplotlib")
    view = attnscope.head_view(make_trace())
    assert view.save(tmp_path / "head.html").stat().st_size > 0  # the HTML view and its picture need no matplotlib
    with pytest.raises(MissingExtraError, match=r"pip install 'attnscope\[figures\]'"):
        view.save(tmp_path / "head.png")
    with pytest.raises(MissingExtraError, match=r"'matplotlib' is not installed"):
        importlib.import_module("attnscope.figures")


@pytest.mark.parametrize("missing", ["gguf", "accelerate"])
def test_a_gguf_file_names_the_gguf_extra(monkeypatch, tmp_path, missing):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MissingExtraError, match=rf"'{missing}' is not installed.*pip install 'attnscope\[gguf\]'"):
        models.load_config(str(path))
    with pytest.raises(MissingExtraError, match=r"attnscope\[gguf\]"):
        attnscope.load_model(str(path))
