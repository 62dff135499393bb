"""Static pictures of the views' initial states, for places where scripts never run.

GitHub's notebook preview, untrusted notebooks, HTML sanitizers and e-mail drop a view's ``<script>``; the HTML
then shows this picture (a PNG in an ``<img>`` the script replaces once it draws, see :mod:`._html`), and
:meth:`View._repr_mimebundle_` offers it as ``image/png``. Each picture shows what the view draws first, with the
views' own colours: the model view's grid of thumbnails, the head view's lines of the first :data:`WINDOW` rows,
the matrix view's heatmap, the neuron view's bars for its first query, the diff view's A / B / B - A of its first
head and the atlas view's grid.

Pictures are drawn with numpy (:mod:`._raster`), never matplotlib, so that they add at most a few tens of
milliseconds to building a view (``benchmarks/picture.py`` measures bytes and time against the view without it).
``picture=False`` (a view option) leaves them out.
"""

from __future__ import annotations

import base64
import colorsys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..attention import block_max
from ..codec import inflate85, sqrt8
from ..encode import dequantize
from ..tokens import prettify_tokens
from . import _raster as R
from .options import focus

WINDOW = 40  # token rows the head and neuron pictures show (the views' window, window.js)
ROW = 18  # px per token row, as the views
PAD = 10  # px around a picture
GAP = 4  # px between the model view's thumbnails
# The views' colours (web/core.js THEMES and PALETTE, web/model.js METRIC_RAMP)
THEMES = {
    "light": {"bg": (255, 255, 255), "fg": (0x1F, 0x23, 0x28), "muted": (0x6E, 0x77, 0x81), "grid": (0xD8, 0xDE, 0xE4),
              "heat": [(0, 255, 255, 255), (0.25, 206, 224, 242), (0.5, 120, 172, 220), (0.75, 40, 108, 180), (1, 8, 48, 107)],
              "ramp": [(0, 254, 217, 118), (1 / 3, 253, 141, 60), (2 / 3, 227, 26, 28), (1, 128, 0, 38)]},
    "dark": {"bg": (0x16, 0x18, 0x1D), "fg": (0xE6, 0xE8, 0xEB), "muted": (0x8B, 0x94, 0x9E), "grid": (0x30, 0x36, 0x3D),
             "heat": [(0, 22, 24, 29), (0.25, 38, 62, 112), (0.5, 34, 122, 168), (0.75, 88, 192, 186), (1, 236, 250, 196)],
             "ramp": [(0, 106, 27, 61), (1 / 3, 215, 48, 31), (2 / 3, 252, 141, 89), (1, 254, 224, 139)]},
}
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f", "#17becf",
           "#bcbd22", "#8c564b"]
POSITIVE, NEGATIVE = (47, 122, 214), (240, 128, 32)  # the neuron view's colour bars (core.js signColor)
HEAT_LEVELS = 128  # heatmap colours of a picture (sqrt8 bytes halved)
BAR_LEVELS = 24  # opacities of the neuron view's blue and orange bars


@dataclass(frozen=True)
class Picture:
    """A PNG of a view's initial state: its bytes, size in pixels and a text alternative."""

    png: bytes
    width: int
    height: int
    alt: str

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def picture(view) -> Picture | None:
    """The static picture of ``view`` (a :class:`~attnscope.views.View`), or None for a view without one."""
    paint = _PAINTERS.get(view.name)
    if paint is None:
        return None
    canvas, alt = paint(view)
    w, h = canvas.size
    return Picture(canvas.png(), w, h, alt)


# --------------------------------------------------------------------------- shared pieces
class _Ink:
    """A picture's palette with the colours every view uses: background, text ramps (muted, fg), grid, heat."""

    def __init__(self, options: dict[str, Any], heat: bool = True):
        self.theme = th = THEMES["dark" if options.get("theme") == "dark" else "light"]
        self.palette = p = R.Palette()
        self.bg = p.add(th["bg"])
        self.muted, self.fg = p.ramp(th["bg"], th["muted"]), p.ramp(th["bg"], th["fg"])
        self.grid = p.add(th["grid"])
        self.heat = p.add(_stops(th["heat"], HEAT_LEVELS)) if heat else -1

    def canvas(self, width: int, height: int) -> R.Canvas:
        return R.Canvas(width, height, self.palette, self.bg)

    def heat_index(self, weights: np.ndarray) -> np.ndarray:
        return (sqrt8(weights) >> 1).astype(np.uint8) + np.uint8(self.heat)


def _stops(stops, n: int) -> np.ndarray:
    """``n`` RGB colours along colour stops ``[(t, r, g, b), ...]`` (as core.js stopsLut)."""
    t = np.linspace(0, 1, n)
    at = np.array([s[0] for s in stops])
    return np.stack([np.interp(t, at, [s[c] for s in stops]) for c in (1, 2, 3)], 1).round().astype(np.uint8)


def _hex(colour: str) -> tuple[int, int, int]:
    v = int(colour[1:], 16)
    return (v >> 16) & 255, (v >> 8) & 255, v & 255


def _head_colour(head: int, n_heads: int) -> tuple[int, int, int]:
    """core.js headColor: the palette, or hues around the circle past 12 heads."""
    if n_heads <= len(PALETTE):
        return _hex(PALETTE[head % len(PALETTE)])
    r, g, b = colorsys.hls_to_rgb(round(head * 360 / n_heads) / 360, 0.54, 0.62)
    return round(r * 255), round(g * 255), round(b * 255)


def _labels(tokens, options: dict[str, Any]) -> list[str]:
    return list(tokens) if options.get("prettify") is False else prettify_tokens(tokens)


def _caption(trace, kind: str, what: str) -> str:
    L, H, q, k = trace.shape(kind)
    size = f"{q} tokens" if q == k else f"{q} \u00d7 {k} tokens"
    model = trace.meta.get("model") or "attention"
    return f"{what} \u00b7 {model} \u00b7 {L} layers \u00d7 {H} heads \u00b7 {size}"


def _column(f: R.Font, labels: list[str], cap: int) -> int:
    """Width of a token column: its longest label plus padding, as the views (at least 24 px, at most ``cap``)."""
    return min(int(max([24.0, *map(f.width, labels)])) + 12, cap)


def _pooled(att, spec: dict[str, Any], li: int, rows: tuple[int, int], cols: tuple[int, int], size: int) -> list:
    """sqrt8 bytes of each shown head of layer ``li`` (index into ``spec["layers"]``), block-max pooled over
    ``rows x cols`` so that neither side exceeds ``size``: from the payload's own thumbnails where it ships them
    (pruned and q/k payloads, long inputs), else from the weights, all heads at once for dense ones."""
    layer, heads = spec["layers"][li], spec["heads"]
    _, _, q, k = att.shape
    thumb = spec.get("thumb")
    if thumb is not None:  # what the model view draws itself: pooled already, in blocks of thumb["block"] tokens
        b, (tr, tc) = thumb["block"], thumb["shape"]
        ra, rb, ca, cb = rows[0] // b, max(rows[0] // b + 1, -(-rows[1] // b)), cols[0] // b, max(cols[0] // b + 1, -(-cols[1] // b))
        tiles = [np.frombuffer(inflate85(item), np.uint8, tr * tc).reshape(tr, tc)[ra:rb, ca:cb] for item in thumb["data"][li]]
        return [_block_max(t, size) for t in tiles]
    if att.form == "dense":  # strided maxima over every head at once: far faster than one reshape-max per head
        return list(sqrt8(_block_max(att.weights[layer, heads, rows[0] : rows[1], cols[0] : cols[1]], size)))
    if rows == (0, q) and cols == (0, k):
        return [sqrt8(att.pooled(layer, h, size)) for h in heads]
    return [sqrt8(block_max(att.rows(layer, h, *rows)[:, cols[0] : cols[1]], size)) for h in heads]


def _block_max(x: np.ndarray, size: int) -> np.ndarray:
    """Max-pool the last two axes of ``x`` in square blocks so that neither side exceeds ``size``."""
    b = max(1, -(-max(x.shape[-2:]) // size))
    if b == 1:
        return x
    out = x[..., ::b, :]
    for i in range(1, b):
        part = x[..., i::b, :]
        out = np.maximum(out[..., : part.shape[-2], :], part) if part.shape[-2] == out.shape[-2] else _rows_max(out, part)
    cols = out[..., ::b]
    for i in range(1, b):
        part = out[..., i::b]
        cols = np.concatenate([np.maximum(cols[..., : part.shape[-1]], part), cols[..., part.shape[-1] :]], -1)
    return cols


def _rows_max(out: np.ndarray, part: np.ndarray) -> np.ndarray:
    """``out`` with its first rows maxed with ``part`` (which has fewer rows: the ragged last block)."""
    n = part.shape[-2]
    return np.concatenate([np.maximum(out[..., :n, :], part), out[..., n:, :]], -2)


def _scale(tile: np.ndarray, u: int) -> np.ndarray:
    return np.repeat(np.repeat(tile, u, 0), u, 1)


# --------------------------------------------------------------------------- model view
def _model(view):
    trace, o = view.trace, view.options
    seen = focus(trace, o)
    kind, layers, heads, rows, cols = seen.kind, seen.layers, seen.head_set, seen.rows, seen.cols
    att = trace.attention[kind]
    spec = view.payload["kinds"][kind]
    ink = _Ink(o)
    metric = _metric(view, kind, o)
    ramp = ink.palette.add(_stops(ink.theme["ramp"], 64)) if metric is not None else 0
    L, H = len(layers), len(heads)
    cell = max(12, min(40, 760 // H - GAP))
    step = cell + GAP
    f = R.font(R.SMALL)
    label_w = int(max(f.width(str(layer)) for layer in layers)) + 8
    width = max(2 * PAD + label_w + H * step - GAP, 320)
    height = PAD + 16 + L * step - GAP + 8 + ROW + PAD
    c = ink.canvas(width, height)
    x0, y0 = PAD + label_w, PAD + 16
    c.text("L \\ H", PAD, PAD + 10, ink.muted)
    for p, h in enumerate(heads):
        label = f"#{p + 1}" if metric is not None and o.get("sort") else str(h)
        c.text(label, x0 + p * step + cell / 2 - f.width(label) / 2, PAD + 10, ink.muted)
    for li, layer in enumerate(layers):
        y = y0 + li * step
        c.text(str(layer), x0 - 6, y + cell // 2 + 4, ink.muted, align="right")
        size = cell - 2 * (max(2, round(cell * 0.05)) if metric is not None else 0)
        thumbs = _pooled(att, spec, li, rows, cols, size)
        for hi, pooled in enumerate(thumbs):
            x = x0 + (metric[1][li][hi] if metric is not None else hi) * step
            inset = 0
            if metric is not None:
                inset = max(2, round(cell * 0.05))
                level = metric[0][li][hi]
                c.rect(x, y, cell, cell, ramp + level if level >= 0 else ink.grid)
            else:  # the view's 1 px outline in the grid colour
                c.rect(x - 1, y - 1, cell + 2, cell + 2, ink.grid)
                c.rect(x, y, cell, cell, ink.bg)
            tile = _scale((pooled >> 1) + np.uint8(ink.heat), max(1, size // max(pooled.shape)))
            c.paste(x + inset + (size - tile.shape[1]) // 2, y + inset + (size - tile.shape[0]) // 2, tile)
    caption = _caption(trace, kind, "model view")
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope model view: {L} layers \u00d7 {H} heads"


def _metric(view, kind: str, o: dict[str, Any]):
    """``(colour level [L][H] in 0..63 or -1, column [L][H])`` of the model view's metric frames, or None."""
    name = o.get("metric")
    ms = view.payload["kinds"][kind].get("metrics") if name else None
    if not ms or name not in ms["values"]:
        return None
    values = _grid(ms["values"][name])
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)
    level = np.where(np.isfinite(values), np.round(scaled * 63), -1).astype(int)
    pos = np.tile(np.arange(values.shape[1]), (values.shape[0], 1))
    if o.get("sort"):  # highest first, ties by head index, heads without a value last (as model.js)
        key = np.where(np.isfinite(values), values, -np.inf)
        for li in range(values.shape[0]):
            pos[li, np.lexsort((np.arange(values.shape[1]), -key[li]))] = np.arange(values.shape[1])
    return level.tolist(), pos.tolist()


# --------------------------------------------------------------------------- head view
def _head(view):
    trace, o = view.trace, view.options
    seen = focus(trace, o)
    kind, layer, heads, rows, cols = seen.kind, seen.layer, seen.heads, seen.rows, seen.cols
    att = trace.attention[kind]
    H0 = trace.shape(kind)[1]
    qs, ks = trace.streams(kind)
    n = max(rows[1] - rows[0], cols[1] - cols[0], 1)
    shown = min(n, WINDOW)
    r1, c1 = min(rows[1], rows[0] + shown), min(cols[1], cols[0] + shown)
    qlab = _labels(trace.tokens[qs], o)[rows[0] : r1]
    klab = _labels(trace.tokens[ks], o)[cols[0] : c1]
    ink = _Ink(o, heat=False)
    n_colours = max(H0, max(heads) + 1)
    room = 256 - ink.palette.n
    levels = max(2, min(8, room // len(heads) - 1))
    ramps = min(len(heads), room // (levels + 1))  # past ~80 heads neighbours share a colour
    colour = [ink.palette.ramp(ink.theme["bg"], _head_colour(heads[r * len(heads) // ramps], n_colours), levels + 1)
              for r in range(ramps)]
    starts = [colour[s * ramps // len(heads)] for s in range(len(heads))]
    f = R.font(R.TOKEN)
    lw, rw = _column(f, qlab, 180), _column(f, klab, 180)
    lines_w, box = 272, 36  # the view's line canvas (2 * BOX + 200) and the margins its lines leave
    width, top = 2 * PAD + lw + lines_w + rw, PAD + 24
    height = top + shown * ROW + 8 + ROW + PAD
    c = ink.canvas(width, height)
    x = PAD
    c.text(f"Layer {layer}", x, PAD + 12, ink.muted)
    x += int(R.font(R.SMALL).width(f"Layer {layer}")) + 12
    for h, start in zip(heads, starts):  # the head chips of the view's toolbar
        c.rect(x, PAD + 2, 12, 12, start + levels)
        c.text(str(h), x + 15, PAD + 12, ink.muted)
        x += 15 + int(R.font(R.SMALL).width(str(h))) + 8
    for i, t in enumerate(qlab):
        c.text(t, PAD + lw - 5, top + i * ROW + 13, ink.fg, R.TOKEN, max_width=lw - 10, align="right")
    for j, t in enumerate(klab):
        c.text(t, PAD + lw + lines_w + 5, top + j * ROW + 13, ink.fg, R.TOKEN, max_width=rw - 10)
    # lines between the same two tokens coincide, so each pair is drawn once: its opacities added, the colour of
    # its strongest head
    total = np.zeros((r1 - rows[0], c1 - cols[0]), np.float32)
    best = np.zeros_like(total)
    who = np.zeros(total.shape, np.int32)
    for s, h in enumerate(heads):
        w = np.round(att.rows(layer, h, rows[0], r1)[:, cols[0] : c1].astype(np.float32) * 64) / 64  # as head.js
        w[w < 1 / 64] = 0
        total += w
        stronger = w > best
        best[stronger], who[stronger] = w[stronger], s
    qi, kj = np.nonzero(total > 0)
    cover, tag = R.lines((height, width), PAD + lw + box + 2, PAD + lw + lines_w - box - 2,
                         top + qi * ROW + ROW // 2, top + kj * ROW + ROW // 2, np.minimum(total[qi, kj], 1.0),
                         who[qi, kj])
    drawn = tag >= 0
    level = np.minimum(np.round(cover[drawn] * levels), levels).astype(np.int32)
    c.px[drawn] = np.where(level > 0, np.asarray(starts, np.int32)[tag[drawn]] + level, c.px[drawn]).astype(np.uint8)
    more = f" \u00b7 first {shown} of {n} rows" if n > shown else ""
    caption = _caption(trace, kind, f"head view, layer {layer}") + more
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope head view: layer {layer}, {len(heads)} heads"


# --------------------------------------------------------------------------- matrix view
def _matrix(view):
    trace, o = view.trace, view.options
    seen = focus(trace, o)
    kind, layer, head, rows, cols = seen.kind, seen.layer, seen.head, seen.rows, seen.cols
    att = trace.attention[kind]
    span = 128  # rows/columns shown at most (the view pans a window over longer inputs)
    r1, c1 = min(rows[1], rows[0] + span), min(cols[1], cols[0] + span)
    nr, nc = r1 - rows[0], c1 - cols[0]
    cell = max(2, min(18, 480 // max(nr, nc, 1)))
    ink = _Ink(o)
    qs, ks = trace.streams(kind)
    f = R.font(R.SMALL)
    show = cell >= 9  # labels only where they fit, as the view
    qlab = _labels(trace.tokens[qs], o)[rows[0] : r1] if show else []
    klab = _labels(trace.tokens[ks], o)[cols[0] : c1] if show else []
    lw = min(int(max([0.0, *map(f.width, qlab)])) + 8, 140) if show else 0
    lh = min(int(max([0.0, *map(f.width, klab)])) + 8, 140) if show else 0
    width = max(2 * PAD + lw + nc * cell, 320)
    height = PAD + lh + nr * cell + 8 + ROW + PAD
    c = ink.canvas(width, height)
    x0, y0 = PAD + lw, PAD + lh
    c.paste(x0, y0, _scale(ink.heat_index(att.rows(layer, head, rows[0], r1)[:, cols[0] : c1]), cell))
    for i, t in enumerate(qlab):
        c.text(t, x0 - 4, y0 + i * cell + cell // 2 + 4, ink.fg, max_width=lw - 6, align="right")
    if klab:  # column labels read bottom to top, as the view's
        strip = ink.canvas(lh, nc * cell)
        for j, t in enumerate(klab):
            strip.text(t, lh - 4, j * cell + cell // 2 + 4, ink.fg, max_width=lh - 6, align="right")
        c.paste(x0, PAD, np.rot90(strip.px, 1))
    caption = _caption(trace, kind, f"matrix view, layer {layer} head {head}")
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope matrix view: layer {layer}, head {head}"


# --------------------------------------------------------------------------- neuron view
def _neuron(view):
    trace, o = view.trace, view.options
    seen = focus(trace, o)
    kind, layer, head = seen.kind, seen.layer, seen.head
    _, _, q, k = trace.shape(kind)
    query = o.get("query", 0)
    qv, keys, scaling = _vectors(trace, kind, layer, head)
    d = qv.shape[1]
    weights = trace.attention[kind].row(layer, head, query).astype(np.float32)
    ink = _Ink(o, heat=False)
    pos = ink.palette.ramp(ink.theme["bg"], POSITIVE, BAR_LEVELS)
    neg = ink.palette.ramp(ink.theme["bg"], NEGATIVE, BAR_LEVELS)
    accent = ink.palette.ramp(ink.theme["bg"], POSITIVE)
    qs, ks = trace.streams(kind)
    start = max(0, min(query - WINDOW // 2, q - WINDOW)) if q > WINDOW else 0  # the view centres its query
    shown = min(max(q, k), WINDOW)
    qlab = _labels(trace.tokens[qs], o)[start : start + shown]
    klab = _labels(trace.tokens[ks], o)[start : start + shown]
    f = R.font(R.TOKEN)
    lw, rw = _column(f, qlab, 160), _column(f, klab, 160)
    cw = max(2, min(8, 192 // d))
    vec, num = d * cw, 54
    wq, wk = vec + 10 + 150, 2 * vec + 24 + 2 * num + 6
    width, top = 2 * PAD + lw + wq + rw + wk, PAD + 18
    height = top + shown * ROW + 8 + ROW + PAD
    c = ink.canvas(width, height)
    xq, xr = PAD + lw, PAD + lw + wq
    xk = xr + rw
    xs = xk + 2 * vec + 24
    for x, text in ((xq, "query q"), (xk, "key k"), (xk + vec + 12, "q \u00d7 k"), (xs, "score"), (xs + num + 6, "softmax")):
        c.text(text, x, PAD + 11, ink.muted)
    for i, t in enumerate(qlab):
        c.text(t, PAD + lw - 5, top + i * ROW + 13, accent if start + i == query else ink.fg, R.TOKEN,
               max_width=lw - 10, align="right")
    for j, t in enumerate(klab):
        c.text(t, xr + 5, top + j * ROW + 13, ink.fg, R.TOKEN, max_width=rw - 10)

    def bars(values: np.ndarray, top_value: float, cell: int, x: int, y: int, h: int) -> None:
        v = np.nan_to_num(np.asarray(values, np.float32).reshape(-1))
        level = np.round(np.clip(np.abs(v) / (top_value or 1.0), 0, 1) * (BAR_LEVELS - 1)).astype(np.int32)
        row = np.where(v >= 0, pos, neg) + level
        c.paste(x, y, np.repeat(np.repeat(row[None, :].astype(np.uint8), h, 0), cell, 1))

    yq = top + (query - start) * ROW
    bars(qv[query], float(np.abs(qv[query]).max()), cw, xq, yq + 3, ROW - 6)
    keys_shown = np.arange(start, min(k, start + shown))
    wmax = float(weights.max()) or 1.0
    cover, _ = R.lines((height, width), xq + vec + 6, xq + wq - 2, np.full(len(keys_shown), yq + ROW // 2),
                       top + (keys_shown - start) * ROW + ROW // 2, np.clip(weights[keys_shown] / wmax, 0, 1),
                       np.zeros(len(keys_shown)))
    drawn = cover > 1 / BAR_LEVELS
    c.px[drawn] = (pos + np.round(cover[drawn] * (BAR_LEVELS - 1))).astype(np.uint8)
    live = weights > 0
    prod = qv[query][None, :] * keys
    scores = (keys @ qv[query]) * scaling
    kmax = float(np.abs(keys).max())
    pmax = float(np.abs(prod[live]).max()) if live.any() else 1.0
    smax = float(np.abs(scores[live]).max()) if live.any() else 1.0
    for j in keys_shown:
        y = top + (j - start) * ROW
        bars(keys[j], kmax, cw, xk, y + 3, ROW - 6)
        bars(prod[j], pmax, cw, xk + vec + 12, y + 3, ROW - 6)
        if not live[j]:
            c.text("masked", xs + num - 4, y + 13, ink.muted, align="right")
            continue
        bars(scores[j], smax, num, xs, y + 2, ROW - 4)
        bars(weights[j], wmax, num, xs + num + 6, y + 2, ROW - 4)
        c.text(f"{scores[j]:.2f}".replace("-", "\u2212"), xs + num - 4, y + 13, ink.fg, align="right")
        c.text(f"{weights[j]:.3f}", xs + 2 * num + 2, y + 13, ink.fg, align="right")
    caption = _caption(trace, kind, f"neuron view, layer {layer} head {head}, query {query}")
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope neuron view: layer {layer}, head {head}, query {query}"


def _vectors(trace, kind: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Query ``[q, d]`` and key ``[k, d]`` vectors of one head, and the scaling of their dot products."""
    info = trace.meta.get("kinds", {}).get(kind, {})
    if trace.has_qkv(kind):
        parts = trace.qkv[kind]
        qv, kv = parts["query"][layer, head], parts["key"][layer, head]
    else:  # the q/k form holds them (keys unexpanded: one per key/value head)
        att = trace.attention[kind]
        qv, kv = att.query[layer, head], att.key[layer, int(att.kv_index[head])]
    qv, kv = np.asarray(qv, np.float32), np.asarray(kv, np.float32)
    return qv, kv, float(info.get("scaling", qv.shape[-1] ** -0.5))


# --------------------------------------------------------------------------- diff view
def _diff(view):
    p, o = view.payload, view.options
    ink = _Ink(o)
    div = ink.palette.add(_diverging(ink.theme))
    li, hi = p["layers"].index(o["layer"]), p["heads"].index(o["head"])
    sq, sk = p["shape"]
    a = dequantize(base64.b64decode(p["a"][li][hi]), p["dtype"]).reshape(sq, sk)[:64, :64]
    b = dequantize(base64.b64decode(p["b"][li][hi]), p["dtype"]).reshape(sq, sk)[:64, :64]
    nr, nc = a.shape
    cell = max(3, min(14, 240 // max(nr, nc, 1)))
    width = max(2 * PAD + 3 * nc * cell + 2 * 16, 320)
    height = PAD + 16 + nr * cell + 8 + ROW + PAD
    c = ink.canvas(width, height)
    delta = np.clip((b - a) * 4, -1, 1)  # +-0.25 saturates
    tiles = [("A", ink.heat_index(a)), ("B", ink.heat_index(b)),
             ("B \u2212 A", np.round((delta + 1) / 2 * 62).astype(np.uint8) + np.uint8(div))]
    for t, (title, tile) in enumerate(tiles):
        x = PAD + t * (nc * cell + 16)
        c.text(title, x, PAD + 11, ink.muted)
        c.paste(x, PAD + 16, _scale(tile, cell))
    caption = f"diff view \u00b7 layer {o['layer']} head {o['head']} \u00b7 {nr} \u00d7 {nc} aligned tokens"
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope diff view: layer {o['layer']}, head {o['head']}"


def _diverging(theme: dict[str, Any]) -> np.ndarray:
    """63 colours from orange (A more) through the background to blue (B more)."""
    return _stops([(0, *NEGATIVE), (0.5, *theme["bg"]), (1, *POSITIVE)], 63)


# --------------------------------------------------------------------------- atlas view
def _atlas(view):
    p, o = view.payload, view.options
    ink = _Ink(o, heat=False)
    ramp, div = ink.palette.add(_stops(ink.theme["ramp"], 64)), ink.palette.add(_diverging(ink.theme))
    metric, stat = o["metric"], o["stat"]
    values = _grid(p["stats"][stat][metric])
    delta = p.get("other") is not None and o.get("show", "delta") == "delta"
    if delta:
        values = _grid(p["other"]["stats"][stat][metric]) - values
    L, H = values.shape
    cell = max(10, min(32, 760 // H - 2))
    label_w = int(R.font(R.SMALL).width(str(L - 1))) + 8
    width = max(2 * PAD + label_w + H * (cell + 2), 320)
    height = PAD + 16 + L * (cell + 2) + 8 + ROW + PAD
    c = ink.canvas(width, height)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    span = max(abs(lo), abs(hi)) or 1.0
    c.text("L \\ H", PAD, PAD + 11, ink.muted)
    for li in range(L):
        c.text(str(li), PAD + label_w - 6, PAD + 16 + li * (cell + 2) + cell // 2 + 4, ink.muted, align="right")
        for h in range(H):
            v = values[li, h]
            if not np.isfinite(v):
                index = ink.grid
            elif delta:
                index = div + round((v / span + 1) / 2 * 62)
            else:
                index = ramp + round(((v - lo) / (hi - lo) if hi > lo else 1.0) * 63)
            c.rect(PAD + label_w + h * (cell + 2), PAD + 16 + li * (cell + 2), cell, cell, index)
    caption = f"atlas view \u00b7 {p['meta']['model']} \u00b7 {metric} ({stat})" + (" \u00b7 B \u2212 A" if delta else "")
    c.text(caption, PAD, height - PAD - 5, ink.muted, max_width=width - 2 * PAD)
    return c, f"attnscope atlas view: {metric} ({stat})"


def _grid(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64)


_PAINTERS = {"model": _model, "head": _head, "matrix": _matrix, "neuron": _neuron, "diff": _diff, "atlas": _atlas}
