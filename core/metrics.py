"""Evaluation for imbalanced labelling: balanced accuracy, macro-F1, tail recall, discovery and
learning-curve summaries.

``tail_recall`` is the mean recall over the *tail third* of the classes: the third with the fewest
training labels (pass ``train_counts``) or an explicit ``tail_classes`` list; when neither is given,
the third with the smallest test support.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "classes_found",
    "evaluate",
    "evaluate_confusion",
    "headline",
    "wilson_interval",
    "with_recall_intervals",
    "labels_to_reach",
    "learning_curve_auc",
    "tail_classes_by_frequency",
]


def tail_classes_by_frequency(counts: Mapping[str, int], fraction: float = 1 / 3) -> list[str]:
    """The ``ceil(fraction * k)`` classes with the fewest items (ties broken by name)."""
    if not counts:
        return []
    k = max(1, int(np.ceil(fraction * len(counts))))
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (kv[1], str(kv[0])))][:k]


def evaluate(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    classes: Sequence[str],
    tail_classes: Iterable[str] | None = None,
    train_counts: Mapping[str, int] | None = None,
) -> dict:
    """Metrics of predictions ``y_pred`` against ``y_true`` over ``classes`` (names).

    Returns ``balanced_accuracy`` (mean recall over classes present in ``y_true``), ``macro_f1``
    (over the same classes), ``per_class`` {name: {precision, recall, f1, support}},
    ``tail_recall``, ``tail_classes``, ``accuracy``, ``n`` and ``confusion`` (nested list, rows =
    true class, columns = predicted class, in ``classes`` order).
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({len(y_true)} vs {len(y_pred)})")
    classes = [str(c) for c in classes]
    k = len(classes)
    t, p = _class_codes(y_true, classes), _class_codes(y_pred, classes)
    if (t < 0).any():
        missing = sorted(set(np.unique(y_true[t < 0].astype(str))))
        raise ValueError(f"y_true holds classes not in 'classes': {missing[:5]}")
    confusion = np.zeros((k, k), dtype=np.int64)
    ok = p >= 0
    np.add.at(confusion, (t[ok], p[ok]), 1)
    support = np.bincount(t, minlength=k)
    return evaluate_confusion(confusion, classes, tail_classes, train_counts, support=support)


def _class_codes(values: np.ndarray, classes: list[str]) -> np.ndarray:
    """Index of each value's class name in ``classes`` (-1 when absent), hashed by pandas: 10^6
    labels in a few hundredths of a second."""
    import pandas as pd

    names = pd.Series(values, dtype=object)
    if not all(isinstance(v, str) for v in names.iloc[:64]):
        names = names.astype(str)
    return pd.Index(classes, dtype=object).get_indexer(names).astype(np.int64)


def evaluate_confusion(
    confusion: np.ndarray,
    classes: Sequence[str],
    tail_classes: Iterable[str] | None = None,
    train_counts: Mapping[str, int] | None = None,
    support: np.ndarray | None = None,
) -> dict:
    """:func:`evaluate` from a confusion matrix (rows = true, columns = predicted, in ``classes``
    order), e.g. counts merged from the parts of a pool scored on a cluster. ``support`` (items
    per true class) defaults to the row sums."""
    classes = [str(c) for c in classes]
    confusion = np.asarray(confusion, dtype=np.int64)
    index = {c: i for i, c in enumerate(classes)}
    support = confusion.sum(axis=1) if support is None else np.asarray(support)
    n = int(support.sum())
    tp = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    if tail_classes is None:
        counts = (
            dict(train_counts)
            if train_counts is not None
            else {c: int(s) for c, s in zip(classes, support) if s > 0}
        )
        counts = {c: counts.get(c, 0) for c in classes if present[index[c]]}
        tail = tail_classes_by_frequency(counts)
    else:
        tail = [str(c) for c in tail_classes if str(c) in index and present[index[str(c)]]]
    tail_idx = [index[c] for c in tail]
    return {
        "n": n,
        "accuracy": float(tp.sum() / max(n, 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "tail_recall": float(recall[tail_idx].mean()) if tail_idx else 0.0,
        "tail_classes": tail,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for c, i in index.items()
        },
        "confusion": confusion.tolist(),
        "classes": classes,
    }


def classes_found(labels: Iterable, classes: Iterable[str] | None = None) -> int:
    """How many distinct classes appear among ``labels`` (``None`` entries ignored)."""
    found = {str(v) for v in labels if v is not None}
    if classes is not None:
        found &= {str(c) for c in classes}
    return len(found)


def learning_curve_auc(
    n_labels: Sequence[float],
    values: Sequence[float],
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    """Area under a learning curve divided by its label range (trapezoids), so it is in [0, 1]
    for metrics in [0, 1]: the mean metric over the budget. ``lo``/``hi`` clip the range."""
    x = np.asarray(n_labels, dtype=float)
    y = np.asarray(values, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("n_labels and values must be non-empty and of equal length")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    lo = x[0] if lo is None else lo
    hi = x[-1] if hi is None else hi
    if hi <= lo:
        return float(y[-1])
    grid = np.union1d(x[(x >= lo) & (x <= hi)], [lo, hi])
    yy = np.interp(grid, x, y)
    return float(np.sum((grid[1:] - grid[:-1]) * (yy[1:] + yy[:-1]) / 2) / (hi - lo))


def labels_to_reach(n_labels: Sequence[float], values: Sequence[float], target: float) -> float:
    """Fewest labels at which the curve first reaches ``target``; ``inf`` if it never does."""
    for x, y in zip(n_labels, values):
        if y >= target:
            return float(x)
    return float("inf")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (scipy's); ``None`` when ``n`` is 0.

    Honest for small counts: 1 of 1 gives about (0.21, 1.0), not (1.0, 1.0).
    """
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def with_recall_intervals(metrics: dict, confidence: float = 0.95) -> dict:
    """Add ``recall_ci: [low, high]`` (Wilson) to each class of ``metrics['per_class']``."""
    for values in metrics.get("per_class", {}).values():
        support = int(values.get("support", 0))
        hits = int(round(values.get("recall", 0.0) * support))
        interval = wilson_interval(hits, support, confidence)
        values["recall_ci"] = None if interval is None else [interval[0], interval[1]]
    metrics["confidence"] = confidence
    return metrics


HEADLINE_SOURCES = (
    ("ground_truth", "on {n:,} unlabelled items with ground truth"),
    ("test_split", "on the {n:,} items of the expert-labelled test split"),
    ("cross_validated", "cross-validated on {n:,} expert labels"),
)
FEW_LABELS = 50
"""Below this many evaluated items a headline says that the figure is rough."""


def headline(ground_truth: dict | None, test_split: dict | None,
             cross_validated: dict | None) -> dict:
    """The most trustworthy measurement available — ground truth, then the expert-labelled test
    split, then cross-validation — with how many items it rests on and a sentence saying so.

    Returns ``{source, balanced_accuracy, tail_recall, n, text}``; ``source`` is None (and
    ``text`` says why) when nothing can be measured yet.
    """
    given = {"ground_truth": ground_truth, "test_split": test_split, "cross_validated": cross_validated}
    for source, where in HEADLINE_SOURCES:
        m = given[source]
        if not m or m.get("evaluable") is False or not isinstance(m.get("balanced_accuracy"), float):
            continue
        n = int(m.get("n_evaluated", m.get("n", 0)))
        text = f"balanced accuracy {m['balanced_accuracy']:.3f} " + where.format(n=n)
        if isinstance(m.get("tail_recall"), float):
            text += f"; tail recall {m['tail_recall']:.3f}"
        if source == "cross_validated" and m.get("folds"):
            text += f" ({m['folds']} folds)"
        if n < FEW_LABELS:
            text += f" — only {n} items: a rough figure"
        return {"source": source, "balanced_accuracy": m["balanced_accuracy"],
                "tail_recall": m.get("tail_recall"), "n": n, "text": text}
    reason = (cross_validated or {}).get("reason", "not enough labels to measure the model")
    return {"source": None, "balanced_accuracy": None, "tail_recall": None, "n": 0,
            "text": f"not measured yet: {reason}"}
