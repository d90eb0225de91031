"""A clustering summarised against the current labels: size, purity, dominant class per cluster."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Clusters:
    """``assignment[i]`` is the cluster of row ``i``; ``summary`` has one row per cluster."""

    assignment: np.ndarray
    summary: pd.DataFrame  # cluster, size, n_labelled, purity, dominant, predicted
    method: str = "kmeans"  # the method asked for (clusters.method)
    used: str = "kmeans"  # the method that ran (another after a fallback, see note)
    note: str = ""

    def rows(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.assignment == cluster)


def default_cluster_count(n_items: int) -> int:
    """A readable number of clusters for the map: about sqrt(n/4), between 2 and 60."""
    return int(np.clip(round(np.sqrt(n_items / 4)), 2, 60)) if n_items >= 2 else 1


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
