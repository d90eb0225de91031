"""Progress callbacks ``progress(done, total, message)`` that long steps report to.

:func:`logged` writes them to the ``tailwise`` logger (the server log), at most every few seconds
unless the message changes; :func:`tee` sends one report to several callbacks (the page's bar and
the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

Progress = Callable[[int, int, str], None]


def logged(what: str, logger: logging.Logger | None = None, every_s: float = 5.0) -> Progress:
    """A callback that logs ``what: message (done/total, 40 %)`` at INFO: when the message's text
    (numbers aside) changes, or at most every ``every_s`` seconds."""
    logger = logger or logging.getLogger("tailwise")
    last = {"key": None, "time": 0.0}

    def report(done: int, total: int, message: str) -> None:
        key = "".join(c for c in str(message) if not c.isdigit())
        now = time.monotonic()
        if key == last["key"] and now - last["time"] < every_s and done < total:
            return
        last["key"], last["time"] = key, now
        share = f", {100 * done / total:.0f} %" if total > 1 else ""
        logger.info("%s: %s (%d/%d%s)", what, message, done, total, share)

    return report


def tee(*callbacks: Progress | None) -> Progress:
    """One progress callback calling each of ``callbacks`` (None entries skipped)."""
    live = [c for c in callbacks if c is not None]

    def report(done: int, total: int, message: str) -> None:
        for callback in live:
            callback(done, total, message)

    return report
