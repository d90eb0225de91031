"""One training round, shared by the dashboard's Session and ``tailwise retrain``.

A round takes a snapshot of the current labels, builds a fresh model from the project's settings
(``auto`` chooses the learner by cross-validation, keeping the last round's choice unless a
challenger is clearly better), fits it on the labelled rows of the embedding, predicts the whole
pool and measures the result: on the held-out ground-truth column when the data has one,
otherwise by out-of-fold predictions on (a bounded, stratified subset of) the expert labels. Items the experts labelled into the *test* split are never
trained on (callers pass them apart as ``test_labels``); the model is measured on them separately,
with a confidence interval for each class's recall.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.data.base import Dataset
from core.errors import ModelError
from core.models.selection import (
    MAX_FIT_LABELS,
    EarlierOOF,
    ModelChoice,
    balanced_subset,
    positions_in,
)
from core.project import AutoConfig, ProjectConfig

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
    model_choice: ModelChoice | None = None  # model.kind auto: which learner and why
    cv_metrics: dict[str, Any] = field(default_factory=dict)  # out-of-fold, on expert labels
    # Out-of-fold probabilities of (a bounded subset of) the labelled items: ids and (m, k) rows.
    oof_ids: np.ndarray | None = None
    oof_proba: np.ndarray | None = None
    oof_at: int = 0  # the label count they were computed at (model.kind auto reuses them a while)
    fit_note: str = ""  # set when the fit used a class-balanced subsample of plentiful labels
    # Trust report (core.quality): suspect labels (most suspicious first), calibration before and
    # after on held-out labels, prevalence of each class in the unlabelled pool, stopping guidance.
    suspects: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    prevalence: dict[str, dict[str, float]] | None = None
    prevalence_details: dict[str, Any] | None = None
    stopping: dict[str, Any] | None = None


def training_rows(dataset: Dataset, labels: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and class names of the labelled items that exist in ``dataset`` (others are ignored),
    in row order."""
    from itertools import repeat

    # C loops (map over dict.get): 4 x 10^5 labels in tens of milliseconds, not seconds
    found = np.fromiter(map(dataset._index.get, labels, repeat(-1)), dtype=np.int64,
                        count=len(labels))
    y = np.empty(len(labels), dtype=object)
    y[:] = list(labels.values())
    known = found >= 0
    order = np.argsort(found[known], kind="stable")
    return found[known][order], y[known][order]


def fit_labelled(project: ProjectConfig, x: np.ndarray, y: np.ndarray,
                 x_unlabelled: np.ndarray | None = None, previous: ModelChoice | None = None,
                 earlier_oof: EarlierOOF | None = None, keys: np.ndarray | None = None):
    """A fresh model of the project's kind fitted on labelled rows ``x, y`` (head classes
    subsampled by :func:`balanced_subset` when labels are plentiful): what every retrain does,
    in the dashboard, headless and on a cluster. ``previous`` is the last round's learner choice
    (``model.kind: auto``), which keeps it stable, and ``earlier_oof`` out-of-fold predictions
    (rows into ``x``) it may reuse; the out-of-fold rows of an ``auto`` model index ``x``.
    ``keys`` (the labels' pool rows) keep the head classes' subsample stable between rounds."""
    from core.models import build_model  # torch is heavy: import on first use

    keep = balanced_subset(y, project.seed, keys=keys)
    subset = len(keep) < len(y)
    if earlier_oof is not None and subset:
        earlier_oof = earlier_oof.subset(keep)
    model = build_model(project.model, seed=project.seed, previous=previous,
                        earlier_oof=earlier_oof)
    kw = {} if x_unlabelled is None or not len(x_unlabelled) else {"X_unlabelled": x_unlabelled}
    model.fit(x[keep] if subset else x, y[keep] if subset else y, **kw)
    if subset:
        if getattr(model, "oof_rows_", None) is not None:
            model.oof_rows_ = keep[model.oof_rows_]
        model.fit_note_ = subsample_note(len(y), y[keep])
    return model


def subsample_note(n_labels: int, y_fit: np.ndarray) -> str:
    """What the trust report says of a fit on :func:`balanced_subset` (plentiful labels)."""
    counts = np.unique(np.asarray(y_fit).astype(str), return_counts=True)[1]
    return (f"fitted on a class-balanced subsample of {len(y_fit):,} of the {n_labels:,} "
            f"labels (above {MAX_FIT_LABELS:,} labels: at most {int(counts.max()):,} per class, "
            "every label of the smaller classes kept)")


def check_trainable(y: np.ndarray) -> None:
    """Raise a ModelError saying what to do when the labels cannot train a classifier."""
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        have = f"only class {present[0]!r} is labelled" if present else "nothing is labelled yet"
        raise ModelError(f"cannot train: {have}; label items of at least two classes first")


def check_round(dataset: Dataset, labels: dict[str, str],
                test_labels: dict[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The training rows and classes of a round, or a ModelError saying why there can be none
    (fewer than two classes, an item in both splits): cheap, so callers can refuse a round
    before starting anything."""
    if test_labels and not set(test_labels).isdisjoint(labels):
        both = sorted(set(test_labels) & set(labels))
        raise ModelError(f"items {both[:5]} are in both the training and the test labels")
    rows, y = training_rows(dataset, labels)
    check_trainable(y)
    return rows, y


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
    previous: ModelChoice | None = None,
    progress: Progress | None = None,
    test_labels: dict[str, str] | None = None,
    learned_embedding: bool | None = None,
    earlier: ModelState | None = None,
) -> ModelState:
    """Fit a fresh model on the labelled rows and predict the whole pool (float32, in chunks).

    ``labels`` are the training labels only; ``test_labels`` (the test split) are measured, never
    fitted: an item in both is refused. ``previous`` is the last round's learner choice
    (``model.kind: auto``). The model's penultimate layer over the pool (``learned_embedding``)
    is computed only when something shows it: by default when the encoder is ``model``.
    ``earlier`` (the last round's state, same settings) lends its out-of-fold predictions to an
    ``auto`` model while the labels grew by less than ``oof_growth``.
    """
    from core.scoring import predict_rows

    report = progress or (lambda done, total, msg: None)
    rows, y = check_round(dataset, labels, test_labels)
    kind = project.model.kind
    what = "choosing the learner and training" if kind == "auto" else f"training {kind}"
    report(0, 3, f"{what} on {len(rows):,} labels")
    start = time.perf_counter()
    unlabelled = np.setdiff1d(np.arange(len(dataset)), rows, assume_unique=True)
    model = fit_labelled(project, embedding[rows], y, previous=previous,
                         earlier_oof=earlier_oof(project, dataset, rows, earlier), keys=rows,
                         **_unlabelled_kw(project, embedding, unlabelled, len(rows)))
    seconds = time.perf_counter() - start
    choice = getattr(model, "choice_", None)
    fit_note = getattr(model, "fit_note_", "")
    if choice is not None and fit_note:  # the model panel and metrics.json say so
        choice = model.choice_ = replace(choice, reason=f"{choice.reason}; {fit_note}")
    report(1, 3, f"predicting {len(dataset):,} items with {choice.chosen if choice else kind}")
    proba, best = predict_rows(model, embedding)
    classes = tuple(str(c) for c in model.classes_)
    predicted = np.asarray(classes, dtype=object)[best]
    if learned_embedding is None:
        learned_embedding = project.encoder.kind == "model"
    learned = model.embed(embedding) if learned_embedding and hasattr(model, "embed") else None
    report(2, 3, "measuring")
    tails = tail_classes(project, y)
    truth = ground_truth_metrics(dataset, rows, y, best, classes, tails)
    # Out-of-fold predictions every round: suspects, calibration and prevalence rest on them.
    oof_rows, oof_proba = out_of_fold(project, model, embedding[rows], y)
    cv = oof_metrics(y, (oof_rows, oof_proba, classes), tails)
    metrics = truth or dict(cv)
    if fit_note:
        metrics["fit_note"] = fit_note
    if choice is not None:
        metrics["model_choice"] = choice.to_dict()
    test_metrics = test_split_metrics(project, dataset, test_labels or {}, y, predicted)
    quality = _assess(project, dataset, embedding, model, classes, proba, rows, y,
                      (oof_rows, oof_proba), test_labels or {})
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
        model_choice=choice,
        cv_metrics=cv,
        oof_ids=None if oof_rows is None else dataset.ids[rows[oof_rows]],
        oof_proba=oof_proba,
        oof_at=int(getattr(model, "oof_at_", len(rows))),
        fit_note=fit_note,
        suspects=quality.suspects,
        calibration=quality.calibration,
        prevalence=quality.prevalence,
        prevalence_details=quality.prevalence_details,
    )


def earlier_oof(project: ProjectConfig, dataset: Dataset, rows: np.ndarray,
                earlier: ModelState | None) -> EarlierOOF | None:
    """The out-of-fold predictions of ``earlier`` (a round of the same model settings) on the
    items still labelled, with rows into this round's labelled ``rows``; None when there are
    none to lend (another model kind or settings, no predictions)."""
    choice = None if earlier is None else earlier.model_choice
    if (choice is None or earlier.oof_ids is None or earlier.oof_proba is None
            or not earlier.oof_at or getattr(earlier.model, "config", None) != project.model):
        return None
    index = dataset._index
    at = np.fromiter((index.get(str(i), -1) for i in earlier.oof_ids.tolist()), dtype=np.int64,
                     count=len(earlier.oof_ids))
    where, ok = positions_in(rows, at)
    return EarlierOOF(choice.chosen, tuple(earlier.classes), where[ok],
                      np.asarray(earlier.oof_proba)[ok], int(earlier.oof_at))


def _assess(project: ProjectConfig, dataset: Dataset, embedding: np.ndarray, model: Any,
            classes: tuple[str, ...], proba: np.ndarray, rows: np.ndarray, y: np.ndarray,
            oof: tuple, test_labels: dict[str, str]):
    """The round's trust report (:func:`core.quality.round.assess_round`)."""
    from core.quality.round import assess_round

    test_rows, test_y = training_rows(dataset, test_labels)
    labelled = np.zeros(len(dataset), dtype=bool)
    labelled[rows] = True
    labelled[test_rows] = True
    return assess_round(kind=project.model.kind, model=model, classes=classes, ids=dataset.ids,
                        embedding=embedding, proba=proba, rows=rows, y=y.astype(str), oof=oof,
                        ground_truth=dataset.ground_truth, test=(test_rows, test_y),
                        unlabelled=np.flatnonzero(~labelled), seed=project.seed,
                        declared=tuple(project.class_names))


SPREADING_ROWS = 3_000  # unlabelled rows label spreading (model: auto, few labels) works on


def _unlabelled_kw(project: ProjectConfig, embedding: np.ndarray, unlabelled: np.ndarray,
                   n_labelled: int = 0) -> dict:
    """The unlabelled rows a model learns from: every one for the MLP's pseudo-labels, a seeded
    sample for ``auto``'s label spreading while fewer than ``spreading_labels`` are labelled."""
    if not len(unlabelled):
        return {}
    if getattr(project.model, "pseudo_label", False):
        return {"x_unlabelled": embedding[unlabelled]}
    if project.model.kind == "auto" and n_labelled < project.model.spreading_labels:
        rng = np.random.default_rng(project.seed)
        sample = unlabelled if len(unlabelled) <= SPREADING_ROWS else np.sort(
            rng.choice(unlabelled, SPREADING_ROWS, replace=False))
        return {"x_unlabelled": np.asarray(embedding[sample])}
    return {}


def ground_truth_metrics(dataset: Dataset, rows: np.ndarray, y: np.ndarray, best: np.ndarray,
                         classes: tuple[str, ...], tails: list[str]) -> dict[str, Any] | None:
    """Metrics on the unlabelled rows with a ground-truth value, or None without ground truth.
    ``best`` is each item's predicted class as an index into the model's ``classes``."""
    import pandas as pd

    from core.metrics import evaluate_confusion

    if dataset.ground_truth is None:
        return None
    names, codes = _truth_codes(dataset.ground_truth)
    held_out = codes >= 0
    held_out[rows] = False
    if not held_out.any():
        return None
    # Integer codes all the way (the ground truth hashed once per pool, the predictions are
    # indices already): no pass over 10^6 names per retrain.
    truth = codes[held_out]
    present = np.bincount(truth, minlength=len(names)) > 0
    every = sorted(set(names[present].tolist()) | {str(c) for c in pd.unique(y)})
    where = {c: i for i, c in enumerate(every)}
    k = len(every)
    t = np.array([where.get(str(c), -1) for c in names], dtype=np.int64)[truth]
    p = np.array([where.get(str(c), -1) for c in classes], dtype=np.int64)[best[held_out]]
    ok = p >= 0
    confusion = np.bincount(t[ok] * k + p[ok], minlength=k * k).reshape(k, k)
    metrics = evaluate_confusion(confusion, every, tails, support=np.bincount(t, minlength=k))
    metrics.update(source="ground_truth", n_evaluated=int(held_out.sum()))
    return metrics


_TRUTH_CODES: dict[int, tuple] = {}  # id(ground truth array) -> (weak reference, names, codes)


def _truth_codes(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(names, codes)``: the distinct ground-truth values as strings and each item's index
    into them (-1: no ground truth), computed once per ground-truth array (it never changes)."""
    import weakref

    import pandas as pd

    hit = _TRUTH_CODES.get(id(truth))
    if hit is not None and hit[0]() is truth:
        return hit[1], hit[2]
    known = truth != None  # noqa: E711  (object array)
    codes = np.full(len(truth), -1, dtype=np.int64)
    found, uniques = pd.factorize(truth[known])
    codes[known] = found
    names = np.array([str(u) for u in uniques], dtype=object)
    for key in [key for key, value in _TRUTH_CODES.items() if value[0]() is None]:
        del _TRUTH_CODES[key]
    _TRUTH_CODES[id(truth)] = (weakref.ref(truth), names, codes)
    return names, codes


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
    metrics.update(source="test_split", n_evaluated=len(truth))
    return with_recall_intervals(metrics)


def out_of_fold(project: ProjectConfig, model: Any, x: np.ndarray,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, proba)``: out-of-fold probabilities of the labelled items ``x, y`` (a bounded,
    stratified subset; ``rows`` index ``x``), columns in the fitted model's class order.

    ``auto`` computed them when it compared the learners; otherwise the learner it chose (or the
    project's model) is cross-validated here, on at most ``max_rows`` labels.
    """
    from core.models import build_model
    from core.models.selection import out_of_fold_predictions

    if getattr(model, "oof_proba_", None) is not None:
        return model.oof_rows_, model.oof_proba_
    config = project.model
    if config.kind == "auto":  # cross-validate the learner it chose, not the choice itself
        config = config.learner_config(model.chosen)
    bounds = project.model if project.model.kind == "auto" else AutoConfig()
    rows, proba, _ = out_of_fold_predictions(
        lambda: build_model(config, seed=project.seed), x, y, kind=config.kind,
        folds=bounds.folds, max_rows=bounds.max_rows, seed=project.seed)
    return rows, proba


def oof_metrics(y: np.ndarray, oof: tuple[np.ndarray, np.ndarray, tuple[str, ...]],
                tails: list[str]) -> dict[str, Any]:
    """Metrics of out-of-fold predictions ``oof = (rows into y, proba, classes)``.

    Classes with a single label are never tested (listed in ``not_evaluable``); when no tail class
    has two labels yet, ``tail_recall`` is None (head classes never stand in for the rare ones).
    """
    from core.metrics import evaluate

    y = y.astype(str)
    names, counts = np.unique(y, return_counts=True)
    not_evaluable = sorted(names[counts < 2].tolist())
    rows, proba, classes = oof
    tested = sorted(set(y[rows].tolist()))
    if len(rows) == 0 or len(tested) < 2:
        return {"source": "cv", "evaluable": False, "not_evaluable": not_evaluable,
                "reason": "cross-validation needs two classes with at least two labels each"}
    predicted = np.asarray(classes, dtype=object)[np.asarray(proba).argmax(axis=1)].astype(str)
    measured_tails = [t for t in tails if t in set(tested)]
    metrics = evaluate(y[rows], predicted, sorted(set(tested) | set(predicted.tolist())),
                       tail_classes=measured_tails)
    if not measured_tails:  # never stand in head classes for the rare ones
        metrics.update(tail_recall=None,
                       tail_note="no tail class has two labels yet: " + ", ".join(tails))
    metrics.update(source="cv", evaluable=True, not_evaluable=not_evaluable,
                   n_evaluated=len(rows))
    return metrics


def cross_validated_metrics(project: ProjectConfig, x: np.ndarray, y: np.ndarray,
                            tails: list[str], model: Any = None) -> dict[str, Any]:
    """Out-of-fold metrics of the project's model (or of the learner ``model`` stands for) on the
    labelled items ``x, y``; see :func:`oof_metrics`."""
    from core.models import build_model

    if model is None:
        model = build_model(project.model, seed=project.seed)
        if project.model.kind == "auto":  # no fitted choice to reuse: choose on these labels
            model.fit(x, y)
    rows, proba = out_of_fold(project, model, x, y)
    return oof_metrics(y, (rows, proba, tuple(np.unique(y.astype(str)).tolist())), tails)


def cv_metrics_of(project: ProjectConfig, dataset: Dataset, embedding: np.ndarray,
                  state: ModelState, labels: dict[str, str]) -> dict[str, Any]:
    """The state's cross-validated metrics, computed now if its round did not need them."""
    if state.cv_metrics:
        return state.cv_metrics
    rows, y = training_rows(dataset, labels)
    return cross_validated_metrics(project, embedding[rows], y, tail_classes(project, y),
                                   model=state.model)


def check_features(x: np.ndarray) -> None:
    """Refuse NaN/inf in an embedding with a message that says where they came from."""
    bad = ~np.isfinite(x)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ModelError(f"the embedding has NaN or infinite values (first at row {row}); "
                         "check the encoder settings and the input features")
