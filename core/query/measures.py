"""Uncertainty measures: pure functions of a probability matrix ``proba`` of shape ``(n, k)``.

Every measure returns one float per row, oriented so that **larger means more informative**, except
:func:`margin`, which returns the gap between the two most likely classes (smaller means closer to
the decision boundary), because that is the quantity people know by that name.
"""

from __future__ import annotations

import numpy as np

__all__ = ["entropy", "least_confidence", "margin", "top_two", "vote_entropy"]


def top_two(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Indices and values of the two most likely classes per row: ``(i1, p1, i2, p2)``.

    With a single column the runner-up probability is 0 and its index is -1.
    """
    proba = np.asarray(proba, dtype=np.float64)
    n, k = proba.shape
    rows = np.arange(n)
    if k == 1:
        return np.zeros(n, int), proba[:, 0], np.full(n, -1), np.zeros(n)
    part = np.argpartition(-proba, 1, axis=1)[:, :2]
    first_is_top = proba[rows, part[:, 0]] >= proba[rows, part[:, 1]]
    i1 = np.where(first_is_top, part[:, 0], part[:, 1])
    i2 = np.where(first_is_top, part[:, 1], part[:, 0])
    return i1, proba[rows, i1], i2, proba[rows, i2]


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """``1 - max_c p(c|x)``: 0 for a certain prediction, up to ``1 - 1/k``."""
    proba = np.asarray(proba, dtype=np.float64)
    return 1.0 - proba.max(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """``p(first) - p(second)``: the gap between the two most likely classes (small = uncertain)."""
    _, p1, _, p2 = top_two(proba)
    return p1 - p2


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats, ``-sum_c p log p`` (0 log 0 = 0)."""
    proba = np.asarray(proba, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(proba > 0, np.log(np.where(proba > 0, proba, 1.0)), 0.0)
    return -(proba * logs).sum(axis=1)


def vote_entropy(votes: np.ndarray, n_classes: int) -> np.ndarray:
    """Entropy (nats) of the committee's vote distribution.

    ``votes`` is an integer array ``(n_members, n)`` of predicted class indices in ``[0, n_classes)``.
    """
    votes = np.asarray(votes)
    if votes.ndim != 2:
        raise ValueError(f"votes must be (n_members, n), got shape {votes.shape}")
    n_members, n = votes.shape
    counts = np.zeros((n, n_classes), dtype=np.float64)
    for member in votes:
        np.add.at(counts, (np.arange(n), member), 1.0)
    return entropy(counts / max(n_members, 1))
