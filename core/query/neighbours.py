"""Nearest-neighbour questions with bounded memory: exact for small reference sets, an index for
large ones, never a pool x labelled distance matrix.

* :func:`nearest` (each row's nearest reference row) computes exact distances in blocks of at
  most ``BLOCK_FLOATS`` floats while the reference set has at most ``EXACT_LIMIT`` rows; above
  that it asks a :class:`ReferenceIndex`, a faiss inverted-file index over the reference rows that
  is kept between calls and updated with only the rows that changed (rows are known by a hash of
  their bytes), so the labelled items of a growing label set are indexed once per embedding.
* :func:`pool_neighbours` (the k nearest pool rows of some seeds, for the kNN sub-pool) searches
  the pool exactly in bounded blocks for moderate pools and through one index per embedding
  (built once, e.g. once per model version for the ``model`` encoder) for pools above
  ``POOL_INDEX_ROWS``.

Index answers are approximate (``NPROBE`` of the index's lists are searched): good enough for
"far from every labelled item" and for candidate sub-pools, which is what they serve.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

EXACT_LIMIT = 32_768  # reference rows searched exactly (in blocks)
POOL_INDEX_ROWS = 250_000  # pools above this get an index for the kNN sub-pool
BLOCK_FLOATS = 1 << 22  # 16 MiB of float32 distances per block
NPROBE = 16
TRAIN_ROWS = 50_000
_KEEP = 2  # indexes kept per kind (e.g. the current and the previous embedding)


# ---------------------------------------------------------------------------- exact, bounded
def exact_nearest(x: np.ndarray, ref: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(n, k)`` of and squared distances ``(n, k)`` to the ``k`` nearest rows of
    ``ref`` for each row of ``x``, computed in blocks of at most ``BLOCK_FLOATS`` distances."""
    x = np.asarray(x, dtype=np.float32)
    ref = np.asarray(ref, dtype=np.float32)
    k = min(k, len(ref))
    idx = np.empty((len(x), k), dtype=np.int64)
    d2 = np.empty((len(x), k), dtype=np.float32)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    rows = max(1, BLOCK_FLOATS // max(len(ref), 1))
    for start in range(0, len(x), rows):
        block = x[start:start + rows]
        dist = ref_sq[None, :] - 2.0 * (block @ ref.T)
        dist += np.einsum("ij,ij->i", block, block)[:, None]
        if k == 1:
            part = dist.argmin(axis=1)[:, None]
        elif k < len(ref):
            part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        else:
            part = np.argsort(dist, axis=1)
        part_d = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        idx[start:start + rows] = np.take_along_axis(part, order, axis=1)
        d2[start:start + rows] = np.maximum(np.take_along_axis(part_d, order, axis=1), 0.0)
    return idx, d2


# ---------------------------------------------------------------------------- faiss indexes
def _row_keys(x: np.ndarray) -> np.ndarray:
    """A 63-bit key per row from its float32 bytes (equal rows, equal keys)."""
    import pandas as pd

    x = np.ascontiguousarray(x, dtype=np.float32)
    words = x.view(np.uint32).astype(np.uint64)
    key = np.zeros(len(x), dtype=np.uint64)
    for j in range(words.shape[1]):  # mix column by column: O(n d), no per-row Python
        key = pd.util.hash_array(key ^ (words[:, j] * np.uint64(0x9E3779B97F4A7C15)),
                                 categorize=False)
    return (key >> np.uint64(1)).astype(np.int64)


def _ivf(dim: int, n: int, train: np.ndarray, seed: int):
    """An untrained-then-trained IVF index with 8-bit scalar quantisation (4x smaller than flat)."""
    import faiss

    nlist = int(np.clip(np.sqrt(n), 16, 4096))
    index = faiss.index_factory(dim, f"IVF{nlist},SQ8")
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(np.ascontiguousarray(train, dtype=np.float32))
    faiss.extract_index_ivf(index).nprobe = min(NPROBE, nlist)
    return index


class ReferenceIndex:
    """An index over a set of reference rows that follows the set as it changes.

    :meth:`update` adds the rows that are new and removes those that are gone (rows are known by
    a hash of their bytes); :meth:`nearest` then answers for the current set.
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed
        self.index = None
        self.keys = np.zeros(0, dtype=np.int64)  # sorted keys in the index

    def update(self, ref: np.ndarray) -> np.ndarray:
        """Make the index hold exactly the rows of ``ref``; returns their keys (ref order)."""
        import faiss

        keys = _row_keys(ref)
        new = ~np.isin(keys, self.keys)
        if self.index is not None and new.sum() > len(keys) // 2:  # mostly new rows (a new
            self.index, self.keys = None, np.zeros(0, dtype=np.int64)  # embedding): train again
            new[:] = True
        if self.index is None:
            rng = np.random.default_rng(self.seed)
            train = ref if len(ref) <= TRAIN_ROWS else ref[rng.choice(len(ref), TRAIN_ROWS, replace=False)]
            self.index = _ivf(self.dim, len(ref), train, self.seed)
        gone = np.setdiff1d(self.keys, keys, assume_unique=False)
        if len(gone):
            self.index.remove_ids(faiss.IDSelectorBatch(gone))
        if new.any():
            fresh, first = np.unique(keys[new], return_index=True)
            self.index.add_with_ids(np.ascontiguousarray(ref[new][first], dtype=np.float32), fresh)
        self.keys = np.unique(keys)
        return keys

    def nearest(self, x: np.ndarray, keys: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``(rows of ref, squared distances)`` of the ``k`` nearest reference rows; ``keys`` are
        the current ref's keys (from :meth:`update`). Rows not found get -1 and ``inf``."""
        d2, found = self.index.search(np.ascontiguousarray(x, dtype=np.float32), k)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        pos = np.clip(np.searchsorted(sorted_keys, found), 0, len(keys) - 1)
        ok = (found >= 0) & (sorted_keys[pos] == found)
        rows = np.where(ok, order[pos], -1)
        return rows, np.where(ok, np.maximum(d2, 0.0), np.inf).astype(np.float32)


_REFERENCE: OrderedDict[int, ReferenceIndex] = OrderedDict()
_POOL: OrderedDict[tuple, object] = OrderedDict()
_LOCK = threading.Lock()


def nearest(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``x``: index of and Euclidean distance to its nearest row of ``ref``
    (exact up to ``EXACT_LIMIT`` reference rows, through a kept :class:`ReferenceIndex` above)."""
    x = np.asarray(x, dtype=np.float32)
    ref = np.asarray(ref, dtype=np.float32)
    if len(ref) == 0:
        return np.full(len(x), -1), np.full(len(x), np.inf, dtype=np.float32)
    if len(ref) <= EXACT_LIMIT:
        idx, d2 = exact_nearest(x, ref, 1)
        return idx[:, 0], np.sqrt(d2[:, 0])
    with _LOCK:
        index = _REFERENCE.pop(ref.shape[1], None) or ReferenceIndex(ref.shape[1])
        _REFERENCE[ref.shape[1]] = index
        keys = index.update(ref)
        rows, d2 = index.nearest(x, keys, 1)
    return rows[:, 0], np.sqrt(d2[:, 0])


def pool_neighbours(embedding: np.ndarray, seeds: np.ndarray, k: int,
                    exact_rows: int = POOL_INDEX_ROWS) -> np.ndarray:
    """``(len(seeds), k)`` pool rows nearest each seed row (the seed itself usually first).

    Exact in bounded blocks for pools up to ``exact_rows``; above, through one index of the pool
    per embedding, built on first use and kept (-1 where the index found fewer than ``k``).
    """
    q = np.asarray(embedding[seeds], dtype=np.float32)
    if len(embedding) <= exact_rows:
        return exact_nearest(q, embedding, k)[0]
    key = (id(embedding), embedding.shape, float(np.asarray(embedding[0], np.float64).sum()),
           float(np.asarray(embedding[-1], np.float64).sum()))
    with _LOCK:
        index = _POOL.pop(key, None)
        if index is None:
            index = _pool_index(embedding)
            while len(_POOL) >= _KEEP:
                _POOL.popitem(last=False)
        _POOL[key] = index
    _, found = index.search(q, k)
    return found


def _pool_index(embedding: np.ndarray, chunk: int = 262_144):
    """An IVF index of every pool row (ids = rows), filled chunk by chunk."""
    rng = np.random.default_rng(0)
    n = len(embedding)
    train = np.asarray(embedding[np.sort(rng.choice(n, min(n, TRAIN_ROWS), replace=False))],
                       dtype=np.float32)
    index = _ivf(embedding.shape[1], n, train, 0)
    for start in range(0, n, chunk):
        block = np.ascontiguousarray(embedding[start:start + chunk], dtype=np.float32)
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    return index
