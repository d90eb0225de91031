"""One project's live state: data, embedding, map, labels, model and query queue.

A ``Session`` is what the dashboard (every browser tab of a project shares one) and
``tailwise retrain`` drive. Labels go straight to the shared :class:`~core.labels.LabelStore`;
everything else is derived from the project file and the store, so several tabs stay consistent.

Many tabs, one engine: one retrain at a time (``request_retrain`` schedules at most one follow-up),
queries serialised by a lock of their own (never waiting behind training), settings swapped in
whole between retrains (a running retrain keeps the project it started with), and every action of
a user checked against the project's ``access`` section (``core.access``). The class schema lives
in the store: the project file's classes only seed it, so edits made in the dashboard persist, and
training, metrics and strategies read the store's rare flags.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.access import AccessPolicy
from core.clusters import Clusters, summarise_clusters
from core.clusters.cache import ClusterCache
from core.data import load_dataset
from core.data.base import Dataset
from core.errors import ConfigError, EmptyPoolError, TailwiseError
from core.jobs import RetrainScheduler
from core.labels import LabelEvent, LabelStore
from core.pipeline import ModelState, check_features, check_round, train_round
from core.project import (
    ClassConfig,
    ModelConfig,
    ProjectConfig,
    QueryConfig,
    load_project,
    palette_colours,
)
from core.projection import cached_projection, project_2d

Progress = Callable[[int, int, str], None]
TRAINING = ("inline", "process")
# The new model's clusters are computed in the background after a retrain, but only this long
# after it: the pages first show the model, recolour the map and ask it for their batches (on a
# small machine a clustering beside them costs every page its share of the cores).
CLUSTERS_AFTER_RETRAIN_S = 4.0

log = logging.getLogger("tailwise")


class ClustersSuperseded(TailwiseError):
    """A background clustering skipped because a newer model replaced the one it was for (asking
    for those clusters again computes them)."""


@dataclass(frozen=True)
class RoundRecord:
    """One training round, as shown in the learning curve."""

    model_version: int
    n_labels: int
    balanced_accuracy: float | None
    macro_f1: float | None
    tail_recall: float | None
    time: float
    source: str
    prediction_change: float | None = None  # share of the pool whose prediction changed
    rare_in_pool: float | None = None  # expected unlabelled items of the rare classes


class Session:
    """Live state of one project. Thread-safe: retraining may run in a worker thread."""

    def __init__(self, project: ProjectConfig, dataset: Dataset, store: LabelStore, *,
                 resume_strategies: bool = True, training: str = "inline") -> None:
        if training not in TRAINING:
            raise ConfigError(f"training must be one of {', '.join(TRAINING)}, got {training!r}")
        self.project = project
        # "process": each round runs in a child process (core.worker) so that a server's event
        # loop never waits behind it; "inline": in this process (scripts, the CLI, tests).
        self.training = training
        self._trainer = None  # core.worker.TrainingProcess, made at the first round
        # Learning strategies (auto's bandit) keep their state in the cache folder between
        # restarts; a headless run turns this off so that its output depends on the file alone.
        self.resume_strategies = resume_strategies
        self.dataset = dataset
        self.store = store
        self._lock = threading.RLock()
        self._retrain_lock = threading.Lock()
        self._query_lock = threading.Lock()  # strategies keep caches: one query at a time
        # The validated pool context of the current model and label state, shared by every tab's
        # query (one entry: a new model, new labels or new settings replace it).
        self._query_base: tuple[tuple, object] | None = None
        self._query_base_lock = threading.Lock()
        self._reservations: dict[str, list[str]] = {}  # requester -> ids of its current batch
        self._second_reserved: dict[str, list[str]] = {}  # requester -> its open second opinions
        self._retrains: RetrainScheduler = RetrainScheduler(
            lambda progress: self.retrain(progress), name="tailwise-train")
        self._base_embedding: np.ndarray | None = None
        self._xy: np.ndarray | None = None
        self._projector = None
        self._encoder_transform = None
        self._map_frame = None  # (xy it was built on, MapFrame)
        self._snapshot_event = -1  # the last label event the shown model had seen
        self.activity = ""  # what the engine is doing in the background, for every page
        self._state: ModelState | None = None
        self._history: list[RoundRecord] = []
        self._strategies: dict[str, object] = {}
        self._query = None
        self._clusters = ClusterCache()  # assignments per model version and cluster method
        self._version_counter = 0
        self.import_report = None  # set when the project file carried labels
        store.seed_classes(project.classes)  # seeds a new store; never undoes edits made since

    @property
    def access(self) -> AccessPolicy:
        """Who may do what (the project's ``access`` section; open when it has none)."""
        return AccessPolicy(self.project.access)

    def _allow(self, user: str | None, action: str) -> None:
        """Check ``user`` may do ``action``. ``None`` is the local operator (CLI, scripts): the
        dashboard always passes the browser's user."""
        if user is not None:
            self.access.require(user, action)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, project: ProjectConfig | str | Path, *, allow_outside: bool = False,
             store: LabelStore | None = None, resume_strategies: bool = True,
             training: str = "inline") -> Session:
        """Validate the project, load its data and open (or create) its label store.
        ``training="process"`` trains each round in a child process (see ``Session.training``)."""
        if not isinstance(project, ProjectConfig):
            project = load_project(project, allow_outside=allow_outside)
        opened = store is None
        if store is None:
            path = project.resolve(project.label_store, allow_outside=allow_outside, field="label_store")
            path.parent.mkdir(parents=True, exist_ok=True)
            store = LabelStore(path)
        try:  # a sampled pool (data.max_items) always holds the labelled items
            keep = frozenset(store.labelled_ids()) if project.data.max_items else frozenset()
            dataset = load_dataset(project, keep_ids=keep)
        except BaseException:
            if opened:
                store.close()
            raise
        session = cls(project, dataset, store, resume_strategies=resume_strategies,
                      training=training)
        if project.labels is not None:
            session.import_report = session._import_file_labels(allow_outside)
        return session

    def _import_file_labels(self, allow_outside: bool):
        """Bring the labels a shared project file carries into the store.

        Events already present are skipped; a label that differs from the store's current one is
        never applied silently: it is listed in the report's ``conflicts`` instead.
        """
        from core.exchange import read_project_labels

        records = read_project_labels(self.project, allow_outside=allow_outside)
        return self.store.import_events([r.model_dump() for r in records], on_conflict="keep")

    @property
    def cache_dir(self) -> Path:
        return self.project.resolve(self.project.cache_dir, allow_outside=True, field="cache_dir")

    def prepare(self, progress: Progress | None = None, resume: bool = False,
                train: bool = True) -> None:
        """Compute (or load from cache) the embedding and the map; train if labels allow.

        With ``resume`` (the dashboard) the last saved model is shown instead of training first
        (:mod:`core.snapshot`); :attr:`stale` then says whether labels changed since it was
        trained, and the caller retrains in the background. ``train=False`` never trains here
        (the dashboard shows the map first and trains in the background).
        """
        self.base_embedding_(progress)
        self.xy_(progress)
        if resume and self.restore(progress):
            return
        if train and self.trainable:
            self.retrain(progress)

    @property
    def trainable(self) -> bool:
        """Whether the training split has labels of at least two classes."""
        return len(set(self.store.current(split="train").values())) >= 2

    def restore(self, progress: Progress | None = None) -> bool:
        """Take the last saved model and predictions of this project, if they fit its data."""
        from core import snapshot

        if progress:
            progress(0, 1, "loading the last model")
        found = snapshot.load(self.cache_dir, self, ModelState, RoundRecord)
        if found is None:
            return False
        state, history, event_id = found
        with self._lock:
            self._state, self._history = state, history
            self._version_counter = max(self._version_counter, state.model_version)
            self._clusters.clear()
            self._snapshot_event = event_id
        if progress:
            progress(1, 1, f"model v{state.model_version} restored")
        return True

    @property
    def stale(self) -> bool:
        """Whether labels changed after the shown model's labels were read (retrain to catch up)."""
        return self._state is None or self.store.last_event_id() != self._snapshot_event

    # ------------------------------------------------------------------ embedding and map
    def base_embedding_(self, progress: Progress | None = None) -> np.ndarray:
        """The encoder's embedding of every item (computed once, cached on disk)."""
        with self._lock:
            if self._base_embedding is None:
                from core.embed import encode
                from core.embed.model_layer import base_config

                # For the `model` encoder this is the base the classifier trains on; the learned
                # embedding comes from each trained model (see `embedding`).
                emb = encode(self.dataset, base_config(self.project.encoder), cache_dir=self.cache_dir,
                             seed=self.project.seed, progress=progress)
                emb = np.asarray(emb, dtype=np.float32)
                check_features(emb)
                self._base_embedding = emb
            return self._base_embedding

    @property
    def embedding(self) -> np.ndarray:
        """What the map and the strategies see: the model's learned embedding when the encoder
        is ``model`` and a model exists, otherwise the encoder's embedding."""
        return self._embedding_of(self._state)

    def _embedding_of(self, state: ModelState | None) -> np.ndarray:
        if self.project.encoder.kind == "model" and state is not None and state.learned_embedding is not None:
            return state.learned_embedding
        return self.base_embedding_()

    def xy_(self, progress: Progress | None = None) -> np.ndarray:
        with self._lock:
            if self._xy is None:
                labelled = self.dataset.positions([i for i in self.current_labels() if self.dataset.has(i)])
                self._xy = cached_projection(self.embedding, self.project.map, self.cache_dir,
                                             seed=self.project.seed, must_include=labelled,
                                             progress=progress)
            return self._xy

    @property
    def xy(self) -> np.ndarray:
        """2-D map coordinates (n, 2); stable across retrains."""
        return self.xy_()

    def map_frame(self):
        """The map table every browser session of this project draws (:mod:`core.mapframe`),
        brought up to date with the labels and the model (only what changed is rewritten)."""
        from core.mapframe import MapFrame

        with self._lock:
            xy = self.xy_()
            if self._map_frame is None or self._map_frame[0] is not xy:
                self._map_frame = (xy, MapFrame(self.dataset.ids, self.dataset._index, xy,
                                                self.class_names))
            frame = self._map_frame[1]
        self.sync_map_frame(frame)
        return frame

    def sync_map_frame(self, frame=None) -> bool:
        """Apply new label events and a new model to the map table; True when it changed."""
        if frame is None:
            if self._map_frame is None:
                return False
            frame = self._map_frame[1]
        before = frame.version
        last = self.store.last_event_id()
        if last != frame.event_id:
            frame.add_classes(self.class_names)
            last, changes = self.store.changes_since(frame.event_id)
            frame.apply_labels(changes, last)
        state = self._state
        if state is not None and state.model_version != frame.model_version:
            frame.apply_model(state.model_version, state.classes, state.proba.argmax(axis=1),
                              state.uncertainty)
        return frame.version != before

    def projector_(self, progress: Progress | None = None):
        """The map's projector (embedding -> x, y), for scoring items elsewhere with this map."""
        from core.projection import map_projector

        with self._lock:
            if self._projector is None:
                self._projector = map_projector(self.embedding, self.xy_(progress), self.project.map,
                                                self.cache_dir, seed=self.project.seed,
                                                progress=progress)
            return self._projector

    def encoder_transform(self):
        """The fitted tabular transform behind the embedding, or None for other encoders."""
        from core.embed.model_layer import base_config
        from core.embed.tabular import fit_tabular

        config = base_config(self.project.encoder)
        if config.kind != "tabular":
            return None
        with self._lock:
            if self._encoder_transform is None:
                self._encoder_transform = fit_tabular(self.dataset.features, self.dataset.ids, config,
                                                      self.project.seed)
            return self._encoder_transform

    def recompute_map(self, progress: Progress | None = None) -> np.ndarray:
        """Project the current (possibly learned) embedding again, starting from the old layout."""
        with self._lock:
            old = self._xy
        xy = project_2d(self.embedding, self.project.map, seed=self.project.seed, init=old, progress=progress)
        with self._lock:
            self._xy = xy
            self._projector = None
            self._clusters.clear()
        return xy

    # ------------------------------------------------------------------ classes and labels
    @property
    def classes(self) -> list[ClassConfig]:
        return self.store.classes()

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def add_class(self, name: str, colour: str | None = None, rare: bool = False,
                  description: str = "", *, by: str | None = None) -> ClassConfig:
        """Create a class; a colour is picked from the palette when none is given."""
        self._allow(by, "edit_classes")
        existing = self.classes
        colour = colour or palette_colours(1, exclude={c.colour for c in existing})[0]
        cls = ClassConfig(name=name, colour=colour, rare=rare, description=description)
        self.store.add_class(cls)
        return cls

    def update_class(self, name: str, *, by: str | None = None, **changes) -> ClassConfig:
        """Change a class's colour, rare flag or description; kept in the store across restarts."""
        self._allow(by, "edit_classes")
        return self.store.update_class(name, **changes)

    def rename_class(self, old: str, new: str, *, by: str | None = None) -> ClassConfig:
        """Rename a class no label uses yet (otherwise ``LabelStoreError`` says why not)."""
        self._allow(by, "edit_classes")
        return self.store.rename_class(old, new)

    def _check_ids(self, item_ids: Iterable[str]) -> list[str]:
        ids = list(map(str, item_ids))
        if self.dataset._index.keys() >= set(ids):  # C loops: a bulk action holds 10^5 ids
            return ids
        unknown = [i for i in ids if not self.dataset.has(i)]
        if unknown:
            raise ConfigError(f"unknown item id(s) {unknown[:5]} (not in data set {self.dataset.name!r})")
        return ids

    def label(self, item_ids: Iterable[str], label: str, annotator: str, origin: str = "expert",
              note: str | None = None, split: str | None = None) -> list[int]:
        """Record ``label`` for every item; returns the committed event ids.

        ``split='test'`` puts the items in the test split (measured, never trained on);
        ``None`` keeps each item's split (new items: train).
        """
        self.access.require(annotator, "label")
        ids = self._check_ids(item_ids)
        version = self._state.model_version if self._state else None
        if len(ids) == 1:
            return [self.store.record(ids[0], label, annotator, origin=origin,
                                      model_version=version, note=note, split=split)]
        return self.store.record_many(ids, label, annotator, origin=origin if origin != "expert" else "bulk",
                                      model_version=version, note=note, split=split)

    def label_each(self, labels: dict[str, str], annotator: str, origin: str = "bulk",
                   note: str | None = None) -> list[int]:
        """Record a different label per item as one action (undone as one); returns event ids."""
        self.access.require(annotator, "label")
        ids = self._check_ids(labels)
        version = self._state.model_version if self._state else None
        return self.store.record_labels({i: labels[i] for i in ids}, annotator, origin=origin,
                                        model_version=version, note=note)

    def retract(self, item_ids: Iterable[str], annotator: str) -> list[int]:
        """Remove the items' labels (one action); returns the event ids."""
        self.access.require(annotator, "label")
        ids = self._check_ids(item_ids)
        return self.store.record_labels(dict.fromkeys(ids), annotator, origin="expert")

    def undo(self, annotator: str) -> LabelEvent | None:
        """Revert ``annotator``'s last action (all its events); returns the last event appended,
        or None when nothing of theirs is left to undo. Raises ``LabelStoreError`` naming who
        changed an item since, and appends nothing, rather than touch someone else's label."""
        self.access.require(annotator, "label")
        return self.store.undo(annotator)

    def undo_count(self, annotator: str) -> int:
        """:meth:`undo_action` returning only the number of events appended (one SQL statement
        for a bulk action, no event objects)."""
        self.access.require(annotator, "label")
        return self.store.undo_count(annotator)

    def undo_action(self, annotator: str) -> list[LabelEvent]:
        """``undo``, returning every event appended (one per item of the reverted action)."""
        self.access.require(annotator, "label")
        return self.store.undo_action(annotator)

    def current_labels(self) -> dict[str, str]:
        """Every current label, training and test split alike (what the map shows)."""
        return self.store.current()

    def test_labels(self) -> dict[str, str]:
        """The labels of the expert-curated test split (measured, never trained on)."""
        return self.store.current(split="test")

    def labels_by_row(self) -> np.ndarray:
        """(n,) object array: the current label of each row, or None."""
        out = np.full(len(self.dataset), None, dtype=object)
        current = self.current_labels()
        if not current:
            return out
        find = self.dataset._index.get  # one dict look-up per label (4 x 10^5 after a box label)
        rows = np.fromiter((find(str(item), -1) for item in current), np.int64, len(current))
        values = np.fromiter(current.values(), dtype=object, count=len(current))
        known = rows >= 0  # labels of items no longer in the pool are left out
        out[rows[known]] = values[known]
        return out

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        return self.dataset.positions(item_ids)

    # ------------------------------------------------------------------ training
    @property
    def state(self) -> ModelState | None:
        return self._state

    @property
    def history(self) -> list[RoundRecord]:
        return list(self._history)

    def retrain(self, progress: Progress | None = None) -> ModelState:
        """Train a fresh model on a snapshot of the labels. On failure the old state is kept."""
        with self._retrain_lock:  # one training at a time; readers are not blocked meanwhile
            project = self.training_project()  # settings and classes as they are now, for the run
            embedding = self.base_embedding_(progress)
            labels = self.store.current(split="train")  # the test split is never trained on
            self._warm_queries()
            version = self._version_counter + 1
            event_id = self.store.last_event_id()  # the labels are read after this event
            previous = self._state.model_choice if self._state is not None else None
            kw = {"earlier": self._state} if self.training == "inline" else {}
            started = time.perf_counter()
            state = self._train_round(project, embedding, labels, model_version=version,
                                      previous=previous, progress=progress,
                                      test_labels=self.test_labels(), **kw)
            trained = time.perf_counter()
            state = replace(state, stopping=self._stopping(state))
            m = state.metrics
            record = RoundRecord(
                model_version=version, n_labels=state.n_labels,
                balanced_accuracy=m.get("balanced_accuracy"), macro_f1=m.get("macro_f1"),
                tail_recall=m.get("tail_recall"), time=state.trained_at, source=m.get("source", ""),
                prediction_change=state.stopping["prediction_change"],
                rare_in_pool=(state.stopping["rare_in_pool"] or {}).get("estimate"))
            with self._lock:  # swap in the new model; held only for the assignment
                self._version_counter = version
                self._state = state
                self._history.append(record)
                self._snapshot_event = event_id
            swapped = time.perf_counter()
            self._save_snapshot(state, event_id)
            saved = time.perf_counter()
            if self.resume_strategies:  # a live project: the new model's clusters, in the background
                self.refresh_clusters(delay_s=CLUSTERS_AFTER_RETRAIN_S)
            log.info("model v%d: round %.2f s, stopping+swap %.2f s, snapshot %.2f s", version,
                     trained - started, swapped - trained, saved - swapped)
            return state

    def _warm_queries(self) -> threading.Thread | None:
        """While a model trains, fit on a background thread the pool clustering that the next
        queries' ``discovery`` (``auto``'s arm) will ask for: it depends on the embedding and the
        label count, not on the model. Skipped where the embedding is the model's own (it is not
        known before the round ends) or the project clusters otherwise; a failure here only
        means the first query fits it itself."""
        from core.query.strategies import warm_pool_clusters

        if (self.project.query.strategy not in ("auto", "discovery")
                or self.project.clusters.method != "kmeans" or self.project.encoder.kind == "model"):
            return None
        embedding = self.base_embedding_()
        n_labels = sum(map(self.dataset.has, self.current_labels()))  # as the query counts them
        batch, seed = self.project.query.batch_size, int(self.project.seed)

        def warm() -> None:
            try:
                warm_pool_clusters(embedding, n_labels, batch, seed)
            except Exception as err:  # noqa: BLE001 - an optimisation; the query fits it itself
                log.warning("warming the query's pool clustering failed: %s", err)

        thread = threading.Thread(target=warm, name="tailwise-warm-queries", daemon=True)
        thread.start()
        return thread

    def _train_round(self, project: ProjectConfig, embedding: np.ndarray, labels: dict[str, str],
                     **kw) -> ModelState:
        """One round, here or in the training process (``training``): the same ModelState."""
        if self.training == "inline":
            return train_round(project, self.dataset, embedding, labels, **kw)
        check_round(self.dataset, labels, kw.get("test_labels"))  # refused here, at once
        if self._trainer is None:
            from core.worker import TrainingProcess

            # Its scratch folder (the pool's embedding, each round's files) lives in the cache.
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self._trainer = TrainingProcess(scratch=self.cache_dir)
        return self._trainer.train(project, self.dataset, embedding, labels, **kw)

    def close(self) -> None:
        """Stop a training process this session started and close the label store."""
        if self._trainer is not None:
            self._trainer.close()
        self.store.close()

    def _stopping(self, state: ModelState) -> dict:
        """Stopping guidance of a new round against the one before (``core.quality.stopping``)."""
        from core.quality.stopping import prediction_change, stopping_guidance

        before = self._state
        change = prediction_change(None if before is None else before.predicted, state.predicted)
        earlier = None if before is None or not before.stopping else before.stopping.get(
            "prediction_change")
        return stopping_guidance(change, earlier, state.prevalence, self.rare_class_names(),
                                 (state.prevalence_details or {}).get("unseen_classes", ()))

    def rare_class_names(self) -> list[str]:
        """The rare classes: named in the project file or flagged in the store."""
        return list(dict.fromkeys(self.project.rare_classes
                                  + [c.name for c in self.classes if c.rare]))

    def _save_snapshot(self, state: ModelState, event_id: int) -> None:
        """Keep the new model on disk for a restart (a failure to write only warns)."""
        from core import snapshot

        if not self.resume_strategies:  # headless runs leave no trace in the cache
            return
        try:
            snapshot.save(self.cache_dir, self, state, self.history, event_id)
        except (OSError, ValueError, TypeError) as err:
            warnings.warn(f"could not save the model for a quick restart: {err}", stacklevel=2)

    def request_retrain(self, progress: Progress | None = None):
        """Retrain in the background, one run at a time: returns a ``concurrent.futures.Future``
        of the ``ModelState``. A request during a run joins the single follow-up run."""
        return self._retrains.request(progress)

    @property
    def retraining(self) -> bool:
        """True while a background retrain runs."""
        return self._retrains.running

    def training_project(self) -> ProjectConfig:
        """The project as a training run sees it: its settings now, with the store's classes (and
        so the store's rare flags, which metrics and strategies use)."""
        with self._lock:
            return self.project.model_copy(update={"classes": self.store.classes()})

    def apply_settings(self, *, model: ModelConfig | None = None, query: QueryConfig | None = None,
                       by: str | None = None) -> ProjectConfig:
        """Take new model and/or query settings, swapped in whole: a retrain already running keeps
        the settings it started with; the next one uses these. Returns the new project."""
        self._allow(by, "settings")
        with self._lock:
            updated = self.project.model_copy(deep=True)
            if model is not None:
                updated.model = model.model_copy(deep=True)
            if query is not None:
                updated.query = query.model_copy(deep=True)  # validated (e.g. target class)
            self.project = updated
            return updated

    # ------------------------------------------------------------------ querying
    def _strategy(self, name: str):
        from core.query import get_strategy

        if name not in self._strategies:
            strategy = get_strategy(name, **self._strategy_params(name))
            saved = self._strategy_state_path(name)
            if self.resume_strategies and saved.exists() and getattr(strategy, "load_state_dict", None):
                try:  # a learning strategy (auto's bandit) resumes where it stopped
                    strategy.load_state_dict(json.loads(saved.read_text(encoding="utf-8")))
                except (ValueError, TypeError, KeyError, TailwiseError) as err:
                    warnings.warn(f"ignoring the saved state of strategy {name!r}: {err}", stacklevel=2)
            self._strategies[name] = strategy
        return self._strategies[name]

    def _strategy_params(self, name: str) -> dict:
        """Project settings a strategy takes: auto's cold start, the committee's learners."""
        if name == "auto":
            return {"cold_start": self.project.query.cold_start}
        if name == "committee" and self.project.model.kind == "auto":
            model = self.project.model
            return {"members": tuple(model.candidates),
                    "learner_configs": {n: model.learner_config(n) for n in model.candidates}}
        return {}

    def _strategy_state_path(self, name: str) -> Path:
        return self.cache_dir / f"strategy-{name}.json"

    def _save_strategy_state(self, name: str) -> None:
        if not self.resume_strategies:
            return
        state = getattr(self._strategies[name], "state_dict", lambda: None)()
        if state is None:
            return
        path = self._strategy_state_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        tmp.replace(path)

    def query_context(self, target_class: str | None = None, requester: str = ""):
        """The read-only view of the pool a query strategy works on.

        Before the first model it is :meth:`QueryContext.without_model` (no probabilities), the
        same state ``tailwise simulate`` starts from: strategies explore instead of ranking by
        made-up probabilities. The pool part (labels by row, the checked probabilities and
        embedding) is built once per model, label state and settings and shared by every
        requester; each request gets its own ``rng`` (seeded as before), target and requester.
        """
        base = self._shared_query_context()
        labelled = int(np.count_nonzero(base.labelled_mask))
        return base.for_request(rng=np.random.default_rng([self.project.seed, labelled]),
                                target_class=target_class, requester=requester)

    def _query_key(self) -> tuple:
        """What the shared pool context depends on. The event id is read before the labels, so
        an entry is never older than its key (a label arriving meanwhile only makes it newer)."""
        event, state = self.store.last_event_id(), self._state
        return (event, state, id(self._embedding_of(state)),
                tuple(c.name for c in self.classes if c.rare),  # the store's flags
                self.project.clusters.method)

    def _shared_query_context(self):
        """The validated pool context for the current key, built by the first request that needs
        it (others wait on its lock rather than build it again). One entry is kept."""
        key = self._query_key()
        with self._query_base_lock:
            if self._query_base is not None and _same_key(self._query_base[0], key):
                return self._query_base[1]
            self._query_base = None  # the old model's arrays can go while the new ones are built
            base = self._build_query_context(key)
            self._query_base = (key, base)
            return base

    def _build_query_context(self, key: tuple):
        from core.query import QueryContext

        labels = self.labels_by_row()
        labelled = labels != None  # noqa: E711  (object array; one pass over the pool)
        labels.setflags(write=False)  # shared by every requester: strategies only read it
        labelled.setflags(write=False)
        state = key[1]
        kw = {
            "embedding": self._embedding_of(state),
            "pool_ids": self.dataset.ids,
            "labelled_mask": labelled,
            "labels": labels,
            "rng": np.random.default_rng([self.project.seed, int(labelled.sum())]),
            "rare_classes": key[3],
            "cluster_method": key[4],
            "cluster_seed": int(self.project.seed),  # one pool clustering for the requesters
        }
        if state is None:
            return QueryContext.without_model(**kw)
        return QueryContext(proba=state.proba, classes=tuple(state.classes), **kw)

    def next_batch(self, n: int | None = None, strategy: str | None = None,
                   target_class: str | None = None, requester: str = "", annotator: str = ""):
        """Ask the strategy for the next ``n`` items to label (each with a score and a reason).

        ``requester`` names who asks (a dashboard session): a learning strategy (``auto``) keeps
        each requester's picks apart and credits every label to the pick it answers. With
        ``agreement.double_share`` in the project and an ``annotator``, that share of the batch
        is items another annotator labelled, for a second opinion (never their own).
        """
        from core.query.registry import REVIEW_STRATEGIES

        n = n or self.project.query.batch_size
        name = strategy or self.project.query.strategy
        target = target_class if target_class is not None else self.project.query.target_class
        with self._query_lock:  # strategies keep state (the bandit, neighbour caches)
            ctx = self.query_context(target, requester=requester)
            if name in REVIEW_STRATEGIES:  # labelled items to review: the open suspects
                ctx = ctx.for_request(suspects=tuple(self.suspects()))
                return self._remember(requester, self._strategy(name).query(ctx, n))
            if ctx.labelled_mask.all():
                raise EmptyPoolError("every item is labelled: there is nothing left to query")
            reserved = self._reserved_for_others(requester, ctx.labelled_mask)
            if reserved is not None:
                ctx = ctx.for_request(reserved=reserved)
            second = self._second_opinions(requester, annotator, n, ctx)
            if requester:
                self._second_reserved[requester] = second
            result = self._strategy(name).query(ctx, n - len(second)) if n > len(second) else None
            result = _with_second_opinions(result, second, ctx)
            self._save_strategy_state(name)
            return self._remember(requester, result)

    def _remember(self, requester: str, result):
        if requester:
            self._reservations[requester] = [str(i) for i in result.ids]
        self._query = result
        return result

    def _second_opinions(self, requester: str, annotator: str, n: int, ctx) -> list[str]:
        """Items for a second opinion in a batch of ``n`` (``agreement.double_share``): the
        share's whole part, plus one more with the probability of its fraction."""
        from core.quality.review import second_opinions

        share = self.project.agreement.double_share
        if not share or not annotator:
            return []
        exact = share * n
        count = int(exact) + int(ctx.rng.random() < exact - int(exact))
        # Items another requester holds for their own second opinion; the items others labelled
        # from their batches are what a second opinion is for.
        others = {i for r, ids in self._second_reserved.items() if r != requester for i in ids}
        return second_opinions(self.store, annotator, min(count, n), ctx.rng, exclude=others,
                               known=set(self.dataset.ids.tolist()))

    def _reserved_for_others(self, requester: str, labelled: np.ndarray) -> np.ndarray | None:
        """Items queued for other requesters and still unlabelled (so two experts working at the
        same time are not sent the same items), or None when there are none."""
        others = [i for r, ids in self._reservations.items() if r != requester for i in ids
                  if self.dataset.has(i)]
        if not others:
            return None
        mask = np.zeros(len(self.dataset), dtype=bool)
        mask[self.dataset.positions(others)] = True
        mask &= ~labelled
        return mask if mask.any() else None

    def release(self, requester: str) -> None:
        """Forget the batch queued for ``requester`` (a closed browser session)."""
        with self._query_lock:
            self._reservations.pop(requester, None)
            self._second_reserved.pop(requester, None)

    @property
    def query(self):
        """The last batch asked for, or None."""
        return self._query

    # ------------------------------------------------------------------ clusters
    def clusters(self, n_clusters: int | None = None, method: str | None = None) -> Clusters:
        """Predicted clusters of the embedding by the project's cluster method (or ``method``),
        summarised against the current labels. Assignments are cached per model version."""
        key, compute = self._cluster_job(n_clusters, method)
        result = self._clusters.get(key, compute)
        state = self._state
        predicted = state.predicted if state is not None and state.model_version == key[0] else None
        return Clusters(result.assignment, summarise_clusters(result.assignment, self.labels_by_row(), predicted),
                        method=result.method, used=result.used, note=result.note)

    def cluster_status(self, method: str | None = None) -> str:
        """Whether the current model's clusters by ``method`` (default: the project's) are
        ``ready``, ``computing``, ``failed: ...`` or not asked for yet (``none``)."""
        return self._clusters.status(self._cluster_job(None, method)[0])

    def refresh_clusters(self, delay_s: float = 0.0):
        """Start computing the current model's clusters in the background (after a retrain),
        ``delay_s`` seconds from now; returns the ``Future`` of the ``ClusterResult`` (asking for
        the same clusters meanwhile waits for it)."""
        key, compute = self._cluster_job(None, None)
        if delay_s > 0:
            now, version, due = compute, key[0], time.monotonic() + delay_s

            def compute():
                # On the cluster thread, nothing else waits for it. A model retrained again
                # meanwhile makes this one's clusters pointless (a team retraining every few
                # seconds queued one clustering per model, each a second of both cores): skipped.
                while (left := due - time.monotonic()) > 0:
                    self._check_current(version)
                    time.sleep(min(left, 0.25))
                self._check_current(version)
                return now()
        return self._clusters.start(key, compute)

    def _check_current(self, version: int) -> None:
        state = self._state
        if state is not None and state.model_version != version:
            raise ClustersSuperseded(f"model v{version} was replaced by v{state.model_version} "
                                     "before its clusters were computed")

    def _cluster_job(self, n_clusters: int | None, method: str | None):
        """The cache key of a clustering of the current model and the function computing it."""
        from core.clusters import cluster_items, config_params

        config = self.project.clusters
        if method is not None and method != config.method:
            config = type(config)(method=method)  # another method at its default settings
        if n_clusters is not None:
            config = config.model_copy(update={"n_clusters": n_clusters})
        params = config_params(config)
        state = self._state
        version = state.model_version if state is not None else 0
        seed = self.project.seed

        def compute():
            embedding = self._embedding_of(state)
            train = self.store.current(split="train")  # learned methods never see the test split
            labels = np.full(len(self.dataset), None, dtype=object)
            for item, lab in train.items():
                if self.dataset.has(item):
                    labels[self.dataset._index[item]] = lab
            return cluster_items(embedding, config.method, labels, seed=seed, **params)

        return (version, config.method, tuple(sorted(params.items()))), compute

    def set_cluster_method(self, method: str, by: str | None = None) -> ProjectConfig:
        """Use cluster ``method`` from now on (view, strategies, retrain); other settings of
        ``clusters`` are kept. Unknown names raise :class:`ConfigError`."""
        from core.project import CLUSTER_METHODS

        self._allow(by, "settings")
        if method not in CLUSTER_METHODS:
            raise ConfigError(f"clusters.method: unknown cluster method {method!r}; choose one of: "
                              + ", ".join(CLUSTER_METHODS))
        with self._lock:
            updated = self.project.model_copy(deep=True)
            updated.clusters.method = method
            self.project = updated
            return updated

    # ------------------------------------------------------------------ review and agreement
    def suspects(self) -> list[dict]:
        """The last round's suspect labels that still stand (not relabelled or confirmed since),
        most suspicious first, each with ``reason`` (``core.quality.review.open_suspects``)."""
        from core.quality.review import open_suspects

        state = self._state
        return open_suspects(self.store, state.suspects) if state is not None else []

    def confirm(self, item_ids: Iterable[str], annotator: str) -> list[int]:
        """Confirm the items' current labels (one action): they stop being suspect."""
        from core.quality.review import confirm

        self.access.require(annotator, "label")
        version = self._state.model_version if self._state else None
        return confirm(self.store, self._check_ids(item_ids), annotator, model_version=version)

    def resolve(self, item_id: str, label: str, annotator: str) -> int:
        """Settle a disagreement between annotators on ``item_id`` (an admin's decision,
        recorded as an event of origin ``resolution`` naming who settled it). Admins only
        (``core.access``: action ``resolve``)."""
        from core.quality.review import resolve

        self.access.require(annotator, "resolve")
        version = self._state.model_version if self._state else None
        return resolve(self.store, self._check_ids([item_id])[0], label, annotator,
                       model_version=version)

    def conflicts(self) -> list[dict]:
        """Disagreements between annotators that no admin has resolved yet."""
        from core.quality.review import open_conflicts

        return open_conflicts(self.store)

    def agreement(self) -> dict | None:
        """Agreement between annotators on the items several of them labelled, or None."""
        from core.quality.review import agreement_of

        return agreement_of(self.store, self.class_names, seed=self.project.seed)

    def summary(self) -> dict:
        """A small, JSON-friendly description of where the session stands."""
        state = self._state
        return {
            "project": self.project.name,
            "items": len(self.dataset),
            "labelled": len(self.current_labels()),
            "classes": self.class_names,
            "model_version": state.model_version if state else None,
            "trained_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.trained_at)) if state else None,
        }


def _same_key(a: tuple, b: tuple) -> bool:
    """Keys of :meth:`Session._query_key`: the model compared by identity, the rest by value."""
    return a[1] is b[1] and a[0] == b[0] and a[2:] == b[2:]


def _with_second_opinions(result, second: list[str], ctx):
    """The strategy's batch followed by the items picked for a second opinion."""
    from core.query import QueryResult
    from core.quality.review import SECOND_OPINION_REASON

    if not second:
        return result
    rows = ctx.pool_ids.tolist()
    index = {str(item): i for i, item in enumerate(rows)}
    ids = [] if result is None else [str(i) for i in result.ids]
    scores = [] if result is None else list(np.asarray(result.scores, dtype=float))
    reasons = [] if result is None else list(result.reasons)
    arms = [] if result is None else list(result.arms or [result.strategy] * len(ids))
    return QueryResult(
        ids=np.asarray(ids + second, dtype=object),
        scores=np.asarray(scores + [0.0] * len(second), dtype=np.float64),
        reasons=reasons + [SECOND_OPINION_REASON] * len(second),
        strategy="" if result is None else result.strategy,
        arms=arms + ["second_opinion"] * len(second),
        positions=np.asarray([index[i] for i in ids + second], dtype=np.int64))
