"""The pool's k-means clustering, computed once and shared by every request that asks for it.

``discovery`` clusters the embedding at every query. On a large pool it sees a different kNN
sub-pool for every request (each dashboard tab, each round), but the clustering it needs is a
property of the pool and the label state: :class:`PoolClusterCache` fits the centres once per
(embedding, ``k``, seed) on a seeded sample of the whole pool and assigns rows to them lazily, only the rows a
request asks about, each row once. Entries are found by the identity of the embedding array (a
new model's learned embedding, or new data, is a new array: a new entry) checked through a weak
reference, so a freed array's reused ``id`` never matches; at most ``max_entries`` entries are
kept, least recently used first out. One lock per entry: concurrent requests for the same
clustering wait for the one that fits it instead of fitting it again.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

__all__ = ["POOL_CLUSTERS", "PoolClusterCache", "PoolClustering", "bucket_k"]


def bucket_k(k: int) -> int:
    """``k`` rounded up to a multiple of a quarter of its power of two (16 -> 16, 17 -> 20,
    130 -> 160, 161 -> 192): at most 25 % more clusters, and the same ``k`` for label counts
    a few rounds apart, so one clustering serves them."""
    k = int(k)
    if k <= 8:
        return max(k, 1)
    step = 1 << (k.bit_length() - 3)
    return -(-k // step) * step


def _seed_words(seed: int | tuple[int, ...]) -> tuple[int, ...]:
    words = tuple(int(v) for v in (seed if isinstance(seed, tuple) else (seed,)))
    if not words or any(v < 0 for v in words):
        raise ValueError(f"PoolClusterCache: a seed is one or more non-negative integers, got {seed!r}")
    return words


class PoolClustering:
    """One clustering of one embedding: the centres, and each row's centre once asked for."""

    def __init__(self, embedding: np.ndarray) -> None:
        self._embedding = weakref.ref(embedding)
        self.centres: np.ndarray | None = None  # set by :meth:`fit`
        self._assign = np.zeros(0, dtype=np.int32)
        self.lock = threading.Lock()

    def fit(self, embedding: np.ndarray, k: int, seed: int | tuple[int, ...]) -> None:
        """Fit the centres (once; the caller holds :attr:`lock`) by
        :func:`core.query._geometry.kmeans_centres` on a sample drawn with ``seed``."""
        from core.query._geometry import kmeans_centres

        if self.centres is not None:
            return
        centres = kmeans_centres(embedding, k, np.random.default_rng([*_seed_words(seed), int(k)]))
        centres.setflags(write=False)
        self._assign = np.full(len(embedding), -1, dtype=np.int32)  # -1: not assigned yet
        self.centres = centres

    def assignment(self, embedding: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The nearest centre of each of ``rows`` (pool rows of ``embedding``); rows not asked
        about before are assigned now, under the entry's lock."""
        from core.query._geometry import nearest

        if not self.follows(embedding):
            raise ValueError("PoolClustering.assignment: not the embedding this was fitted on")
        rows = np.asarray(rows, dtype=np.int64)
        with self.lock:
            todo = rows[self._assign[rows] < 0]
            if todo.size:
                todo = np.unique(todo)
                self._assign[todo] = nearest(np.asarray(embedding[todo], np.float32),
                                             self.centres)[0]
            return self._assign[rows].astype(np.int64)

    @property
    def n_assigned(self) -> int:
        """How many pool rows have been assigned so far."""
        return int(np.count_nonzero(self._assign >= 0))

    def follows(self, embedding: np.ndarray) -> bool:
        """Whether this clustering belongs to ``embedding`` (the same, still living array)."""
        return self._embedding() is embedding


class PoolClusterCache:
    """Thread-safe, bounded store of :class:`PoolClustering` entries (see the module text)."""

    def __init__(self, max_entries: int = 4) -> None:
        if max_entries < 1:
            raise ValueError(f"PoolClusterCache: max_entries must be at least 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, PoolClustering] = OrderedDict()
        self._lock = threading.Lock()
        self.fits = 0  # clusterings fitted (not found), for tests and benchmarks

    def get(self, embedding: np.ndarray, k: int, seed: int | tuple[int, ...]) -> PoolClustering:
        """The clustering of ``embedding`` into ``k`` groups with ``seed``, fitted by the first
        request that needs it while later ones wait on the entry's lock."""
        if not isinstance(embedding, np.ndarray) or embedding.ndim != 2 or not len(embedding):
            raise ValueError("PoolClusterCache.get: the embedding must be a non-empty 2-D array")
        if k < 1:
            raise ValueError(f"PoolClusterCache.get: k must be at least 1, got {k}")
        key = (id(embedding), embedding.shape, str(embedding.dtype), int(k), _seed_words(seed))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.follows(embedding):  # none, or a freed array's id
                entry = self._entries[key] = PoolClustering(embedding)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        with entry.lock:
            if entry.centres is None:  # a failed fit leaves it unfitted: the next one tries
                entry.fit(embedding, k, seed)
                with self._lock:
                    self.fits += 1
        return entry

    def clear(self) -> None:
        """Forget every clustering."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


POOL_CLUSTERS = PoolClusterCache()  # shared by every strategy of this process
