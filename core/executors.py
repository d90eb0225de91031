"""Where pool-sized work runs: in this process, or on a Dask cluster.

``open_executor(scheduler)`` gives a :class:`LocalExecutor` for ``None`` and a
:class:`DaskExecutor` for ``local`` / ``local:N`` (a ``distributed.LocalCluster`` of N worker
processes with one thread each) or ``tcp://HOST:PORT`` (an existing scheduler; its workers need
Tailwise installed and the data at the same paths). Both run one pure function over parts with a
shared payload: :meth:`Executor.map` ``(fn, parts, payload)``. On Dask the payload is scattered
to every worker once (``broadcast=True``), tasks only carry a reference to it, and a worker that
dies mid-run has its tasks recomputed elsewhere by Dask.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from core.errors import ConfigError

Progress = Callable[[int, int, str], None]
log = logging.getLogger("tailwise")

_LOCAL = re.compile(r"^local(?::(\d+))?$")
_REMOTE = re.compile(r"^(tcp|tls|inproc)://[^\s/]+$")
CONNECT_TIMEOUT_S = 20


def parse_scheduler(scheduler: str) -> tuple[str, int | str]:
    """``("local", n_workers)`` or ``("remote", address)``; anything else is a ``ConfigError``."""
    text = scheduler.strip()
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1)) if m.group(1) else (os.cpu_count() or 1)
        if n < 1:
            raise ConfigError("--scheduler local:N needs N >= 1 workers")
        return "local", n
    if _REMOTE.match(text):
        return "remote", text
    raise ConfigError(f"--scheduler: {scheduler!r} is neither 'local', 'local:N' nor a scheduler "
                      "address like 'tcp://HOST:8786'")


class LocalExecutor:
    """Runs the parts one after the other in this process (the default)."""

    description = "this process"
    n_workers = 1

    def map(self, fn: Callable, parts: Sequence[Any], payload: Any,
            progress: Progress | None = None, what: str = "parts") -> list[Any]:
        out = []
        for i, part in enumerate(parts):
            out.append(fn(part, payload))
            if progress is not None:
                progress(i + 1, len(parts), f"{what}: {i + 1}/{len(parts)} done")
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DaskExecutor:
    """Runs the parts on a Dask cluster; results come back in part order."""

    def __init__(self, scheduler: str) -> None:
        kind, arg = parse_scheduler(scheduler)
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("--scheduler needs dask.distributed: pip install 'dask[distributed]'") from None
        self.scheduler = scheduler
        self.cluster = None
        if kind == "local":
            self.cluster = LocalCluster(n_workers=int(arg), threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(str(arg), timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as err:
                raise ConfigError(f"--scheduler: cannot reach the Dask scheduler at {arg} ({err}); "
                                  "start it (dask scheduler) or fix the address") from None
        workers = self.client.scheduler_info().get("workers", {})
        self.n_workers = len(workers)
        self.description = (f"Dask LocalCluster, {self.n_workers} worker process(es)" if self.cluster
                            else f"Dask scheduler {arg}, {self.n_workers} worker(s)")

    def map(self, fn: Callable, parts: Sequence[Any], payload: Any,
            progress: Progress | None = None, what: str = "parts") -> list[Any]:
        from distributed import as_completed

        start = time.perf_counter()
        shared = self.client.scatter(payload, broadcast=True, hash=False)  # each worker gets it once
        futures = self.client.map(fn, list(parts), payload=shared, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        done = 0
        try:
            for future in as_completed(futures):
                results[index[future.key]] = future.result()
                done += 1
                if progress is not None:
                    progress(done, len(futures), f"{what} on the cluster: {done}/{len(futures)} done")
        finally:
            for future in futures:
                future.release()
            shared.release()
        log.info("%s: %d %s in %.1f s on %s", fn.__name__, len(parts), what,
                 time.perf_counter() - start, self.description)
        return results

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Executor = LocalExecutor | DaskExecutor


def open_executor(scheduler: str | None) -> Executor:
    """:class:`LocalExecutor` for ``None``, else a :class:`DaskExecutor` (use it as a context)."""
    return LocalExecutor() if scheduler is None else DaskExecutor(scheduler)
