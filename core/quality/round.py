"""The trust report of one training round: suspect labels, calibration before and after, and
prevalence of every class in the unlabelled pool (``ModelState.suspects``, ``.calibration``,
``.prevalence``), from the round's out-of-fold predictions and pool probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.quality.prevalence import adjusted_prevalence, prevalence_report
from core.quality.reliability import calibration_report
from core.quality.suspects import MAX_LABEL_ERROR, find_suspects

CALIBRATION_SAMPLE = 20_000  # held-out ground-truth rows a calibration report looks at, at most
MIN_TEST_ITEMS = 10

__all__ = ["RoundQuality", "assess_round", "calibration_method", "cv_calibration"]


SUSPECTS_SHARE = "suspects"  # label_error: estimated by confident learning (the suspects' share)


@dataclass
class RoundQuality:
    """What :func:`assess_round` found (JSON-friendly values)."""

    suspects: list[dict[str, Any]] = field(default_factory=list)
    calibration: dict[str, Any] | None = None
    prevalence: dict[str, dict[str, float]] | None = None
    prevalence_details: dict[str, Any] | None = None


def calibration_method(model: Any, kind: str) -> str:
    """How the served probabilities were calibrated, in a word or a short phrase."""
    calibrator = getattr(model, "calibrator_", None)
    if calibrator is not None:
        return calibrator.method
    if kind == "mlp":
        return "the MLP's own temperature (model.kind mlp)"
    return f"none (model.kind {kind})"


def assess_round(*, kind: str, model: Any, classes: tuple[str, ...], ids: np.ndarray,
                 embedding: np.ndarray, proba: np.ndarray, rows: np.ndarray, y: np.ndarray,
                 oof: tuple[np.ndarray | None, np.ndarray | None],
                 ground_truth: np.ndarray | None, test: tuple[np.ndarray, np.ndarray] | None,
                 unlabelled: np.ndarray, seed: int = 0, declared: tuple[str, ...] = (),
                 label_error: float | str | None = "suspects") -> RoundQuality:
    """Suspects among the cross-validated labels, the calibration report and the prevalence.

    ``rows``/``y``: the training rows and their labels; ``oof = (rows into y, probabilities)``
    before calibration; ``test``: rows and labels of the test split; ``unlabelled``: rows with
    no label at all (the pool the prevalence counts); ``declared``: the schema's classes (those
    without a label yet are counted too); ``label_error``: the annotators' error rate the
    prevalence corrects the checking labels for (``"suspects"``, the default: the share of the
    cross-validated labels that confident learning flags, at most :data:`MAX_LABEL_ERROR`; a
    number: a rate known otherwise; None: labels taken as right).
    """
    out = RoundQuality()
    oof_rows, oof_raw = oof
    raw_of = getattr(model, "predict_proba_raw", None)
    if oof_rows is not None and oof_raw is not None and len(oof_rows):
        out.suspects = find_suspects(ids[rows[oof_rows]], y[oof_rows], oof_raw, classes)
    method = calibration_method(model, kind)
    out.calibration = _calibration(model, method, classes, embedding, proba, rows, y, oof,
                                   ground_truth, test, raw_of, seed)
    calibrator = getattr(model, "calibrator_", None)
    if out.calibration is not None and calibrator is not None:
        out.calibration["label_error"] = float(calibrator.label_error)  # what the fit assumed
    index = {c: j for j, c in enumerate(classes)}
    counts = np.bincount([index[v] for v in y.astype(str) if v in index], minlength=len(classes))
    prior = counts / max(counts.sum(), 1)
    held = _held_out(model, classes, y, oof)
    if held is None:  # nothing to check the model by: the interval says so by its width
        held = (np.zeros((0, len(classes))), np.zeros(0, dtype=np.int64))
    if label_error == SUSPECTS_SHARE:
        checked = len(oof_rows) if oof_rows is not None else 0
        label_error = min(len(out.suspects) / checked, MAX_LABEL_ERROR) if checked else None
    out.prevalence, details = adjusted_prevalence(proba[unlabelled], classes, prior, *held,
                                                  seed=seed, declared=declared,
                                                  label_error=float(label_error or 0.0))
    out.prevalence_details = prevalence_report(
        out.prevalence, method="labelled, checked by the out-of-fold labels" if details.get(
            "checked_by") else "labelled, not checked by any label", n_pool=len(unlabelled),
        **details)
    return out


def _held_out(model: Any, classes: tuple[str, ...], y: np.ndarray,
              oof: tuple[np.ndarray | None, np.ndarray | None]
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(calibrated out-of-fold posteriors, label codes)`` of the labelled items, or None.

    The calibration of each row is the one fitted on the other folds (``oof_calibrated_``) where
    the model kept it; otherwise the served calibrator applied to the raw out-of-fold rows."""
    oof_rows, oof_raw = oof
    if oof_rows is None or oof_raw is None or not len(oof_rows):
        return None
    index = {c: j for j, c in enumerate(classes)}
    labels = np.asarray(y)[oof_rows].astype(str)
    keep = np.array([v in index for v in labels], dtype=bool)
    if not keep.any():
        return None
    codes = np.array([index[v] for v in labels[keep]], dtype=np.int64)
    held = getattr(model, "oof_calibrated_", None)
    if held is None or len(held) != len(oof_raw):
        calibrator = getattr(model, "calibrator_", None)
        held = oof_raw if calibrator is None else calibrator.apply(oof_raw)
    return np.asarray(held, dtype=np.float64)[keep], codes


def _calibration(model, method, classes, embedding, proba, rows, y, oof, ground_truth, test,
                 raw_of, seed) -> dict[str, Any] | None:
    """The calibration report on the best held-out labels there are: ground truth > test split >
    the out-of-fold predictions (calibrated by calibrators fitted on the other folds)."""
    def served_and_raw(where: np.ndarray):
        after = proba[where]
        before = raw_of(embedding[where]) if raw_of is not None else after
        return before, after

    if ground_truth is not None:
        held = np.ones(len(proba), dtype=bool)
        held[rows] = False
        held &= ground_truth != None  # noqa: E711  (object array)
        where = np.flatnonzero(held)
        if len(where) > CALIBRATION_SAMPLE:
            where = np.sort(np.random.default_rng(seed).choice(where, CALIBRATION_SAMPLE,
                                                               replace=False))
        if len(where):
            before, after = served_and_raw(where)
            return calibration_report(before, after, ground_truth[where], classes,
                                      source="ground_truth", method=method)
    if test is not None and len(test[0]) >= MIN_TEST_ITEMS:
        before, after = served_and_raw(test[0])
        return calibration_report(before, after, test[1], classes, source="test_split",
                                  method=method)
    return cv_calibration(model, method, classes, y, oof)


def cv_calibration(model: Any, method: str, classes: tuple[str, ...], y: np.ndarray,
                   oof: tuple[np.ndarray | None, np.ndarray | None]) -> dict[str, Any] | None:
    """The calibration report on the out-of-fold predictions ``oof = (rows into y, raw
    probabilities)``: before, and after calibrators fitted on the other folds
    (``model.oof_calibrated_``; the raw ones again for a model without a calibrator)."""
    oof_rows, oof_raw = oof
    if oof_rows is None or oof_raw is None or not len(oof_rows):
        return None
    after = getattr(model, "oof_calibrated_", None)
    if after is None or len(after) != len(oof_raw):
        after = oof_raw
    return calibration_report(oof_raw, after, np.asarray(y)[oof_rows], classes, source="cv",
                              method=method)
