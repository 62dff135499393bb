"""Attention recomputed from captured queries and keys: the q/k form, for long inputs (8k-128k tokens).

Attention weights are a function of O(n) things: the post-RoPE queries ``q`` ``[L, H, q, d]``, the keys ``k``
``[L, H_kv, k, d]`` (not repeated under grouped-query attention), the :class:`MaskRule` (scaling, causal, sliding
window, logit soft-capping) and one number per row, its log-sum-exp ``lse`` ``[L, H, q]``::

    w[i, j] = exp(s[i, j] - lse[i]),   s[i, j] = softcap(q_i . k_j * scaling)  where the rule allows (i, j), else -inf

So :class:`QKAttention` reads every row, block, head or pooled overview exactly, on demand, in ``O(n d)`` per row,
without an ``n x n`` matrix ever existing. A learned attention sink (an extra logit in the softmax that attends to
nothing) lives entirely in ``lse``: rows then sum to less than 1, as the model's do.

The **overview** is what a whole head looks like at a glance: for square cells of ``block`` x ``block`` tokens,
the largest weight and the sum of the weights in each cell (``[L, H, ceil(q/block), ceil(k/block)]``), computed
once during capture. Thumbnails of any size are pooled from it exactly (their block is a multiple of its block).
All arithmetic is torch, so the same code runs on CUDA during capture and on the CPU when a trace is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .attention import block_max, refuse_large_dense
from .errors import InputError

#: Weights computed at once when recomputing blocks of rows (keeps temporaries at a few tens of MB).
BLOCK_WEIGHTS = 1 << 22
#: The overview grid: at most this many cells a side (256: 32k tokens in cells of 128; the model view's
#: thumbnails and the long views' minimaps are smaller). Each cell costs 8 bytes per head (maximum and sum).
OVERVIEW_SIZE = 256


@dataclass(frozen=True)
class MaskRule:
    """Which keys each query may attend to, and how scores are made, for every layer of one attention kind.

    ``windows[layer]``: the sliding window of that layer (key ``j`` is allowed for query ``i`` only when
    ``i - j < window``, as transformers' ``sliding_window``), or None. ``softcap``: scores become
    ``softcap * tanh(s / softcap)`` (Gemma 2). Queries and keys are positions ``0..q-1`` / ``0..k-1`` of the same
    sequence (padding cut away).
    """

    scaling: float
    causal: bool
    windows: tuple[int | None, ...]
    softcap: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "windows": list(self.windows)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MaskRule:
        return cls(float(data["scaling"]), bool(data["causal"]), tuple(data["windows"]),
                   None if data.get("softcap") is None else float(data["softcap"]))

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


def overview(query, key, lse, rule: MaskRule, layer: int, block: int):
    """Cell maxima and sums ``([H, R, C], [H, R, C])`` float32 torch tensors of one layer's weights, cells of
    ``block`` x ``block`` tokens; ``query`` ``[H, q, d]``, ``key`` ``[H, k, d]`` (repeated per query head), ``lse``
    ``[H, q]``. Computed ``block``-aligned rows at a time, over the keys those rows may attend to (a causal head
    costs half a square, a sliding window a band): memory O(rows x k)."""
    import torch

    H, q, _ = query.shape
    k = key.shape[-2]
    R, C = -(-q // block), -(-k // block)
    maxima = torch.zeros(H, R, C, dtype=torch.float32, device=query.device)
    sums = torch.zeros(H, R, C, dtype=torch.float32, device=query.device)
    step = max(block, BLOCK_WEIGHTS // max(1, H * k) // block * block)
    for start in range(0, q, step):
        stop = min(q, start + step)
        lo, hi = rule.key_range(layer, start, stop, k, align=block)
        if hi <= lo:
            continue
        rows = torch.arange(start, stop, device=query.device)
        cols = torch.arange(lo, hi, device=query.device)
        w = scores(query[:, start:stop], key[:, lo:hi], rule, layer, rows, cols)
        w = torch.exp_(w.sub_(lse[:, start:stop, None]))
        rpad, cpad = -(stop - start) % block, -(hi - lo) % block
        if rpad or cpad:
            w = torch.nn.functional.pad(w, (0, cpad, 0, rpad))
        cells = w.reshape(H, w.shape[1] // block, block, w.shape[2] // block, block)
        r0, c0 = start // block, lo // block
        maxima[:, r0 : r0 + cells.shape[1], c0 : c0 + cells.shape[3]] = cells.amax(dim=(2, 4))
        sums[:, r0 : r0 + cells.shape[1], c0 : c0 + cells.shape[3]] = cells.sum(dim=(2, 4))
    return maxima, sums


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
    ``maxima``/``sums`` ``[L, H, R, C]``: the overview with cells of ``block`` tokens (see the module docstring).
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

    def pooled(self, layer: int, head: int, size: int) -> np.ndarray:
        """Block-max thumbnail with at most ``size`` cells a side; its block is a multiple of the overview's
        block, so it is pooled exactly from the overview (computed from q/k when the trace has none)."""
        _, _, q, k = self.shape
        want = max(1, -(-max(q, k) // size))
        if self.maxima is None:
            return block_max(self.head(layer, head), size) if want == 1 else self._computed_overview(
                layer, head, want)[0]
        factor = -(-want // self.block)
        cells = self.maxima[layer, head].astype(np.float32)
        if factor == 1:
            return cells
        R, C = cells.shape
        padded = np.zeros((-(-R // factor) * factor, -(-C // factor) * factor), dtype=np.float32)
        padded[:R, :C] = cells
        return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).max(axis=(1, 3))

    def _computed_overview(self, layer: int, head: int, block: int) -> tuple[np.ndarray, np.ndarray]:

        q = _tensor(self.query[layer, head : head + 1])
        k = _tensor(self.key[layer, self.kv_index[head : head + 1]])
        lse = _tensor(self.lse[layer, head : head + 1])
        maxima, sums = overview(q, k, lse, self.rule, layer, block)
        return maxima[0].numpy(), sums[0].numpy()

    # ----------------------------------------------------------------- transforms and files
    def astype(self, dtype) -> QKAttention:
        return QKAttention(self.query.astype(dtype), self.key.astype(dtype), self.lse, self.rule,
                           kv_index=self.kv_index, maxima=self.maxima, sums=self.sums, block=self.block)

    def select(self, layers: list[int], heads: list[int]) -> QKAttention:
        kv = sorted(set(self.kv_index[heads].tolist()))
        rule = MaskRule(self.rule.scaling, self.rule.causal, tuple(self.rule.windows[i] for i in layers),
                        self.rule.softcap)
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
        if self.maxima is not None and self.sums is not None:
            out.update(maxima=self.maxima, sums=self.sums)
        return out

    def __repr__(self) -> str:
        return f"QKAttention(shape={self.shape}, key heads={self.key.shape[1]}, rule={json.dumps(self.rule.to_json())})"
