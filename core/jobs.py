"""One retrain at a time per project, however many browser tabs ask for one.

``RetrainScheduler.request()`` starts a run when none is going; a request while one runs schedules
exactly one follow-up run (later requests join that follow-up), so labels given during training
are trained on next without queueing a run per click. Runs happen on the scheduler's own thread,
never on the threads that serve queries, clusters or maps. Every requester gets a
``concurrent.futures.Future``: the run's result, or the exception it raised, whatever its type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["RetrainScheduler"]

T = TypeVar("T")
Progress = Callable[[int, int, str], None]


@dataclass
class _Run:
    future: Future = field(default_factory=Future)
    listeners: list[Progress] = field(default_factory=list)

    def report(self, done: int, total: int, message: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(done, total, message)
            except Exception:  # noqa: BLE001, S110  (a closed page must not stop the training)
                pass


class RetrainScheduler(Generic[T]):
    """Runs ``work(progress)`` one at a time, with at most one follow-up waiting."""

    def __init__(self, work: Callable[[Progress], T], *, name: str = "tailwise-train") -> None:
        self._work = work
        self._lock = threading.Lock()
        self._running: _Run | None = None
        self._next: _Run | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    @property
    def running(self) -> bool:
        """True while a run is going."""
        return self._running is not None

    @property
    def pending(self) -> bool:
        """True when a follow-up run waits for the running one."""
        return self._next is not None

    def request(self, progress: Progress | None = None) -> Future:
        """Ask for a run; returns the future of the run that will serve this request."""
        with self._lock:
            if self._running is None:
                run = self._running = _Run()
                self._executor.submit(self._execute, run)
            else:
                if self._next is None:
                    self._next = _Run()
                run = self._next
            if progress is not None:
                run.listeners.append(progress)
            return run.future

    def _execute(self, run: _Run) -> None:
        try:
            result: Any = self._work(run.report)
        except BaseException as err:  # noqa: BLE001  (every failure reaches every requester)
            run.future.set_exception(err)
        else:
            run.future.set_result(result)
        finally:
            with self._lock:
                following, self._next = self._next, None
                self._running = following
                if following is not None:
                    self._executor.submit(self._execute, following)

    def shutdown(self) -> None:
        """Stop accepting work once the running and pending runs are done."""
        self._executor.shutdown(wait=False)
