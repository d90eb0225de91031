"""Is a probability of 0.8 right 80 % of the time? Reliability diagrams and expected calibration
error (ECE), per class, one class against the rest.

Every item is weighted so that each class present weighs the same: the labelled items of an
active-learning project (and a curated test split) are not a random sample of the pool, and the
imbalance-aware learners aim at *balanced* posteriors; a class-balanced ECE measures exactly that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.calibration import balanced_weights

DEFAULT_BINS = 10

__all__ = ["calibration_report", "class_reliability", "ece_by_class"]


def class_reliability(proba: np.ndarray, codes: np.ndarray, k: int, *,
                      bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Reliability of class ``k``: ``{"ece": float, "bins": [[mean p, observed share, weight],
    ...]}`` over equal-width bins of ``proba[:, k]`` (empty bins left out)."""
    proba = np.asarray(proba, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    weight = balanced_weights(codes, proba.shape[1])
    p = proba[:, k]
    hit = (codes == k).astype(np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    ece, out = 0.0, []
    for b in range(bins):
        inside = which == b
        w = float(weight[inside].sum())
        if w <= 0:
            continue
        mean_p = float(np.sum(weight[inside] * p[inside]) / w)
        share = float(np.sum(weight[inside] * hit[inside]) / w)
        ece += w * abs(mean_p - share)
        out.append([round(mean_p, 6), round(share, 6), round(w, 6)])
    return {"ece": float(ece), "bins": out}


def calibration_report(before: np.ndarray, after: np.ndarray, y: np.ndarray,
                       classes: tuple[str, ...] | list[str], *, source: str, method: str,
                       bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Per class ECE and reliability bins of held-out probabilities ``before`` and ``after``
    calibration, for true labels ``y`` (class names; items of classes the model does not know
    are left out). ``{"source", "method", "n", "per_class": {class: {"ece_before", "ece_after",
    "before": bins, "after": bins, "n"}}}``."""
    index = {c: j for j, c in enumerate(classes)}
    y = np.asarray(y, dtype=object).astype(str)
    known = np.array([v in index for v in y], dtype=bool)
    codes = np.array([index[v] for v in y[known]], dtype=np.int64)
    before, after = np.asarray(before)[known], np.asarray(after)[known]
    per_class: dict[str, Any] = {}
    if len(codes) and len(np.unique(codes)) >= 2:
        for j, name in enumerate(classes):
            if not np.any(codes == j):
                continue  # no held-out item of this class: its calibration cannot be judged
            b = class_reliability(before, codes, j, bins=bins)
            a = class_reliability(after, codes, j, bins=bins)
            per_class[name] = {"ece_before": b["ece"], "ece_after": a["ece"],
                               "before": b["bins"], "after": a["bins"],
                               "n": int(np.sum(codes == j))}
    return {"source": source, "method": method, "n": int(len(codes)), "per_class": per_class}


def ece_by_class(report: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """``{class: {"ece_before", "ece_after"}}`` of a :func:`calibration_report` (metrics.json's
    ``calibration``; empty without a report)."""
    return {c: {"ece_before": v["ece_before"], "ece_after": v["ece_after"]}
            for c, v in ((report or {}).get("per_class") or {}).items()}
