"""Atlas view: what every head does across a corpus (an :class:`attnscope.corpus.Atlas`), as a layer x head grid.

Each cell is coloured by a corpus statistic of one metric (the mean over the texts, or a quantile); hovering a
head shows its distribution over the texts and how often it gets each pattern label; clicking it lists its
exemplar texts (the ones where it scores highest, its strongest query -> key pair marked); clicking an exemplar
opens that text's head view. A standalone file carries the head views of the top few exemplars (``embed``),
captured when the view is made; the web app captures any exemplar on demand. With a second atlas (``other``: two
models of one layout, or before / after fine-tuning) the grid can show the change ``B - A`` and lists the heads
that moved most.

Payload (``format == "attnscope-atlas"``, JSON; histograms as base64):

- ``meta``: model, data, counts; ``layers``, ``heads``; ``metrics``, ``labels``, ``ranges`` (``[lo, hi]`` per
  metric), ``bins``.
- ``stats``: ``{stat: {metric: [L][H]}}`` for ``mean, p10, p50, p90`` (null where a metric does not apply);
  ``hist``: ``{metric: base64 uint32 [L * H * bins]}``; ``shares``: ``[L][H][labels]``; ``label``: ``[L][H]``
  index of each head's most frequent label.
- ``exemplars``: ``{metric: [L][H] -> [[text, value, peak query, peak key], ...]}`` (``text`` indexes ``texts``);
  ``texts``: ``[{id, text, tokens, labels}]`` (raw tokens and their display labels,
  :func:`attnscope.encode.token_labels`).
- ``embedded``: ``{"text:layer": head view payload of that text (that layer only)}``.
- ``other``: null, or ``{meta, stats, shares, label}`` of the second atlas.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encode import token_labels
from ..errors import InputError
from ._view import View
from .options import THEMES

PAYLOAD_FORMAT = "attnscope-atlas"
PAYLOAD_VERSION = 1
STATS = ("mean", "p10", "p50", "p90")
#: Exemplar texts whose head views a standalone file carries, by default.
EMBED = 6
DEFAULT_METRIC = "previous"


def atlas_view(
    atlas,
    other=None,
    *,
    metric: str | None = None,
    stat: str | None = None,
    show: str | None = None,
    embed: int | None = None,
    model=None,
    theme: str | None = None,
    prettify: bool | None = None,
    picture: bool | None = None,
) -> AtlasView:
    """The atlas view of ``atlas`` (an :class:`attnscope.corpus.Atlas` or its folder), optionally against ``other``.

    ``metric`` colours the grid at start (default ``"previous"``; any of the atlas's metrics, changeable in the
    view), ``stat`` which statistic (``"mean"``, ``"p10"``, ``"p50"``, ``"p90"``); with ``other``, ``show`` picks
    ``"a"``, ``"b"`` or ``"delta"`` (``B - A``, the default). ``embed``: how many exemplar texts carry their head
    view in the file (default 6: the top exemplar of the heads highest on ``metric``); they are captured with
    ``model`` (default: the atlas's own model, loaded by name). ``embed=0`` needs no model.
    """
    from ..corpus import Atlas, load

    a = atlas if isinstance(atlas, Atlas) else load(atlas)
    b = None if other is None else (other if isinstance(other, Atlas) else load(other))
    if b is not None and b.shape != a.shape:
        raise InputError(f"the atlases have {a.shape} and {b.shape} layers x heads; compare atlases of models with "
                         "the same layout")
    return AtlasView(a, b, dict(metric=metric, stat=stat, show=show, theme=theme, prettify=prettify, picture=picture),
                     embed=EMBED if embed is None else embed, model=model)


class AtlasView(View):
    """The atlas view: displays itself in notebooks, saves as HTML or as a figure (PNG/SVG/PDF)."""

    def __init__(self, atlas, other, options: dict[str, Any], *, embed: int = EMBED, model=None):
        self.name = "atlas"
        self.atlas, self.other = atlas, other
        self.options = check(atlas, other, options)
        if not isinstance(embed, int) or isinstance(embed, bool) or embed < 0:
            raise InputError(f"embed must be a whole number >= 0 (exemplar texts whose head view the file carries); "
                             f"got {embed!r}")
        self.embed, self.model = embed, model
        self._payload: dict[str, Any] | None = None
        self.trace = None  # type: ignore[assignment]  # an atlas summarises many traces, not one

    @property
    def payload(self) -> dict[str, Any]:
        if self._payload is None:
            self._payload = build_payload(self.atlas, self.other, self.options, self.embed, self.model)
        return self._payload

    def data(self) -> dict[str, Any]:
        from .options import js_options

        return {"view": "atlas", "options": js_options(self.options), "payload": self.payload}

    def html(self, *, id: str | None = None) -> str:
        from . import _html

        return _html.document("atlas", self.data(), title=f"{self.atlas.model} · atlas view · attnscope", id=id,
                              picture=self.picture())

    def save(self, path: str | Path, **figure_options: Any) -> Path:
        path = Path(path)
        if path.suffix.lower() in (".png", ".svg", ".pdf"):
            from ..figures import save_figure

            opts = {k: v for k, v in self.options.items() if k in ("metric", "stat", "show", "theme")}
            return save_figure("atlas", self.atlas, path, other=self.other, **{**opts, **figure_options})
        return super().save(path, **figure_options)

    def figure_input(self):
        return self.atlas

    def __repr__(self) -> str:
        L, H = self.atlas.shape
        vs = f" vs {self.other.model}" if self.other is not None else ""
        return f"<attnscope atlas view: {self.atlas.model}{vs}, {L} layers x {H} heads>"


def check(atlas, other, options: dict[str, Any]) -> dict[str, Any]:
    """Validate the options (``None`` dropped; ``metric``, ``stat`` and ``show`` filled in)."""
    opts = {k: v for k, v in options.items() if v is not None}
    opts["metric"] = opts.get("metric", DEFAULT_METRIC if DEFAULT_METRIC in atlas.metrics else atlas.metrics[0])
    atlas.check_metric(opts["metric"])
    opts["stat"] = opts.get("stat", "mean")
    if opts["stat"] not in STATS:
        raise InputError(f"stat must be one of {', '.join(STATS)}; got {opts['stat']!r}")
    if other is None:
        if "show" in opts:
            raise InputError("show= picks a, b or delta of two atlases; pass other= the second atlas")
    else:
        opts["show"] = opts.get("show", "delta")
        if opts["show"] not in ("a", "b", "delta"):
            raise InputError(f"show must be 'a', 'b' or 'delta'; got {opts['show']!r}")
    if opts.get("theme", "auto") not in THEMES:
        raise InputError(f"theme must be one of {list(THEMES)}; got {opts['theme']!r}")
    if "prettify" in opts:
        opts["prettify"] = bool(opts["prettify"])
    return opts


# --------------------------------------------------------------------------- payload
def build_payload(atlas, other, opts: Mapping[str, Any], embed: int, model) -> dict[str, Any]:
    """The atlas view's payload (layout in the module docstring)."""
    texts: list[dict[str, Any]] = []
    index: dict[int, int] = {}  # text id -> its place in texts
    exemplars: dict[str, Any] = {}
    L, H = atlas.shape
    for metric, group in atlas.exemplars.groupby("metric", sort=False):
        grid: list[list[list]] = [[[] for _ in range(H)] for _ in range(L)]
        for row in group.sort_values(["layer", "head", "rank"]).itertuples(index=False):
            if row.text_id not in index:
                index[row.text_id] = len(texts)
                texts.append({"id": int(row.text_id), "text": row.text, "tokens": list(row.tokens),
                              "labels": token_labels(row.tokens)})
            grid[row.layer][row.head].append([index[row.text_id], _num(row.value), int(row.peak_query),
                                              int(row.peak_key)])
        exemplars[metric] = grid
    payload = {
        "format": PAYLOAD_FORMAT,
        "version": PAYLOAD_VERSION,
        "meta": _meta(atlas),
        **_grids(atlas),
        "exemplars": exemplars,
        "texts": texts,
        "embedded": _embedded(atlas, opts["metric"], embed, model, texts, index, exemplars),
        "other": None,
    }
    if other is not None:
        payload["other"] = {"meta": _meta(other), **{k: v for k, v in _grids(other).items() if k != "hist"}}
    return payload


def _meta(atlas) -> dict[str, Any]:
    m = atlas.manifest
    return {"model": atlas.model, "data": m.get("data"), "counts": m.get("counts"), "layers": m["layers"],
            "heads": m["heads"], "metrics": m["metrics"], "labels": m["labels"], "ranges": m["ranges"],
            "bins": m["bins"]}


def _grids(atlas) -> dict[str, Any]:
    L, H = atlas.shape
    s = atlas.summary.sort_values(["layer", "head"])
    labels = atlas.manifest["labels"]
    shares = s[[f"share_{name}" for name in labels]].to_numpy(dtype=np.float64).reshape(L, H, -1)
    hist = {m: base64.b64encode(np.concatenate(s[f"hist_{m}"].to_list()).astype("<u4").tobytes()).decode("ascii")
            for m in atlas.metrics}
    return {
        "stats": {stat: {m: _grid(atlas.grid(m, stat)) for m in atlas.metrics} for stat in STATS},
        "hist": hist,
        "shares": np.round(shares, 4).tolist(),
        "label": [[labels.index(x) if isinstance(x, str) else -1 for x in row]
                  for row in s["label"].to_numpy(dtype=object).reshape(L, H)],
    }


def _grid(values: np.ndarray) -> list[list[float | None]]:
    return [[_num(v) for v in row] for row in values]


def _num(v) -> float | None:
    v = float(v)
    return None if not np.isfinite(v) else round(v, 6)


def _embedded(atlas, metric: str, embed: int, model, texts: list[dict], index: dict, exemplars: dict) -> dict:
    """Head view payloads of the top exemplar of the ``embed`` heads highest on ``metric`` (one per text x layer)."""
    if not embed:
        return {}
    from ..capture import capture
    from ..capture.models import load_cached
    from .head import head_view

    order = np.argsort(-np.nan_to_num(atlas.grid(metric), nan=-np.inf), axis=None, kind="stable")
    L, H = atlas.shape
    chosen: list[tuple[int, int]] = []
    for flat in order:
        layer, head = divmod(int(flat), H)
        ex = exemplars.get(metric, [[[]] * H] * L)[layer][head]
        if ex and (ex[0][0], layer) not in chosen:
            chosen.append((ex[0][0], layer))
        if len(chosen) == embed:
            break
    if isinstance(model, Sequence) and len(model) == 2 and not isinstance(model, str):
        loaded, tokenizer = model
    else:
        loaded, tokenizer = load_cached(model or atlas.model)
    out = {}
    for text, layer in chosen:
        trace = capture(loaded, tokenizer, texts[text]["text"])
        out[f"{text}:{layer}"] = head_view(trace, include_layers=[layer]).payload
    return out
