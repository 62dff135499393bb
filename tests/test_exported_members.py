"""The public API stays honest (httpx's tests/test_exported_members.py): each public namespace's ``__all__`` lists
exactly the names its ``__init__.py`` exports, in sorted order, and every one of them is documented."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

#: The packages whose ``__init__.py`` only gathers the public names of private modules.
NAMESPACES = ["attnscope", "attnscope.analysis", "attnscope.capture", "attnscope.corpus", "attnscope.track"]
#: Names that look private but are public on purpose.
PUBLIC_DUNDERS = {"__version__"}


def _init_bindings(package) -> dict[str, ast.stmt]:
    """Every name the package's ``__init__.py`` binds at its top level (imports, definitions, assignments), with the
    statement that binds it."""
    tree = ast.parse(Path(package.__file__).read_text(encoding="utf-8"))
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            for alias in node.names:
                out[(alias.asname or alias.name).split(".")[0]] = node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    out[target.id] = node
    return out


def _is_public(name: str) -> bool:
    return (not name.startswith("_") or name in PUBLIC_DUNDERS) and name != "annotations"  # the __future__ import


def _sort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then everything else, each alphabetically."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2), name


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_is_sorted_without_repeats(name):
    exported = importlib.import_module(name).__all__
    assert exported == sorted(set(exported), key=_sort_key)


@pytest.mark.parametrize("name", NAMESPACES)
def test_all_lists_exactly_what_the_package_exports(name):
    package = importlib.import_module(name)
    bound = _init_bindings(package)
    assert set(package.__all__) == {n for n in bound if _is_public(n)}
    # and at run time: no other public attribute, except submodules set on the package as a side effect of importing
    attributes = {n for n, v in vars(package).items() if _is_public(n) and not (inspect.ismodule(v) and n not in bound)}
    assert attributes == set(package.__all__)
    for exported in package.__all__:
        assert hasattr(package, exported), f"{name}.__all__ names {exported!r}, which the package lacks"


def _own_docstring(obj) -> str:
    """The docstring ``obj`` has itself: not one inherited, not the signature dataclasses write in its place."""
    doc = (vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__) or ""
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc.strip()


def _commented(package, statement: ast.stmt, name: str) -> bool:
    """Whether the module a constant comes from documents it with a ``#:`` comment right above its assignment."""
    if isinstance(statement, ast.ImportFrom):
        source = importlib.util.find_spec(importlib.util.resolve_name("." * statement.level + (statement.module or ""),
                                                                      package.__name__)).origin
    else:
        source = package.__file__
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    for node in ast.parse("\n".join(lines)).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#:")
    return False


@pytest.mark.parametrize("name", NAMESPACES)
def test_every_exported_name_is_documented(name):
    package = importlib.import_module(name)
    bound = _init_bindings(package)
    undocumented = []
    for exported in package.__all__:
        if exported in PUBLIC_DUNDERS:
            continue
        obj = getattr(package, exported)
        if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
            documented = bool(_own_docstring(obj))
        else:  # a constant: a `#:` comment where it is assigned (what Sphinx reads)
            documented = _commented(package, bound[exported], exported)
        if not documented:
            undocumented.append(exported)
    assert undocumented == []

