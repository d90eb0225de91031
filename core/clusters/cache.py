"""Cluster assignments kept per (model version, method, settings), computed at most once each.

A retrain asks for the new version's clusters in the background (:meth:`ClusterCache.start`);
whoever asks later (:meth:`ClusterCache.get`) waits for that run instead of starting another.
One worker thread: clustering never competes with itself for the machine's cores, and it runs
at a lower priority than the rest of the process (like the training process: a served page's
clicks come first).
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

from core.clusters.base import ClusterResult

KEEP = 6  # results kept (a few methods of the current and the previous model)
NICE = 10  # how much lower the cluster thread's priority is than the process's


def lower_thread_priority(by: int = NICE) -> None:
    """Lower the calling thread's priority by ``by`` nice steps. Linux only, where the nice value
    belongs to each thread; elsewhere (one value for the whole process) nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(os.getpriority(os.PRIO_PROCESS, thread) + by, 19))
    except OSError:  # not permitted here: clusters at the process's priority
        pass


class ClusterCache:
    """Futures of cluster results by key; the newest ``KEEP`` are kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: OrderedDict[Hashable, Future] = OrderedDict()
        self._pool: ThreadPoolExecutor | None = None

    def _submit(self, key: Hashable, compute: Callable[[], ClusterResult], background: bool) -> Future:
        with self._lock:
            future = self._futures.get(key)
            if future is not None and not (future.done() and future.exception() is not None):
                self._futures.move_to_end(key)
                return future  # done, or running: wait for it rather than run it twice
            if background:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="tailwise-clusters",
                                                    initializer=lower_thread_priority)
                future = self._pool.submit(compute)
            else:
                future = Future()
                future.set_running_or_notify_cancel()
            self._futures[key] = future
            while len(self._futures) > KEEP:
                self._futures.popitem(last=False)
        if not background:
            try:
                future.set_result(compute())
            except BaseException as err:  # noqa: BLE001  (handed to every waiter)
                future.set_exception(err)
        return future

    def start(self, key: Hashable, compute: Callable[[], ClusterResult]) -> Future:
        """Compute ``key`` on the cluster thread unless it is done or running."""
        return self._submit(key, compute, background=True)

    def get(self, key: Hashable, compute: Callable[[], ClusterResult]) -> ClusterResult:
        """The result of ``key``: cached, awaited, or computed now in the caller's thread. A
        failed run is tried again."""
        return self._submit(key, compute, background=False).result()

    def status(self, key: Hashable) -> str:
        """``ready``, ``computing``, ``failed: <why>`` or ``none`` (never asked)."""
        with self._lock:
            future = self._futures.get(key)
        if future is None:
            return "none"
        if not future.done():
            return "computing"
        err = future.exception()
        return "ready" if err is None else f"failed: {err}"

    def clear(self) -> None:
        """Forget every result (a new embedding or map); runs in flight finish unseen."""
        with self._lock:
            self._futures.clear()
