"""Suspect labels: expert labels that the model, trained without them, finds hard to believe.

Out-of-fold probabilities of the labelled items (each predicted by a model that never saw its
label) feed cleanlab's confident learning: :func:`cleanlab.filter.find_label_issues` decides which
labels are likely wrong (per-class thresholds from the confident joint, so a rare class is not
flagged merely for being rare) and ranks them by cleanlab's self-confidence label quality score
(:func:`cleanlab.rank.get_label_quality_scores`). ``score`` is how suspicious a label is: one
minus that quality (the out-of-fold probability of the given label), highest first.

Which labels are checked: the ones the round cross-validates (every training label up to
``model.max_rows`` = 1,500 by default; beyond that every label of the classes below a common cap
and a seeded, class-balanced sample of the larger ones). Classes with a single label are never
tested, so they never appear.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

SUSPECT_COLUMNS = ("id", "label", "suggested", "score", "reason")
CONFIRM_ORIGIN = "confirm"  # an expert's "this label is right": the item stops being suspect

__all__ = ["CONFIRM_ORIGIN", "SUSPECT_COLUMNS", "find_suspects", "suspect_reason"]


def find_suspects(ids: np.ndarray, labels: np.ndarray, proba: np.ndarray,
                  classes: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Suspect labels, most suspicious first: one dict per flagged item with ``id``, ``label``,
    ``suggested`` (the class the model prefers), ``score`` (1 - out-of-fold probability of the
    label), ``p_label`` and ``p_suggested``.

    ``proba`` are out-of-fold probabilities (rows = ``ids``, columns = ``classes``). Only classes
    present among ``labels`` take part (cleanlab needs examples of every class it scores).
    """
    from cleanlab.filter import find_label_issues

    ids = np.asarray(ids, dtype=object)
    labels = np.asarray(labels, dtype=object).astype(str)
    proba = np.asarray(proba, dtype=np.float64)
    if len(ids) < 2 or proba.ndim != 2 or proba.shape[0] != len(ids):
        return []
    present = [c for c in classes if c in set(labels.tolist())]
    if len(present) < 2:
        return []
    cols = [list(classes).index(c) for c in present]
    p = np.maximum(proba[:, cols], 1e-12)
    p = p / p.sum(axis=1, keepdims=True)
    index = {c: j for j, c in enumerate(present)}
    codes = np.array([index[v] for v in labels], dtype=np.int64)
    with warnings.catch_warnings():  # few examples of a rare class: expected here
        warnings.simplefilter("ignore")
        ranked = find_label_issues(codes, p, return_indices_ranked_by="self_confidence",
                                   n_jobs=1)
    out = []
    for i in np.asarray(ranked, dtype=np.int64):
        others = p[i].copy()
        others[codes[i]] = -1.0
        best = int(np.argmax(others))
        out.append({"id": str(ids[i]), "label": present[codes[i]], "suggested": present[best],
                    "score": float(1.0 - p[i, codes[i]]), "p_label": float(p[i, codes[i]]),
                    "p_suggested": float(p[i, best])})
    out.sort(key=lambda r: (-r["score"], r["id"]))
    return out


def suspect_reason(row: Mapping[str, Any], annotator: str | None = None) -> str:
    """Why an item is suspect, in words: "labelled 7 by ann; model gives 3 at 0.94 out of fold"."""
    who = f" by {annotator}" if annotator else ""
    return (f"labelled {row['label']}{who}; model gives {row['suggested']} at "
            f"{row['p_suggested']:.2f} out of fold ({row['label']}: {row['p_label']:.2f})")
