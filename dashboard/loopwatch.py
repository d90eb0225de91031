"""A diagnostic: log when the server's event loop is blocked, with what it was doing.

Every tab of a served dashboard shares one event loop; a click waits for whatever holds it. With
``TAILWISE_LOOP_WATCH=<ms>`` in the environment of ``panel serve``, a watcher thread notes every
stall longer than that many milliseconds and writes one ``tailwise`` log line per stall: when it
began, how long it lasted and the loop thread's stack, sampled while it lasted (the most frequent
frames of this project first). ``benchmarks/latency.py`` turns it on to say which work delays
clicks. Off by default: it costs a callback every few milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
import traceback
from collections import Counter

log = logging.getLogger("tailwise")
ENV = "TAILWISE_LOOP_WATCH"
TICK_S = 0.01
_OWN = ("/dashboard/", "/core/")


def start_from_environment(loop: asyncio.AbstractEventLoop) -> "LoopWatch | None":
    """Start a :class:`LoopWatch` on ``loop`` when ``TAILWISE_LOOP_WATCH`` names a threshold."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        threshold_ms = float(value)
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds: the loop watch stays off", ENV, value)
        return None
    watch = LoopWatch(loop, threshold_ms / 1000.0)
    watch.start()
    return watch


class LoopWatch:
    """Ticks on ``loop``; a daemon thread samples the loop thread's stack during long gaps."""

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold_s: float) -> None:
        self.loop = loop
        self.threshold_s = threshold_s
        self._last_tick = time.monotonic()
        self._loop_thread: int | None = None

    def start(self) -> None:
        self.loop.call_soon_threadsafe(self._tick)
        threading.Thread(target=self._watch, name="tailwise-loopwatch", daemon=True).start()
        log.info("loop watch on: stalls over %.0f ms are logged", self.threshold_s * 1000)

    def _tick(self) -> None:
        self._loop_thread = threading.get_ident()
        self._last_tick = time.monotonic()
        self.loop.call_later(TICK_S, self._tick)

    def _watch(self) -> None:
        samples: Counter = Counter()
        started = None
        while True:
            time.sleep(TICK_S / 2)
            gap = time.monotonic() - self._last_tick
            if gap > self.threshold_s and self._loop_thread is not None:
                if started is None:
                    started = self._last_tick
                frames = sys._current_frames()
                frame = frames.get(self._loop_thread)
                if frame is not None:
                    samples[_summary(frame) + _others(frames, self._loop_thread)] += 1
            elif started is not None:
                self._report(started, samples)
                started, samples = None, Counter()

    def _report(self, started: float, samples: Counter) -> None:
        lasted = time.monotonic() - started
        wall = time.strftime("%H:%M:%S", time.localtime(time.time() - lasted))
        total = sum(samples.values()) or 1
        stacks = " || ".join(f"{100 * n / total:.0f}%: {stack}" for stack, n in samples.most_common(3))
        log.info("event loop blocked %.0f ms from %s: %s", lasted * 1000, wall, stacks)


_IDLE = ("wait", "select", "sleep", "_worker", "get", "poll", "readline", "accept", "_watch",
         "recv", "read", "_wait_for_tstate_lock", "communicate")


def _others(frames: dict, loop_thread: int) -> str:
    """What the other busy threads of the process do (they hold the interpreter lock the loop
    waits for): `` [name: frames]`` for each thread not waiting."""
    names = {t.ident: t.name for t in threading.enumerate()}
    busy = []
    for ident, frame in frames.items():
        if ident in (loop_thread, threading.get_ident()) or frame.f_code.co_name in _IDLE:
            continue
        entries = traceback.extract_stack(frame)[-4:]
        busy.append(f"{names.get(ident, ident)}: " + " > ".join(
            f"{os.path.basename(e.filename)}:{e.name}:{e.lineno}" for e in entries))
    return "".join(f" [{b}]" for b in busy)


def _summary(frame) -> str:
    """The stack as ``file:function`` from the outermost frame of this project to the innermost
    frame (any library), at most a dozen frames."""
    entries = traceback.extract_stack(frame)
    own = [k for k, e in enumerate(entries) if any(p in e.filename for p in _OWN)]
    first = own[0] if own else max(len(entries) - 6, 0)
    shown = entries[first:]
    if len(shown) > 12:
        shown = shown[:6] + shown[-6:]
    return " > ".join(f"{os.path.basename(e.filename)}:{e.name}:{e.lineno}" for e in shown)
