"""Cluster-wise nearest-neighbour classification on a learned embedding (LMLE, Huang et al. 2016).

The embedding is the penultimate layer of an MLP head trained with ``embedding_loss:
quintuplet`` (class- and cluster-level margins on class-balanced batches). The labelled items of
each class are then split by k-means into a few clusters (one per ``min_cluster_size`` items, at
most ``clusters_per_class``) and an item goes to the class of its nearest cluster centroid. Every
class, however rare, is represented by its own centroid(s), so the head classes cannot outvote a
rare class the way they do in an item-level kNN vote.

Probabilities are a softmax of ``-distance to the class's nearest centroid / temperature``; the
temperature is fitted on the labelled items, each measured against centroids computed without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.base import TailwiseModel, softmax
from core.models.calibration import fit_temperature
from core.models.losses import class_clusters
from core.models.mlp import MLPClassifier, unit_rows
from core.project import ClusterKNNConfig


class ClusterKNNModel(TailwiseModel):
    """Nearest cluster centroid (per class) in the quintuplet embedding of an MLP head.

    After ``fit``: ``network_`` (the fitted :class:`MLPClassifier`), ``centroids_`` (unit-length
    embedding means of the clusters), ``cluster_class_`` (class code of each cluster),
    ``cluster_size_`` and ``cluster_spread_`` (mean squared distance of its items to the centroid).
    """

    kind = "cluster_knn"
    config_class = ClusterKNNConfig

    def fit(self, X, y, X_unlabelled=None) -> ClusterKNNModel:
        """Train the embedding network on ``X, y``, then cluster each class's labelled items."""
        cfg = self._config()
        X, codes = self._fit_inputs(X, y)
        self.network_ = MLPClassifier(config=cfg.mlp, seed=self.seed).fit(
            X, self.classes_[codes], X_unlabelled=X_unlabelled)
        emb = self.embed(X)
        ids = class_clusters(emb, codes, max_per_class=cfg.mlp.clusters_per_class,
                             min_size=cfg.mlp.min_cluster_size, seed=self.seed)
        n_clusters = int(ids.max()) + 1
        size = np.bincount(ids, minlength=n_clusters).astype(np.float64)
        sums = np.zeros((n_clusters, emb.shape[1]))
        np.add.at(sums, ids, emb.astype(np.float64))
        centroids = sums / size[:, None]
        self.centroids_ = centroids.astype(np.float32)
        self.cluster_class_ = np.zeros(n_clusters, dtype=np.int64)
        self.cluster_class_[ids] = codes
        self.cluster_size_ = size.astype(np.int64)
        spread = np.zeros(n_clusters)
        np.add.at(spread, ids, ((emb - centroids[ids]) ** 2).sum(axis=1))
        self.cluster_spread_ = (spread / size).astype(np.float32)
        self.temperature_ = self._fit_temperature(emb, codes, ids, sums, size)
        return self

    def _fit_temperature(self, emb, codes, ids, sums, size) -> float:
        """Temperature on leave-one-out distances: each item against its own cluster's centroid
        without it (items alone in their cluster, and their classes, are left out)."""
        keep = size[ids] > 1
        if len(np.unique(codes[keep])) < 2:
            return 1.0
        e = emb[keep].astype(np.float64)
        d2 = self._sq_distances(e, self.centroids_.astype(np.float64))
        own = ids[keep]
        loo = (sums[own] - e) / (size[own] - 1)[:, None]
        d2[np.arange(len(e)), own] = ((e - loo) ** 2).sum(axis=1)
        return fit_temperature(self._class_scores(d2), codes[keep])

    @staticmethod
    def _sq_distances(e: np.ndarray, centroids: np.ndarray) -> np.ndarray:
        d2 = (e ** 2).sum(axis=1)[:, None] - 2.0 * e @ centroids.T + (centroids ** 2).sum(axis=1)
        return np.maximum(d2, 0.0)

    def _class_scores(self, d2: np.ndarray) -> np.ndarray:
        """``-min`` squared distance to each class's centroids, ``(n, classes)``."""
        out = np.full((len(d2), len(self.classes_)), -np.inf)
        for c in range(len(self.classes_)):
            mine = self.cluster_class_ == c
            if mine.any():
                out[:, c] = -d2[:, mine].min(axis=1)
        return out

    def decision_function(self, X) -> np.ndarray:
        """Per class, minus the squared distance to its nearest cluster centroid."""
        emb = self.embed(X).astype(np.float64)
        return self._class_scores(self._sq_distances(emb, self.centroids_.astype(np.float64)))

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X) / self.temperature_)

    def embed(self, X) -> np.ndarray:
        """The unit-length penultimate layer of the embedding network (what the map shows)."""
        self._check_fitted()
        return unit_rows(self.network_.embed(X))

    # ------------------------------------------------------------------ persistence
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors, meta = self.network_.state()
        tensors = {f"network.{k}": v for k, v in tensors.items()}
        tensors.update(centroids=self.centroids_, cluster_class=self.cluster_class_,
                       cluster_size=self.cluster_size_, cluster_spread=self.cluster_spread_)
        return tensors, {"temperature": float(self.temperature_), "network_meta": meta}

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> ClusterKNNModel:
        model = cls(config=config, seed=seed)
        model.classes_ = np.array(meta["classes"], dtype=object)
        model.n_features_in_ = int(meta["n_features_in"])
        inner = {k[len("network."):]: v for k, v in tensors.items() if k.startswith("network.")}
        inner_meta = {**meta["network_meta"], "classes": meta["classes"],
                      "n_features_in": meta["n_features_in"]}
        model.network_ = MLPClassifier.from_state(config.mlp, seed, inner, inner_meta)
        model.centroids_ = np.asarray(tensors["centroids"], dtype=np.float32)
        model.cluster_class_ = np.asarray(tensors["cluster_class"], dtype=np.int64)
        model.cluster_size_ = np.asarray(tensors["cluster_size"], dtype=np.int64)
        model.cluster_spread_ = np.asarray(tensors["cluster_spread"], dtype=np.float32)
        model.temperature_ = float(meta["temperature"])
        return model
