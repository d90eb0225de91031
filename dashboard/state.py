"""Per-browser-session state of the dashboard, over a ``core.session.Session``.

``AppState`` holds what one expert is doing (selection, colour-by, queue, annotator, running job)
and calls the engine for everything else. Views read its parameters and call its methods; tests
drive it without a server. Sessions of the same project share one prepared ``Session`` (embedding,
map, model, label store) through :func:`open_shared`, never their selection or annotator.

Identity and access: the annotator is the logged-in user when the server authenticates (Panel's
``--basic-auth`` or OAuth), otherwise the name the tab chose (no label before one is chosen).
Every method checks the user's role (``core.access``) before it acts; a refusal is shown as the
error, never carried out.

Speed with many experts: a label is committed, acknowledged ("saved") and announced to the views
as the few items it changed (``changes`` / ``last_changed``: the map recolours just those
points); the views summarising every label wait for ``labels_version``, which a ``Pacer`` bumps
once labelling pauses. Other tabs catch up from the store's new events in ``refresh``, the same
way. Queries, clusters and maps run on a work pool of their own; training runs on the project's
training thread (``Session.request_retrain``), so neither waits behind the other.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import param

from core.errors import AccessError, TailwiseError
from core.layout import COLOUR_BY
from core.pointtable import latest_annotators, point_table, queue_scores
from core.progress import logged, tee
from core.project import STRATEGIES
from dashboard.pacing import Pacer, Schedule

log = logging.getLogger("tailwise")

# Queries, clusters and map projections run here, off the event loop. Training never does: it
# runs on each project's own training thread (core.jobs.RetrainScheduler), so this work never
# waits behind a retrain.
_WORK = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tailwise-work")
# Label, undo and import actions write the store here (a commit waits for the disk), off the
# event loop every tab shares; one writer, so each tab's clicks are written in order.
STORE_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tailwise-store")
# Items: a larger action shows as a job while it is written, and views redraw in full after it
# instead of patching item by item.
LARGE_ACTION = 2_000
# Summaries of every label (legend, counts, history) are redrawn once labelling pauses for
# SUMMARY_QUIET_S, at least every SUMMARY_MAX_WAIT_S while it goes on, and at most every
# SUMMARY_MIN_INTERVAL_S.
SUMMARY_QUIET_S, SUMMARY_MAX_WAIT_S, SUMMARY_MIN_INTERVAL_S = 2.0, 10.0, 10.0
# Another tab's new model is shown (map colours, then the new model's batch) at once, but in a
# served page at most every MODEL_MIN_INTERVAL_S: while one expert retrains every few seconds,
# each model redrawn in every other tab is browser and loop work that the clicks of all wait behind
# (the newest model is shown when the interval is over; the Refresh button shows it at once).
MODEL_MIN_INTERVAL_S = 5.0
# Other tabs' labels are patched into a served page's map at most every OTHERS_MIN_INTERVAL_S (the
# first at once; the Refresh button and an undo at once): five experts labelling made every page
# repaint its map twice a second for the others' labels, and the browsers' rendering, on the same
# cores as the server, was what each click's "saved" waited behind (the page's own labels are
# shown at once; its queue and the store are never behind).
OTHERS_MIN_INTERVAL_S = 2.0


# Label counts per store and split, with the store's last event and classes they were read at:
# shared by every tab of the server (see AppState.label_counts).
_LABEL_COUNTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_COUNTS_LOCK = threading.Lock()


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

                # Training runs in a process of its own: clicks never wait behind it.
                session = Session.open(key, training="process")
            else:
                session = opener(key)
            report = tee(prep.report, logged(f"preparing {Path(key).name}"))
            report(0, 1, "loading embeddings and map")
            # The last saved model (if any) is shown at once; training happens after the pages open.
            session.prepare(progress=report, resume=True, train=False)
            report(0, 1, "loading the model library and the page's views")
            if getattr(session, "training", "inline") == "process":
                # The server reads each new model (torch): import it now, not at the first model
                # while experts are clicking (an import holds the interpreter for seconds).
                import torch  # noqa: F401

                import core.models.io  # noqa: F401
            # The pages' views too: imported by the first page on the event loop every tab
            # shares, they held it for a second or two. (HoloViews' Bokeh backend is selected
            # by the first page, ``dashboard.style.holoviews``: importing it here would skip that.)
            from dashboard.views import view_classes

            view_classes()
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
    """Retrain on the project's training thread and wait for it, reporting to the server log and
    to every page (``activity``); a Retrain pressed meanwhile joins the follow-up run."""
    log_report = logged(f"retraining {why}")

    def report(done: int, total: int, message: str) -> None:
        log_report(done, total, message)
        session.activity = f"retraining {why}: {message} ({100 * done / max(total, 1):.0f} %)"

    try:
        state = session.request_retrain(report).result()
        log.info("model v%d ready (%s)", state.model_version, why)
    except Exception as err:  # noqa: BLE001  (the restored model stays; the pages say why)
        log.warning("background retrain %s failed: %s", why, err)
        session.activity = f"background retrain failed: {err}"
        return
    session.activity = ""


# ---------------------------------------------------------------------- the state
def describe(err: BaseException) -> str:
    """An error as the page shows it: our own errors by their message, others with their type."""
    if isinstance(err, (TailwiseError, ValueError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


class AppState(param.Parameterized):
    """What one expert sees and does; every engine call goes through a method here."""

    annotator = param.String(default="", doc="Name recorded with every label of this session: "
                             "the logged-in user, or the name this tab chose ('' until then).")
    user = param.String(default=None, allow_None=True, constant=True,
                        doc="The user the server authenticated (None without authentication).")
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

    changes = param.Integer(default=0, doc="Bumped when items' labels change (``last_changed``).")
    labels_version = param.Integer(default=0, doc="Bumped (paced) when views summarising every "
                                   "label should redraw.")
    classes_version = param.Integer(default=0, doc="Bumped when the class schema changes.")
    map_version = param.Integer(default=0, doc="Version of the shared map table last drawn "
                                "(triggered also when the map itself is recomputed).")
    model_version = param.Integer(default=None, allow_None=True)
    trained_at = param.Number(default=None, allow_None=True)
    learner = param.String(default="", doc="The learner the model uses (auto's choice).")
    learner_reason = param.String(default="", doc="Why that learner (model.kind auto).")

    offload_reads = param.Boolean(default=False, doc="Views read the engine on the work pool "
                                  "(a served page); False reads at once (tests, notebooks).")
    job = param.String(default="", doc="Running job ('retrain', 'queue', ...) or ''.")
    engine_activity = param.String(default="", doc="What the engine does in the background "
                                                   "for every page (e.g. retraining after a restart).")
    job_progress = param.Number(default=0.0, bounds=(0.0, 1.0))
    job_message = param.String(default="")
    status = param.String(default="", doc="Last confirmation of this expert's own action, "
                                          "e.g. 'saved 3 labels'.")
    notice = param.String(default="", doc="What the page did by itself meanwhile (a batch "
                          "chosen when it opened, or by a new model): shown beside the last "
                          "confirmation, never in its place.")
    error = param.String(default="", doc="Last error message, '' when none.")
    saved_events = param.Integer(default=0, doc="Label events this session has had committed.")
    cluster_method = param.String(default="kmeans", doc="The cluster method of the clusters "
                                  "shown (the project's clusters.method when they were computed).")
    cluster_state = param.String(default="", doc="'' (not computed yet), 'computing', 'ready' or "
                                 "'failed: <why>'.")

    def __init__(self, session: Any, *, schedule: Schedule | None = None,
                 clock: Callable[[], float] = time.monotonic, **params: Any) -> None:
        """``schedule(delay_s, callback)`` runs paced redraws later (the page passes its
        document's timeout callbacks; without one they happen at once). ``clock`` is for tests."""
        project = session.project
        params.setdefault("strategy", project.query.strategy)
        params.setdefault("batch_size", project.query.batch_size)
        params.setdefault("target_class", project.query.target_class)
        params.setdefault("cluster_method", project.clusters.method)
        if params.get("user"):
            params["annotator"] = params["user"]  # the logged-in user labels, nobody else
        super().__init__(**params)
        self.session = session
        # Who asks for batches: one id per browser session, so a learning strategy credits each
        # label to the batch it answers, whichever session asked for it.
        self.requester = f"session-{uuid.uuid4().hex[:12]}"
        self._use_frame(session.map_frame())  # shared by every browser session: no copies here
        self._skipped: set[str] = set()
        self._answered: set[str] = set()  # items of the current queue this tab labelled
        self._second_opinions: set[str] = set()  # queued for this annotator's second opinion
        self._labelled_open: set[str] = set()  # labelled, yet queued for a decision (review)
        self._replaced_queue: set[str] = set()  # see _apply_queue
        self._seen_event = session.store.last_event_id()
        self._classes_seen = self._class_signature()
        self._clusters = None
        self.last_changed: list[str] | None = []
        self._own: set[int] = set()  # event ids this tab announced itself (skipped at catch-up)
        self._summary = Pacer(self._bump_summary, schedule, quiet_s=SUMMARY_QUIET_S,
                              max_wait_s=SUMMARY_MAX_WAIT_S, min_interval_s=SUMMARY_MIN_INTERVAL_S,
                              clock=clock)
        self._clock = clock
        self._pace_models = schedule is not None  # without a page (tests) a model is shown at once
        self._model_shown_at = float("-inf")
        self._others_shown_at = float("-inf")
        self._writing = asyncio.Lock()
        self._queue_asked_for: int | None = None  # the model a new batch was last asked of
        self._frame_sync: asyncio.Future | None = None  # the map table's update after a bulk action
        self._selection_rows: tuple[list[str], np.ndarray] | None = None  # (selection, its rows)
        self._sync_model()
        self.param.watch(self._keep_user, "annotator")
        self._own_watchers = [*self._watchers()]  # the views' come after

    # ------------------------------------------------------------------ views
    def forget_views(self) -> None:
        """Stop calling the views built so far (a layout switch replaces them: otherwise every
        earlier layout's map, tables and plots would keep redrawing at every label and model).

        Every watcher of this state that it did not set up itself belongs to a view of the page:
        the views' own ``param.watch`` calls, and those that their widgets' bindings, bound
        panes and HoloViews streams add when built or first drawn."""
        for watcher in self._watchers():
            if not any(watcher is own for own in self._own_watchers):
                self.param.unwatch(watcher)

    def _watchers(self) -> list[param.parameterized.Watcher]:
        return [w for kinds in self.param.watchers.values() for ws in kinds.values() for w in ws]

    # ------------------------------------------------------------------ identity and access
    @property
    def identity(self) -> str:
        """Who acts in this session: the logged-in user, else the chosen annotator name."""
        return self.user or self.annotator.strip()

    @property
    def role(self) -> str | None:
        """This session's role ('admin', 'annotator', 'viewer') or None."""
        return self.session.access.role(self.identity)

    def may(self, action: str) -> bool:
        """Whether this session's user may do ``action`` (see ``core.access.ACTIONS``)."""
        return self.session.access.allows(self.identity, action)

    def offers(self, action: str) -> bool:
        """Whether the page should show the controls for ``action``: not when the logged-in user
        (or the project's open policy) already says no. The methods check again in any case."""
        return self.may(action) or (not self.user and not self.session.access.open)

    def _require(self, action: str) -> bool:
        """True when allowed; otherwise the refusal is shown and False returned."""
        try:
            self.session.access.require(self.identity, action)
        except AccessError as err:
            self._fail(err)
            return False
        return True

    def can_label(self) -> bool:
        """True when this tab may label now; otherwise the reason is shown and False returned."""
        return self._can_label()

    def _can_label(self) -> bool:
        if not self.identity:
            self._fail(ValueError("choose your annotator name first (top of the page): every "
                                  "label records who gave it; this browser remembers the name"))
            return False
        return self._require("label")

    def _keep_user(self, event) -> None:
        """With authentication the annotator is the logged-in user and cannot be edited."""
        if self.user and event.new != self.user:
            self.annotator = self.user

    # ------------------------------------------------------------------ derived data
    def _use_frame(self, frame) -> None:
        moved = getattr(self, "frame", None) is not None and frame is not self.frame
        self.frame = frame  # core.mapframe.MapFrame: positions, grid index, colour columns
        self._xy = frame.xy
        self._index = frame.point_index
        self.map_version = frame.version
        if moved:  # a recomputed map: new positions even if the version number is the same
            self.param.trigger("map_version")

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
        return self.rows_of(self.selection)

    def rows_of(self, item_ids: list[str]) -> np.ndarray:
        """Rows of ``item_ids``; for the selection a box, lasso or tap made, the rows it came from
        (no id lookup per item: a box may hold 10^5 items, each view asks on the serving loop)."""
        known = self._selection_rows
        if known is not None and known[0] is item_ids:
            return known[1]
        return self.session.positions(item_ids) if item_ids else np.empty(0, np.int64)

    def queue_rows(self) -> np.ndarray:
        return self.session.positions(self.queue_ids) if self.queue_ids else np.empty(0, np.int64)

    def label_counts(self, split: str | None = None) -> dict[str, int]:
        """``LabelStore.label_counts``, read once per store state for every tab of the server
        (each summary of each tab asked the store again: a scan of every event, 0.4 s each at
        3x10^5 labels, on the loop every tab shares)."""
        store = self.session.store
        state = (store.last_event_id(), self._class_signature())
        with _COUNTS_LOCK:
            cached = _LABEL_COUNTS.get(store, {}).get(split)
        if cached is not None and cached[0] == state:
            return dict(cached[1])
        counts = store.label_counts(split=split)
        with _COUNTS_LOCK:
            _LABEL_COUNTS.setdefault(store, {})[split] = (state, counts)
        return dict(counts)

    def labels_of(self, item_ids) -> dict[str, str]:
        """Current labels of just these items (cheap; never copies every label)."""
        return self.session.store.labels_of(item_ids)

    def points(self, annotators: bool = False, rows: np.ndarray | None = None):
        """The map's point table (see ``core.pointtable.point_table``); ``annotators`` adds who
        labelled each item (reads every event, so only when the map is coloured by it). ``rows``
        limits it to those rows (for patching a few points)."""
        state = self.session.state
        n = len(self.dataset)
        queued = self.queue_rows()
        clusters = self._clusters
        if rows is None:
            labels = self.session.labels_by_row()
            who = (latest_annotators(self.session.store.events(), self.dataset.ids,
                                     self.dataset._index) if annotators else None)
            table = point_table(
                self.dataset.ids, self._xy, labels,
                predicted=None if state is None else state.predicted,
                uncertainty=None if state is None else state.uncertainty,
                score=queue_scores(n, queued, np.asarray(self.queue_scores, dtype=float)),
                cluster=None if clusters is None else clusters.assignment,
                annotator=who, rare_classes=self.rare_classes, queued_rows=queued)
            return table
        rows = np.asarray(rows, dtype=np.int64)
        ids = self.dataset.ids[rows]
        current = self.labels_of(ids.tolist())
        labels = np.array([current.get(i) for i in ids], dtype=object)
        who = None
        if annotators:
            history = {i: self.session.store.history(i) for i in ids.tolist()}
            who = np.array([h[-1].annotator if h and h[-1].label is not None else "" for h in
                            (history[i] for i in ids.tolist())], dtype=object)
        score = queue_scores(n, queued, np.asarray(self.queue_scores, dtype=float))[rows]
        table = point_table(
            ids, self._xy[rows], labels,
            predicted=None if state is None else state.predicted[rows],
            uncertainty=None if state is None else state.uncertainty[rows],
            score=score, cluster=None if clusters is None else clusters.assignment[rows],
            annotator=who, rare_classes=self.rare_classes)
        table.index = rows
        return table

    # ------------------------------------------------------------------ background work
    def spawn(self, work, what: str) -> asyncio.Task:
        """Run the coroutine ``work`` as a task of the event loop; a failure is logged with its
        traceback and shown on this page (a bare task's exception surfaced, at best, as
        "Task exception was never retrieved" when it was garbage-collected)."""
        task = asyncio.ensure_future(work)
        task.add_done_callback(partial(self._task_done, what))
        return task

    def _task_done(self, what: str, task: asyncio.Future) -> None:
        if task.cancelled() or task.exception() is None:
            return
        err = task.exception()
        log.error("%s failed (tab of %r)", what, self.identity, exc_info=err)
        self._fail(err, what)

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
        rows = np.asarray(rows, dtype=np.int64)
        ids = self.dataset.ids[rows].tolist()
        if add:
            ids = list(dict.fromkeys(self.selection + ids))
        else:
            self._selection_rows = (ids, rows)  # before the views hear of the new selection
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
    def _fail(self, err: BaseException, what: str = "") -> None:
        """Show ``err`` as this page's error (``what`` failed, where given) in place of the status."""
        self.status = ""
        self.error = f"{what} failed: {describe(err)}" if what else describe(err)

    def _saved(self, events: list[int], text: str, items: list[str],
               advance: bool = False) -> None:
        """Acknowledge committed events first ("saved" depends on nothing else), then move the
        queue on and tell the views which items changed (the catch-up skips these events)."""
        self.error = ""
        self.saved_events += len(events)
        self.status = text
        if advance:
            self._answered.update(items)
            self._advance(items)
        if len(items) > LARGE_ACTION:
            self._announce(None)
        else:
            self._own.update(events)
            self._announce(items)

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
        """:meth:`label_selection` with the commit (and the shared map table's update) on the
        store's writer thread, so the event loop every tab shares keeps serving the others
        meanwhile. This tab's clicks are written in order, each with the selection it was made
        on; a large selection shows as a job while it is written."""
        ids = self._selection_to_label()
        if not ids:
            return []
        large = len(ids) >= LARGE_ACTION
        if large:
            self.job, self.job_message = "label", f"saving {len(ids):,} labels as {label!r}"
            log.info("bulk label of %d items asked by %r", len(ids), self.identity)
        started = time.perf_counter()
        try:
            async with self._writing:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    STORE_WRITER, self._write_and_sync, self._write_labels, ids, label, split)
        finally:
            if large:
                self.job, self.job_message = "", ""
        written = time.perf_counter()
        events = self._labelled(label, ids, split, *outcome)  # "saved" is shown now
        if large:
            await self._frame_synced()
            log.info("bulk label by %r: store %.2f s, map table %.2f s", self.identity,
                     written - started, time.perf_counter() - written)
        return events

    def _write_labels(self, ids: list[str], label: str, split: str | None) -> list[int]:
        return self.session.label(ids, label, self.identity, split=split)

    def _write_and_sync(self, write, *args):
        """A store write then the shared map table's update (both in the worker thread). After
        a large action the table is updated later (``_announce(None)``, off the serving loop), so
        that "saved" / "undone" shows once the store has committed, not after 10^5 map rows."""
        outcome = _attempt(write, *args)
        result, err = outcome
        size = result if isinstance(result, int) else len(result or ())
        if err is None and size <= LARGE_ACTION:
            self.session.sync_map_frame(self.frame)
        return outcome

    def _selection_to_label(self) -> list[str]:
        if not self._can_label():
            return []
        if not self.selection:
            self._fail(ValueError("select items on the map or in the queue first"))
            return []
        return list(self.selection)

    def _labelled(self, label: str, ids: list[str], split: str | None, events,
                  err: Exception | None) -> list[int]:
        if err is not None:
            self._fail(err)
            return []
        where = " (test split)" if split == "test" else ""
        self._saved(events, f"saved {len(events)} label{'s' * (len(events) != 1)} as {label!r}{where}",
                    ids, advance=True)
        return events

    def accept_predictions(self) -> list[int]:
        """Label each selected item with its predicted class (one action, undone as one)."""
        if not self._can_label():
            return []
        state = self.session.state
        if state is None or not self.selection:
            self._fail(ValueError("accepting predictions needs a trained model and a selection"))
            return []
        rows = self.selected_rows()
        try:
            predicted = {i: str(state.predicted[r]) for i, r in zip(self.selection, rows)}
            events = self.session.label_each(predicted, self.identity, origin="accepted")
        except (TailwiseError, ValueError) as err:
            self._fail(err)
            return []
        if events:
            self._saved(events, f"saved {len(events)} accepted prediction{'s' * (len(events) != 1)}",
                        list(predicted))
        return events

    def undo(self) -> int:
        """Revert this annotator's last label action (all its events); returns events reverted.
        Someone else's later label is never touched: the refusal is shown instead."""
        if not self._can_label():
            return 0
        return self._undone(*_attempt(self.session.undo_count, self.identity))

    async def undo_async(self) -> int:
        """:meth:`undo` on the store's writer thread (an action may hold 10^5 items: one SQL
        statement, but the pages keep being served meanwhile)."""
        if not self._can_label():
            return 0
        self.job, self.job_message = "undo", "undoing your last action"
        started = time.perf_counter()
        log.info("undo asked by %r", self.identity)
        try:
            async with self._writing:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    STORE_WRITER, self._write_and_sync, self.session.undo_count, self.identity)
        finally:
            self.job, self.job_message = "", ""
        written = time.perf_counter()
        reverted = self._undone(*outcome)  # "undone" is shown now; the map's table follows:
        await self._frame_synced()
        log.info("undo by %r: %s events, store %.2f s, map table %.2f s", self.identity,
                 reverted, written - started, time.perf_counter() - written)
        return reverted

    async def _frame_synced(self) -> None:
        """Wait for the shared map table's update a bulk action started (``_announce``)."""
        pending, self._frame_sync = self._frame_sync, None
        if pending is not None:
            await pending

    def _undone(self, reverted, err: Exception | None) -> int:
        if err is not None:
            self._fail(err)
            return 0
        self.error = ""
        self.status = f"undone {reverted} label{'s' * (reverted != 1)}" if reverted else "nothing to undo"
        if reverted:
            self._catch_up(now=False, labels_now=True)  # the reverted items (and any other tab's since)
        return reverted

    def skip(self) -> None:
        """Leave the selected items unlabelled and move on to the next queued item."""
        if not self._require("label"):
            return
        ids = list(self.selection)
        self._skipped.update(ids)
        self.status = f"skipped {len(ids)} item{'s' * (len(ids) != 1)}"
        self._advance(ids)

    def _advance(self, done_ids: list[str]) -> None:
        """After labelling/skipping items of the queue, select the next open queued item. Items
        of a queue a new model replaced meanwhile count as queued (the expert was walking it)."""
        if not self.queue_ids or not set(done_ids) <= set(self.queue_ids) | self._replaced_queue:
            return
        self.selection = self._first_open(done_ids)

    def _first_open(self, done_ids=()) -> list[str]:
        """The first queued item still to answer (``[]`` when none): not skipped, answered or
        labelled, except a second opinion or a suspect to review, which carry a label already."""
        labelled = self.labels_of(self.queue_ids)
        for item in self.queue_ids:
            done = item in self._skipped or item in done_ids or item in self._answered
            if not done and (item not in labelled or item in self._labelled_open):
                return [item]
        return []

    def _announce(self, items) -> None:
        """Tell the views which items changed now (``None``: too many to patch, redraw) and bring
        the shared map table up to date; summaries follow once labelling pauses."""
        self.last_changed = None if items is None else list(dict.fromkeys(items))
        if items is None or len(self.last_changed) > LARGE_ACTION:
            self.last_changed = None
            if _running_loop() is not None:  # a bulk action: the table's update off the loop,
                self._frame_sync = self.spawn(self._announce_bulk(), "the map table's update")
                return
        self._sync_frame()
        self.changes += 1
        self._summary.poke()

    async def _announce_bulk(self) -> None:
        await self._sync_frame_async()
        self.last_changed = None  # too many to patch: the views redraw
        self.changes += 1
        self._summary.poke()

    def _bump_summary(self) -> None:
        state = self.session.state
        if state is not None and state.model_version != self.model_version:
            # Another tab's new model, adopted at the summaries' pace: one update with the
            # summaries, so a view following both redraws once.
            self._adopt_model(labels_version=self.labels_version + 1)
            return
        self.labels_version += 1

    def _catch_up_labels(self, events: list, now: bool) -> bool:
        """Announce the items other tabs labelled in ``events`` (this tab's own were announced
        when made), at most every OTHERS_MIN_INTERVAL_S in a served page unless ``now``; until
        then the events stay unread. True if the events were taken."""
        items = [e.item_id for e in events if e.event_id not in self._own]
        if items and not self._due(self._others_shown_at, OTHERS_MIN_INTERVAL_S, now):
            return False
        if events:
            self._seen_event = events[-1].event_id
            self._own.difference_update(e.event_id for e in events)
        if items:
            self._others_shown_at = self._clock()
            self._announce(items)
        return True

    def _model_due(self, now: bool) -> bool:
        """True when another tab's newer model may be shown (see :meth:`_due`)."""
        return self._due(self._model_shown_at, MODEL_MIN_INTERVAL_S, now)

    def _due(self, shown_at: float, interval_s: float, now: bool) -> bool:
        """True when another tab's work may be shown: at once without a page, when asked
        (``now``: the Refresh button), else ``interval_s`` after the last such update."""
        return now or not self._pace_models or self._clock() - shown_at >= interval_s

    def _adopt_model(self, **more: Any) -> None:
        """Show the engine's current model (another tab's retrain, or one after the start);
        ``more`` parameters change in the same update."""
        self._model_shown_at = self._clock()
        self._clusters = None
        self._sync_frame()
        self._sync_model(**more)
        log.info("tab %r shows model v%s", self.identity, self.model_version)

    def _sync_frame(self) -> None:
        """Bring the shared map table up to date (only changed rows); note when it moved on."""
        self.session.sync_map_frame(self.frame)
        if self.frame.version != self.map_version:
            self.map_version = self.frame.version

    async def _sync_frame_async(self) -> None:
        """Apply a large batch of labels to the shared table, and to the store's cache of current
        labels, off the serving thread (the views that redraw next read both)."""
        await asyncio.get_running_loop().run_in_executor(STORE_WRITER, self._sync_frame_and_cache)
        if self.frame.version != self.map_version:
            self.map_version = self.frame.version

    def _sync_frame_and_cache(self) -> None:
        self.session.sync_map_frame(self.frame)  # its read of the new events feeds the cache too
        self.session.store.refresh()  # what that read did not feed the cache (it stood elsewhere)

    # ------------------------------------------------------------------ classes
    def _class_signature(self) -> tuple:
        return tuple((c.name, c.colour, c.rare, c.description) for c in self.session.classes)

    def _classes_changed(self) -> None:
        self._classes_seen = self._class_signature()
        self.classes_version += 1

    def add_class(self, name: str, colour: str | None = None, rare: bool = False,
                  description: str = "") -> None:
        """Create a class (validated by the engine); errors are shown, not raised."""
        if not self._require("edit_classes"):
            return
        try:
            cls = self.session.add_class(name, colour=colour or None, rare=rare,
                                         description=description, by=self.identity)
        except (TailwiseError, ValueError) as err:
            self._fail(err)
            return
        self.error = ""
        self.status = f"created class {cls.name!r}"
        self._classes_changed()

    def edit_class(self, name: str, *, new_name: str | None = None, **changes: Any) -> bool:
        """Recolour, mark rare, describe or rename a class; the store keeps it across restarts."""
        if not self._require("edit_classes"):
            return False
        try:
            if changes:
                self.session.update_class(name, by=self.identity, **changes)
            if new_name and new_name.strip() != name:
                self.session.rename_class(name, new_name.strip(), by=self.identity)
                name = new_name.strip()
        except (TailwiseError, ValueError) as err:
            self._fail(err)
            return False
        self.error = ""
        self.status = f"saved class {name!r}"
        self._classes_changed()
        return True

    # ------------------------------------------------------------------ review and agreement
    def is_second_opinion(self, item_id: str) -> bool:
        """Whether ``item_id`` is queued here for a second opinion and not yet answered (its
        current label is another annotator's, which the queue does not show)."""
        return item_id in self._second_opinions and item_id not in self._answered

    async def work_async(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run an engine read (suspects, conflicts, agreement with its bootstrap) on the work
        pool, never on the event loop every tab shares."""
        return await asyncio.get_running_loop().run_in_executor(_WORK, call, *args)

    def _review(self, item_ids: list[str], missing: str, write: Callable[[list[str]], list[int]],
                done: Callable[[int, str], str]) -> list[int]:
        """A label action on the selected items from a review view: checked like a label,
        written by ``write(ids)``, acknowledged as ``done(count, plural 's')``."""
        ids = [str(i) for i in item_ids]
        if not self._can_label():
            return []
        if not ids:
            self._fail(ValueError(missing))
            return []
        events, err = _attempt(write, ids)
        return self._review_action(events, err, done(len(ids), "s" * (len(ids) != 1)), ids)

    def _review_action(self, events, err: Exception | None, text: str,
                       items: list[str]) -> list[int]:
        if err is not None:
            self._fail(err)
            return []
        self._saved(events, text, items)
        return events

    def confirm(self, item_ids: list[str]) -> list[int]:
        """Confirm the items' current labels (one action): they stop being suspect; the
        confirmation is a label event of origin ``confirm``."""
        return self._review(item_ids, "select a suspect label to confirm first",
                            lambda ids: self.session.confirm(ids, self.identity),
                            lambda n, s: f"confirmed {n} label{s}")

    def relabel(self, item_ids: list[str], label: str) -> list[int]:
        """Give the items a new label (a suspect the expert corrects): it leaves the suspects."""
        if not label:
            self._fail(ValueError("choose the class the selected items should have"))
            return []
        return self._review(item_ids, "select a suspect label to relabel first",
                            lambda ids: self.session.label(ids, label, self.identity),
                            lambda n, s: f"relabelled {n} item{s} as {label!r}")

    def retract(self, item_ids: list[str]) -> list[int]:
        """Remove the items' labels (one action, undone as one)."""
        return self._review(item_ids, "select a label to retract first",
                            lambda ids: self.session.retract(ids, self.identity),
                            lambda n, s: f"retracted {n} label{s}")

    def resolve(self, item_id: str, label: str) -> list[int]:
        """Settle a disagreement between annotators on ``item_id`` with ``label`` (admins only:
        checked here and again by the engine); the resolution is a label event of origin
        ``resolution``."""
        if not self._require("resolve"):
            return []
        if not item_id or not label:
            self._fail(ValueError("choose a conflict and the label that settles it"))
            return []
        event, err = _attempt(self.session.resolve, str(item_id), str(label), self.identity)
        return self._review_action(None if err else [event], err,
                                   f"resolved {item_id} as {label!r}", [str(item_id)])

    # ------------------------------------------------------------------ clusters
    @property
    def shown_clusters(self):
        """The clusters this tab computed for its current model (None until asked for)."""
        return self._clusters

    def clusters(self):
        """Predicted clusters by the project's cluster method (computed by the engine; cached per
        model version and method)."""
        method = self.session.project.clusters.method
        self._clusters = self.session.clusters(method=method)
        self._show_clusters(method)
        return self._clusters

    async def clusters_async(self):
        """``clusters`` with the engine call on the work pool (never behind training), and
        ``cluster_state`` saying 'computing' meanwhile."""
        method = self.session.project.clusters.method
        self.param.update(cluster_method=method, cluster_state="computing")
        try:
            self._clusters = await asyncio.get_running_loop().run_in_executor(
                _WORK, partial(self.session.clusters, method=method))
        except Exception as err:
            self.cluster_state = f"failed: {describe(err)}"
            raise
        self.cluster_state = "ready"
        self._show_clusters(method)
        return self._clusters

    async def set_cluster_method_async(self, method: str):
        """Make ``method`` the project's cluster method (for every tab: this view, "select its
        cluster" and the cluster-based strategies; the user needs the settings right) and
        compute its clusters. Returns the clusters, or None when refused."""
        try:
            self.session.set_cluster_method(method, by=self.identity)
        except (TailwiseError, ValueError) as err:
            self._fail(err)
            self.cluster_state = f"failed: {describe(err)}"
            return None
        self._clusters = None
        self.error = ""
        self.status = f"clusters by {method}"
        return await self.clusters_async()

    def _show_clusters(self, method: str) -> None:
        """Give the shared map table the clusters (once per model version and method) so it can
        colour by them."""
        self.frame.apply_clusters((self.model_version, method), self._clusters.assignment)
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
                                       requester=self.requester, annotator=self.identity)

    def _queue_outdated(self, model_version: int) -> bool:
        """True when this tab's queue was chosen by an older model than ``model_version`` and a
        new batch may be asked for now (once per model, off the serving loop)."""
        return (bool(self.queue_ids) and not self.job and self.queue_model != model_version
                and self._queue_asked_for != model_version and _running_loop() is not None
                and self.may("query"))

    def _engine_model(self) -> int | None:
        """Version of the model the engine queries with now (this tab may show an older one
        until its summaries catch up)."""
        state = self.session.state
        return None if state is None else int(state.model_version)

    def _apply_queue(self, result, select_first: bool = True, model_version: int | None = None) -> None:
        # A batch asked for in the background (a new model) keeps the expert's selection: the
        # items of the batch it replaces still advance to the new batch once labelled.
        self._replaced_queue = set() if select_first else set(self.queue_ids) | self._replaced_queue
        self.queue_model = model_version
        self.queue_scores = [float(s) for s in np.asarray(result.scores, dtype=float)]
        self.queue_reasons = [str(r) for r in result.reasons]
        from core.query.registry import REVIEW_STRATEGIES

        arms = list(result.arms or [])
        self._second_opinions = {str(i) for i, arm in zip(result.ids, arms) if arm == "second_opinion"}
        reviewed = result.strategy in REVIEW_STRATEGIES  # every item is a label to decide on
        self._labelled_open = {str(i) for i in result.ids} if reviewed else set(self._second_opinions)
        self.queue_ids = [str(i) for i in result.ids]
        self._skipped.clear()
        self._answered.clear()
        if select_first:  # the expert asked; a batch the page asked for by itself is a notice
            self.error = ""
            self.status = f"queued {len(self.queue_ids)} items ({self.strategy})"
        if select_first or not self.selection:
            # Not simply the first item: the batch was chosen off the loop, and an item of it may
            # have been labelled meanwhile (the page's first batch labelled while a Next batch was
            # chosen): selected again, the expert saw a labelled item come back as the next one.
            self.selection = self._first_open()

    def next_batch(self) -> list[str]:
        """Ask the strategy for the next batch (blocking); selects its first item."""
        if not self._require("query"):
            return self.queue_ids
        try:
            version = self._engine_model()
            self._apply_queue(self._query(), model_version=version)
        except Exception as err:  # noqa: BLE001  (every failure is shown)
            self._fail(err)
        return self.queue_ids

    async def next_batch_async(self, select_first: bool = True,
                               asked: tuple[int | None, float, asyncio.Future] | None = None
                               ) -> list[str]:
        """``next_batch`` with the engine call on the work pool (never behind training).
        ``select_first=False`` keeps a selection the expert made meanwhile (the batch asked for
        when the page opens). ``asked``: a batch already asked for (:meth:`_ask_batch`)."""
        if asked is None and not self._require("query"):  # (asked: allowed when asked)
            return self.queue_ids
        self.job, self.job_message = "queue", "choosing the next batch"
        try:
            version, started, pending = asked or self._ask_batch()
            result = await pending
            self._apply_queue(result, select_first=select_first, model_version=version)
            log.info("queue for %r from model v%s in %.2f s", self.identity, version,
                     time.perf_counter() - started)
        except Exception as err:  # noqa: BLE001  (every failure is shown on this page)
            self._fail(err)
        finally:
            self.job, self.job_message = "", ""
        return self.queue_ids

    def _ask_batch(self) -> tuple[int | None, float, asyncio.Future]:
        """``(model version, start time, future of the batch)``: this tab's next batch, asked of
        the engine's current model on the work pool now."""
        version = self._engine_model()
        return (version, time.perf_counter(),
                asyncio.get_running_loop().run_in_executor(_WORK, self._query))

    async def _renew_queue_async(self) -> None:
        """The new model's batch for a tab whose queue an older model chose, asked in the
        background. One tab at a time on the server: every tab renews its queue within half a
        second of a new model, and each batch redraws that tab's queue on the event loop every
        tab shares; all at once they would hold everyone's clicks behind them for a second."""
        async with _renewal_lock():
            if self.queue_model == self._engine_model():
                return  # renewed meanwhile
            if self.job:  # busy with its own action: the next refresh after it asks again
                self._queue_asked_for = None
                return
            ids = await self.next_batch_async(select_first=False)
            if ids and not self.error:  # the expert did not ask: say why the queue changed
                self.notice = (f"model v{self.queue_model} chose a new batch: {len(ids)} items "
                               f"({self.strategy})")

    async def first_batch_async(self) -> list[str]:
        """The batch asked for when the page opens: selects its first item only if the expert has
        not selected anything meanwhile."""
        if self.queue_ids or self.job:
            return self.queue_ids
        ids = await self.next_batch_async(select_first=False)
        if ids and not self.error:
            self.notice = f"first batch ready: {len(ids)} items ({self.strategy})"
        return ids

    # ------------------------------------------------------------------ retraining
    def _sync_model(self, **more: Any) -> None:
        """Adopt the engine's model; ``more`` parameters change in the same update."""
        state = self.session.state
        choice = None if state is None else state.model_choice
        # One update, so no view ever sees a new version with the old (or no) training time.
        self.param.update(model_version=None if state is None else int(state.model_version),
                          trained_at=None if state is None else float(state.trained_at),
                          learner=choice.chosen if choice else (
                              "" if state is None else self.session.project.model.kind),
                          learner_reason=choice.reason if choice else "", **more)

    def _retrained(self) -> None:
        self._clusters = None
        self._sync_frame()
        self._sync_model(error="", labels_version=self.labels_version + 1)
        self.status = f"model v{self.model_version} trained"

    def retrain(self) -> bool:
        """Retrain now (blocking). On failure the error is shown and the old model kept."""
        if not self._require("retrain"):
            return False
        try:
            self.session.retrain(progress=self._progress)
        except Exception as err:  # noqa: BLE001  (any failure keeps the previous model)
            self._fail(err)
            return False
        self._retrained()
        return True

    async def retrain_async(self) -> bool:
        """Ask the project's training thread for a retrain and wait for it. One retrain runs at a
        time; asking during one schedules a single follow-up that every asker shares. Progress
        reaches the page through the event loop; any failure is shown here."""
        if self.job == "retrain" or not self._require("retrain"):
            return False
        loop = asyncio.get_running_loop()
        waiting = self.session.retraining
        self.job, self.job_progress = "retrain", 0.0
        self.job_message = "waiting for the running retrain" if waiting else "starting"
        self.error = ""
        log_progress = logged(f"retrain asked by {self.identity!r}")

        def progress(done: int, total: int, message: str) -> None:
            log_progress(done, total, message)
            loop.call_soon_threadsafe(self._progress, done, total, message)

        asked = time.perf_counter()
        log.info("round trip: Retrain pressed by %r", self.identity)
        batch = None
        try:
            await asyncio.wrap_future(self.session.request_retrain(progress))
            if self.queue_ids and self.session.access.allows(self.identity, "query"):
                # The queue was chosen by the old model: ask the new one at once, on the work
                # pool, while this page redraws with the new model below (that redraw holds the
                # serving loop for a fraction of a second; the batch does not depend on it).
                batch = self._ask_batch()
        except Exception as err:  # noqa: BLE001
            log.warning("retrain asked by %r failed: %s", self.identity, describe(err))
            self._fail(err)
            return False
        finally:
            # one update: the views watching these redraw once, not three times
            self.param.update(job="", job_progress=0.0, job_message="")
        got = time.perf_counter()
        self._retrained()
        shown = time.perf_counter()
        if self.queue_ids:  # (a refusal to query is shown by next_batch_async)
            await self.next_batch_async(asked=batch)
            self.status = f"model v{self.model_version} trained; queue refreshed"
        log.info("round trip for %r: model v%s after %.2f s, shown %.2f s, queue %.2f s",
                 self.identity, self.model_version, got - asked, shown - got, time.perf_counter() - shown)
        return True

    async def recompute_map_async(self) -> bool:
        """Project the (possibly learned) embedding again, on the work pool. The map moves only
        when asked; other browser sessions keep their layout until they reload."""
        if self.job or not self._require("recompute_map"):
            return False
        loop = asyncio.get_running_loop()
        self.job, self.job_progress, self.job_message = "map", 0.0, "recomputing the map"

        def progress(done: int, total: int, message: str) -> None:
            loop.call_soon_threadsafe(self._progress, done, total, message)

        try:
            await loop.run_in_executor(_WORK, partial(self.session.recompute_map, progress=progress))
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
    def refresh(self, *, now: bool = False) -> bool:
        """Catch up with other sessions of the project: the items their new label events touched
        (announced like our own), class edits, a newer model and what the engine does in the
        background. ``now`` also redraws the summaries at once (the Refresh button). Costs two
        comparisons when nothing changed. True if anything did."""
        try:
            return self._catch_up(now)
        except Exception as err:  # noqa: BLE001  (shown, and the next refresh tries again)
            self._fail(err)
            return False

    def _catch_up(self, now: bool, labels_now: bool = False) -> bool:
        changed = False
        if self.engine_activity != self.session.activity:
            self.engine_activity = self.session.activity
        store = self.session.store
        last = store.last_event_id()
        if last != self._seen_event:
            if last - self._seen_event > LARGE_ACTION:  # a bulk action: redraw, no item patches
                self._seen_event = last
                self._own.clear()
                self._announce(None)
                changed = True
            else:
                changed = self._catch_up_labels(store.events(since_id=self._seen_event),
                                                now or labels_now)
        if self._class_signature() != self._classes_seen:
            self._classes_changed()
            changed = True
        state = self.session.state
        if (state is not None and state.model_version != self.model_version
                and self._model_due(now)):
            # Another tab's new model: shown (its version, the map's colours: only the rows whose
            # prediction changed; the queue below), like in the tab that asked for it, at most
            # every MODEL_MIN_INTERVAL_S. The summaries of every label follow at their own pace.
            self._adopt_model()
            self._summary.poke()
            changed = True
        if (state is not None and state.model_version == self.model_version
                and self._queue_outdated(state.model_version)):
            # The queue was chosen by an older model: ask the new one now (on the work pool),
            # while the charts adopt the model at the summaries' pace.
            self._queue_asked_for = state.model_version
            self.spawn(self._renew_queue_async(), "the new model's batch")
            changed = True
        if now:
            self._summary.flush()
            if not changed:
                self.labels_version += 1
        return changed


def _attempt(call, *args):
    """``(result, None)`` or ``(None, error)``: every failure is shown on the page that asked."""
    try:
        return call(*args), None
    except Exception as err:  # noqa: BLE001
        return None, err


_RENEWALS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = (
    weakref.WeakKeyDictionary())


def _renewal_lock() -> asyncio.Lock:
    """The lock queue renewals take turns on, one per event loop (a served page's, a test's)."""
    loop = asyncio.get_running_loop()
    lock = _RENEWALS.get(loop)
    if lock is None:
        lock = _RENEWALS[loop] = asyncio.Lock()
    return lock


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def escape(text: object) -> str:
    """HTML-escape user text (class names, notes, annotators) before it is rendered."""
    return html.escape(str(text), quote=True)
