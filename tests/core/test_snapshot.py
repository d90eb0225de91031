"""A restart shows the last trained model at once (core.snapshot) and knows when it is stale."""

from __future__ import annotations

import numpy as np
import pytest

from core import session as session_module
from core.labels import LabelStore
from core.project import dump_project, load_project
from core.session import Session


@pytest.fixture()
def project_path(tmp_path):
    from core.data import make_demo

    path = make_demo("digits-lt", tmp_path / "demo", seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.encoder.kind = "tabular"
    project.model.mlp.epochs = 20
    dump_project(project, path)
    return path


def _label_some(session: Session, per_class: int = 3) -> None:
    truth = session.dataset.ground_truth
    for cls in ("0", "1", "2"):
        ids = session.dataset.ids[np.flatnonzero(truth == cls)[:per_class]].tolist()
        session.label(ids, cls, "ann")


def test_a_restart_restores_the_last_model_without_training(project_path, monkeypatch):
    first = Session.open(project_path)
    first.prepare()
    _label_some(first)
    state = first.retrain()
    first.store.close()

    def no_training(*args, **kwargs):
        raise AssertionError("a restart must not train before showing the model")

    monkeypatch.setattr(session_module, "train_round", no_training)
    again = Session.open(project_path)
    again.prepare(resume=True, train=False)
    restored = again.state
    assert restored is not None and restored.model_version == state.model_version
    assert restored.trained_at == state.trained_at and restored.classes == state.classes
    np.testing.assert_array_equal(restored.proba, state.proba)
    np.testing.assert_array_equal(restored.predicted, state.predicted)
    assert restored.metrics["balanced_accuracy"] == pytest.approx(state.metrics["balanced_accuracy"])
    assert [r.model_version for r in again.history] == [state.model_version]
    np.testing.assert_array_equal(restored.model.predict(again.embedding[:20]),
                                  state.model.predict(again.embedding[:20]))
    assert not again.stale  # the labels are those it was trained on
    assert restored.model_choice == state.model_choice  # auto's learner, kept after a restart
    again.label([again.dataset.ids[-1]], "2", "ann")
    assert again.stale  # now a background retrain should catch up
    monkeypatch.undo()
    assert again.retrain().model_version == state.model_version + 1  # versions keep counting
    again.store.close()


def test_a_snapshot_of_other_data_or_settings_is_not_shown(project_path, tmp_path):
    first = Session.open(project_path)
    first.prepare()
    _label_some(first)
    first.retrain()
    first.store.close()
    project = load_project(project_path)
    project.encoder.pca_components = 8  # another embedding: the saved model does not fit it
    dump_project(project, project_path)
    again = Session.open(project_path)
    again.prepare(resume=True, train=False)
    assert again.state is None and again.stale
    again.store.close()


def test_headless_sessions_leave_no_snapshot(project_path):
    session = Session.open(project_path, resume_strategies=False)
    session.prepare()
    _label_some(session)
    session.retrain()
    assert not (session.cache_dir / "last-model").exists()
    session.store.close()


def test_a_damaged_snapshot_is_ignored_with_a_warning(project_path, caplog):
    first = Session.open(project_path)
    first.prepare()
    _label_some(first)
    first.retrain()
    (first.cache_dir / "last-model" / "proba.npy").write_bytes(b"not numpy")
    first.store.close()
    again = Session.open(project_path, store=LabelStore(project_path.parent / "labels.sqlite"))
    with caplog.at_level("WARNING", logger="tailwise"):
        again.prepare(resume=True, train=False)
    assert again.state is None
    assert "not restoring the last model" in caplog.text
    again.store.close()
