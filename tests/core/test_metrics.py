"""core.metrics against scikit-learn and hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from core.metrics import (
    classes_found,
    evaluate,
    labels_to_reach,
    learning_curve_auc,
    tail_classes_by_frequency,
)


def random_predictions(seed=0, n=300, k=6):
    rng = np.random.default_rng(seed)
    classes = [f"k{i}" for i in range(k)]
    y_true = rng.choice(classes, n, p=np.linspace(3, 0.5, k) / np.linspace(3, 0.5, k).sum())
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(classes, n))
    return classes, y_true.astype(object), y_pred.astype(object)


def test_evaluate_agrees_with_scikit_learn():
    classes, y_true, y_pred = random_predictions()
    m = evaluate(y_true, y_pred, classes)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", labels=classes))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    for i, c in enumerate(classes):
        assert m["per_class"][c] == pytest.approx(
            {"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]}
        )
    assert m["confusion"] == confusion_matrix(y_true, y_pred, labels=classes).tolist()


def test_tail_recall_uses_training_frequency_or_given_classes():
    y_true = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4, dtype=object)
    y_pred = np.array(["a"] * 4 + ["b", "b", "a", "a"] + ["c", "a", "a", "a"], dtype=object)
    # recall a=1, b=0.5, c=0.25; 'b' is rarest in training -> tail third = ['b']
    m = evaluate(y_true, y_pred, ["a", "b", "c"], train_counts={"a": 50, "b": 2, "c": 9})
    assert m["tail_classes"] == ["b"] and m["tail_recall"] == pytest.approx(0.5)
    m = evaluate(y_true, y_pred, ["a", "b", "c"], tail_classes=["c", "b"])
    assert m["tail_recall"] == pytest.approx((0.25 + 0.5) / 2)
    assert tail_classes_by_frequency({"x": 5, "y": 1, "z": 3, "w": 9}) == ["y", "z"]


def test_classes_absent_from_the_test_set_do_not_count():
    m = evaluate(["a", "a", "b"], ["a", "b", "b"], ["a", "b", "never"])
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["per_class"]["never"]["support"] == 0
    with pytest.raises(ValueError, match="not in 'classes'"):
        evaluate(["zzz"], ["a"], ["a"])


def test_classes_found_and_learning_curve_helpers():
    assert classes_found(["a", None, "b", "a"]) == 2
    assert classes_found(["a", "b", "x"], classes=["a", "b"]) == 2
    assert learning_curve_auc([10, 20, 30], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert learning_curve_auc([0, 100], [0.0, 1.0]) == pytest.approx(0.5)
    assert learning_curve_auc([0, 50, 100], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    assert labels_to_reach([10, 20, 30], [0.2, 0.7, 0.9], 0.7) == 20
    assert labels_to_reach([10, 20], [0.2, 0.3], 0.9) == float("inf")
