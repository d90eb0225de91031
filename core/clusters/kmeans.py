"""``kmeans``: k-means on the embedding (mini-batch above 20k rows), k about sqrt(n/4)."""

from __future__ import annotations

import numpy as np

from core.clusters.base import ClusterMethod, ClusterResult, check_embedding
from core.clusters.summary import default_cluster_count


def cluster_embedding(embedding: np.ndarray, n_clusters: int | None = None, *, seed: int = 0) -> np.ndarray:
    """K-means cluster ids (mini-batch above 20k rows) for every row of ``embedding``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = check_embedding(embedding)
    n = len(x)
    k = min(n_clusters or default_cluster_count(n), n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    algo = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096) if n > 20_000 else \
        KMeans(k, random_state=seed, n_init=3)
    return algo.fit_predict(x).astype(np.int64)


class KMeansClusters(ClusterMethod):
    """Today's default: ``n_clusters`` centroids (default :func:`default_cluster_count`).

    Fast and even-sized; on long-tailed data it splits head classes and merges rare ones into
    their neighbours."""

    name = "kmeans"

    def __init__(self, n_clusters: int | None = None, seed: int = 0) -> None:
        self.n_clusters = n_clusters
        self.seed = seed

    def _fit_predict(self, x: np.ndarray, labels: np.ndarray) -> ClusterResult:
        from core.clusters.base import relabel

        return ClusterResult(relabel(cluster_embedding(x, self.n_clusters, seed=self.seed)),
                             self.name, self.name)
