"""Suspect labels: expert labels that the model, trained without them, finds hard to believe.

Out-of-fold probabilities of the labelled items (each predicted by a model that never saw its
label) feed cleanlab's confident learning: :func:`cleanlab.filter.find_label_issues` decides which
labels are likely wrong (per-class thresholds from the confident joint, so a rare class is not
flagged merely for being rare). They are ranked by ``score``, the probability that the label is
wrong given the model and the annotators' error pattern: the labels' joint with the true classes
that confident learning estimates (:func:`cleanlab.count.estimate_joint`, ``Q[given, true]``)
turns the out-of-fold probabilities ``p`` (balanced posteriors, so ``p_j`` stands for the
likelihood of class ``j``) into ``P(true = j | given, item) ∝ Q[given, j] · p_j``, and ``score =
1 - P(true = given | given, item)``. Under errors without a pattern (a flat off-diagonal) this
orders much like one minus the out-of-fold probability of the label (the ranking before); when
one class is mistaken for another, a label on an item that looks like a class often mistaken for
it ranks above a disagreement between classes the annotators are not seen to confuse.

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

MAX_LABEL_ERROR = 0.3  # an estimate above this says more about the model than about the labels

__all__ = ["CONFIRM_ORIGIN", "MAX_LABEL_ERROR", "SUSPECT_COLUMNS", "estimated_label_error",
           "find_suspects", "label_error_probability", "suspect_reason"]


def find_suspects(ids: np.ndarray, labels: np.ndarray, proba: np.ndarray,
                  classes: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Suspect labels, most suspicious first: one dict per flagged item with ``id``, ``label``,
    ``suggested`` (the class the model prefers), ``score`` (the probability that the label is
    wrong, see the module text), ``p_label`` and ``p_suggested`` (out-of-fold probabilities).

    ``proba`` are out-of-fold probabilities (rows = ``ids``, columns = ``classes``). Only classes
    present among ``labels`` take part (cleanlab needs examples of every class it scores).
    """
    from cleanlab.count import estimate_joint
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
        flagged = np.flatnonzero(find_label_issues(codes, p, n_jobs=1))
        wrong = label_error_probability(codes, p, estimate_joint(codes, p))
    out = []
    for i in flagged:
        others = p[i].copy()
        others[codes[i]] = -1.0
        best = int(np.argmax(others))
        out.append({"id": str(ids[i]), "label": present[codes[i]], "suggested": present[best],
                    "score": float(wrong[i]), "p_label": float(p[i, codes[i]]),
                    "p_suggested": float(p[i, best])})
    out.sort(key=lambda r: (-r["score"], r["id"]))
    return out


def estimated_label_error(labels: np.ndarray, proba: np.ndarray,
                          classes: tuple[str, ...] | list[str]) -> float:
    """The annotators' error rate as confident learning sees it: the share of the labels with
    out-of-fold probabilities ``proba`` that :func:`find_suspects` flags, at most
    :data:`MAX_LABEL_ERROR` (0 for fewer than two labels)."""
    if len(labels) < 2:
        return 0.0
    flagged = find_suspects(np.arange(len(labels)).astype(str), labels, proba, classes)
    return min(len(flagged) / len(labels), MAX_LABEL_ERROR)


def label_error_probability(codes: np.ndarray, proba: np.ndarray,
                            joint: np.ndarray) -> np.ndarray:
    """``1 - P(true = given | given, item)`` per row: ``P(true = j | given, item) ∝ joint[given, j]
    · proba[j]`` (``joint``: the estimated joint of given and true labels, ``proba``: balanced
    posteriors). A row whose weights are all zero falls back to ``1 - proba[given]``."""
    rows = np.arange(len(codes))
    weight = np.asarray(joint, dtype=np.float64)[codes] * proba
    total = weight.sum(axis=1)
    fallback = 1.0 - proba[rows, codes]
    with np.errstate(invalid="ignore", divide="ignore"):
        wrong = 1.0 - weight[rows, codes] / total
    return np.clip(np.where(total > 0, wrong, fallback), 0.0, 1.0)


def suspect_reason(row: Mapping[str, Any], annotator: str | None = None) -> str:
    """Why an item is suspect, in words: "labelled 7 by ann; model gives 3 at 0.94 out of fold"."""
    who = f" by {annotator}" if annotator else ""
    return (f"labelled {row['label']}{who}; model gives {row['suggested']} at "
            f"{row['p_suggested']:.2f} out of fold ({row['label']}: {row['p_label']:.2f})")
