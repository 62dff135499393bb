"""Attention recomputed from captured queries and keys: the q/k form, for long inputs (8k-128k tokens).

Attention weights are a function of O(n) things: the post-RoPE queries ``q`` ``[L, H, q, d]``, the keys ``k``
``[L, H_kv, k, d]`` (not repeated under grouped-query attention), the :class:`MaskRule` (scaling, causal, sliding
window, logit soft-capping) and one number per row, its log-sum-exp ``lse`` ``[L, H, q]``::

    w[i, j] = exp(s[i, j] - lse[i]),   s[i, j] = softcap(q_i . k_j * scaling)  where the rule allows (i, j), else -inf

So :class:`QKAttention` reads every row, block, head or pooled overview exactly, on demand, in ``O(n d)`` per row,
without an ``n x n`` matrix ever existing. A learned attention sink (an extra logit in the softmax that attends to
nothing) lives in ``lse``: rows then sum to ``1 - exp(sink - lse_i)``, as the model's do; the rule keeps each
head's sink logit, so that share is known per row in O(1).

The **overview** is what a whole head looks like at a glance: for square cells of ``block`` x ``block`` tokens,
the largest weight in each cell (``maxima`` ``[L, H, ceil(q/block), ceil(k/block)]``), computed once during capture
by :func:`cell_maxima` (or per head on first use when a trace has none). Thumbnails of any size are pooled from it
exactly (their block is a multiple of its block). Trace files written before also hold each cell's sum (``sums``);
they load and are read as before. All arithmetic is torch, so the same code runs on CUDA during capture and on the
CPU when a trace is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .attention import refuse_large_dense
from .errors import InputError

#: Weights computed at once when recomputing blocks of rows (keeps temporaries at a few tens of MB).
BLOCK_WEIGHTS = 1 << 22
#: The tile of scores :func:`cell_maxima` computes at once, query rows x keys of one head (rounded to whole cells):
#: small enough to stay in cache between the matrix product that writes it and the pooling that reads it. Measured
#: on one CPU thread at 8,192 tokens: 30 % faster than tiles of 32 rows x every key of all heads at once.
TILE_ROWS, TILE_KEYS = 256, 2048
#: A log-sum-exp beyond any score: rows padded to whole overview cells get it, so their weights are 0.
_FAR = 1e30
#: The overview grid: at most this many cells a side (256: 32k tokens in cells of 128; the model view's
#: thumbnails and the long views' minimaps are smaller). Each cell costs 4 bytes per head (its maximum).
OVERVIEW_SIZE = 256


@dataclass(frozen=True)
class MaskRule:
    """Which keys each query may attend to, and how scores are made, for every layer of one attention kind.

    ``windows[layer]``: the sliding window of that layer (key ``j`` is allowed for query ``i`` only when
    ``i - j < window``, as transformers' ``sliding_window``), or None. ``softcap``: scores become
    ``softcap * tanh(s / softcap)`` (Gemma 2). ``sinks[layer]``: each query head's learned sink logit in that
    layer (gpt-oss), which joins the softmax and attends to nothing, or None; ``sinks`` is None when no layer has
    one (rows then sum to 1). Queries and keys are positions ``0..q-1`` / ``0..k-1`` of the same sequence
    (padding cut away).
    """

    scaling: float
    causal: bool
    windows: tuple[int | None, ...]
    softcap: float | None = None
    sinks: tuple[tuple[float, ...] | None, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {**asdict(self), "windows": list(self.windows)}
        out["sinks"] = None if self.sinks is None else [None if h is None else list(h) for h in self.sinks]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MaskRule:
        sinks = data.get("sinks")  # absent in files written before sinks were kept
        return cls(float(data["scaling"]), bool(data["causal"]), tuple(data["windows"]),
                   None if data.get("softcap") is None else float(data["softcap"]),
                   None if sinks is None else tuple(None if h is None else tuple(map(float, h)) for h in sinks))

    def select(self, layers: Sequence[int], heads: Sequence[int]) -> MaskRule:
        """The rule of some layers (and query heads, for the sink logits), in that order."""
        sinks = None if self.sinks is None else tuple(
            None if logits is None else tuple(logits[h] for h in heads) for logits in (self.sinks[i] for i in layers))
        return MaskRule(self.scaling, self.causal, tuple(self.windows[i] for i in layers), self.softcap, sinks)

    def allowed(self, layer: int, rows, cols):
        """``[len(rows), len(cols)]`` bool torch tensor: which key positions ``cols`` the query positions ``rows``
        (1-D tensors) may attend to; None when every key is allowed."""
        window = self.windows[layer]
        if not self.causal and window is None:
            return None
        offset = rows[:, None] - cols[None, :]  # i - j
        ok = offset >= 0 if self.causal else offset > -(2**62)
        if window is not None:
            ok &= offset < window
        return ok

    def key_range(self, layer: int, start: int, stop: int, k: int, align: int = 1) -> tuple[int, int]:
        """The keys ``[lo, hi)`` that query rows ``start..stop-1`` may attend to at all (causal: none after the
        last row; a window: none before its reach), ``lo`` rounded down to a multiple of ``align``."""
        hi = min(k, stop) if self.causal else k
        window = self.windows[layer]
        lo = max(0, start - window + 1) if window is not None else 0
        return lo // align * align, max(hi, lo // align * align)

    def forbidden_spans(self, layer: int, start: int, stop: int, lo: int, hi: int) -> list[tuple[int, int]]:
        """The key spans within ``[lo, hi)`` where the rule forbids some pair with query rows ``start..stop-1``
        (a causal mask: keys after ``start``; a window: keys before ``stop - window``); elsewhere it allows all,
        so masking these spans alone is exact."""
        spans = []
        window = self.windows[layer]
        if window is not None and lo < min(hi, stop - window):
            spans.append((lo, min(hi, stop - window)))
        if self.causal and max(lo, start + 1) < hi:
            spans.append((max(lo, start + 1), hi))
        return spans


def scores(query, key, rule: MaskRule, layer: int, rows, cols):
    """Masked scores ``[..., c, len(cols)]`` float32 of queries ``[..., c, d]`` at positions ``rows`` against keys
    ``[..., len(cols), d]`` at positions ``cols`` (heads broadcast): ``q . k * scaling``, soft-capped, ``-inf``
    where the rule forbids."""
    import torch

    s = torch.matmul(query.float() * rule.scaling, key.float().transpose(-1, -2))
    if rule.softcap is not None:
        s = torch.tanh(s.div_(rule.softcap)).mul_(rule.softcap)
    ok = rule.allowed(layer, rows, cols)
    return s if ok is None else s.masked_fill_(~ok, float("-inf"))


def cell_maxima(query, key, lse, rule: MaskRule, layer: int, block: int):
    """The largest weight of each cell of ``block`` x ``block`` tokens, ``[H, ceil(q/block), ceil(k/block)]``
    float32 torch, of one layer: ``query`` ``[H, q, d]``, ``key`` ``[H, k, d]`` (repeated per query head), ``lse``
    ``[H, q]``.

    Exact and cheap: since ``exp`` grows with its argument, a cell's largest weight is
    ``exp(max_i (max_j s_ij - lse_i))``, so only the scores themselves are computed (a matrix product over the keys
    each row may attend to: half a square when causal, a band for a sliding window), a tile at a time
    (:data:`TILE_ROWS` x :data:`TILE_KEYS` of one head, of several at short inputs) into one reused buffer. Each
    row's log-sum-exp is folded into the product (``s_ij - lse_i = [q_i, -lse_i] . [k_j, 1]``; with soft-capping,
    which comes first, it is subtracted after), so the tile is pooled while still in cache, over each cell's rows and
    then its keys, and only the cells' ``R x C`` numbers are exponentiated. The mask is applied only to the spans it
    cuts (:meth:`MaskRule.forbidden_spans`). Memory: the output and one tile."""
    import torch

    H, q, d = query.shape
    k = key.shape[-2]
    R, C = -(-q // block), -(-k // block)
    device = query.device
    query, key, lse = query.detach().float() * rule.scaling, key.detach().float(), lse.detach().float()
    softcap = rule.softcap
    folded = softcap is None
    if folded:  # each row's log-sum-exp folded into the product: s_ij - lse_i = [q_i, -lse_i] . [k_j, 1]
        query = torch.cat([query, -lse[..., None]], dim=-1)
        key = torch.cat([key, torch.ones(H, k, 1, dtype=torch.float32, device=device)], dim=-1)
    # pad queries and keys to whole cells: padded keys score -inf, padded rows have lse "+inf" (their weights are 0)
    query = torch.nn.functional.pad(query, (0, 0, 0, R * block - q))
    key = torch.nn.functional.pad(key, (0, 0, 0, C * block - k))
    if folded:
        query[:, q:, -1] = -_FAR
    else:
        lse = torch.nn.functional.pad(lse, (0, R * block - q), value=_FAR)
    out = torch.zeros(H, R, C, dtype=torch.float32, device=device)
    rows, cols = (max(block, size // block * block) for size in (TILE_ROWS, TILE_KEYS))
    # short inputs: several heads a tile (fewer, larger operations), up to the same number of scores
    heads = min(H, max(1, TILE_ROWS * TILE_KEYS // (min(rows, R * block) * min(cols, C * block))))
    tile = torch.empty(heads * min(rows, R * block) * min(cols, C * block), dtype=torch.float32, device=device)
    for start in range(0, R * block, rows):
        stop = min(R * block, start + rows)
        first, last = rule.key_range(layer, start, stop, k, align=block)
        last = -(-last // block) * block
        for lo in range(first, last, cols):
            hi = min(last, lo + cols)
            spans = [(a, b, ~rule.allowed(layer, torch.arange(start, stop, device=device),
                                          torch.arange(a, b, device=device)))
                     for a, b in rule.forbidden_spans(layer, start, stop, lo, min(hi, k))]
            for h0 in range(0, H, heads):
                h1 = min(H, h0 + heads)
                s = tile[: (h1 - h0) * (stop - start) * (hi - lo)].view(h1 - h0, stop - start, hi - lo)
                torch.matmul(query[h0:h1, start:stop], key[h0:h1, lo:hi].transpose(1, 2), out=s)  # [h, rows, keys]
                if softcap is not None:  # not folded: the cap comes before the log-sum-exp
                    s.div_(softcap).tanh_().mul_(softcap).sub_(lse[h0:h1, start:stop, None])
                for a, b, forbidden in spans:
                    s[:, :, a - lo : b - lo].masked_fill_(forbidden, float("-inf"))
                if hi > k:
                    s[:, :, k - lo :] = float("-inf")
                # the largest over each cell's rows (a reduction along whole rows of the tile), then over its keys
                best = s.view(h1 - h0, (stop - start) // block, block, -1).amax(dim=2)
                best = best.view(h1 - h0, (stop - start) // block, -1, block).amax(dim=3)
                out[h0:h1, start // block : stop // block, lo // block : hi // block] = torch.exp_(best)
    return out


def _tensor(arr: np.ndarray):
    """A float32 torch tensor of its own (trace arrays may be read-only maps of a file)."""
    import torch

    return torch.from_numpy(np.array(arr, dtype=np.float32))


def overview_block(q: int, k: int, size: int = OVERVIEW_SIZE) -> int:
    """The overview's cell size for ``q`` x ``k`` weights: the smallest block with at most ``size`` cells a side."""
    return max(1, -(-max(q, k) // size))


class QKAttention:
    """Attention of one kind held as queries, keys and row log-sum-exps; every weight recomputed on demand.

    ``query`` ``[L, H, q, d]``, ``key`` ``[L, H_kv, k, d]`` (float32 or float16 numpy), ``lse`` ``[L, H, q]`` float32,
    ``kv_index`` ``[H]``: the key head of each query head (grouped-query attention; default ``h // (H / H_kv)``),
    ``maxima`` ``[L, H, R, C]``: the overview with cells of ``block`` tokens (see the module docstring; None: each
    head's is computed when first asked for); ``sums`` ``[L, H, R, C]``: each cell's sum, held by files written
    before (None otherwise).
    """

    form = "qk"
    pruned = False
    halvable: tuple[str, ...] = ("query", "key", "maxima")

    def __init__(self, query: np.ndarray, key: np.ndarray, lse: np.ndarray, rule: MaskRule, *,
                 kv_index: Sequence[int] | np.ndarray | None = None, maxima: np.ndarray | None = None,
                 sums: np.ndarray | None = None, block: int = 1):
        L, H, q, d = query.shape
        if key.ndim != 4 or key.shape[0] != L or key.shape[3] != d or lse.shape != (L, H, q):
            raise InputError(f"q/k attention arrays do not fit together: query {list(query.shape)}, key "
                             f"{list(key.shape)}, lse {list(lse.shape)}")
        if len(rule.windows) != L:
            raise InputError(f"the mask rule names {len(rule.windows)} layers; the queries have {L}")
        self.query, self.key, self.lse, self.rule = query, key, lse, rule
        groups = max(1, H // key.shape[1])
        self.kv_index = np.asarray(kv_index if kv_index is not None else np.arange(H) // groups, dtype=np.int64)
        if self.kv_index.shape != (H,) or (self.kv_index < 0).any() or (self.kv_index >= key.shape[1]).any():
            raise InputError(f"kv_index must give one key head in 0..{key.shape[1] - 1} per query head ({H})")
        self.maxima, self.sums, self.block = maxima, sums, int(block)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        L, H, q, _ = self.query.shape
        return (L, H, q, int(self.key.shape[2]))

    @property
    def dtype(self) -> np.dtype:
        return self.query.dtype

    @property
    def read_cost(self) -> float:
        """What reading one weight costs, in dense weights read: each is recomputed (a dot product of size ``d``, the
        mask, an exponential). Measured on one CPU thread for head metrics at 1,536 tokens: 2.0x at d = 16, 2.3x at
        64, 2.6x at 128."""
        return 2.0 + self.query.shape[-1] / 200

    # ----------------------------------------------------------------- reading
    def rows(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Exact weights of query rows ``start..stop-1`` of one head, ``[stop - start, k]`` float32."""
        L, H, q, k = self.shape
        if not (0 <= layer < L and 0 <= head < H and 0 <= start <= stop <= q):
            raise IndexError(f"rows {start}..{stop} of head ({layer}, {head}) are outside shape {self.shape}")
        out = np.empty((stop - start, k), dtype=np.float32)
        step = max(1, BLOCK_WEIGHTS // max(1, k))
        for lo in range(start, stop, step):
            hi = min(stop, lo + step)
            out[lo - start : hi - start] = self.weights(layer, head, lo, hi, 0, k)
        return out

    def weights(self, layer: int, head: int, start: int, stop: int, key_start: int, key_stop: int) -> np.ndarray:
        """Exact weights of query rows ``start..stop-1`` at keys ``key_start..key_stop-1`` of one head,
        ``[stop - start, key_stop - key_start]`` float32, in ``O(rows x keys x d)``: a window of a long input
        costs only its cells (each row's log-sum-exp is known)."""
        import torch

        L, H, q, k = self.shape
        if not (0 <= layer < L and 0 <= head < H and 0 <= start <= stop <= q and 0 <= key_start <= key_stop <= k):
            raise IndexError(f"rows {start}..{stop} x keys {key_start}..{key_stop} of head ({layer}, {head}) are "
                             f"outside shape {self.shape}")
        qs = _tensor(self.query[layer, head, start:stop])
        keys = _tensor(self.key[layer, self.kv_index[head], key_start:key_stop])
        s = scores(qs, keys, self.rule, layer, torch.arange(start, stop), torch.arange(key_start, key_stop))
        lse = _tensor(self.lse[layer, head, start:stop])
        return torch.exp(s - lse[:, None]).numpy()

    def row(self, layer: int, head: int, query: int) -> np.ndarray:
        L, H, q, _ = self.shape
        if not (-L <= layer < L and -H <= head < H and -q <= query < q):
            raise IndexError(f"row ({layer}, {head}, {query}) is outside shape {self.shape}")
        query %= q
        return self.rows(layer % L, head % H, query, query + 1)[0]

    def head(self, layer: int, head: int) -> np.ndarray:
        self.allow_dense(self.shape[2:], "one head of this q/k trace")
        return self.rows(layer, head, 0, self.shape[2])

    def layer(self, layer: int) -> np.ndarray:
        self.allow_dense(self.shape[1:], "one layer of this q/k trace")
        return np.stack([self.head(layer, h) for h in range(self.shape[1])])

    def dense(self) -> np.ndarray:
        self.allow_dense(self.shape, "this q/k trace")
        return np.stack([self.layer(layer) for layer in range(self.shape[0])])

    def kept_mass(self) -> float:
        """1.0: nothing is lost, every weight can be recomputed."""
        return 1.0

    def min_kept_mass(self) -> float:
        return 1.0

    def allow_dense(self, shape: tuple[int, ...], what: str) -> None:
        """Refuse dense arrays past :data:`~attnscope.attention.DENSE_MAX_WEIGHTS`: read rows or the overview."""
        refuse_large_dense(shape, what)

    def looks_causal(self, layer: int) -> bool:
        return self.rule.causal

    def row_mass(self, layer: int, head: int) -> np.ndarray:
        """Each query row's attention over the tokens ``[q]`` float64: 1, or ``1 - exp(sink - lse_i)`` where a
        learned sink (:class:`MaskRule`) takes its share of the softmax; O(q), nothing recomputed."""
        _, _, q, _ = self.shape
        sinks = None if self.rule.sinks is None else self.rule.sinks[layer]
        if sinks is None:
            return np.ones(q)
        return -np.expm1(sinks[head] - np.asarray(self.lse[layer, head], dtype=np.float64))

    def pooled(self, layer: int, head: int, size: int) -> np.ndarray:
        """Block-max thumbnail with at most ``size`` cells a side; its block is a multiple of the overview's
        block, so it is pooled exactly from the overview (computed from q/k when the trace has none)."""
        _, _, q, k = self.shape
        want = max(1, -(-max(q, k) // size))
        if self.maxima is None:
            return self._computed_maxima(layer, head, want)
        factor = -(-want // self.block)
        cells = self.maxima[layer, head].astype(np.float32)
        if factor == 1:
            return cells
        R, C = cells.shape
        padded = np.zeros((-(-R // factor) * factor, -(-C // factor) * factor), dtype=np.float32)
        padded[:R, :C] = cells
        return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).max(axis=(1, 3))

    def _computed_maxima(self, layer: int, head: int, block: int) -> np.ndarray:
        q = _tensor(self.query[layer, head : head + 1])
        k = _tensor(self.key[layer, self.kv_index[head : head + 1]])
        lse = _tensor(self.lse[layer, head : head + 1])
        return cell_maxima(q, k, lse, self.rule, layer, block)[0].numpy()

    # ----------------------------------------------------------------- transforms and files
    def astype(self, dtype) -> QKAttention:
        return QKAttention(self.query.astype(dtype), self.key.astype(dtype), self.lse, self.rule,
                           kv_index=self.kv_index, maxima=self.maxima, sums=self.sums, block=self.block)

    def select(self, layers: list[int], heads: list[int]) -> QKAttention:
        kv = sorted(set(self.kv_index[heads].tolist()))
        rule = self.rule.select(layers, heads)
        pick = np.ix_(layers, heads)
        return QKAttention(
            self.query[pick], self.key[np.ix_(layers, kv)], self.lse[pick], rule,
            kv_index=[kv.index(i) for i in self.kv_index[heads]],
            maxima=None if self.maxima is None else self.maxima[pick],
            sums=None if self.sums is None else self.sums[pick], block=self.block,
        )

    def info(self) -> dict[str, Any]:
        """What a trace file's header says of this form besides its shape."""
        return {"rule": self.rule.to_json(), "kv_index": self.kv_index.tolist(), "block": self.block}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"query": self.query, "key": self.key, "lse": self.lse}
        if self.maxima is not None:
            out["maxima"] = self.maxima
        if self.sums is not None:
            out["sums"] = self.sums
        return out

    def __repr__(self) -> str:
        return f"QKAttention(shape={self.shape}, key heads={self.key.shape[1]}, rule={json.dumps(self.rule.to_json())})"
