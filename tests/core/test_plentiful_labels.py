"""Retraining with plentiful labels (issue 11): above ``MAX_FIT_LABELS`` the learner is fitted on
a bounded, class-balanced subsample that keeps every label of the small classes and says so;
at the label counts of the label-efficiency benchmarks it sees every label, as before."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.base import Dataset
from core.models.selection import MAX_FIT_LABELS, balanced_subset, stable_priority
from core.project import AutoConfig, DataConfig, LogisticConfig, ProjectConfig


def skewed_labels(n_head: int, rare: tuple[int, ...] = (700, 300, 40)) -> np.ndarray:
    """``n_head`` labels of class 'a' (a box selection's head class), then small classes."""
    names = ["a"] + [f"r{i}" for i in range(len(rare))]
    return np.repeat(np.array(names, dtype=object), [n_head, *rare])


def project(model=None) -> ProjectConfig:
    return ProjectConfig(data=DataConfig(kind="csv", path="items.csv", label_column="label"),
                         model=model or LogisticConfig())


class Recorder:
    """A stand-in learner that keeps what it was fitted on."""

    def fit(self, X, y, **kw):
        self.X, self.y = np.asarray(X), np.asarray(y)
        self.classes_ = np.unique(self.y.astype(str))
        return self


def test_the_fit_cap_is_the_one_documented_well_beyond_the_label_efficiency_range():
    from pathlib import Path

    # every label-efficiency benchmark stays below ~2,000 labels
    assert MAX_FIT_LABELS >= 10 * 2_000
    docs = Path(__file__).resolve().parents[2] / "docs"
    for page in ("models.md", "cli.md"):
        assert f"above {MAX_FIT_LABELS:,} labels" in (docs / page).read_text(encoding="utf-8")


def test_above_the_cap_the_fit_sees_a_bounded_class_balanced_set_with_every_rare_label(
        monkeypatch):
    import core.models
    from core.pipeline import fit_labelled

    y = skewed_labels(MAX_FIT_LABELS + 10_000)
    X = np.arange(len(y), dtype=np.float32)[:, None]  # column 0: the label's position
    recorder = Recorder()
    monkeypatch.setattr(core.models, "build_model", lambda *a, **kw: recorder)
    model = fit_labelled(project(), X, y, keys=np.arange(len(y)) * 3)
    seen = recorder.X[:, 0].astype(np.int64)
    assert len(seen) <= MAX_FIT_LABELS
    assert np.array_equal(recorder.y, y[seen])  # rows and labels stay paired
    assert len(np.unique(seen)) == len(seen)
    names, counts = np.unique(recorder.y.astype(str), return_counts=True)
    got = dict(zip(names.tolist(), counts.tolist()))
    assert got["r0"] == 700 and got["r1"] == 300 and got["r2"] == 40  # every rare label kept
    assert MAX_FIT_LABELS - 4 <= got["a"] + 1_040 <= MAX_FIT_LABELS  # the head class capped
    assert "class-balanced subsample" in model.fit_note_
    assert f"of the {len(y):,} labels" in model.fit_note_


@pytest.mark.parametrize("n_head", [150, 2_000, MAX_FIT_LABELS - 1_040])
def test_at_or_below_the_cap_the_fit_sees_every_label_in_order(monkeypatch, n_head):
    import core.models
    from core.pipeline import fit_labelled

    y = skewed_labels(n_head)
    X = np.arange(len(y), dtype=np.float32)[:, None]
    recorder = Recorder()
    monkeypatch.setattr(core.models, "build_model", lambda *a, **kw: recorder)
    model = fit_labelled(project(), X, y, keys=np.arange(len(y)))
    assert np.array_equal(recorder.X, X) and np.array_equal(recorder.y, y)
    assert not hasattr(model, "fit_note_")


def test_the_subsample_barely_moves_when_labels_are_added():
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(1_000_000, 60_000, replace=False))
    y = np.where(rng.random(len(rows)) < 0.98, "a", "b").astype(object)
    first = set(rows[balanced_subset(y, 0, keys=rows)].tolist())
    new = np.setdiff1d(np.arange(2_000), rows)[:10]
    rows2 = np.sort(np.r_[rows, new])
    y2 = np.empty(len(rows2), dtype=object)
    y2[np.searchsorted(rows2, rows)] = y
    y2[np.searchsorted(rows2, new)] = "a"
    second = set(rows2[balanced_subset(y2, 0, keys=rows2)].tolist())
    assert len(first) <= MAX_FIT_LABELS and len(second) <= MAX_FIT_LABELS
    assert len(first - second) <= 10  # at most the displaced ones change
    assert set(rows[y == "b"].tolist()) <= first  # the small class whole


def test_stable_priority_is_seeded_and_deterministic():
    keys = np.arange(1_000)
    assert np.array_equal(stable_priority(keys, 3), stable_priority(keys, 3))
    assert not np.array_equal(stable_priority(keys, 3), stable_priority(keys, 4))
    assert len(np.unique(stable_priority(keys, 0))) == len(keys)


def test_a_round_with_plentiful_labels_says_in_its_report_that_it_used_a_subsample():
    from core.pipeline import train_round

    rng = np.random.default_rng(1)
    y_all = skewed_labels(MAX_FIT_LABELS + 2_000, rare=(400, 200))
    centres = {"a": (0.0, 0.0), "r0": (3.0, 0.0), "r1": (0.0, 3.0)}
    X = np.array([centres[c] for c in y_all], dtype=np.float32)
    X += rng.normal(0, 0.5, X.shape).astype(np.float32)
    n = len(y_all) + 500  # 500 unlabelled items
    X = np.concatenate([X, rng.normal(0, 0.5, (500, 2)).astype(np.float32)])
    ids = np.array([f"i{i}" for i in range(n)], dtype=object)
    data = Dataset(ids=ids, features=X, feature_names=["u", "v"])
    cfg = project(AutoConfig(candidates=["logistic"]))
    labels = dict(zip(ids[: len(y_all)].tolist(), y_all.tolist()))
    state = train_round(cfg, data, X, labels, model_version=1)
    assert state.n_labels == len(y_all)
    assert "class-balanced subsample" in state.fit_note
    assert state.metrics["fit_note"] == state.fit_note
    assert state.fit_note in state.model_choice.reason
    few = dict(list(labels.items())[:100] + list(labels.items())[-300:])
    small = train_round(cfg, data, X, few, model_version=2)
    assert small.fit_note == "" and "fit_note" not in small.metrics
    assert "subsample" not in small.model_choice.reason


def test_training_rows_are_in_row_order_and_skip_unknown_items():
    from core.pipeline import training_rows

    ids = np.array([f"x{i}" for i in range(6)], dtype=object)
    data = Dataset(ids=ids, features=np.zeros((6, 1), np.float32), feature_names=["f"])
    rows, y = training_rows(data, {"x4": "b", "gone": "a", "x1": "a", "x5": "c"})
    assert rows.tolist() == [1, 4, 5] and y.tolist() == ["a", "b", "c"]
    assert rows.dtype == np.int64 and y.dtype == object
    rows, y = training_rows(data, {})
    assert len(rows) == 0 and len(y) == 0
