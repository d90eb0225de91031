"""Turn a balanced labelled set into a long-tailed one (the usual benchmark protocol).

Class sizes follow the exponential profile ``n_c = n_max * IR ** (-rank / (C - 1))`` (Cui et al.
2019; Cao et al. 2019), so the largest class has ``n_max`` items and the smallest ``n_max / IR``.
Which class gets which rank is drawn from ``rng``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.errors import DataError


def long_tail_counts(n_classes: int, n_max: int, imbalance_ratio: float) -> np.ndarray:
    """Items per rank (largest first) of an exponential long tail; every class keeps at least 1."""
    if n_classes < 1:
        raise DataError("a long tail needs at least one class")
    if imbalance_ratio < 1:
        raise DataError(f"imbalance_ratio must be >= 1, got {imbalance_ratio}")
    if n_max < 1:
        raise DataError(f"n_max must be >= 1, got {n_max}")
    if n_classes == 1:
        return np.array([n_max], dtype=np.int64)
    ranks = np.arange(n_classes)
    counts = n_max * float(imbalance_ratio) ** (-ranks / (n_classes - 1))
    return np.maximum(1, np.floor(counts + 0.5)).astype(np.int64)


def long_tail_indices(
    y: Sequence | np.ndarray,
    imbalance_ratio: float,
    rng: np.random.Generator,
    *,
    n_max: int | None = None,
    class_order: Sequence | None = None,
) -> np.ndarray:
    """Sorted row indices of ``y`` that form an exponential long tail with the given ratio.

    ``n_max`` (default: the size of the smallest class, so every class can fill its quota) is the
    head size; ``class_order`` (default: a permutation drawn from ``rng``) lists the classes from
    head to tail. Items of each class are drawn without replacement from ``rng``.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if class_order is None:
        order = classes[rng.permutation(len(classes))]
    else:
        order = np.asarray(class_order)
        if sorted(order.tolist()) != sorted(classes.tolist()):
            raise DataError("class_order must list every class of y exactly once")
    head = int(counts.min()) if n_max is None else int(n_max)
    quotas = long_tail_counts(len(classes), head, imbalance_ratio)
    available = dict(zip(classes.tolist(), counts.tolist()))
    chosen = []
    for cls, quota in zip(order.tolist(), quotas.tolist()):
        if available[cls] < quota:
            raise DataError(
                f"class {cls!r} has {available[cls]} items, fewer than the {quota} "
                "its rank needs; lower n_max"
            )
        members = np.flatnonzero(y == cls)
        chosen.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(chosen))
