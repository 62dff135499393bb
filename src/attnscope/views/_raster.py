"""A tiny rasterizer for the views' static pictures: text, rectangles, heatmaps and lines as palette indices in a
numpy array, and a PNG writer (zlib only).

Pictures are built every time a view is shown, so this avoids matplotlib (whose import alone takes longer than a
picture's budget) and any image library. A picture is one palette index per pixel (at most 256 colours: heat
levels, text ramps, head colours at a few opacities), which keeps its PNG a fraction of an RGB one.
"""

from __future__ import annotations

import base64
import struct
import zlib
from functools import cache, lru_cache

import numpy as np

from ._glyphs import FONTS

TOKEN, SMALL = 12.5, 10.5  # font sizes (px) the glyph tables hold: token labels, small labels
LEVELS = 16  # coverage levels of text (palette entries per text colour, the first being the background)
MISSING = "\u25a1"  # drawn for characters the glyph tables lack


class Font:
    """One size of DejaVu Sans: per character its advance (px), bitmap offset from the pen and coverage bitmap."""

    def __init__(self, size: float):
        raw = zlib.decompress(base64.b64decode("".join(FONTS[size])))
        self.glyphs: dict[str, tuple[float, int, int, np.ndarray]] = {}
        at = 0
        while at < len(raw):
            code, advance, dx, dy, w, h = struct.unpack_from("<IHbbBB", raw, at)
            at += 10
            self.glyphs[chr(code)] = (advance / 64, dx, dy, np.frombuffer(raw, np.uint8, w * h, at).reshape(h, w))
            at += w * h
        tops = [dy for _, _, dy, b in self.glyphs.values() if b.size]
        bottoms = [dy + b.shape[0] for _, _, dy, b in self.glyphs.values() if b.size]
        self.top, self.bottom = min(tops), max(bottoms)  # bitmap rows above / below the baseline, over all glyphs
        self.render = lru_cache(maxsize=4096)(self._render)

    def glyph(self, ch: str) -> tuple[float, int, int, np.ndarray]:
        return self.glyphs.get(ch) or self.glyphs[MISSING]

    def width(self, text: str) -> float:
        return sum(self.glyph(ch)[0] for ch in text)

    def fit(self, text: str, max_width: float) -> str:
        """``text``, cut with an ellipsis to at most ``max_width`` px."""
        if self.width(text) <= max_width:
            return text
        room, out = max_width - self.width("\u2026"), 0.0
        for i, ch in enumerate(text):
            out += self.glyph(ch)[0]
            if out > room:
                return text[:i] + "\u2026"
        return text

    def _render(self, text: str) -> np.ndarray:
        """Coverage ``[bottom - top, width]`` of ``text``; row ``-self.top`` is the baseline (cached per text)."""
        out = np.zeros((self.bottom - self.top, int(np.ceil(self.width(text))) + 2), np.uint8)
        pen = 0.0
        for ch in text:
            advance, dx, dy, bitmap = self.glyph(ch)
            if bitmap.size:
                x, y = max(0, round(pen) + dx), dy - self.top
                part = out[y : y + bitmap.shape[0], x : x + bitmap.shape[1]]
                np.maximum(part, bitmap[: part.shape[0], : part.shape[1]], out=part)
            pen += advance
        return out


@cache
def font(size: float) -> Font:
    """The glyph table of one size (``TOKEN`` or ``SMALL``), read once per process."""
    return Font(size)


class Palette:
    """The colours of one picture, added in named runs: ``start = palette.add(colours)``."""

    def __init__(self):
        self.rows: list[np.ndarray] = []
        self.n = 0

    def add(self, colours) -> int:
        rows = np.asarray(colours, np.uint8).reshape(-1, 3)
        if self.n + len(rows) > 256:
            raise ValueError(f"a picture holds at most 256 colours; {self.n} + {len(rows)} asked")
        self.rows.append(rows)
        self.n += len(rows)
        return self.n - len(rows)

    def ramp(self, background, colour, levels: int = LEVELS) -> int:
        """Add ``levels`` colours from ``background`` to ``colour`` (a text colour, a line colour's opacities)."""
        t = np.linspace(0, 1, levels)[:, None]
        return self.add(np.asarray(background) * (1 - t) + np.asarray(colour) * t + 0.5)

    def array(self) -> np.ndarray:
        return np.concatenate(self.rows)


class Canvas:
    """Palette indices ``[h, w]``, filled with index ``background``."""

    def __init__(self, width: int, height: int, palette: Palette, background: int = 0):
        self.palette = palette
        self.px = np.full((height, width), background, np.uint8)

    @property
    def size(self) -> tuple[int, int]:
        return self.px.shape[1], self.px.shape[0]

    def rect(self, x: int, y: int, w: int, h: int, index: int) -> None:
        self.px[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = index

    def paste(self, x: int, y: int, indices: np.ndarray) -> None:
        where, part = _clip(self.px.shape, x, y, indices)
        if where is not None:
            self.px[where] = part

    def text(self, text: str, x: float, baseline: int, ramp: int, size: float = SMALL, *, max_width: float | None = None,
             align: str = "left") -> None:
        """Draw ``text`` (cut to ``max_width``) with the palette ramp starting at ``ramp`` (see :meth:`Palette.ramp`),
        from ``x`` (its left end, or its right end with ``align="right"``) on ``baseline``."""
        f = font(size)
        if max_width is not None:
            text = f.fit(text, max_width)
        if not text:
            return
        if align == "right":
            x -= f.width(text)
        where, cover = _clip(self.px.shape, round(x), baseline + f.top, f.render(text))
        if where is not None:
            level = (cover.astype(np.uint16) * (LEVELS - 1) + 127) // 255
            self.px[where] = np.where(level > 0, ramp + level, self.px[where]).astype(np.uint8)

    def png(self) -> bytes:
        return png(self.px, self.palette.array())


def _clip(shape: tuple[int, int], left: int, top: int, block: np.ndarray):
    """The part of ``block`` placed at (left, top) that lies inside an image of ``shape``: (slices, block part)."""
    h, w = block.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + w, shape[1]), min(top + h, shape[0])
    if x0 >= x1 or y0 >= y1:
        return None, None
    return (slice(y0, y1), slice(x0, x1)), block[y0 - top : y1 - top, x0 - left : x1 - left]


def lines(shape: tuple[int, int], x0: int, x1: int, y0: np.ndarray, y1: np.ndarray, alpha: np.ndarray,
          tag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rasterize straight lines from ``(x0, y0[i])`` to ``(x1, y1[i])`` at opacity ``alpha[i]`` into an image of
    ``shape``, one anti-aliased pixel per column (the views' lines run left to right; pixel centres sit on whole
    coordinates, so a line at a whole ``y`` covers one row).

    Returns ``(cover, who)``, both ``[h, w]``: the opacity of all lines over each pixel as if drawn one over the
    other (``1 - prod(1 - a)``), and the ``tag`` of the strongest line there (-1 where none), which picks its colour.
    """
    h, w = shape
    keep = np.zeros(h * w + w, np.float64)  # per pixel: sum of log(1 - coverage), the light the lines let through
    who = np.full(h * w + w, -1, np.int32)
    if len(y0):
        order = np.argsort(alpha, kind="stable")  # weakest first, so the strongest line's tag is written last
        y0, y1, alpha, tag = (np.asarray(a)[order] for a in (y0, y1, alpha, tag))
        xs = np.arange(x0, x1 + 1, dtype=np.int32)
        t = np.linspace(0, 1, len(xs), dtype=np.float32)
        ys = np.clip(y0[:, None].astype(np.float32) + (y1 - y0)[:, None].astype(np.float32) * t, 0, h - 1)
        base = np.floor(ys)
        frac = ys - base
        index = base.astype(np.int32) * w + xs
        a = np.minimum(alpha, 0.999)[:, None].astype(np.float32)
        keep += np.bincount(index.ravel(), np.log1p(-a * (1 - frac)).ravel(), h * w + w)
        keep += np.bincount((index + w).ravel(), np.log1p(-a * frac).ravel(), h * w + w)
        near = np.where(frac < 0.5, index, index + w)  # the row each line mostly covers in each column
        who[near.ravel()] = np.repeat(tag.astype(np.int32), len(xs))
    return (1 - np.exp(keep[: h * w])).astype(np.float32).reshape(h, w), who[: h * w].reshape(h, w)


def png(pixels: np.ndarray, palette: np.ndarray) -> bytes:
    """A PNG of ``pixels`` (``[h, w]`` uint8 indices into ``palette``, ``[n, 3]`` uint8 RGB)."""
    h, w = pixels.shape
    raw = np.empty((h, w + 1), np.uint8)
    raw[:, 0] = 0  # no filter: palette images compress best without one
    raw[:, 1:] = pixels
    return b"".join([
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)),
        _chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes()),
        _chunk(b"IDAT", zlib.compress(raw.tobytes(), 3)),
        _chunk(b"IEND", b""),
    ])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
