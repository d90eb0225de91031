"""Training in a process of its own (core.worker): the same rounds as in-process, failures typed
and shown, a killed or orphaned child reported instead of swallowed."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from core.errors import ModelError, WorkerError
from core.jsonable import jsonable
from core.project import load_project
from core.session import Session
from core.worker import TrainingProcess

pytestmark = pytest.mark.usefixtures("torch_one_thread")  # the child trains on one thread too


def open_session(folder, training: str) -> Session:
    from core.data import make_demo

    path = folder / "demo" / "project.yaml"
    if not path.exists():
        path = make_demo("digits-lt", folder / "demo", seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.encoder.kind = "tabular"
    project.model.mlp.epochs = 30
    from core.data import load_dataset
    from core.labels import LabelStore

    session = Session(project, load_dataset(project), LabelStore(folder / f"labels-{training}.sqlite"),
                      training=training, resume_strategies=False)
    session.prepare(train=False)
    return session


def label_some(session: Session, per_class: int, start: int = 0) -> None:
    truth = session.dataset.ground_truth
    for cls in sorted(set(truth.tolist())):
        rows = np.flatnonzero(truth == cls)[start:start + per_class]
        session.label(session.dataset.ids[rows].tolist(), cls, "ann")


def same_round(a, b) -> None:
    assert a.model_version == b.model_version and a.classes == b.classes
    assert a.n_labels == b.n_labels and a.label_counts == b.label_counts
    assert jsonable(a.metrics) == jsonable(b.metrics)
    assert jsonable(a.cv_metrics) == jsonable(b.cv_metrics)
    assert a.model_choice == b.model_choice
    np.testing.assert_array_equal(a.proba, b.proba)
    assert (a.predicted == b.predicted).all()
    np.testing.assert_array_equal(a.oof_ids, b.oof_ids)
    np.testing.assert_array_equal(a.oof_proba, b.oof_proba)
    assert jsonable(a.suspects) == jsonable(b.suspects)
    assert jsonable(a.prevalence) == jsonable(b.prevalence)
    assert jsonable(a.stopping) == jsonable(b.stopping)


def test_rounds_in_the_training_process_equal_rounds_in_process(tmp_path):
    inline, child = open_session(tmp_path, "inline"), open_session(tmp_path, "process")
    seen: list[str] = []
    try:
        for session in (inline, child):
            label_some(session, 3)
        first = inline.retrain(), child.retrain(progress=lambda d, t, m: seen.append(m))
        same_round(*first)
        assert first[1].model_choice is not None and first[1].model_choice.compared
        for session in (inline, child):  # the next round keeps the first one's learner choice
            label_some(session, 1, start=3)
        second = inline.retrain(), child.retrain()
        same_round(*second)
        assert second[1].model_version == 2
        # A few labels more (under oof_growth): the warm child lends the last round's out-of-fold
        # predictions to 'auto' as a session training inline does, instead of cross-validating.
        for session in (inline, child):
            truth = session.dataset.ground_truth
            session.label([session.dataset.ids[np.flatnonzero(truth == truth[0])[5]]], truth[0], "ann")
        third = inline.retrain(), child.retrain()
        same_round(*third)
        assert third[1].n_labels == second[1].n_labels + 1
        assert third[1].oof_at == second[1].oof_at == second[1].n_labels
        # The model came back whole: it predicts the pool as the child did.
        proba = child.state.model.predict_proba(child.base_embedding_())
        np.testing.assert_allclose(proba, child.state.proba, atol=1e-6)
    finally:
        inline.close(), child.close()
    assert seen[0].startswith("choosing the learner") and seen[-1] == "model v1 ready"


def test_an_error_in_the_child_comes_back_with_its_type_and_message(tmp_path):
    session = open_session(tmp_path, "process")
    try:
        session.label(session.dataset.ids[:3].tolist(), "0", "ann")
        trainer = TrainingProcess(scratch=tmp_path)  # asked directly: the session refuses earlier
        with pytest.raises(ModelError, match="only class '0' is labelled"):
            trainer.train(session.training_project(), session.dataset, session.base_embedding_(),
                          session.store.current(), model_version=1)
        trainer.close()
    finally:
        session.close()


def test_a_round_that_cannot_train_is_refused_before_a_process_starts(tmp_path):
    session = open_session(tmp_path, "process")
    try:
        session.label(session.dataset.ids[:3].tolist(), "0", "ann")
        with pytest.raises(ModelError, match="only class '0' is labelled"):
            session.retrain()
        assert session._trainer is None  # no process was started for it
    finally:
        session.close()


def kill_at_first_progress(session: Session, how):
    """Retrain, doing ``how(process)`` to the child once it reports progress; returns the error."""
    fired = threading.Event()

    def progress(done, total, message):
        if not fired.is_set():
            fired.set()
            how(session._trainer.process)

    with pytest.raises(WorkerError) as caught:
        session.retrain(progress=progress)
    assert fired.is_set()
    return caught.value


def test_a_killed_training_process_is_reported_and_the_old_model_kept(tmp_path):
    session = open_session(tmp_path, "process")
    try:
        label_some(session, 3)
        before = session.retrain()
        label_some(session, 2, start=3)
        err = kill_at_first_progress(session, lambda p: os.kill(p.pid, signal.SIGKILL))
        assert "killed by signal SIGKILL" in str(err) and "previous model is kept" in str(err)
        assert session.state is before and session.stale
        assert session.retrain().model_version == 2  # the next round runs as usual
    finally:
        session.close()


def test_the_child_stops_when_its_parent_goes(tmp_path):
    session = open_session(tmp_path, "process")
    try:
        label_some(session, 3)
        # The parent's end of the child's stdin closes when the parent dies, however it dies.
        err = kill_at_first_progress(session, lambda p: p.stdin.close())
        assert "exited with code 70" in str(err)
    finally:
        session.close()


def test_unknown_training_modes_are_refused(tmp_path):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="training must be one of inline, process"):
        open_session(tmp_path, "thread")


def test_scratch_folders_of_servers_that_are_gone_are_removed(tmp_path):
    import subprocess
    import sys

    from core.worker import SCRATCH_PREFIX, TrainingProcess

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = tmp_path / f"{SCRATCH_PREFIX}{gone.stdout.strip()}-abc"
    (dead / "pool-0").mkdir(parents=True)
    alive = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"  # this process: still running
    alive.mkdir()
    trainer = TrainingProcess(scratch=tmp_path)
    try:
        assert not dead.exists() and alive.exists() and trainer.folder.exists()
    finally:
        trainer.close()
    assert not trainer.folder.exists()


def test_the_child_stays_warm_between_rounds_and_one_that_died_idle_is_replaced(tmp_path):
    session = open_session(tmp_path, "process")
    try:
        label_some(session, 3)
        session.retrain()
        child = session._trainer.process
        assert child is not None and child.poll() is None  # idle, waiting for the next round
        label_some(session, 1, start=3)
        assert session.retrain().model_version == 2
        assert session._trainer.process is child  # the same process: no start, no torch import
        os.kill(child.pid, signal.SIGKILL)  # dies while idle (killed, out of memory elsewhere)
        child.wait(timeout=30)
        label_some(session, 1, start=4)
        assert session.retrain().model_version == 3  # a fresh child, no error for the user
        fresh = session._trainer.process
        assert fresh is not child and fresh.poll() is None
    finally:
        session.close()
    assert fresh.poll() is not None  # closing the session stops the idle child
