"""The per-item table behind the dashboard's map: position, label, prediction, scores, flags.

Pure data: the dashboard turns these columns into colours and glyphs. Kept in ``core`` so the
same table can be tested without a browser and reused by scripts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["latest_annotators", "point_table", "queue_scores"]


def latest_annotators(events: list[Any], ids: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """(n,) object array: who gave each item its current label ('' when unlabelled).

    ``events`` are label events in ascending event order (``LabelStore.events()``).
    """
    out = np.full(len(ids), "", dtype=object)
    for event in events:
        row = index.get(event.item_id)
        if row is not None:
            out[row] = "" if event.label is None else event.annotator
    return out


def queue_scores(n: int, rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n,) float: the query score of queued rows, NaN elsewhere."""
    out = np.full(n, np.nan)
    if len(rows):
        out[np.asarray(rows, dtype=np.int64)] = np.asarray(scores, dtype=np.float64)
    return out


def point_table(
    ids: np.ndarray,
    xy: np.ndarray,
    labels: np.ndarray,
    *,
    predicted: np.ndarray | None = None,
    uncertainty: np.ndarray | None = None,
    score: np.ndarray | None = None,
    cluster: np.ndarray | None = None,
    annotator: np.ndarray | None = None,
    rare_classes: tuple[str, ...] | list[str] = (),
    queued_rows: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per item with the columns the map colours by.

    Columns: ``id, x, y, label, predicted, uncertainty, score, cluster, annotator, rare, queued``.
    Missing values are '' for text columns and NaN for numbers, so every column has one dtype.
    ``rare`` marks items whose label (or, when unlabelled, prediction) is a rare class.
    """
    n = len(ids)
    text = lambda a: (np.full(n, "", dtype=object) if a is None
                      else np.where(pd.isna(a), "", a).astype(str).astype(object))
    label = text(labels)
    pred = text(predicted)
    rare_set = set(rare_classes)
    shown = np.where(label != "", label, pred)
    frame = pd.DataFrame({
        "id": np.asarray(ids, dtype=object),
        "x": np.asarray(xy[:, 0], dtype=np.float64),
        "y": np.asarray(xy[:, 1], dtype=np.float64),
        "label": label,
        "predicted": pred,
        "uncertainty": np.full(n, np.nan) if uncertainty is None else np.asarray(uncertainty, np.float64),
        "score": np.full(n, np.nan) if score is None else np.asarray(score, np.float64),
        "cluster": np.full(n, -1, np.int64) if cluster is None else np.asarray(cluster, np.int64),
        "annotator": text(annotator),
        "rare": np.fromiter((s in rare_set for s in shown), dtype=bool, count=n),
        "queued": np.zeros(n, dtype=bool),
    })
    if queued_rows is not None and len(queued_rows):
        frame.loc[np.asarray(queued_rows, dtype=np.int64), "queued"] = True
    return frame
