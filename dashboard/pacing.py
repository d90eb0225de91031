"""Pacing of the dashboard's costly refreshes, so clicks stay fast while many experts label.

Every browser tab of a server shares one event loop. A label must be acknowledged at once, but the
views that summarise all labels (legend, rare-class stars, counts, history) cost tens to hundreds of
milliseconds each to redraw; redrawing them on every click of every expert queues the clicks of
everyone behind them. A :class:`Pacer` turns a stream of "something changed" pokes into one call
once the stream pauses (``quiet_s``), and at least every ``max_wait_s`` while it goes on, but never
more often than every ``min_interval_s`` (other tabs' labels arrive every refresh, so a pause alone
would come every refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable

Schedule = Callable[[float, Callable[[], None]], None]  # (delay in seconds, callback)


class Pacer:
    """Coalesces pokes into calls of ``fire``; without a ``schedule`` it fires at once (tests)."""

    def __init__(self, fire: Callable[[], None], schedule: Schedule | None = None, *,
                 quiet_s: float = 2.0, max_wait_s: float = 10.0, min_interval_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fire = fire
        self.schedule = schedule
        self.quiet_s = quiet_s
        self.max_wait_s = max_wait_s
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._first: float | None = None
        self._last = 0.0
        self._fired = float("-inf")
        self._pending = False

    @property
    def pending(self) -> bool:
        """True while a call is scheduled and not yet made."""
        return self._pending

    def poke(self) -> None:
        """Note a change; ``fire`` follows once changes pause (or ``max_wait_s`` has passed)."""
        if self.schedule is None:
            self.fire()
            return
        now = self._clock()
        self._last = now
        if self._first is None:
            self._first = now
        if not self._pending:
            self._pending = True
            self.schedule(self.quiet_s, self._check)

    def flush(self) -> None:
        """Fire now if a call is pending (e.g. the user asked to refresh)."""
        if self._pending:
            self._fire()

    def _fire(self) -> None:
        self._first, self._pending, self._fired = None, False, self._clock()
        self.fire()

    def _check(self) -> None:
        if not self._pending:
            return
        now = self._clock()
        due = min(self._last + self.quiet_s, (self._first or now) + self.max_wait_s)
        due = max(due, self._fired + self.min_interval_s)
        if due - now > 0.01:
            self.schedule(due - now, self._check)
            return
        self._fire()
