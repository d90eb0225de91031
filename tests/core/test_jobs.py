"""One retrain at a time: a request during a run schedules exactly one follow-up."""

from __future__ import annotations

import threading

import pytest

from core.jobs import RetrainScheduler


class Gate:
    """A training stand-in that blocks until released, recording every run."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Semaphore(0)
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def __call__(self, progress):
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            number = len(self.runs) + 1
            self.runs.append(number)
        progress(0, 1, f"run {number}")
        self.started.release()
        assert self.release.acquire(timeout=30)
        with self._lock:
            self.active -= 1
        return number


def test_requests_during_a_run_share_exactly_one_follow_up():
    gate = Gate()
    scheduler = RetrainScheduler(gate)
    first = scheduler.request()
    assert gate.started.acquire(timeout=30) and scheduler.running
    seen: list[str] = []
    followers = [scheduler.request(lambda d, t, m: seen.append(m)) for _ in range(5)]
    assert scheduler.pending and len({id(f) for f in followers}) == 1
    gate.release.release()
    assert first.result(timeout=30) == 1
    assert gate.started.acquire(timeout=30)
    later = scheduler.request()  # while the follow-up runs: a new follow-up
    gate.release.release()
    assert followers[0].result(timeout=30) == 2
    assert gate.started.acquire(timeout=30)
    gate.release.release()
    assert later.result(timeout=30) == 3
    assert gate.runs == [1, 2, 3] and gate.most_active == 1
    assert seen == ["run 2"] * 5  # every asker hears the progress of the run that serves it
    assert not scheduler.running and not scheduler.pending


def test_every_failure_reaches_every_requester_whatever_its_type():
    calls = []

    def broken(progress):
        calls.append(1)
        raise KeyError("the disk went away")

    scheduler = RetrainScheduler(broken)
    with pytest.raises(KeyError, match="disk"):
        scheduler.request().result(timeout=30)
    with pytest.raises(KeyError):  # the scheduler is not stuck after a failure
        scheduler.request().result(timeout=30)
    assert len(calls) == 2


def test_a_failing_progress_listener_does_not_stop_the_run():
    def work(progress):
        progress(1, 2, "half")
        return "done"

    def closed_page(*_):
        raise RuntimeError("the tab is gone")

    assert RetrainScheduler(work).request(closed_page).result(timeout=30) == "done"
