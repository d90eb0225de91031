"""Per-browser-session state of the dashboard, over a ``core.session.Session``.

``AppState`` holds what one expert is doing (selection, colour-by, queue, annotator, running job)
and calls the engine for everything else. Views read its parameters and call its methods; tests
drive it without a server. Sessions of the same project share one prepared ``Session`` (embedding,
map, model, label store) through :func:`open_shared`, never their selection or annotator.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import param

from core.errors import TailwiseError
from core.layout import COLOUR_BY
from core.pointtable import latest_annotators, point_table, queue_scores
from core.progress import logged, tee
from core.project import STRATEGIES

log = logging.getLogger("tailwise")

# One worker runs the engine's slow calls (prepare, retrain, queries) off the event loop.
_WORKER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tailwise-engine")
# Large label, undo and import actions write the store here, off the thread that serves the pages.
STORE_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailwise-store")
LARGE_ACTION = 2_000  # items: above this a label action runs in STORE_WRITER


# ---------------------------------------------------------------------- shared per project
@dataclass
class Preparation:
    """Progress of opening and preparing a project, shared by every browser session on it."""

    path: str
    future: Future = field(default_factory=Future)
    done: int = 0
    total: int = 1
    message: str = "starting"
    started: float = field(default_factory=time.time)

    def report(self, done: int, total: int, message: str) -> None:
        self.done, self.total, self.message = int(done), max(int(total), 1), str(message)


_SHARED: dict[str, Preparation] = {}
_SHARED_LOCK = threading.Lock()


def open_shared(path: str | Path, opener: Callable[[str], Any] | None = None) -> Preparation:
    """Open and prepare the project at ``path`` once per process, in a worker thread.

    Returns the shared :class:`Preparation`; its ``future`` resolves to the prepared Session.
    ``opener`` (path -> Session) defaults to ``Session.open``.
    """
    key = str(Path(path).resolve())
    with _SHARED_LOCK:
        prep = _SHARED.get(key)
        if prep is not None and not (prep.future.done() and prep.future.exception() is not None):
            return prep
        prep = _SHARED[key] = Preparation(key)

    def work() -> None:
        try:
            if opener is None:
                from core.session import Session

                session = Session.open(key)
            else:
                session = opener(key)
            report = tee(prep.report, logged(f"preparing {Path(key).name}"))
            report(0, 1, "loading embeddings and map")
            # The last saved model (if any) is shown at once; training happens after the pages open.
            session.prepare(progress=report, resume=True, train=False)
            report(1, 1, "ready")
            prep.future.set_result(session)
        except BaseException as err:  # noqa: BLE001  (shown on the loading page)
            log.exception("could not prepare %s", key)
            prep.future.set_exception(err)
            return
        if session.stale and session.trainable:
            background_retrain(session, "after the start")

    threading.Thread(target=work, name=f"tailwise-prepare-{Path(key).name}", daemon=True).start()
    return prep


def background_retrain(session: Any, why: str) -> None:
    """Retrain in this thread, reporting to the server log and to every page (``activity``)."""
    log_report = logged(f"retraining {why}")

    def report(done: int, total: int, message: str) -> None:
        log_report(done, total, message)
        session.activity = f"retraining {why}: {message} ({100 * done / max(total, 1):.0f} %)"

    try:
        state = session.retrain(progress=report)
        log.info("model v%d ready (%s)", state.model_version, why)
    except Exception as err:  # noqa: BLE001  (the restored model stays; the pages say why)
        log.warning("background retrain %s failed: %s", why, err)
        session.activity = f"background retrain failed: {err}"
        return
    session.activity = ""


# ---------------------------------------------------------------------- the state
class AppState(param.Parameterized):
    """What one expert sees and does; every engine call goes through a method here."""

    annotator = param.String(default="expert", doc="Name recorded with every label of this session.")
    selection = param.List(default=[], item_type=str, doc="Selected item ids.")
    colour_by = param.Selector(default="label", objects=list(COLOUR_BY))
    strategy = param.Selector(default="auto", objects=list(STRATEGIES))
    batch_size = param.Integer(default=10, bounds=(1, 10_000))
    target_class = param.String(default=None, allow_None=True)

    queue_ids = param.List(default=[], doc="The current batch, in the strategy's order.")
    queue_model = param.Integer(default=None, allow_None=True,
                                doc="Version of the model the current batch was chosen with.")
    queue_reasons = param.List(default=[])
    queue_scores = param.List(default=[])

    labels_version = param.Integer(default=0, doc="Bumped whenever labels or classes change.")
    map_version = param.Integer(default=0, doc="Version of the shared map table last drawn.")
    model_version = param.Integer(default=None, allow_None=True)
    trained_at = param.Number(default=None, allow_None=True)
    learner = param.String(default="", doc="The learner the model uses (auto's choice).")
    learner_reason = param.String(default="", doc="Why that learner (model.kind auto).")

    job = param.String(default="", doc="Running job ('retrain', 'queue', ...) or ''.")
    engine_activity = param.String(default="", doc="What the engine does in the background "
                                                   "for every page (e.g. retraining after a restart).")
    job_progress = param.Number(default=0.0, bounds=(0.0, 1.0))
    job_message = param.String(default="")
    status = param.String(default="", doc="Last confirmation, e.g. 'saved 3 labels'.")
    error = param.String(default="", doc="Last error message, '' when none.")
    saved_events = param.Integer(default=0, doc="Label events this session has had committed.")

    def __init__(self, session: Any, **params: Any) -> None:
        project = session.project
        params.setdefault("strategy", project.query.strategy)
        params.setdefault("batch_size", project.query.batch_size)
        params.setdefault("target_class", project.query.target_class)
        super().__init__(**params)
        self.session = session
        # Who asks for batches: one id per browser session, so a learning strategy credits each
        # label to the batch it answers, whichever session asked for it.
        self.requester = f"session-{uuid.uuid4().hex[:12]}"
        self._use_frame(session.map_frame())  # shared by every browser session: no copies here
        self._skipped: set[str] = set()
        self._seen_event = session.store.last_event_id()
        self._clusters = None
        self._sync_model()

    # ------------------------------------------------------------------ derived data
    def _use_frame(self, frame) -> None:
        self.frame = frame  # core.mapframe.MapFrame: positions, grid index, colour columns
        self._xy = frame.xy
        self._index = frame.point_index
        self.map_version = frame.version

    @property
    def xy(self) -> np.ndarray:
        return self._xy

    @property
    def dataset(self):
        return self.session.dataset

    @property
    def classes(self) -> list:
        return self.session.classes

    @property
    def rare_classes(self) -> list[str]:
        return [c.name for c in self.classes if c.rare]

    def selected_rows(self) -> np.ndarray:
        return self.session.positions(self.selection) if self.selection else np.empty(0, np.int64)

    def queue_rows(self) -> np.ndarray:
        return self.session.positions(self.queue_ids) if self.queue_ids else np.empty(0, np.int64)

    def points(self, annotators: bool = False):
        """The map's point table (see ``core.pointtable.point_table``); ``annotators`` adds who
        labelled each item (reads every event, so only when the map is coloured by it)."""
        state = self.session.state
        n = len(self.dataset)
        queued = self.queue_rows()
        clusters = self._clusters
        return point_table(
            self.dataset.ids, self._xy, self.session.labels_by_row(),
            predicted=None if state is None else state.predicted,
            uncertainty=None if state is None else state.uncertainty,
            score=queue_scores(n, queued, np.asarray(self.queue_scores, dtype=float)),
            cluster=None if clusters is None else clusters.assignment,
            annotator=latest_annotators(self.session.store.events(), self.dataset.ids,
                                        self.dataset._index) if annotators else None,
            rare_classes=self.rare_classes,
            queued_rows=queued,
        )

    # ------------------------------------------------------------------ selection
    def select(self, item_ids, add: bool = False) -> list[str]:
        """Select items by id (unknown ids raise); ``add`` extends the current selection."""
        ids = [str(i) for i in item_ids]
        self.session.positions(ids)  # raises KeyError naming an unknown id
        if add:
            ids = list(dict.fromkeys(self.selection + ids))
        self.selection = ids
        return ids

    def select_rows(self, rows, add: bool = False) -> list[str]:
        """Select items by row number (rows come from the index, so ids need no check)."""
        ids = self.dataset.ids[np.asarray(rows, dtype=np.int64)].tolist()
        if add:
            ids = list(dict.fromkeys(self.selection + ids))
        self.selection = ids
        return ids

    def select_box(self, x0: float, y0: float, x1: float, y1: float, add: bool = False) -> list[str]:
        """Select the items inside a box of map coordinates."""
        return self.select_rows(self._index.box(x0, y0, x1, y1), add=add)

    def select_lasso(self, xs, ys, add: bool = False) -> list[str]:
        """Select the items inside a lasso polygon of map coordinates."""
        return self.select_rows(self._index.lasso(xs, ys), add=add)

    def select_tap(self, x: float, y: float, radius: float | None = None, add: bool = False) -> list[str]:
        """Select the item nearest a tap, if one lies within ``radius`` (default: 2% of the map)."""
        if radius is None:
            span = float(np.ptp(self._xy, axis=0).max()) if len(self._xy) else 1.0
            radius = 0.02 * (span or 1.0)
        row = self._index.nearest(x, y, radius)
        if row is None:
            if not add:
                self.selection = []
            return self.selection
        return self.select_rows([row], add=add)

    def clear_selection(self) -> None:
        self.selection = []

    # ------------------------------------------------------------------ labelling
    def _fail(self, err: Exception) -> None:
        self.status = ""
        self.error = str(err)

    def label_selection(self, label: str, split: str | None = None) -> list[int]:
        """Give every selected item ``label``; returns the committed event ids.

        ``split='test'`` puts the items in the curated test split (never trained on); ``None``
        keeps each item's split (new items: train).
        """
        ids = self._selection_to_label()
        if not ids:
            return []
        return self._labelled(label, ids, split, *_attempt(self._write_labels, ids, label, split))

    async def label_selection_async(self, label: str, split: str | None = None) -> list[int]:
        """:meth:`label_selection`; a large selection is written (and the shared map table
        updated) in a worker thread, so every other page keeps being served meanwhile."""
        ids = self._selection_to_label()
        if len(ids) < LARGE_ACTION:
            return self.label_selection(label, split) if ids else []
        self.job, self.job_message = "label", f"saving {len(ids):,} labels as {label!r}"
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                STORE_WRITER, self._write_and_sync, self._write_labels, ids, label, split)
        finally:
            self.job, self.job_message = "", ""
        return self._labelled(label, ids, split, *outcome)

    def _write_labels(self, ids: list[str], label: str, split: str | None) -> list[int]:
        return self.session.label(ids, label, self.annotator, split=split)

    def _write_and_sync(self, write, *args):
        """A store write then the shared map table's update (both in the worker thread)."""
        outcome = _attempt(write, *args)
        if outcome[1] is None:
            self.session.sync_map_frame(self.frame)
        return outcome

    def _selection_to_label(self) -> list[str]:
        if not self.selection:
            self._fail(ValueError("select items on the map or in the queue first"))
            return []
        return list(self.selection)

    def _labelled(self, label: str, ids: list[str], split: str | None, events,
                  err: Exception | None) -> list[int]:
        if err is not None:
            self._fail(err)
            return []
        self.error = ""
        self.saved_events += len(events)
        where = " (test split)" if split == "test" else ""
        self.status = f"saved {len(events)} label{'s' * (len(events) != 1)} as {label!r}{where}"
        self._labels_changed()
        self._advance(ids)
        return events

    def accept_predictions(self) -> list[int]:
        """Label each selected item with its predicted class (one event per item)."""
        state = self.session.state
        if state is None or not self.selection:
            self._fail(ValueError("accepting predictions needs a trained model and a selection"))
            return []
        rows = self.selected_rows()
        events: list[int] = []
        try:
            predicted = {i: str(state.predicted[r]) for i, r in zip(self.selection, rows)}
            events = self.session.label_each(predicted, self.annotator, origin="accepted")
        except (TailwiseError, ValueError) as err:
            self._fail(err)
        if events:
            self.error = ""
            self.saved_events += len(events)
            self.status = f"saved {len(events)} accepted prediction{'s' * (len(events) != 1)}"
            self._labels_changed()
        return events

    def undo(self) -> int:
        """Revert this annotator's last label action (all its events); returns events reverted.
        Someone else's later label is never touched: the refusal is shown instead."""
        return self._undone(*_attempt(self.session.undo_count, self.annotator))

    async def undo_async(self) -> int:
        """:meth:`undo` in a worker thread (an action may hold 10^5 items: one SQL statement, but
        the pages keep being served meanwhile)."""
        self.job, self.job_message = "undo", "undoing your last action"
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(
                STORE_WRITER, self._write_and_sync, self.session.undo_count, self.annotator)
        finally:
            self.job, self.job_message = "", ""
        return self._undone(*outcome)

    def _undone(self, reverted, err: Exception | None) -> int:
        if err is not None:
            self._fail(err)
            return 0
        self.error = ""
        self.status = f"undone {reverted} label{'s' * (reverted != 1)}" if reverted else "nothing to undo"
        if reverted:
            self._labels_changed()
        return reverted

    def skip(self) -> None:
        """Leave the selected items unlabelled and move on to the next queued item."""
        ids = list(self.selection)
        self._skipped.update(ids)
        self.status = f"skipped {len(ids)} item{'s' * (len(ids) != 1)}"
        self._advance(ids)

    def add_class(self, name: str, colour: str | None = None, rare: bool = False) -> None:
        """Create a class (validated by the engine); errors are shown, not raised."""
        try:
            cls = self.session.add_class(name, colour=colour or None, rare=rare)
        except (TailwiseError, ValueError) as err:
            self._fail(err)
            return
        self.error = ""
        self.status = f"created class {cls.name!r}"
        self._labels_changed()

    def _advance(self, done_ids: list[str]) -> None:
        """After labelling/skipping items of the queue, select the next open queued item."""
        if not self.queue_ids or not set(done_ids) <= set(self.queue_ids):
            return
        labelled = self.session.current_labels()
        for item in self.queue_ids:
            if item not in labelled and item not in self._skipped and item not in done_ids:
                self.selection = [item]
                return
        self.selection = []

    def _labels_changed(self) -> None:
        self._seen_event = self.session.store.last_event_id()
        self._sync_frame()
        self.labels_version += 1

    def _sync_frame(self) -> None:
        """Bring the shared map table up to date (only changed rows); redraw if it moved on."""
        self.session.sync_map_frame(self.frame)
        if self.frame.version != self.map_version:
            self.map_version = self.frame.version

    # ------------------------------------------------------------------ clusters
    def clusters(self):
        """Predicted clusters (computed by the engine; cached per model version)."""
        self._clusters = self.session.clusters()
        self._show_clusters()
        return self._clusters

    async def clusters_async(self):
        """``clusters`` with the engine call in a worker thread."""
        self._clusters = await asyncio.get_running_loop().run_in_executor(_WORKER, self.session.clusters)
        self._show_clusters()
        return self._clusters

    def _show_clusters(self) -> None:
        """Give the shared map table the clusters (once per model version) so it can colour by them."""
        self.frame.apply_clusters(self.model_version, self._clusters.assignment)
        if self.frame.version != self.map_version:
            self.map_version = self.frame.version

    def select_cluster(self, cluster: int) -> list[str]:
        clusters = self._clusters or self.clusters()
        return self.select_rows(clusters.rows(int(cluster)))

    def select_cluster_of_selection(self) -> list[str]:
        """Extend the selection to the whole predicted cluster(s) of the selected items."""
        if not self.selection:
            return []
        clusters = self._clusters or self.clusters()
        wanted = np.unique(clusters.assignment[self.selected_rows()])
        return self.select_rows(np.flatnonzero(np.isin(clusters.assignment, wanted)))

    # ------------------------------------------------------------------ queue
    def _query(self):
        target = self.target_class or None
        return self.session.next_batch(self.batch_size, strategy=self.strategy, target_class=target,
                                       requester=self.requester)

    def _apply_queue(self, result, select_first: bool = True, model_version: int | None = None) -> None:
        self.queue_model = model_version
        self.queue_scores = [float(s) for s in np.asarray(result.scores, dtype=float)]
        self.queue_reasons = [str(r) for r in result.reasons]
        self.queue_ids = [str(i) for i in result.ids]
        self._skipped.clear()
        self.error = ""
        self.status = f"queued {len(self.queue_ids)} items ({self.strategy})"
        if select_first or not self.selection:
            self.selection = self.queue_ids[:1]

    def next_batch(self) -> list[str]:
        """Ask the strategy for the next batch (blocking); selects its first item."""
        try:
            version = self.model_version
            self._apply_queue(self._query(), model_version=version)
        except (TailwiseError, ValueError) as err:
            self._fail(err)
        return self.queue_ids

    async def next_batch_async(self, select_first: bool = True) -> list[str]:
        """``next_batch`` with the engine call in a worker thread. ``select_first=False`` keeps
        a selection the expert made meanwhile (the batch asked for when the page opens)."""
        self.job, self.job_message = "queue", "choosing the next batch"
        try:
            version = self.model_version
            result = await asyncio.get_running_loop().run_in_executor(_WORKER, self._query)
            self._apply_queue(result, select_first=select_first, model_version=version)
        except (TailwiseError, ValueError) as err:
            self._fail(err)
        finally:
            self.job, self.job_message = "", ""
        return self.queue_ids

    async def first_batch_async(self) -> list[str]:
        """The batch asked for when the page opens: selects its first item only if the expert has
        not selected anything meanwhile."""
        if self.queue_ids or self.job:
            return self.queue_ids
        ids = await self.next_batch_async(select_first=False)
        if ids and not self.error:
            self.status = f"first batch ready: {len(ids)} items ({self.strategy})"
        return ids

    # ------------------------------------------------------------------ retraining
    def _sync_model(self) -> None:
        state = self.session.state
        choice = None if state is None else state.model_choice
        # One update, so no view ever sees a new version with the old (or no) training time.
        self.param.update(model_version=None if state is None else int(state.model_version),
                          trained_at=None if state is None else float(state.trained_at),
                          learner=choice.chosen if choice else (
                              "" if state is None else self.session.project.model.kind),
                          learner_reason=choice.reason if choice else "")

    def _retrained(self) -> None:
        self._clusters = None
        self._sync_model()
        self._sync_frame()
        self.error = ""
        self.status = f"model v{self.model_version} trained"
        self.labels_version += 1

    def retrain(self) -> bool:
        """Retrain now (blocking). On failure the error is shown and the old model kept."""
        try:
            self.session.retrain(progress=self._progress)
        except Exception as err:  # noqa: BLE001  (any failure keeps the previous model)
            self._fail(err)
            return False
        self._retrained()
        return True

    async def retrain_async(self) -> bool:
        """``retrain`` in a worker thread; progress reaches the page through the event loop."""
        if self.job == "retrain":
            return False
        loop = asyncio.get_running_loop()
        self.job, self.job_progress, self.job_message = "retrain", 0.0, "starting"
        self.error = ""
        log_progress = logged(f"retrain asked by {self.annotator!r}")

        def progress(done: int, total: int, message: str) -> None:
            log_progress(done, total, message)
            loop.call_soon_threadsafe(self._progress, done, total, message)

        try:
            await loop.run_in_executor(_WORKER, partial(self.session.retrain, progress=progress))
        except Exception as err:  # noqa: BLE001
            self._fail(err)
            return False
        finally:
            self.job, self.job_progress, self.job_message = "", 0.0, ""
        self._retrained()
        if self.queue_ids:  # the queue was chosen by the old model: ask the new one
            await self.next_batch_async()
            self.status = f"model v{self.model_version} trained; queue refreshed"
        return True

    async def recompute_map_async(self) -> bool:
        """Project the (possibly learned) embedding again, in a worker thread. The map moves only
        when asked; other browser sessions keep their layout until they reload."""
        if self.job:
            return False
        loop = asyncio.get_running_loop()
        self.job, self.job_progress, self.job_message = "map", 0.0, "recomputing the map"

        def progress(done: int, total: int, message: str) -> None:
            loop.call_soon_threadsafe(self._progress, done, total, message)

        try:
            await loop.run_in_executor(_WORKER, partial(self.session.recompute_map, progress=progress))
        except Exception as err:  # noqa: BLE001  (the old map stays)
            self._fail(err)
            return False
        finally:
            self.job, self.job_progress, self.job_message = "", 0.0, ""
        self._use_frame(self.session.map_frame())
        self._clusters = None
        self.status = "map recomputed"
        self.labels_version += 1
        return True

    def _progress(self, done: int, total: int, message: str) -> None:
        self.job_progress = min(max(done / max(total, 1), 0.0), 1.0)
        self.job_message = str(message)

    # ------------------------------------------------------------------ other sessions
    def refresh(self) -> bool:
        """Pick up labels and models from other sessions of the project; True if anything changed.
        Costs two comparisons when nothing did; otherwise the shared map table is updated once
        (for every session) with only the changed rows."""
        changed = False
        if self.engine_activity != self.session.activity:
            self.engine_activity = self.session.activity
        last = self.session.store.last_event_id()
        if last != self._seen_event:
            self._seen_event = last
            changed = True
        state = self.session.state
        if state is not None and state.model_version != self.model_version:
            self._clusters = None
            self._sync_model()
            changed = True
            if self.queue_ids and not self.job and _running_loop() is not None:
                # The queue was chosen by the old model: ask the new one (in a worker thread).
                asyncio.ensure_future(self.next_batch_async(select_first=False))
        if changed:
            if last - self.frame.event_id > LARGE_ACTION and _running_loop() is not None:
                asyncio.ensure_future(self._sync_frame_async())  # a bulk action by someone else
            else:
                self._sync_frame()
            self.labels_version += 1
        return changed

    async def _sync_frame_async(self) -> None:
        """Apply a large batch of others' labels to the shared table off the serving thread."""
        await asyncio.get_running_loop().run_in_executor(STORE_WRITER, self.session.sync_map_frame,
                                                         self.frame)
        if self.frame.version != self.map_version:
            self.map_version = self.frame.version


def _attempt(call, *args):
    """``(result, None)`` or ``(None, error)`` for the errors a page shows to its user."""
    try:
        return call(*args), None
    except (TailwiseError, ValueError, KeyError) as err:
        return None, err


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def escape(text: object) -> str:
    """HTML-escape user text (class names, notes, annotators) before it is rendered."""
    return html.escape(str(text), quote=True)
