"""The event store: every expert decision, durably, as an append-only log of label events.

Guarantees:

- Append-only: events are never updated or deleted (triggers refuse it). The current label of an
  item is its latest event; a retraction or an undo is itself a new event, so history is complete.
- Durable: ``record`` returns an event id only after COMMIT (fsynced), so an acknowledged label
  survives SIGKILL of the process (see ``core.labels.database``).
- Concurrent: several threads and processes may label the same file at once.
- Checked: a label must name a class of the schema (``core.labels.classes``), otherwise
  ``LabelStoreError`` names it and lists the known classes. Imports never silently overwrite a
  different local label.

Actions: every write is one *action* (a click, a bulk label, an undo, an import) and all its events
share an ``action_id``. ``undo(annotator)`` reverts that annotator's latest action not yet undone,
all its events in one transaction, by appending ``'undo'`` events that give each item the label it
had before the action (``undoes`` names the reverted event); calling it again walks further back. Undo
never removes or changes a label someone else set since: when another annotator's event still in
effect covers one of the action's items, nothing is appended and ``LabelStoreError`` names who
changed which item. Different annotators' disagreeing labels on one item stay in the history and
are listed by ``conflicts()``. ``current()`` is cached and refreshed from the events appended since.

Splits: every event carries ``split`` ('train' or 'test'); an item's split is that of its latest
event. A label given without a split keeps the item's split (new items: train), so a test item
cannot slip into training through an ordinary relabel; training reads ``current(split="train")``.
An undo restores the split the item had before the reverted event.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from core.errors import LabelStoreError
from core.labels import exchange
from core.labels.classes import ClassSchema, require
from core.labels.database import DEFAULT_TIMEOUT_S, Database
from core.labels.records import (
    MAX_NOTE,
    MAX_TEXT,
    ImportReport,
    LabelEvent,
    check_model_version,
    check_split,
    check_text,
    now,
)
from core.project import ClassConfig, LabelEventRecord

__all__ = ["LabelStore"]

# Two imported events are the same when item, label and annotator match and times differ by less.
_SAME_TIME_S = 1e-5

_EVENT_COLUMNS = ("event_id, item_id, label, annotator, time, origin, model_version, note, undoes, "
                  "action_id, split")

# The latest event of every item, found through the (item_id, event_id) index.
_LATEST = """
SELECT e.item_id, e.label, e.event_id, e.split
FROM events AS e
JOIN (SELECT item_id, MAX(event_id) AS last FROM events GROUP BY item_id) AS l
  ON e.event_id = l.last
"""


class LabelStore:
    """Durable, append-only store of label events and the class schema, in one SQLite file.

    Safe to use from several threads (one connection per thread) and several processes (SQLite
    locking, WAL mode). Open one ``LabelStore`` per process; do not carry it across ``fork``.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.db = Database(path, timeout=timeout)
        self.schema = ClassSchema(self.db)
        self._cache_lock = threading.Lock()
        self._cache: dict[str, str] = {}  # item -> current label (labelled items only)
        self._cache_test: set[str] = set()  # labelled items whose latest event is in 'test'
        self._cache_last_id = 0
        self._cache_valid = False

    # ------------------------------------------------------------------ the file
    @property
    def path(self) -> Path:
        return self.db.path

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        self.db.close()

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the store's ``meta`` table."""
        return self.db.schema_version

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a healthy file."""
        return self.db.integrity_check()

    # ------------------------------------------------------------------ writing events
    def record(self, item_id: str, label: str | None, annotator: str, origin: str = "expert",
               model_version: int | None = None, note: str | None = None,
               split: str | None = None) -> int:
        """Label one item; returns the new event id once it is committed (durable).

        ``label=None`` records a retraction (see ``retract``). ``split`` ('train' or 'test') puts
        the item in that split; ``None`` keeps the item's split (``train`` for new items).
        """
        return self.record_many([item_id], label, annotator, origin=origin,
                                model_version=model_version, note=note, split=split)[0]

    def record_many(self, item_ids: Iterable[str], label: str | None, annotator: str,
                    origin: str = "bulk", model_version: int | None = None,
                    note: str | None = None, split: str | None = None) -> list[int]:
        """Give many items the same label in one transaction (one action); returns their event ids.

        A repeated id is labelled once. ``split`` as in ``record``.
        """
        if isinstance(item_ids, (str, bytes)):
            raise LabelStoreError("record_many takes a list of item ids, got one string; "
                                  "use record() for a single item")
        return self.record_labels(dict.fromkeys(item_ids, label), annotator, origin=origin,
                                  model_version=model_version, note=note, split=split)

    def record_labels(self, labels: Mapping[str, str | None], annotator: str, origin: str = "bulk",
                      model_version: int | None = None, note: str | None = None,
                      split: str | None = None) -> list[int]:
        """Record item -> label (None retracts) as one action in one transaction; returns the
        event ids in the mapping's order. Undo reverts the whole action at once. ``split``
        ('train'/'test') moves every item there; ``None`` keeps each item's split."""
        if not isinstance(labels, Mapping):
            raise LabelStoreError(f"record_labels takes a mapping of item id -> label, "
                                  f"got {type(labels).__name__}")
        pairs = _checked_pairs(labels)
        annotator = check_text(annotator, "annotator")
        origin = check_text(origin, "origin")
        note = check_text(note, "note", allow_none=True, limit=MAX_NOTE)
        model_version = check_model_version(model_version)
        split = check_split(split, allow_none=True)
        if not pairs:
            return []
        when = now()
        with self.db.write() as conn:
            require(conn, {lab for _, lab in pairs if lab is not None})
            action = _new_action(conn)
            if len(pairs) >= BULK_ROWS:  # one INSERT ... SELECT: no per-row round trip
                return _insert_bulk(conn, action, pairs, (annotator, when, origin, model_version,
                                                          note), split)
            splits = _latest_splits(conn, [item for item, _ in pairs]) if split is None else {}
            return _insert_action(conn, action, [
                (item, lab, annotator, when, origin, model_version, note, None, action,
                 split or splits.get(item, "train")) for item, lab in pairs])

    def retract(self, item_id: str, annotator: str, origin: str = "expert",
                model_version: int | None = None, note: str | None = None) -> int:
        """Remove an item's label by appending a retraction event; returns its id."""
        return self.record(item_id, None, annotator, origin=origin, model_version=model_version,
                           note=note)

    def undo(self, annotator: str) -> LabelEvent | None:
        """Revert ``annotator``'s latest action (see ``undo_action``); returns the last event it
        appended, or None when nothing of that annotator's is left to undo."""
        action, count = self._undo(annotator)
        if not count:
            return None
        rows = self.db.query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE action_id = ? "
                             "ORDER BY event_id DESC LIMIT 1", (action,))
        return LabelEvent(*rows[0])

    def undo_action(self, annotator: str) -> list[LabelEvent]:
        """Revert ``annotator``'s latest action that is not an undo and not undone yet.

        Appends, in one transaction, one ``'undo'`` event per event of the action, giving its item
        the label it had before the action (a retraction if it had none); ``undoes`` names the reverted
        event and the new events form one action. Returns them ([] when nothing is left to undo).
        Raises ``LabelStoreError`` naming the annotator(s) and items, and appends nothing, when
        someone else's event still in effect was recorded on one of the items since.
        """
        action, count = self._undo(annotator)
        return self.action(action) if count else []

    def undo_count(self, annotator: str) -> int:
        """:meth:`undo_action` returning only how many events it appended (no event objects:
        the cheap form for a bulk action of 10^5 items)."""
        return self._undo(annotator)[1]

    def _undo(self, annotator: str) -> tuple[int, int]:
        """The undo itself, one SQL statement in one transaction: ``(undo action id, events)``."""
        annotator = check_text(annotator, "annotator")
        with self.db.write() as conn:
            target = conn.execute(
                "SELECT e.action_id FROM events AS e "
                "WHERE e.annotator = ? AND e.origin != 'undo' AND e.undoes IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.event_id) "
                "ORDER BY e.event_id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if target is None:
                return 0, 0
            action = int(target[0])
            first, last = conn.execute("SELECT MIN(event_id), MAX(event_id) FROM events "
                                       "WHERE action_id = ?", (action,)).fetchone()
            _refuse_if_covered(conn, action, annotator, first, last)
            # An action already partly undone skips those events (one index probe per event);
            # the usual, untouched action skips the probes.
            partly = conn.execute("SELECT 1 FROM events WHERE undoes BETWEEN ? AND ? LIMIT 1",
                                  (first, last)).fetchone()
            skip_undone = ("AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.event_id) "
                           if partly else "")
            # Each not-yet-undone event of the action gets its item's label (and split) from
            # before the action, in one INSERT ... SELECT: no row crosses into Python. Before the
            # action, not before the event: an import may give one item several events, and the
            # item must end where it stood, not at the action's first event.
            undo_action, when = _new_action(conn), now()
            cursor = conn.execute(
                "INSERT INTO events(item_id, label, annotator, time, origin, model_version, note, "
                "undoes, action_id, split) "
                "SELECT e.item_id, p.label, ?, ?, 'undo', NULL, 'undo of event ' || e.event_id, "
                "e.event_id, ?, COALESCE(p.split, e.split) "
                "FROM events AS e LEFT JOIN events AS p ON p.event_id = ("
                "  SELECT MAX(q.event_id) FROM events AS q "
                "  WHERE q.item_id = e.item_id AND q.event_id < ?) "
                f"WHERE e.action_id = ? AND e.origin != 'undo' {skip_undone}"
                "ORDER BY e.event_id",
                (annotator, when, undo_action, first, action),
            )
            return undo_action, int(cursor.rowcount)

    # ------------------------------------------------------------------ reading events
    def current(self, split: str | None = None) -> dict[str, str]:
        """Item id -> current label, for every item whose latest event is not a retraction;
        with ``split`` only the items in that split ('train' or 'test').

        Computed in SQL once, then kept up to date from the events appended since (by any thread
        or process), so repeated calls cost only the new events. This is exact because writers
        are serialised: event ids become visible in increasing order, never with a later gap.
        """
        split = check_split(split, allow_none=True)
        with self._cache_lock:
            self._refresh_cache()
            if split is None:
                return dict(self._cache)
            if split == "test":
                return {item: self._cache[item] for item in self._cache_test}
            train = dict(self._cache)
            for item in self._cache_test:
                del train[item]
            return train

    def labels_of(self, item_ids: Iterable[str]) -> dict[str, str]:
        """Item id -> current label for the given items that have one (cheap: no full copy).

        A few items are read from the file directly while the cache is far behind it or another
        thread is bringing it up to date (after a bulk action of 10^5 events): a page asking for
        one item's label never waits for that."""
        return self._cached_or_file(
            item_ids, lambda ids: {i: self._cache[i] for i in ids if i in self._cache},
            lambda events: {i: e.label for i, e in events.items() if e.label is not None})

    def splits_of(self, item_ids: Iterable[str]) -> dict[str, str]:
        """Item id -> split ('train' or 'test') of the given items that currently have a label
        (cheap, like :meth:`labels_of`)."""
        return self._cached_or_file(
            item_ids, lambda ids: {i: "test" if i in self._cache_test else "train"
                                   for i in ids if i in self._cache},
            lambda events: {i: e.split for i, e in events.items() if e.label is not None})

    def _cached_or_file(self, item_ids: Iterable[str], from_cache: Callable[[Sequence[str]], dict],
                        from_events: Callable[[dict[str, LabelEvent]], dict]) -> dict:
        ids = item_ids if isinstance(item_ids, (list, tuple)) else list(item_ids)
        few = len(ids) <= FEW_ITEMS
        if few and not self._cache_lock.acquire(blocking=False):
            return from_events(self.latest_events(ids))
        if not few:
            self._cache_lock.acquire()
        try:
            if few and self._cache_valid and self.last_event_id() - self._cache_last_id > READ_CHUNK:
                return from_events(self.latest_events(ids))
            self._refresh_cache()
            return from_cache(ids)
        finally:
            self._cache_lock.release()

    def splits(self) -> dict[str, str]:
        """Item id -> split ('train' or 'test') of every currently labelled item."""
        with self._cache_lock:
            self._refresh_cache()
            out = dict.fromkeys(self._cache, "train")
            out.update(dict.fromkeys(self._cache_test, "test"))
            return out

    def refresh(self) -> None:
        """Bring the cached current labels up to date with the file now (e.g. on a worker thread
        right after a bulk action, so that the next reader, maybe a page's, pays nothing)."""
        with self._cache_lock:
            self._refresh_cache()

    def _refresh_cache(self) -> None:
        # Whole columns at a time, READ_CHUNK events per pass (dicts built from zips: C loops):
        # a bulk action of 3 x 10^5 events costs a few tens of milliseconds per pass, and other
        # threads (the one serving the pages) get the interpreter between passes.
        with self.db.read() as conn:
            if not self._cache_valid:
                cursor = conn.execute(_LATEST)  # one row per item
                self._cache, self._cache_test, self._cache_last_id = {}, set(), 0
            else:
                cursor = conn.execute(
                    "SELECT e.item_id, e.label, e.event_id, e.split FROM events AS e "
                    "WHERE e.event_id > ? ORDER BY e.event_id", (self._cache_last_id,))
            while rows := cursor.fetchmany(READ_CHUNK):
                self._apply_to_cache(*zip(*rows))
            self._cache_valid = True  # only once complete: a failed read is redone next time

    def _apply_to_cache(self, items: Sequence[str], labels: Sequence[str | None],
                        event_ids: Sequence[int], splits: Sequence[str]) -> None:
        """Columns of events in event order, applied to the cache."""
        latest = dict(zip(items, labels))  # in event order: an item's latest event wins
        self._cache.update(latest)
        self._cache_test.difference_update(latest)
        if "test" in splits:
            self._cache_test.update(item for item, split in dict(zip(items, splits)).items()
                                    if split == "test")
        if None in labels:  # retractions (and undone first labels)
            for item in [item for item, label in latest.items() if label is None]:
                del self._cache[item]
                self._cache_test.discard(item)
        self._cache_last_id = max(self._cache_last_id, max(event_ids))

    def history(self, item_id: str) -> list[LabelEvent]:
        """Every event of one item, oldest first."""
        rows = self.db.query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE item_id = ? ORDER BY event_id",
                             (item_id,))
        return [LabelEvent(*r) for r in rows]

    def events(self, since_id: int = 0, limit: int | None = None) -> list[LabelEvent]:
        """Events with ``event_id > since_id``, oldest first (at most ``limit`` of them)."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id > ? ORDER BY event_id"
        params: tuple[Any, ...] = (int(since_id),)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        return [LabelEvent(*r) for r in self.db.query(sql, params)]

    def event(self, event_id: int) -> LabelEvent | None:
        """One event by id, or None."""
        rows = self.db.query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?", (int(event_id),))
        return LabelEvent(*rows[0]) if rows else None

    def changes_since(self, event_id: int) -> tuple[int, dict[str, tuple[str | None, str]]]:
        """``(last event id, item id -> (current label or None, its annotator))`` for the items
        with events after ``event_id``: what a view must redraw, without reading every event.

        When the cache of current labels stands at the same event, the same read brings it up to
        date too (after a bulk action both follow 10^5 events: one read instead of two)."""
        event_id = int(event_id)
        # One range scan of the primary key in event order; later events overwrite earlier ones
        # in the dict (a GROUP BY per item sorted every event since: 3x slower at 3 x 10^5).
        cursor = self.db.connection().execute(
            "SELECT item_id, label, event_id, split, annotator FROM events WHERE event_id > ? "
            "ORDER BY event_id", (event_id,))
        last, out, feed = event_id, {}, True
        while rows := cursor.fetchmany(READ_CHUNK):  # C loops per chunk, see _refresh_cache
            columns = tuple(zip(*rows))
            out.update(zip(columns[0], zip(columns[1], columns[4])))
            feed = feed and self._feed_cache(last, columns[:4])
            last = int(columns[2][-1])
        return last, out

    def _feed_cache(self, before: int, columns: tuple) -> bool:
        """Apply events read elsewhere (columns as in ``_apply_to_cache``), which follow event
        ``before``, if the cache stands exactly there and no other thread holds it; the lock is
        held for one chunk only. False: stop feeding (the cache refreshes on its own)."""
        if not self._cache_lock.acquire(blocking=False):
            return False
        try:
            if not (self._cache_valid and self._cache_last_id == before):
                return False
            self._apply_to_cache(*columns)
            return True
        finally:
            self._cache_lock.release()

    def action(self, action_id: int) -> list[LabelEvent]:
        """Every event of one action, oldest first."""
        rows = self.db.query(f"SELECT {_EVENT_COLUMNS} FROM events WHERE action_id = ? ORDER BY event_id",
                             (int(action_id),))
        return [LabelEvent(*r) for r in rows]

    def stances(self, item_id: str) -> dict[str, str]:
        """Annotator -> the label that annotator's latest event in effect gives ``item_id``
        (undone events and retractions do not count)."""
        return self.conflicts(item_ids=[item_id], agreeing=True).get(item_id, {})

    def conflicts(self, item_ids: Iterable[str] | None = None, *, agreeing: bool = False
                  ) -> dict[str, dict[str, str]]:
        """Items on which different annotators' labels disagree: item -> {annotator: label}.

        Each annotator's stance on an item is the label of their latest event on it that is
        still in effect (not an undo, not undone, not a retraction). ``item_ids`` limits the
        search; ``agreeing=True`` also returns items whose stances agree (or have one annotator).
        """
        stances: dict[str, dict[str, str | None]] = {}
        for item, annotator, label, _, _ in self.stance_events(item_ids):
            stances.setdefault(item, {})[annotator] = label
        out: dict[str, dict[str, str]] = {}
        for item, by in stances.items():
            kept = {a: lab for a, lab in by.items() if lab is not None}
            if agreeing or len(set(kept.values())) > 1:
                out[item] = kept
        return out

    def stance_events(self, item_ids: Iterable[str] | None = None, *,
                      exclude_origins: Sequence[str] = ()
                      ) -> list[tuple[str, str, str | None, int, str]]:
        """``(item, annotator, label, event_id, origin)`` of every annotator's latest event in effect on
        each item (not an undo, not undone; ``label`` None for a retraction), oldest first;
        events of ``exclude_origins`` (e.g. confirmations) are not stances."""
        sql = ("SELECT e.item_id, e.annotator, e.label, e.event_id, e.origin FROM events AS e "
               "WHERE e.origin != 'undo' AND e.undoes IS NULL "
               "AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.event_id)")
        params: list[Any] = []
        if exclude_origins:
            sql += f" AND e.origin NOT IN ({', '.join('?' * len(exclude_origins))})"
            params += [str(o) for o in exclude_origins]
        if item_ids is not None:
            wanted = list(dict.fromkeys(str(i) for i in item_ids))
            if not wanted:
                return []
            sql += f" AND e.item_id IN ({', '.join('?' * len(wanted))})"
            params += wanted
        latest: dict[tuple[str, str], tuple[str, str, str | None, int, str]] = {}
        for item, who, label, event_id, origin in self.db.query(sql + " ORDER BY e.event_id",
                                                                tuple(params)):
            latest[(item, who)] = (item, who, label, int(event_id), origin)
        return sorted(latest.values(), key=lambda r: r[3])

    def latest_events(self, item_ids: Iterable[str]) -> dict[str, LabelEvent]:
        """Item id -> its latest event, for the items among ``item_ids`` that have events."""
        unique = list(dict.fromkeys(str(i) for i in item_ids))
        out: dict[str, LabelEvent] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.db.query(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id IN (SELECT MAX(event_id) "
                    f"FROM events WHERE item_id IN ({marks}) GROUP BY item_id)", tuple(chunk)):
                event = LabelEvent(*row)
                out[event.item_id] = event
        return out

    def last_event_id(self) -> int:
        """The id of the newest event (0 when empty); a cheap 'has anything changed?' check."""
        return int(self.db.query("SELECT MAX(event_id) FROM events")[0][0] or 0)

    def __len__(self) -> int:
        """Number of events (not of labelled items)."""
        return int(self.db.query("SELECT COUNT(*) FROM events")[0][0])

    def label_counts(self, split: str | None = None) -> dict[str, int]:
        """Class name -> number of items currently carrying it (in ``split`` when given); every
        class, in schema order."""
        split = check_split(split, allow_none=True)
        counts = {name: 0 for (name,) in self.db.query(
            "SELECT name FROM classes ORDER BY position, name")}
        # From the cached current labels (a C-level count), not a scan of every event in SQL
        # (0.4 s at 3 x 10^5 labels).
        with self._cache_lock:
            self._refresh_cache()
            if split == "test":
                counted = Counter(self._cache[item] for item in self._cache_test)
            else:
                counted = Counter(self._cache.values())
                if split == "train":
                    counted.subtract(self._cache[item] for item in self._cache_test)
        for label, n in sorted(counted.items()):  # schema classes keep their place
            if n:
                counts[label] = int(n)
        return counts

    def labelled_ids(self) -> list[str]:
        """Ids of the items that currently have a label, in the order they got it (latest event)."""
        rows = self.db.query(f"SELECT item_id FROM ({_LATEST}) WHERE label IS NOT NULL ORDER BY event_id")
        return [r[0] for r in rows]

    def annotators(self) -> list[str]:
        """Every annotator that has recorded an event, sorted."""
        return [r[0] for r in self.db.query("SELECT DISTINCT annotator FROM events ORDER BY annotator")]

    # ------------------------------------------------------------------ classes
    def classes(self) -> list[ClassConfig]:
        """The label schema, in display order."""
        return self.schema.all()

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes()]

    def add_class(self, config: ClassConfig) -> ClassConfig:
        """Add a class at the end; an existing class with the same name must be identical."""
        return self.schema.add(config)

    def update_class(self, name: str | ClassConfig, /, **changes: Any) -> ClassConfig:
        """Change an existing class's colour, rare flag or description; returns the new class.

        Either ``update_class("cat", rare=True)`` or ``update_class(ClassConfig(name="cat", ...))``.
        Class names cannot change, since events refer to them.
        """
        return self.schema.update(name, **changes)

    def seed_classes(self, classes: Sequence[ClassConfig]) -> list[ClassConfig]:
        """Add the listed classes the store lacks (a project file seeding its store); classes the
        store has keep their colour, rare flag, description and order: edits are never undone."""
        return self.schema.seed(classes)

    def rename_class(self, old: str, new: str) -> ClassConfig:
        """Rename a class that no label event uses (events keep the names they were given)."""
        return self.schema.rename(old, new)

    def set_classes(self, classes: Sequence[ClassConfig], *, prune: bool = False) -> list[ClassConfig]:
        """Seed the schema from a project file's classes, in their order (see ``ClassSchema.replace``)."""
        return self.schema.replace(classes, prune=prune)

    # ------------------------------------------------------------------ export / import
    def export_jsonl(self, path: str | Path) -> str:
        """Write every event, oldest first, as JSON Lines; returns the file's SHA-256."""
        return exchange.write_events_jsonl(self.events(), path)

    def export_csv(self, path: str | Path) -> Path:
        """Write every event, oldest first, as CSV with a header of ``EXCHANGE_FIELDS``."""
        path = Path(path)
        exchange.write_atomically(path, exchange.events_csv_bytes(self.events()))
        return path

    def import_events(
        self,
        source: str | Path | Iterable[LabelEvent | LabelEventRecord | Mapping[str, Any]],
        *,
        on_conflict: Literal["keep", "replace", "error"] = "keep",
    ) -> ImportReport:
        """Merge label events from a ``.jsonl``/``.csv`` file or an iterable, in one transaction.

        Original annotator and time are kept; origin is ``'import'`` unless the source names one.
        Events identical to a stored one (item, label, annotator, time) are skipped. When the
        incoming events would change an item's current local label to a different one, the item
        is a conflict: ``'keep'`` leaves it and lists it, ``'replace'`` applies and lists it,
        ``'error'`` raises ``LabelStoreError`` and imports nothing.
        """
        if on_conflict not in ("keep", "replace", "error"):
            raise LabelStoreError(f"on_conflict must be 'keep', 'replace' or 'error', got {on_conflict!r}")
        rows, first_use = exchange.import_rows(exchange.load_import(source))
        duplicates = 0
        conflicts: list[tuple[str, str | None, str | None]] = []
        with self.db.write() as conn:
            require(conn, list(first_use), where=first_use)
            local = {item: label for item, label, _, _ in conn.execute(_LATEST)}
            new_rows: list[tuple] = []
            final_label: dict[str, str | None] = {}  # item -> label its new events end with
            seen: set[tuple] = set()
            for row in rows:
                item, label, annotator, when = row[:4]
                key = (item, label, annotator, round(when / _SAME_TIME_S))
                stored = conn.execute(
                    "SELECT 1 FROM events WHERE item_id = ? AND label IS ? AND annotator = ? "
                    "AND abs(time - ?) < ? LIMIT 1",
                    (item, label, annotator, when, _SAME_TIME_S)).fetchone()
                if stored or key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                new_rows.append(row)
                final_label[item] = label
            refused: set[str] = set()
            for item, incoming in final_label.items():
                local_label = local.get(item)
                if local_label is not None and incoming != local_label:
                    conflicts.append((item, local_label, incoming))
                    if on_conflict != "replace":
                        refused.add(item)
            if conflicts and on_conflict == "error":
                shown = "; ".join(f"{i!r}: local {a!r}, incoming {b!r}" for i, a, b in conflicts[:10])
                more = f" (and {len(conflicts) - 10} more)" if len(conflicts) > 10 else ""
                raise LabelStoreError(
                    f"import refused: {len(conflicts)} item(s) have a different local label: "
                    f"{shown}{more}. Use on_conflict='keep' or 'replace'")
            applied = [row for row in new_rows if row[0] not in refused]
            if applied:
                action = _new_action(conn)
                _insert_action(conn, action, [(*row[:7], None, action, row[7]) for row in applied])
        return ImportReport(imported=len(applied), skipped_duplicates=duplicates, conflicts=conflicts)


def _refuse_if_covered(conn: sqlite3.Connection, action: int, annotator: str, first: int,
                       last: int) -> None:
    """Raise when someone else's event, still in effect, was recorded on the action's items since.

    The action's events are ``first`` .. ``last`` (one transaction: consecutive). The search
    starts from the smaller side: the events recorded after the action (usually none or a few:
    nothing to look up for a bulk action undone at once) or the action's own events."""
    later = conn.execute("SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE event_id > ? LIMIT ?)",
                         (last, last - first + 2)).fetchone()[0]
    if not later:
        return
    in_effect = ("f.action_id != ? AND f.annotator != ? AND f.origin != 'undo' AND f.undoes IS NULL "
                 "AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = f.event_id) ")
    if later <= last - first + 1:
        sql = ("SELECT f.item_id, f.annotator, f.label FROM events AS f "
               f"WHERE f.event_id > ? AND {in_effect}"
               "AND EXISTS (SELECT 1 FROM events AS e WHERE e.item_id = f.item_id "
               "AND e.action_id = ?) ")
        params: tuple = (last, action, annotator, action)
    else:
        sql = ("SELECT f.item_id, f.annotator, f.label FROM events AS e "
               "JOIN events AS f ON f.item_id = e.item_id AND f.event_id > e.event_id "
               f"WHERE e.action_id = ? AND {in_effect}")
        params = (action, action, annotator)
    rows = conn.execute(sql + "ORDER BY f.event_id LIMIT 6", params).fetchall()
    if not rows:
        return
    shown = "; ".join(f"item {item!r} was changed by {who!r} to "
                      f"{'(removed)' if label is None else repr(label)}" for item, who, label in rows[:5])
    more = " (and more)" if len(rows) > 5 else ""
    raise LabelStoreError(
        f"cannot undo {annotator!r}'s last action: {shown}{more}. Nothing was undone; "
        "undo never changes a label someone else set since")


BULK_ROWS = 5_000  # actions of at least this many items go in as one INSERT ... SELECT
READ_CHUNK = 32_768  # events read (and applied to the cache) per pass
FEW_ITEMS = 500  # labels_of this many items may bypass a cache that is far behind


def _checked_pairs(labels: Mapping[str, str | None]) -> list[tuple[str, str | None]]:
    """``(item id, label or None)`` pairs, each a checked plain string: ``check_text`` per row
    only when the fast pass over plain, short, non-empty strings finds something else (so a
    bulk action of 10^5 items costs one pass, and a bad value is still named)."""
    items, values = list(labels.keys()), list(labels.values())
    if not all(type(i) is str and 0 < len(i) <= MAX_TEXT for i in items):
        items = [check_text(i, "item_id") for i in items]
    if not all(v is None or (type(v) is str and 0 < len(v) <= MAX_TEXT) for v in values):
        values = [None if v is None else check_text(v, "label") for v in values]
    return list(zip(items, values))


def _insert_bulk(conn: sqlite3.Connection, action_id: int, pairs: list[tuple[str, str | None]],
                 common: tuple, split: str | None) -> list[int]:
    """One action's events in a single ``INSERT ... SELECT`` over a JSON array of the items
    (``json_each``; the label is one parameter when the action gives every item the same one):
    the items' splits (kept when ``split`` is None) are looked up in SQL, no row is sent alone."""
    annotator, when, origin, model_version, note = common
    distinct = {lab for _, lab in pairs}
    if len(distinct) == 1:  # record_many, a retraction: one label for all
        payload, item, label = _json_array([i for i, _ in pairs]), "j.value", "?"
        label_param: tuple = (distinct.pop(),)
    else:
        payload, item, label = _json_array(pairs), "j.value ->> 0", "j.value ->> 1"
        label_param = ()
    kept = (f"COALESCE((SELECT e.split FROM events AS e WHERE e.item_id = {item} "
            "ORDER BY e.event_id DESC LIMIT 1), 'train')")
    cursor = conn.execute(
        "INSERT INTO events(item_id, label, annotator, time, origin, model_version, note, undoes, "
        f"action_id, split) SELECT {item}, {label}, ?, ?, ?, ?, ?, NULL, ?, {'?' if split else kept} "
        "FROM json_each(?) AS j ORDER BY j.key",
        (*label_param, annotator, when, origin, model_version, note, action_id,
         *((split,) if split else ()), payload))
    count = int(cursor.rowcount)
    first, last, n = conn.execute("SELECT MIN(event_id), MAX(event_id), COUNT(*) FROM events "
                                  "WHERE action_id = ?", (action_id,)).fetchone()
    if n == count and last - first + 1 == count:  # one statement under the write lock: consecutive
        return list(range(first, last + 1))
    return [int(r[0]) for r in conn.execute(
        "SELECT event_id FROM events WHERE action_id = ? ORDER BY event_id", (action_id,))]


def _json_array(values: list) -> str:
    """``json.dumps(values)``, encoded READ_CHUNK values at a time: one call on 10^5 ids holds the
    interpreter for its whole length (other threads, the pages' too, wait meanwhile)."""
    parts = (json.dumps(values[k:k + READ_CHUNK], ensure_ascii=False)[1:-1]
             for k in range(0, len(values), READ_CHUNK))
    return "[" + ", ".join(parts) + "]"


def _insert_action(conn: sqlite3.Connection, action_id: int, rows: list[tuple]) -> list[int]:
    """Insert one fresh action's events (``executemany``, in order); returns their event ids."""
    conn.executemany(
        "INSERT INTO events(item_id, label, annotator, time, origin, model_version, note, undoes, "
        "action_id, split) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return [int(r[0]) for r in conn.execute(
        "SELECT event_id FROM events WHERE action_id = ? ORDER BY event_id", (action_id,))]


def _new_action(conn: sqlite3.Connection) -> int:
    """A fresh action id (inside the write transaction, so no other writer can take it)."""
    return int(conn.execute("SELECT COALESCE(MAX(action_id), 0) + 1 FROM events").fetchone()[0])


def _latest_splits(conn: sqlite3.Connection, item_ids: Sequence[str]) -> dict[str, str]:
    """Item id -> split of its latest event, for the items that have events."""
    out: dict[str, str] = {}
    unique = list(dict.fromkeys(item_ids))
    for start in range(0, len(unique), 500):
        chunk = unique[start:start + 500]
        marks = ",".join("?" * len(chunk))
        out.update(conn.execute(
            f"SELECT item_id, split FROM events WHERE event_id IN (SELECT MAX(event_id) "
            f"FROM events WHERE item_id IN ({marks}) GROUP BY item_id)", chunk).fetchall())
    return out
