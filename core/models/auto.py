"""``model.kind: auto``: at every retrain, the learner that cross-validates best on the labels.

:class:`AutoModel` runs :func:`core.models.selection.select_learner`, fits the chosen learner on
every label and serves its probabilities, calibrated by the calibrator (none, one temperature or
class-wise vector scaling) that scores best on its out-of-fold predictions, the labels read through
the annotators' error rate confident learning estimates (:func:`out_of_fold_calibration`).
Out-of-fold predictions of the chosen learner are computed at every comparison (where they come
for free) and otherwise once the labels grew by ``oof_growth`` since the last ones
(``earlier_oof``; suspect labels, calibration and prevalence estimates all rest on them), so most
retrains fit the learner once. Pass the previous round's
``choice_`` as ``previous`` so the choice stays put unless a challenger is clearly better.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np

from core.models.base import TailwiseModel
from core.models.calibration import CalibrationChoice, Calibrator, choose_calibrator
from core.models.learners import LEARNERS
from core.models.selection import (
    EarlierOOF,
    ModelChoice,
    out_of_fold_predictions,
    select_learner,
)
from core.models.spreading import LabelSpreading
from core.models.validation import check_features, check_labels
from core.project import AutoConfig

MIN_ROWS_FOR_TEMPERATURE = 10
# Share of the flagged labels the calibration takes as the annotators' slips: confident learning
# flags the model's own mistakes too, so the flagged share over-counts the slips (about 2.4 to 1
# on the label-quality dev runs: 0.26 / 0.23 flagged at 100 / 300 labels, 0.10 / 0.11 flipped);
# half of it scored best by test log loss there (docs/benchmarks.md, *Label quality*)
CALIBRATION_ERROR_SHARE = 0.5


def out_of_fold_calibration(oof: np.ndarray, codes: np.ndarray, classes: tuple[str, ...], *,
                            seed: int = 0) -> CalibrationChoice:
    """The calibration ``model: auto`` serves, chosen on out-of-fold probabilities ``oof`` of
    labels ``codes``: :func:`~core.models.calibration.choose_calibrator` with the labels read
    through the annotators' error rate, :data:`CALIBRATION_ERROR_SHARE` of the share confident
    learning flags on the same predictions (:func:`~core.quality.suspects.estimated_label_error`),
    so the probabilities aim at the true class rather than at the annotators' slips."""
    from core.quality.suspects import estimated_label_error

    names = np.asarray(classes, dtype=object)[np.asarray(codes, dtype=np.int64)]
    label_error = CALIBRATION_ERROR_SHARE * estimated_label_error(names, oof, classes)
    return choose_calibrator(oof, codes, seed=seed, label_error=label_error)


class AutoModel(TailwiseModel):
    """Chooses and fits the best candidate learner; predicts with it.

    After ``fit``: ``learner_`` (the fitted learner), ``choice_`` (:class:`ModelChoice`),
    ``oof_rows_`` / ``oof_proba_`` (out-of-fold probabilities of the chosen learner, before
    calibration, on a stratified subset of at most ``max_rows`` labelled rows, in ``classes_``
    order), ``oof_calibrated_`` (the same rows calibrated by calibrators fitted on the other
    folds), ``calibrator_`` (:class:`~core.models.calibration.Calibrator`), ``temperature_`` and
    ``selection_seconds_`` (what choosing cost on top of fitting the learner) and
    ``oof_at_`` (the label count the out-of-fold predictions were computed at: earlier than
    ``len(X)`` when ``earlier_oof`` was reused) and
    ``spreading_`` (:class:`~core.models.spreading.LabelSpreading` blended into the
    probabilities when ``X_unlabelled`` is given, fewer than ``spreading_labels`` items are
    labelled and the blend does at least as well as the learner out of fold; else None) with
    ``spreading_reason_``.
    """

    kind = "auto"
    config_class = AutoConfig

    def __init__(self, config=None, seed: int = 0, previous: ModelChoice | None = None,
                 earlier_oof: EarlierOOF | None = None):
        super().__init__(config=config, seed=seed)
        self.previous = previous
        self.earlier_oof = earlier_oof

    def _build_learner(self, name: str, seed: int) -> TailwiseModel:
        return LEARNERS[name](config=self._config().learner_config(name), seed=seed)

    def fit(self, X, y, X_unlabelled=None) -> AutoModel:
        """Choose the learner on ``X, y``, then fit it on all of them."""
        cfg = self._config()
        X = check_features(X)
        classes, codes = check_labels(y, len(X))
        names = np.asarray(classes, dtype=object)[codes]
        start = time.perf_counter()
        selection = select_learner(X, names, cfg, self._build_learner, seed=self.seed,
                                   previous=self.previous)
        self.selection_seconds_ = time.perf_counter() - start
        chosen = selection.choice.chosen
        # the learner sees unlabelled rows only if its own settings ask for them (pseudo-labels)
        pseudo = getattr(cfg.learner_config(chosen), "pseudo_label", False)
        learner = self._build_learner(chosen, self.seed).fit(
            X, names, X_unlabelled=X_unlabelled if pseudo else None)
        self.learner_ = learner
        self.classes_ = learner.classes_
        self.n_features_in_ = learner.n_features_in_
        rows, oof = selection.rows, selection.oof_proba
        self.oof_at_ = len(X)
        earlier = self._reusable(self.earlier_oof, chosen, tuple(classes), len(X), cfg.oof_growth)
        if oof is None and earlier is not None:  # labels grew little: keep the last ones
            rows, oof, self.oof_at_ = earlier.rows, earlier.proba, earlier.labels
        elif oof is None:  # no comparison this round: cross-validate the chosen learner alone
            rows, oof, _ = out_of_fold_predictions(
                lambda: self._build_learner(chosen, self.seed), X, names, kind=chosen,
                folds=cfg.folds, max_rows=cfg.max_rows, seed=self.seed)
        self.oof_rows_, self.oof_proba_ = rows, (oof if len(rows) else None)
        self.spreading_, self.spreading_reason_ = None, "off"
        if (X_unlabelled is not None and len(X_unlabelled) and len(X) < cfg.spreading_labels
                and cfg.spreading_weight > 0):
            Xu = check_features(X_unlabelled, name="X_unlabelled", n_features=X.shape[1])
            helps, self.spreading_reason_ = self._spreading_helps(X, codes, len(classes), Xu)
            if helps:
                self.spreading_ = LabelSpreading(seed=self.seed).fit(X, codes, len(classes), Xu)
        if len(rows) >= MIN_ROWS_FOR_TEMPERATURE:
            calibration = out_of_fold_calibration(oof, codes[rows], tuple(classes), seed=self.seed)
            self.calibrator_ = calibration.calibrator
            self.oof_calibrated_ = calibration.held_out
        else:  # too few labels to judge a calibration: keep the last round's temperature
            previous_t = selection.choice.temperature
            self.calibrator_ = (Calibrator("temperature", temperature=previous_t)
                                if previous_t != 1.0 else Calibrator())
            self.oof_calibrated_ = None if self.oof_proba_ is None else self.oof_proba_
        cal = self.calibrator_
        self.temperature_ = cal.temperature if cal.method == "temperature" else 1.0
        self.choice_ = replace(selection.choice, temperature=self.temperature_)
        return self

    @staticmethod
    def _reusable(earlier: EarlierOOF | None, chosen: str, classes: tuple[str, ...], n: int,
                  growth: float) -> EarlierOOF | None:
        """``earlier`` if it may stand for this round's out-of-fold predictions: the same learner
        and classes, enough rows, and fewer than ``labels * (1 + growth)`` labels now."""
        if (earlier is None or growth <= 0 or earlier.learner != chosen
                or tuple(earlier.classes) != classes or len(earlier.rows) < MIN_ROWS_FOR_TEMPERATURE
                or n >= int(np.ceil(earlier.labels * (1.0 + growth)))):
            return None
        return earlier

    def _spreading_helps(self, X: np.ndarray, codes: np.ndarray, k: int,
                         Xu: np.ndarray) -> tuple[bool, str]:
        """Whether blending label spreading in beats the learner alone out of fold.

        The learner's out-of-fold probabilities (``oof_proba_``) are compared with the blend of
        them and label spreading fitted with the same rows' labels hidden (stratified folds),
        by balanced accuracy over those rows. Without out-of-fold rows (the fewest labels) the
        blend is used: that is where the graph helps most.
        """
        from core.models.selection import balanced_accuracy_of

        cfg = self._config()
        rows, oof = self.oof_rows_, self.oof_proba_
        if oof is None or len(rows) < MIN_ROWS_FOR_TEMPERATURE:
            return True, "on (too few labels to test it)"
        ok = np.isfinite(oof).all(axis=1)
        rows, oof = rows[ok], oof[ok]
        fold = np.arange(len(rows)) % cfg.folds
        fold = fold[np.argsort(np.argsort(codes[rows], kind="stable"), kind="stable")]
        spread = np.zeros_like(oof)
        for f in range(cfg.folds):
            held = rows[fold == f]
            keep = np.setdiff1d(np.arange(len(X)), held)
            if len(held) == 0 or len(np.unique(codes[keep])) < 2:
                return True, "on (too few labels to test it)"
            model = LabelSpreading(seed=self.seed).fit(
                X[keep], codes[keep], k, np.concatenate([Xu, X[held]]))
            spread[fold == f] = model.predict_proba(X[held])
        w = cfg.spreading_weight
        alone = balanced_accuracy_of(codes[rows], oof.argmax(axis=1))
        blend = balanced_accuracy_of(codes[rows], ((1 - w) * oof + w * spread).argmax(axis=1))
        verdict = blend >= alone
        return verdict, (f"{'on' if verdict else 'off'}: out-of-fold balanced accuracy "
                         f"{blend:.3f} with label spreading, {alone:.3f} without")

    @property
    def chosen(self) -> str:
        self._check_fitted()
        return self.choice_.chosen

    def predict_proba(self, X) -> np.ndarray:
        """The chosen learner's probabilities, calibrated, blended with label spreading's while
        labels are few (``spreading_labels``)."""
        self._check_fitted()
        proba = self.calibrator_.apply(self.learner_.predict_proba(X))
        spreading = getattr(self, "spreading_", None)
        if spreading is None:
            return proba
        w = self._config().spreading_weight
        return (1.0 - w) * proba + w * spreading.predict_proba(check_features(X))

    def predict_proba_raw(self, X) -> np.ndarray:
        """The chosen learner's own probabilities, before calibration."""
        self._check_fitted()
        return np.asarray(self.learner_.predict_proba(X), dtype=np.float64)

    def embed(self, X) -> np.ndarray:
        """The chosen learner's view of each item (the MLP's penultimate layer, ...)."""
        self._check_fitted()
        return self.learner_.embed(X)

    # ------------------------------------------------------------------ persistence
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors, meta = self.learner_.state()
        tensors = {f"learner.{k}": v for k, v in tensors.items()}
        if getattr(self, "spreading_", None) is not None:
            tensors.update({f"spreading.{k}": v for k, v in self.spreading_.state().items()})
        return (tensors,
                {"learner": self.chosen, "learner_meta": meta, "temperature": self.temperature_,
                 "calibration": self.calibrator_.to_dict(), "model_choice": self.choice_.to_dict()})

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> AutoModel:
        name = meta["learner"]
        if name not in LEARNERS:
            raise KeyError(f"learner {name!r}")
        inner = {k[len("learner."):]: v for k, v in tensors.items() if k.startswith("learner.")}
        inner_meta = {**meta.get("learner_meta", {}), "classes": meta["classes"],
                      "n_features_in": meta["n_features_in"]}
        model = cls(config=config, seed=seed)
        model.learner_ = LEARNERS[name].from_state(config.learner_config(name), seed, inner, inner_meta)
        model.classes_ = model.learner_.classes_
        model.n_features_in_ = model.learner_.n_features_in_
        spread = {k[len("spreading."):]: v for k, v in tensors.items() if k.startswith("spreading.")}
        model.spreading_ = LabelSpreading.from_state(spread) if spread else None
        model.choice_ = ModelChoice.from_dict(meta["model_choice"])
        model.temperature_ = float(meta.get("temperature", 1.0))
        model.calibrator_ = (Calibrator.from_dict(meta["calibration"]) if "calibration" in meta
                             else Calibrator("temperature", temperature=model.temperature_))
        return model
