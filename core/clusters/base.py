"""The one interface every cluster method follows, and the checks they share.

A method is built from settings only (``__init__`` stores them) and ``fit_predict(embedding,
labels)`` returns a :class:`ClusterResult`: one cluster id per row (``0 .. n_clusters - 1``,
no noise label), the method that actually ran and, when it fell back, why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError


@dataclass(frozen=True)
class ClusterResult:
    """``assignment[i]`` is the cluster of row ``i``; ``used`` is the method that produced it
    (another than ``method`` after a fallback, which ``note`` explains)."""

    assignment: np.ndarray
    method: str
    used: str
    note: str = ""

    @property
    def n_clusters(self) -> int:
        return int(self.assignment.max()) + 1 if len(self.assignment) else 0


class ClusterMethod:
    """Base of the cluster methods (registered by ``name`` in :mod:`core.clusters.registry`)."""

    name = ""
    needs_labels = False  # True: trained on the expert labels (falls back without them)

    def fit_predict(self, embedding: np.ndarray, labels: np.ndarray | None = None) -> ClusterResult:
        """Cluster the rows of ``embedding``; ``labels`` holds a class name or None per row."""
        x = check_embedding(embedding)
        labels = check_labels(labels, len(x))
        if len(x) == 1:
            return ClusterResult(np.zeros(1, np.int64), self.name, self.name, "one item: one cluster")
        return self._fit_predict(x, labels)

    def _fit_predict(self, x: np.ndarray, labels: np.ndarray) -> ClusterResult:
        raise NotImplementedError


def check_embedding(embedding: np.ndarray) -> np.ndarray:
    """``embedding`` as a finite float32 (n, d) array with n >= 1, else a :class:`DataError`."""
    x = np.asarray(embedding, dtype=np.float32)
    if x.ndim != 2:
        raise DataError(f"clusters: the embedding must be a 2-D array (items x features), got shape {x.shape}")
    if len(x) == 0:
        raise DataError("clusters: no items to cluster (the pool is empty)")
    if x.shape[1] == 0:
        raise DataError("clusters: the embedding has no features")
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise DataError(f"clusters: the embedding has NaN or infinite values (first at row {bad})")
    return x


def check_labels(labels: np.ndarray | None, n: int) -> np.ndarray:
    """``labels`` as an (n,) object array (class name or None per row)."""
    if labels is None:
        return np.full(n, None, dtype=object)
    out = np.asarray(labels, dtype=object)
    if out.shape != (n,):
        raise DataError(f"clusters: labels must hold one entry per item ({n}), got shape {out.shape}")
    return out


def relabel(assignment: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered ``0..K-1`` by first appearance (the same partition, stable ids)."""
    _, first, inverse = np.unique(assignment, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    return order[inverse].astype(np.int64)
