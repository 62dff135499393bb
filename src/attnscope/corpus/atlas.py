"""Reading a finished atlas folder, and comparing two atlases (two models, or before/after fine-tuning)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, require
from .store import MANIFEST, AtlasDir


@dataclass
class Atlas:
    """A finished corpus atlas (see :mod:`attnscope.corpus.store` for the files).

    - ``manifest``: what was measured (model, data files, options, ``layers``, ``heads``, ``metrics``, ``labels``,
      ``ranges``, ``counts``);
    - ``summary``: pandas DataFrame, one row per layer x head (:mod:`attnscope.corpus.summary`);
    - ``exemplars``: pandas DataFrame, the top texts per head and metric with their ``text`` and ``tokens``;
    - :meth:`heads` / :meth:`texts`: the per-text tables as pyarrow Tables, read on demand (they grow with the
      corpus).
    """

    path: Path
    manifest: dict
    summary: Any  # pandas.DataFrame
    exemplars: Any  # pandas.DataFrame

    @property
    def model(self) -> str:
        return self.manifest["identity"]["model"]

    @property
    def shape(self) -> tuple[int, int]:
        """``(layers, heads)``."""
        return int(self.manifest["layers"]), int(self.manifest["heads"])

    @property
    def metrics(self) -> list[str]:
        return list(self.manifest["metrics"])

    def grid(self, metric: str, stat: str = "mean") -> np.ndarray:
        """``[layers, heads]`` of a summary statistic (``"mean"``, ``"p10"`` ... ``"p90"``) of ``metric``."""
        self.check_metric(metric)
        column = f"{stat}_{metric}"
        if column not in self.summary.columns:
            raise InputError(f"no statistic {stat!r}; use mean, p10, p25, p50, p75 or p90")
        L, H = self.shape
        return self.summary.sort_values(["layer", "head"])[column].to_numpy(dtype=np.float64).reshape(L, H)

    def check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise InputError(f"unknown metric {metric!r}; an atlas has {', '.join(self.metrics)}")

    def heads(self, layer: int | None = None, head: int | None = None, columns: list[str] | None = None):
        """The per-text x layer x head table (pyarrow), optionally of one layer and/or head."""
        import pyarrow.dataset as pads

        ds = pads.dataset(str(self.path / "heads"), format="parquet")
        cond = None
        for name, value in (("layer", layer), ("head", head)):
            if value is not None:
                c = pads.field(name) == value
                cond = c if cond is None else cond & c
        return ds.to_table(columns=columns, filter=cond).sort_by([("text_id", "ascending"), ("layer", "ascending"),
                                                                   ("head", "ascending")])

    def texts(self, columns: list[str] | None = None):
        """One row per chosen text (pyarrow): text_id, source, row, text, status, error, n_tokens, tokens."""
        import pyarrow.dataset as pads

        return pads.dataset(str(self.path / "texts"), format="parquet").to_table(columns=columns).sort_by("text_id")

    def top(self, layer: int, head: int, metric: str):
        """The exemplar texts of one head for ``metric``, best first (a pandas DataFrame)."""
        self.check_metric(metric)
        e = self.exemplars
        return e[(e.metric == metric) & (e.layer == layer) & (e["head"] == head)].sort_values("rank")

    def compare(self, other: Atlas, metric: str | None = None, top: int | None = None):
        """How each head moved from this atlas to ``other`` (:func:`compare`)."""
        return compare(self, other, metric=metric, top=top)

    def __repr__(self) -> str:
        L, H = self.shape
        c = self.manifest.get("counts", {})
        return f"<attnscope atlas: {self.model}, {L} layers x {H} heads, {c.get('measured', 0)} texts measured>"


def load(path: str | Path) -> Atlas:
    """Open the atlas folder written by :func:`attnscope.corpus.build` (or ``attnscope corpus``)."""
    pd = require("pandas", "corpus")
    require("pyarrow", "corpus")
    folder = AtlasDir(path)
    if not folder.manifest_path.exists():
        raise InputError(f"{path} holds no {MANIFEST}: it is not an atlas; make one with attnscope corpus MODEL DATA "
                         f"-o {path}")
    manifest = folder.read_manifest()
    if not manifest.get("complete"):
        raise InputError(f"the atlas in {path} is not finished; run the same attnscope corpus command again to "
                         "resume it")
    summary = pd.read_parquet(folder.path / "summary.parquet")
    exemplars = pd.read_parquet(folder.path / "exemplars.parquet")
    texts_file = folder.path / "exemplar_texts.parquet"
    if texts_file.exists():
        exemplars = exemplars.merge(pd.read_parquet(texts_file), on="text_id", how="left")
    return Atlas(folder.path, manifest, summary, exemplars)


def compare(a: Atlas, b: Atlas, metric: str | None = None, top: int | None = None):
    """Per head, how atlas ``b`` differs from ``a``: a pandas DataFrame, one row per layer x head.

    Columns: ``layer, head``, for each metric ``a_m``, ``b_m`` (means) and ``delta_m = b_m - a_m``; ``label_a``,
    ``label_b`` (each head's most frequent pattern label) and ``label_shift``, the total variation distance between
    the two heads' label shares (0: the same mix of patterns, 1: no label in common). Sorted by ``|delta_metric|``
    when ``metric`` is given, else by ``label_shift``, largest first; ``top`` keeps the first rows.
    """
    if a.shape != b.shape:
        raise InputError(f"the atlases have {a.shape[0]}x{a.shape[1]} and {b.shape[0]}x{b.shape[1]} layers x heads; "
                         "compare atlases of models with the same layout (e.g. before and after fine-tuning)")
    if metric is not None:
        a.check_metric(metric)
    sa, sb = (x.summary.sort_values(["layer", "head"]).reset_index(drop=True) for x in (a, b))
    out = sa[["layer", "head"]].copy()
    for m in a.metrics:
        out[f"a_{m}"], out[f"b_{m}"] = sa[f"mean_{m}"], sb[f"mean_{m}"]
        out[f"delta_{m}"] = sb[f"mean_{m}"] - sa[f"mean_{m}"]
    out["label_a"], out["label_b"] = sa["label"], sb["label"]
    shares = [c for c in sa.columns if c.startswith("share_")]
    out["label_shift"] = 0.5 * np.abs(sa[shares].to_numpy() - sb[shares].to_numpy()).sum(1)
    key = out[f"delta_{metric}"].abs() if metric else out["label_shift"]
    out = out.assign(_key=key.fillna(-1.0)).sort_values(["_key", "layer", "head"], ascending=[False, True, True])
    out = out.drop(columns="_key").reset_index(drop=True)
    return out.head(top) if top else out
