"""``hdbscan``: scikit-learn's HDBSCAN (density-based, no preset k) on a seeded sample of at most
``sample_size`` items; every other item, and every point HDBSCAN calls noise, joins the cluster
of its nearest clustered sample item. So there is no noise label and the cost stays bounded
(HDBSCAN itself grows faster than linearly)."""

from __future__ import annotations

import numpy as np

from core.clusters.base import ClusterMethod, ClusterResult, relabel
from core.clusters.graph import reduced


class HDBSCANClusters(ClusterMethod):
    """Density-based clusters: as many as the data has dense regions of at least
    ``min_cluster_size`` items (in the sample), small rare groups included."""

    name = "hdbscan"

    def __init__(self, min_cluster_size: int = 5, sample_size: int = 8_000, seed: int = 0) -> None:
        self.min_cluster_size = min_cluster_size
        self.sample_size = sample_size
        self.seed = seed

    def _fit_predict(self, x: np.ndarray, labels: np.ndarray) -> ClusterResult:
        from sklearn.cluster import HDBSCAN

        from core.query.neighbours import nearest

        n = len(x)
        size = max(2, int(self.min_cluster_size))
        if n < 2 * size:
            return ClusterResult(np.zeros(n, np.int64), self.name, self.name,
                                 f"{n} items are too few for clusters of at least {size}: one cluster")
        z = reduced(x, self.seed)
        rng = np.random.default_rng(self.seed)
        sample = np.arange(n) if n <= self.sample_size else \
            np.sort(rng.choice(n, self.sample_size, replace=False))
        found = HDBSCAN(min_cluster_size=size, min_samples=size, copy=True).fit_predict(z[sample])
        core = found >= 0
        if not core.any():
            return ClusterResult(np.zeros(n, np.int64), self.name, self.name,
                                 "HDBSCAN found no dense region: one cluster")
        assignment = np.empty(n, np.int64)
        assignment[sample[core]] = found[core]
        rest = np.ones(n, bool)
        rest[sample[core]] = False
        rows = np.flatnonzero(rest)
        ref = z[sample[core]]
        for start in range(0, len(rows), 65_536):  # nearest clustered sample item, in blocks
            block = rows[start:start + 65_536]
            near, _ = nearest(z[block], ref)
            assignment[block] = found[core][near]
        return ClusterResult(relabel(assignment), self.name, self.name)
