"""Outlines of predicted clusters on the 2-D map: one polygon per cluster, for drawing.

A cluster's outline is the convex hull of the ``keep`` share of its points nearest to the
cluster's median position, so that a few stray members far away on the map (a cluster lives in
the embedding, not in the 2-D projection) do not stretch it across the map. Clusters smaller than
``min_size`` get no outline; at most ``most`` outlines are returned, the largest clusters first.
One sort of the pool by cluster, then work per cluster proportional to its size: about a second
for 10^6 points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError


@dataclass(frozen=True)
class Outline:
    """``polygon``: closed ring of map positions (first point repeated last), shape (k, 2)."""

    cluster: int
    size: int
    polygon: np.ndarray


def cluster_outlines(xy: np.ndarray, assignment: np.ndarray, *, min_size: int = 5, most: int = 200,
                     keep: float = 0.9) -> list[Outline]:
    """Outlines of the clusters in ``assignment`` (one id per row of ``xy``), largest first."""
    xy = np.asarray(xy, dtype=np.float64)
    assignment = np.asarray(assignment)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise DataError(f"cluster outlines: map positions must have shape (n, 2), got {xy.shape}")
    if assignment.shape != (len(xy),):
        raise DataError(f"cluster outlines: one cluster id per map position is needed ({len(xy)}), "
                        f"got shape {assignment.shape}")
    if not 0 < keep <= 1:
        raise DataError(f"cluster outlines: keep must be in (0, 1], got {keep}")
    if not len(xy):
        return []
    order = np.argsort(assignment, kind="stable")
    ids, starts, sizes = np.unique(assignment[order], return_index=True, return_counts=True)
    chosen = [i for i in np.argsort(-sizes, kind="stable") if sizes[i] >= max(min_size, 1)][:most]
    outlines = []
    for i in chosen:
        points = xy[order[starts[i]:starts[i] + sizes[i]]]
        points = points[np.isfinite(points).all(axis=1)]
        if len(points):
            outlines.append(Outline(int(ids[i]), int(sizes[i]), _ring(_core(points, keep))))
    return outlines


def _core(points: np.ndarray, keep: float) -> np.ndarray:
    """The ``keep`` share of ``points`` nearest their median (at least three points)."""
    if keep >= 1 or len(points) <= 3:
        return points
    distance = np.linalg.norm(points - np.median(points, axis=0), axis=1)
    count = max(3, int(np.ceil(keep * len(points))))
    return points[np.argpartition(distance, count - 1)[:count]]


def _ring(points: np.ndarray) -> np.ndarray:
    """Convex hull of ``points`` as a closed ring; a small box around points that span no area
    (one point, or all on a line)."""
    from scipy.spatial import ConvexHull, QhullError

    unique = np.unique(points, axis=0)
    if len(unique) >= 3:
        try:
            hull = unique[ConvexHull(unique).vertices]
            return np.vstack([hull, hull[:1]])
        except QhullError:  # collinear points: no area to enclose
            pass
    lo, hi = unique.min(axis=0), unique.max(axis=0)
    pad = max(float(np.max(hi - lo)) * 0.05, 1e-3)
    lo, hi = lo - pad, hi + pad
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]], [lo[0], lo[1]]])
