"""One training round, shared by the dashboard's Session and ``tailwise retrain``.

A round takes a snapshot of the current labels, builds a fresh model from the project's settings,
fits it on the labelled rows of the embedding, predicts the whole pool and measures the result:
on the held-out ground-truth column when the data has one, otherwise by stratified
cross-validation on the expert labels. Items the experts labelled into the *test* split are never
trained on (callers pass them apart as ``test_labels``); the model is measured on them separately,
with a confidence interval for each class's recall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data.base import Dataset
from core.errors import ModelError
from core.project import ProjectConfig

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True, eq=False)
class ModelState:
    """The outcome of one successful training round."""

    model_version: int
    trained_at: float
    classes: tuple[str, ...]
    proba: np.ndarray  # (n, k) float32 calibrated class probabilities, columns = classes
    predicted: np.ndarray  # (n,) object: predicted class name
    uncertainty: np.ndarray  # (n,) 1 - max probability
    metrics: dict[str, Any]
    model: Any
    train_seconds: float
    n_labels: int
    learned_embedding: np.ndarray | None = None  # the model's penultimate layer, (n, m)
    label_counts: dict[str, int] = field(default_factory=dict)
    test_metrics: dict[str, Any] | None = None  # on the expert-labelled test split, if any


def training_rows(dataset: Dataset, labels: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and class names of the labelled items that exist in ``dataset`` (others are ignored)."""
    known = [(dataset._index[i], lab) for i, lab in labels.items() if i in dataset._index]
    known.sort()
    rows = np.fromiter((r for r, _ in known), dtype=np.int64, count=len(known))
    y = np.array([lab for _, lab in known], dtype=object)
    return rows, y


MAX_FIT_LABELS = 50_000  # above this, head classes are subsampled for the fit (class-balanced)


def balanced_subset(y: np.ndarray, seed: int, limit: int = MAX_FIT_LABELS) -> np.ndarray:
    """Sorted positions of at most ``limit`` labels to fit on: every label of the classes below a
    common cap, a seeded random ``cap`` of each larger (head) class. Rare classes keep all their
    labels; with plentiful labels the fit stays bounded whatever the label count."""
    n = len(y)
    if n <= limit:
        return np.arange(n)
    names, inverse, counts = np.unique(np.asarray(y).astype(str), return_inverse=True,
                                       return_counts=True)
    # The largest cap with sum(min(count, cap)) <= limit ("water filling").
    ordered = np.sort(counts)
    below = np.concatenate([[0], np.cumsum(ordered)[:-1]])
    caps = (limit - below) // np.maximum(len(ordered) - np.arange(len(ordered)), 1)
    fits = caps >= ordered
    cap = int(caps[np.argmin(fits)] if not fits.all() else ordered[-1])
    rng = np.random.default_rng(seed)
    keep = []
    for c in range(len(names)):
        members = np.flatnonzero(inverse == c)
        keep.append(members if len(members) <= cap else rng.choice(members, cap, replace=False))
    return np.sort(np.concatenate(keep))


def fit_labelled(project: ProjectConfig, x: np.ndarray, y: np.ndarray,
                 x_unlabelled: np.ndarray | None = None):
    """A fresh model of the project's kind fitted on labelled rows ``x, y`` (head classes
    subsampled by :func:`balanced_subset` when labels are plentiful): what every retrain does,
    in the dashboard, headless and on a cluster."""
    from core.models import build_model  # torch is heavy: import on first use

    keep = balanced_subset(y, project.seed)
    model = build_model(project.model, seed=project.seed)
    kw = {} if x_unlabelled is None or not len(x_unlabelled) else {"X_unlabelled": x_unlabelled}
    model.fit(x[keep] if len(keep) < len(y) else x, y[keep] if len(keep) < len(y) else y, **kw)
    return model


def check_trainable(y: np.ndarray) -> None:
    """Raise a ModelError saying what to do when the labels cannot train a classifier."""
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        have = f"only class {present[0]!r} is labelled" if present else "nothing is labelled yet"
        raise ModelError(f"cannot train: {have}; label items of at least two classes first")


def tail_classes(project: ProjectConfig, y: np.ndarray) -> list[str]:
    """Classes flagged rare in the project, else the least frequent third of the labelled ones."""
    rare = [c for c in project.rare_classes]
    if rare:
        return rare
    names, counts = np.unique(y.astype(str), return_counts=True)
    order = names[np.argsort(counts, kind="stable")]
    return order[: max(1, len(order) // 3)].tolist()


def train_round(
    project: ProjectConfig,
    dataset: Dataset,
    embedding: np.ndarray,
    labels: dict[str, str],
    *,
    model_version: int,
    progress: Progress | None = None,
    test_labels: dict[str, str] | None = None,
    learned_embedding: bool | None = None,
) -> ModelState:
    """Fit a fresh model on the labelled rows and predict the whole pool (float32, in chunks).

    ``labels`` are the training labels only; ``test_labels`` (the test split) are measured, never
    fitted: an item in both is refused. The model's penultimate layer over the pool
    (``learned_embedding``) is computed only when something shows it: by default when the encoder
    is ``model``.
    """
    from core.scoring import predict_rows

    report = progress or (lambda done, total, msg: None)
    if test_labels and not set(test_labels).isdisjoint(labels):
        both = sorted(set(test_labels) & set(labels))
        raise ModelError(f"items {both[:5]} are in both the training and the test labels")
    rows, y = training_rows(dataset, labels)
    check_trainable(y)
    report(0, 3, f"training {project.model.kind} on {len(rows):,} labels")
    start = time.perf_counter()
    unlabelled = np.setdiff1d(np.arange(len(dataset)), rows, assume_unique=True)
    model = fit_labelled(project, embedding[rows], y, **_unlabelled_kw(project, embedding, unlabelled))
    seconds = time.perf_counter() - start
    report(1, 3, f"predicting {len(dataset):,} items")
    proba, best = predict_rows(model, embedding)
    classes = tuple(str(c) for c in model.classes_)
    predicted = np.asarray(classes, dtype=object)[best]
    if learned_embedding is None:
        learned_embedding = project.encoder.kind == "model"
    learned = model.embed(embedding) if learned_embedding and hasattr(model, "embed") else None
    report(2, 3, "measuring")
    metrics = measure(project, dataset, embedding, rows, y, predicted)
    test_metrics = test_split_metrics(project, dataset, test_labels or {}, y, predicted)
    report(3, 3, f"model v{model_version} ready")
    names, counts = np.unique(y.astype(str), return_counts=True)
    return ModelState(
        model_version=model_version,
        trained_at=time.time(),
        classes=classes,
        proba=proba,
        predicted=predicted,
        uncertainty=1.0 - proba.max(axis=1),
        metrics=metrics,
        model=model,
        train_seconds=seconds,
        n_labels=len(rows),
        learned_embedding=None if learned is None else np.asarray(learned, dtype=np.float32),
        label_counts=dict(zip(names.tolist(), counts.tolist())),
        test_metrics=test_metrics,
    )


def _unlabelled_kw(project: ProjectConfig, embedding: np.ndarray, unlabelled: np.ndarray) -> dict:
    if getattr(project.model, "pseudo_label", False) and len(unlabelled):
        return {"x_unlabelled": embedding[unlabelled]}
    return {}


def measure(
    project: ProjectConfig,
    dataset: Dataset,
    embedding: np.ndarray,
    rows: np.ndarray,
    y: np.ndarray,
    predicted: np.ndarray,
) -> dict[str, Any]:
    """Ground-truth metrics on unlabelled rows when available, else cross-validated ones."""
    from core.metrics import evaluate

    tails = tail_classes(project, y)
    if dataset.ground_truth is not None:
        held_out = np.ones(len(dataset), dtype=bool)
        held_out[rows] = False
        held_out &= dataset.ground_truth != None
        if held_out.sum() > 0:
            truth = dataset.ground_truth[held_out].astype(str)
            classes = sorted(set(truth.tolist()) | set(y.astype(str).tolist()))
            metrics = evaluate(truth, predicted[held_out].astype(str), classes, tail_classes=tails)
            metrics.update(source="ground_truth", n_evaluated=int(held_out.sum()))
            return metrics
    return cross_validated_metrics(project, embedding[rows], y, tails)


def test_split_metrics(project: ProjectConfig, dataset: Dataset, test_labels: dict[str, str],
                       y_train: np.ndarray, predicted: np.ndarray) -> dict[str, Any] | None:
    """Metrics on the items experts labelled into the test split (None when there are none),
    with a Wilson 95 % interval for each class's recall: few rare items, wide intervals."""
    rows, y = training_rows(dataset, test_labels)
    if not len(rows):
        return None
    return test_metrics_of(project, y, predicted[rows], y_train)


def test_metrics_of(project: ProjectConfig, truth: np.ndarray, predicted: np.ndarray,
                    y_train: np.ndarray) -> dict[str, Any]:
    """:func:`test_split_metrics` of the test items' expert labels and predictions."""
    from core.metrics import evaluate, with_recall_intervals

    truth = truth.astype(str)
    classes = sorted(set(truth.tolist()) | set(y_train.astype(str).tolist()))
    metrics = evaluate(truth, predicted.astype(str), classes,
                       tail_classes=tail_classes(project, y_train))
    metrics.update(source="test_split", n_evaluated=int(len(truth)))
    return with_recall_intervals(metrics)


def cross_validated_metrics(project: ProjectConfig, x: np.ndarray, y: np.ndarray,
                            tails: list[str]) -> dict[str, Any]:
    """Stratified k-fold (k = min(5, smallest count)) over classes with at least two labels."""
    from sklearn.model_selection import StratifiedKFold

    from core.metrics import evaluate
    from core.models import build_model

    y = y.astype(str)
    names, counts = np.unique(y, return_counts=True)
    evaluable = names[counts >= 2]
    not_evaluable = sorted(names[counts < 2].tolist())
    keep = np.isin(y, evaluable)
    if len(evaluable) < 2:
        return {"source": "cv", "evaluable": False, "not_evaluable": not_evaluable,
                "reason": "cross-validation needs two classes with at least two labels each"}
    x, y = x[keep], y[keep]
    k = int(min(5, counts[counts >= 2].min()))
    predicted = np.empty(len(y), dtype=object)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=project.seed).split(x, y):
        fold = build_model(project.model, seed=project.seed)
        fold.fit(x[train], y[train])
        proba = fold.predict_proba(x[test])
        predicted[test] = np.asarray(fold.classes_, dtype=object)[np.asarray(proba).argmax(axis=1)]
    measured_tails = [t for t in tails if t in set(evaluable.tolist())]
    metrics = evaluate(y, predicted.astype(str), sorted(evaluable.tolist()),
                       tail_classes=measured_tails)
    if not measured_tails:  # never stand in head classes for the rare ones
        metrics.update(tail_recall=None,
                       tail_note="no tail class has two labels yet: " + ", ".join(tails))
    metrics.update(source="cv", folds=k, evaluable=True, not_evaluable=not_evaluable,
                   n_evaluated=int(len(y)))
    return metrics


def check_features(x: np.ndarray) -> None:
    """Refuse NaN/inf in an embedding with a message that says where they came from."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ModelError(f"the embedding has NaN or infinite values (first at row {row}); "
                         "check the encoder settings and the input features")
