"""Predicted clusters of the embedding, summarised against the current labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Clusters:
    """``assignment[i]`` is the cluster of row ``i``; ``summary`` has one row per cluster."""

    assignment: np.ndarray
    summary: pd.DataFrame  # cluster, size, n_labelled, purity, dominant, predicted

    def rows(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.assignment == cluster)


def default_cluster_count(n_items: int) -> int:
    """A readable number of clusters for the map: about sqrt(n/4), between 2 and 60."""
    return int(np.clip(round(np.sqrt(n_items / 4)), 2, 60)) if n_items >= 2 else 1


def cluster_embedding(embedding: np.ndarray, n_clusters: int | None = None, *, seed: int = 0) -> np.ndarray:
    """K-means cluster ids (mini-batch above 20k rows) for every row of ``embedding``."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = len(embedding)
    k = min(n_clusters or default_cluster_count(n), n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    algo = MiniBatchKMeans(k, random_state=seed, n_init=3, batch_size=4096) if n > 20_000 else \
        KMeans(k, random_state=seed, n_init=3)
    return algo.fit_predict(np.asarray(embedding, dtype=np.float32)).astype(np.int64)


def summarise_clusters(assignment: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None) -> pd.DataFrame:
    """Per cluster: size, labelled count, label purity, dominant label and dominant prediction.

    ``labels`` holds a class name or ``None`` per row; purity is the share of the dominant label
    among the cluster's labelled rows (NaN when none is labelled).
    """
    frame = pd.DataFrame({"cluster": assignment, "label": labels})
    if predicted is not None:
        frame["predicted"] = predicted
    rows = []
    for cluster, group in frame.groupby("cluster", sort=True):
        labelled = group["label"].dropna()
        counts = labelled.value_counts()
        rows.append({
            "cluster": int(cluster),
            "size": len(group),
            "n_labelled": len(labelled),
            "purity": float(counts.iloc[0] / len(labelled)) if len(labelled) else float("nan"),
            "dominant": counts.index[0] if len(labelled) else None,
            "predicted": group["predicted"].mode().iloc[0] if predicted is not None else None,
        })
    return pd.DataFrame(rows, columns=["cluster", "size", "n_labelled", "purity", "dominant", "predicted"])
