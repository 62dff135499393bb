"""Attention weights of one kind, dense or pruned, behind one small reading interface.

Readers ask for what they need (``head``, ``row``, ``layer``, ``pooled``) and never care which form is inside:

- :class:`DenseAttention` holds ``[layers, heads, q, k]`` float32 (or float16) weights.
- :class:`PrunedAttention` holds, per query row, only its largest weights up to a kept mass (and a top-k cap),
  as CSR arrays. It is built one layer at a time, so a 4096-token, 32x32 model never needs its 68.7 GB dense form.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import InputError

#: The most weights a reader may make dense from a form that does not hold them densely (a pruned head, layer or
#: trace, or an analysis's ``[n, n]`` arrays): 2^26 float32 weights is 256 MiB, one 8192 x 8192 head. Past it the
#: reader gets an InputError naming the size, so a small pruned file that declares many tokens can never make a
#: reader allocate gigabytes. (Dense forms hold their weights already: arrays of the same order are allowed.)
DENSE_MAX_WEIGHTS = 2**26


def refuse_large_dense(shape: tuple[int, ...], what: str) -> None:
    """An InputError naming the size when a dense array of ``shape`` float32 weights, built from a form that does
    not hold it densely (pruned, q/k), would pass :data:`DENSE_MAX_WEIGHTS`."""
    n = int(np.prod(shape, dtype=object))
    if n > DENSE_MAX_WEIGHTS:
        raise InputError(
            f"{what} would be a dense {' x '.join(map(str, shape))} array ({n * 4 / 2**30:.1f} GiB of float32); "
            f"attnscope makes at most {DENSE_MAX_WEIGHTS * 4 / 2**20:.0f} MiB dense from a pruned or q/k trace. Read "
            "rows (trace.row, attention.rows), thumbnails (pooled) or head metrics instead, or pick a window of tokens"
        )


class DenseAttention:
    """Dense weights ``[layers, heads, q, k]``."""

    form = "dense"
    pruned = False
    #: Arrays of :meth:`arrays` that ``Trace.save(dtype="float16")`` may store at half precision.
    halvable: tuple[str, ...] = ("",)

    def __init__(self, weights: np.ndarray):
        if weights.ndim != 4:
            raise InputError(f"attention must be [layers, heads, q, k]; got shape {tuple(weights.shape)}")
        self.weights = weights  # [layers, heads, q, k]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.weights.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.weights.dtype

    def head(self, layer: int, head: int) -> np.ndarray:
        """One head's matrix ``[q, k]`` as float32."""
        return np.asarray(self.weights[layer, head], dtype=np.float32)

    def rows(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Query rows ``start..stop-1`` of one head ``[stop - start, k]`` as float32."""
        return np.asarray(self.weights[layer, head, start:stop], dtype=np.float32)

    def layer(self, layer: int) -> np.ndarray:
        """One layer ``[heads, q, k]`` as float32."""
        return np.asarray(self.weights[layer], dtype=np.float32)

    def row(self, layer: int, head: int, query: int) -> np.ndarray:
        """One query row ``[k]`` as float32."""
        return np.asarray(self.weights[layer, head, query], dtype=np.float32)

    def dense(self) -> np.ndarray:
        """All weights ``[layers, heads, q, k]`` as float32."""
        return np.asarray(self.weights, dtype=np.float32)

    def row_mass(self) -> np.ndarray:
        """Attention mass kept per row ``[layers, heads, q]`` (all of it for the dense form)."""
        return self.weights.sum(-1, dtype=np.float32)

    def kept_mass(self) -> float:
        """Fraction of all attention mass that is kept, averaged over rows (1.0: nothing was pruned)."""
        return 1.0

    def min_kept_mass(self) -> float:
        """Fraction kept in the worst row (1.0: nothing was pruned)."""
        return 1.0

    def allow_dense(self, shape: tuple[int, ...], what: str) -> None:
        """Readers may build dense arrays of the weights' order: the weights themselves are held already."""

    def looks_causal(self, layer: int) -> bool:
        """Whether every head of ``layer`` holds nothing above the diagonal (see :func:`looks_causal`)."""
        return looks_causal(self.weights[layer, h] for h in range(self.shape[1]))

    def pooled(self, layer: int, head: int, size: int) -> np.ndarray:
        """Block-max pooled thumbnail ``[ceil(q/b), ceil(k/b)]`` with blocks of ``b`` so the side is <= size."""
        return block_max(self.head(layer, head), size)

    def astype(self, dtype) -> DenseAttention:
        return DenseAttention(self.weights.astype(dtype))

    def select(self, layers: list[int], heads: list[int]) -> DenseAttention:
        return DenseAttention(self.weights[np.ix_(layers, heads)])

    def info(self) -> dict:
        """What a trace file's header says of this form besides its shape (nothing for dense weights)."""
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"": np.ascontiguousarray(self.weights)}


@dataclass(frozen=True)
class PruneSpec:
    """How to prune rows: keep the largest weights until ``mass`` is reached, at most ``top_k`` per row."""

    mass: float = 0.95
    top_k: int = 1024

    def __post_init__(self):
        if not 0.0 < self.mass <= 1.0:
            raise InputError(f"prune mass must be in (0, 1]; got {self.mass}")
        if self.top_k < 1:
            raise InputError(f"prune top_k must be >= 1; got {self.top_k}")


def prune_rows(weights, spec: PruneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Prune ``[rows, k]`` weights to CSR form ``(counts [rows], indices, values)``.

    Each row keeps its largest weights in descending order until their sum reaches ``spec.mass`` of the row's
    total (never fewer than one, so the maximum is always kept), capped at ``spec.top_k``.
    Most rows reach the mass within a few dozen keys, so rows are first cut to a small width and only the rows
    that fall short are looked at again with a wider one (no full sort of long rows). ``weights`` is a numpy
    array, or a CPU torch tensor (capture prunes the softmax output as it comes, with torch's multi-threaded top-k).
    """
    rows, k = weights.shape
    take = min(spec.top_k, k)
    totals = weights.sum(1)
    totals = totals if isinstance(totals, np.ndarray) else totals.numpy()
    need = np.maximum(totals.astype(np.float64) * spec.mass - 1e-6, 0.0)  # [rows]
    counts = np.zeros(rows, dtype=np.int64)
    kept_idx = np.zeros((rows, min(take, _FIRST_WIDTH)), dtype=np.int32)
    kept_val = np.zeros_like(kept_idx, dtype=np.float32)
    todo, width = np.arange(rows), min(take, _FIRST_WIDTH)
    while len(todo):
        part, vals = _largest(weights, todo, width)
        reached = np.cumsum(vals, axis=1, dtype=np.float64) >= need[todo, None]
        done = reached[:, -1] | (width == take)
        c = np.where(reached[:, -1], reached.argmax(1) + 1, width)[done]
        rows_done = todo[done]
        if width > kept_idx.shape[1]:
            kept_idx = np.pad(kept_idx, ((0, 0), (0, width - kept_idx.shape[1])))
            kept_val = np.pad(kept_val, ((0, 0), (0, width - kept_val.shape[1])))
        counts[rows_done] = c
        kept_idx[rows_done, :width] = part[done]
        kept_val[rows_done, :width] = vals[done]
        todo, width = todo[~done], min(take, width * 4)
    keep = np.arange(kept_idx.shape[1])[None, :] < counts[:, None]
    return counts, kept_idx[keep], kept_val[keep]


def _largest(weights, rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Key indices and values of the ``width`` largest weights of ``rows``, largest first, as numpy arrays."""
    if not isinstance(weights, np.ndarray):  # a torch tensor
        vals, part = weights[rows].topk(width, dim=1, sorted=True)
        return part.numpy(), vals.numpy()
    w = weights[rows]
    part = np.argpartition(-w, width - 1, axis=1)[:, :width] if width < w.shape[1] else np.argsort(-w, axis=1)
    vals = np.take_along_axis(w, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


#: Width of the first cut in :func:`prune_rows`; rows that need more keys are widened 4x at a time.
_FIRST_WIDTH = 64


class PrunedAttention:
    """Pruned weights: per (layer, head, query) row the kept key indices and values (CSR).

    ``indptr`` is ``[layers*heads*q + 1]`` int64, ``indices`` int32 and ``values`` float32/float16 are flat.
    ``mass`` ``[layers, heads, q]`` is the kept fraction of each row's attention.
    """

    form = "pruned"
    pruned = True
    halvable: tuple[str, ...] = ("values",)

    def __init__(self, shape, indptr: np.ndarray, indices: np.ndarray, values: np.ndarray, mass: np.ndarray):
        self._shape = tuple(int(s) for s in shape)
        n_rows = self._shape[0] * self._shape[1] * self._shape[2]
        if indptr.shape != (n_rows + 1,) or indices.shape != values.shape or indptr[-1] != len(indices):
            raise InputError("pruned attention arrays do not fit together (indptr, indices, values, shape)")
        self.indptr, self.indices, self.values, self.mass = indptr, indices, values, mass

    @classmethod
    def from_layers(cls, layers: Iterable[np.ndarray], spec: PruneSpec = PruneSpec()) -> PrunedAttention:
        """Build from dense layers ``[heads, q, k]`` given one at a time (only one is ever held)."""

        def pruned_heads():
            for layer in layers:
                layer = np.asarray(layer, dtype=np.float32)
                yield layer.shape[2], [prune_rows(h, spec) + (h.sum(1),) for h in layer]

        return cls.from_pruned_heads(pruned_heads())

    @classmethod
    def from_pruned_heads(cls, layers: Iterable[tuple[int, list[tuple]]]) -> PrunedAttention:
        """Build from ``(k, heads)`` per layer, each head ``(counts [q], indices, values, row totals [q])``."""
        counts, indices, values, masses, shape = [], [], [], [], None
        for k, heads in layers:
            layer_mass = []
            for c, i, v, total in heads:
                kept = np.add.reduceat(v, np.r_[0, np.cumsum(c)[:-1]]) if len(v) else np.zeros(len(c))
                layer_mass.append(kept / np.where(total > 0, total, 1.0))
                counts.append(c)
                indices.append(i)
                values.append(v)
            masses.append(np.stack(layer_mass).astype(np.float32))
            h, q = masses[-1].shape
            shape = (1 if shape is None else shape[0] + 1, h, q, k)
        if shape is None:
            raise InputError("cannot build pruned attention from zero layers")
        indptr = np.zeros(sum(len(c) for c in counts) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(counts), out=indptr[1:])
        return cls(shape, indptr, np.concatenate(indices), np.concatenate(values), np.stack(masses))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def _row_index(self, layer: int, head: int, query: int) -> int:
        L, H, Q, _ = self._shape
        if not (-L <= layer < L and -H <= head < H and -Q <= query < Q):
            raise IndexError(f"row ({layer}, {head}, {query}) is outside shape {self._shape}")
        return ((layer % L) * H + head % H) * Q + query % Q

    def row(self, layer: int, head: int, query: int) -> np.ndarray:
        r = self._row_index(layer, head, query)
        out = np.zeros(self._shape[3], dtype=np.float32)
        a, b = self.indptr[r], self.indptr[r + 1]
        out[self.indices[a:b]] = self.values[a:b]
        return out

    def rows(self, layer: int, head: int, start: int, stop: int) -> np.ndarray:
        """Query rows ``start..stop-1`` of one head ``[stop - start, k]``, dropped weights as 0."""
        Q, K = self._shape[2], self._shape[3]
        if not 0 <= start <= stop <= Q:
            raise IndexError(f"rows {start}..{stop} are outside the {Q} queries")
        r0 = self._row_index(layer, head, 0) + start
        ptr = self.indptr[r0 : r0 + stop - start + 1]
        a, b = int(ptr[0]), int(ptr[-1])
        out = np.zeros((stop - start, K), dtype=np.float32)
        out[np.repeat(np.arange(stop - start), np.diff(ptr)), self.indices[a:b]] = self.values[a:b]
        return out

    def head(self, layer: int, head: int) -> np.ndarray:
        Q, K = self._shape[2], self._shape[3]
        self.allow_dense((Q, K), "one head of this pruned trace")
        return self.rows(layer, head, 0, Q)

    def layer(self, layer: int) -> np.ndarray:
        self.allow_dense(self._shape[1:], "one layer of this pruned trace")
        return np.stack([self.head(layer, h) for h in range(self._shape[1])])

    def dense(self) -> np.ndarray:
        self.allow_dense(self._shape, "this pruned trace")
        return np.stack([self.layer(layer) for layer in range(self._shape[0])])

    def row_mass(self) -> np.ndarray:
        return self.mass

    def kept_mass(self) -> float:
        return float(self.mass.mean(dtype=np.float64)) if self.mass.size else 1.0

    def min_kept_mass(self) -> float:
        return float(self.mass.min()) if self.mass.size else 1.0

    def allow_dense(self, shape: tuple[int, ...], what: str) -> None:
        """Refuse dense arrays past :data:`DENSE_MAX_WEIGHTS` (see :func:`refuse_large_dense`)."""
        refuse_large_dense(shape, what)

    def looks_causal(self, layer: int) -> bool:
        """Whether no kept weight of ``layer`` lies above the diagonal, read from the kept entries alone."""
        _, H, q, k = self._shape
        if q != k or q < 2:
            return False
        ptr = self.indptr[layer * H * q : (layer + 1) * H * q + 1]
        a, b = int(ptr[0]), int(ptr[-1])
        rows = np.repeat(np.tile(np.arange(q), H), np.diff(ptr))
        return not (self.indices[a:b] > rows).any()

    def pooled(self, layer: int, head: int, size: int) -> np.ndarray:
        """Block-max thumbnail as :meth:`DenseAttention.pooled`, pooled straight from the kept entries."""
        _, H, q, k = self._shape
        b = max(1, -(-max(q, k) // size))
        rows, cols = -(-q // b), -(-k // b)
        r0 = self._row_index(layer, head, 0)
        ptr = self.indptr[r0 : r0 + q + 1]
        a, e = int(ptr[0]), int(ptr[-1])
        cell = np.repeat(np.arange(q) // b, np.diff(ptr)) * cols + self.indices[a:e] // b
        out = np.zeros(rows * cols, dtype=np.float32)
        np.maximum.at(out, cell, self.values[a:e].astype(np.float32))
        return out.reshape(rows, cols)

    def astype(self, dtype) -> PrunedAttention:
        return PrunedAttention(self._shape, self.indptr, self.indices, self.values.astype(dtype), self.mass)

    def select(self, layers: list[int], heads: list[int]) -> PrunedAttention:
        return PrunedAttention.from_layers(
            (self.layer(layer)[heads] for layer in layers), PruneSpec(mass=1.0, top_k=self._shape[3])
        )

    def info(self) -> dict:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"indptr": self.indptr, "indices": self.indices, "values": self.values, "mass": self.mass}


class Attention(Protocol):
    """What every form of attention offers its readers: :class:`DenseAttention`, :class:`PrunedAttention` and
    :class:`attnscope.qk.QKAttention`. Readers use these and never ask which form is inside."""

    form: str  # "dense", "pruned" or "qk": the name in trace files
    pruned: bool  # whether rows may have lost weights (kept_mass < 1)
    halvable: tuple[str, ...]  # arrays that Trace.save(dtype="float16") may halve

    @property
    def shape(self) -> tuple[int, int, int, int]: ...
    @property
    def dtype(self) -> np.dtype: ...
    def head(self, layer: int, head: int) -> np.ndarray: ...
    def rows(self, layer: int, head: int, start: int, stop: int) -> np.ndarray: ...
    def layer(self, layer: int) -> np.ndarray: ...
    def row(self, layer: int, head: int, query: int) -> np.ndarray: ...
    def dense(self) -> np.ndarray: ...
    def kept_mass(self) -> float: ...
    def min_kept_mass(self) -> float: ...
    def pooled(self, layer: int, head: int, size: int) -> np.ndarray: ...
    def allow_dense(self, shape: tuple[int, ...], what: str) -> None: ...
    def looks_causal(self, layer: int) -> bool: ...
    def astype(self, dtype) -> Attention: ...
    def select(self, layers: list[int], heads: list[int]) -> Attention: ...
    def info(self) -> dict: ...
    def arrays(self) -> dict[str, np.ndarray]: ...


def looks_causal(heads: Iterable[np.ndarray]) -> bool:
    """Whether one layer's heads (each ``[q, k]``, read one at a time) hold nothing above the diagonal: a causal
    mask (a softmax over allowed keys is never exactly 0, so an encoder's weights never pass)."""
    for head in heads:
        q, k = head.shape
        if q != k or q < 2 or np.triu(head, 1).any():
            return False
    return True


def block_max(matrix: np.ndarray, size: int) -> np.ndarray:
    """Max-pool ``[q, k]`` in square blocks so that neither side exceeds ``size`` (no pooling if it fits)."""
    q, k = matrix.shape
    b = max(1, -(-max(q, k) // size))
    if b == 1:
        return matrix
    pq, pk = -(-q // b) * b, -(-k // b) * b
    padded = np.zeros((pq, pk), dtype=matrix.dtype)
    padded[:q, :k] = matrix
    return padded.reshape(pq // b, b, pk // b, b).max(axis=(1, 3))
