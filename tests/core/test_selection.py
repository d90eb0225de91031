"""``model: auto``'s learner choice, with stand-in learners whose out-of-fold accuracy is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.models.selection import ModelChoice, fold_assignment, next_comparison, select_learner
from core.project import AutoConfig

CLASSES = np.array(["a", "b", "c"], dtype=object)


class Oracle:
    """Predicts the class written in column 0, wrong on items whose id (column 1) is a multiple
    of ``every`` (0: never wrong): an exactly known accuracy."""

    def __init__(self, every: int) -> None:
        self.every = every

    def fit(self, X, y):
        self.classes_ = np.unique(np.asarray(y, dtype=object).astype(str)).astype(object)
        return self

    def predict_proba(self, X):
        code = X[:, 0].astype(int)
        if self.every:
            wrong = X[:, 1].astype(int) % self.every == 0
            code = np.where(wrong, (code + 1) % len(CLASSES), code)
        names = CLASSES[code]
        proba = np.full((len(X), len(self.classes_)), 0.05)
        proba[np.arange(len(X)), np.searchsorted(self.classes_, names)] = 0.9
        return proba / proba.sum(axis=1, keepdims=True)


def data(n: int = 120):
    code = np.arange(n) % 3
    X = np.stack([code, np.arange(n)], axis=1).astype(np.float32)
    return X, CLASSES[code]


def builder(errors: dict[str, int]):
    return lambda name, seed: Oracle(errors[name])


def test_the_learner_with_the_best_out_of_fold_balanced_accuracy_is_chosen():
    X, y = data()
    config = AutoConfig(candidates=["logistic", "mlp", "random_forest"])
    sel = select_learner(X, y, config, builder({"logistic": 4, "mlp": 0, "random_forest": 10}))
    assert sel.choice.chosen == "mlp" and sel.choice.compared and sel.choice.compared_at == 120
    assert sel.choice.candidates["mlp"] == 1.0
    assert sel.choice.candidates["logistic"] == pytest.approx(0.75, abs=0.02)  # 1 in 4 wrong
    assert sel.choice.candidates["random_forest"] == pytest.approx(0.9, abs=0.02)
    assert sel.choice.reason.startswith("mlp: best 3-fold out-of-fold balanced accuracy on 120")
    assert sel.oof_proba.shape == (120, 3) and sorted(sel.rows.tolist()) == list(range(120))


def test_a_slightly_better_challenger_does_not_replace_the_current_learner():
    X, y = data()
    config = AutoConfig(candidates=["logistic", "mlp"])
    previous = ModelChoice("logistic", {}, "", compared_at=10)
    close = select_learner(X, y, config, builder({"logistic": 60, "mlp": 0}), previous=previous)
    assert close.choice.chosen == "logistic" and "kept; mlp is ahead by +0.01" in close.choice.reason
    clear = select_learner(X, y, config, builder({"logistic": 5, "mlp": 0}), previous=previous)
    assert clear.choice.chosen == "mlp" and "mlp: replaces logistic" in clear.choice.reason
    assert "needed;" in clear.choice.reason  # the gain is at least the margin, maybe equal to it


def test_between_comparisons_the_learner_is_kept_without_cross_validation():
    X, y = data(130)
    config = AutoConfig(candidates=["logistic", "mlp"], recheck_growth=0.25)
    first = select_learner(X[:100], y[:100], config, builder({"logistic": 5, "mlp": 0})).choice
    assert next_comparison(first, config) == 125

    def refuse(name, seed):
        raise AssertionError("no fit expected before the next comparison")

    kept = select_learner(X[:110], y[:110], config, refuse, previous=first)
    assert kept.choice.chosen == "mlp" and not kept.choice.compared and kept.oof_proba is None
    assert "compared again at 125 labels" in kept.choice.reason
    again = select_learner(X, y, config, builder({"logistic": 0, "mlp": 3}), previous=first)
    assert again.choice.compared and again.choice.chosen == "logistic"


def test_too_few_labels_use_the_first_candidate_and_say_so():
    X, y = data(12)
    sel = select_learner(X, y, AutoConfig(), builder({}))
    assert sel.choice.chosen == "logistic" and "12 labels are too few" in sel.choice.reason
    kept = select_learner(X, y, AutoConfig(), builder({}),
                          previous=replace(sel.choice, chosen="random_forest"))
    assert kept.choice.chosen == "random_forest"


def test_single_label_classes_train_in_every_fold_and_are_never_tested():
    codes = np.array([0] * 10 + [1] * 3 + [2])
    fold = fold_assignment(codes, 4, np.random.default_rng(0))
    assert fold[-1] == -1 and (fold[:-1] >= 0).all()
    assert set(fold[:10].tolist()) == {0, 1, 2, 3}  # the head class is spread over every fold
    assert len(set(fold[10:13].tolist())) == 3  # a three-item class lands in three folds


def test_the_compared_labels_are_a_bounded_stratified_subset():
    n = 3000
    code = np.r_[np.zeros(n - 60, int), np.ones(40, int), np.full(20, 2)]
    X = np.stack([code, np.arange(n)], axis=1).astype(np.float32)
    config = AutoConfig(candidates=["logistic", "mlp"], max_rows=500)
    sel = select_learner(X, CLASSES[code], config, builder({"logistic": 0, "mlp": 7}))
    assert len(sel.rows) <= 500
    kept = np.bincount(code[sel.rows], minlength=3)
    assert kept[1] == 40 and kept[2] == 20  # small classes whole, the head class capped
