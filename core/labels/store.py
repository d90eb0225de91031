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

``undo(annotator)`` reverts that annotator's latest event not yet undone by appending an ``'undo'``
event with the label the item had just before it (``undoes`` names the reverted event); calling it
again walks further back. ``current()`` is cached and refreshed from the events appended since.
"""

from __future__ import annotations

import sqlite3
import threading
import time as _time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

from core.errors import LabelStoreError
from core.labels import exchange
from core.labels.classes import ClassSchema, require
from core.labels.database import DEFAULT_TIMEOUT_S, Database
from core.labels.records import (
    MAX_NOTE,
    ImportReport,
    LabelEvent,
    check_model_version,
    check_text,
)
from core.project import ClassConfig, LabelEventRecord

__all__ = ["LabelStore"]

# Two imported events are the same when item, label and annotator match and times differ by less.
_SAME_TIME_S = 1e-5

_EVENT_COLUMNS = "event_id, item_id, label, annotator, time, origin, model_version, note, undoes"

# The latest event of every item, found through the (item_id, event_id) index.
_LATEST = """
SELECT e.item_id, e.label, e.event_id
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
        self._cache: dict[str, str] = {}
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
               model_version: int | None = None, note: str | None = None) -> int:
        """Label one item; returns the new event id once it is committed (durable).

        ``label=None`` records a retraction (see ``retract``).
        """
        return self.record_many([item_id], label, annotator, origin=origin,
                                model_version=model_version, note=note)[0]

    def record_many(self, item_ids: Iterable[str], label: str | None, annotator: str,
                    origin: str = "bulk", model_version: int | None = None,
                    note: str | None = None) -> list[int]:
        """Give many items the same label in one transaction; returns their event ids."""
        if isinstance(item_ids, (str, bytes)):
            raise LabelStoreError("record_many takes a list of item ids, got one string; "
                                  "use record() for a single item")
        ids = [check_text(i, "item_id") for i in item_ids]
        annotator = check_text(annotator, "annotator")
        origin = check_text(origin, "origin")
        note = check_text(note, "note", allow_none=True, limit=MAX_NOTE)
        model_version = check_model_version(model_version)
        if label is not None:
            label = check_text(label, "label")
        if not ids:
            return []
        now = _time.time()
        with self.db.write() as conn:
            if label is not None:
                require(conn, [label])
            rows = [(item, label, annotator, now, origin, model_version, note) for item in ids]
            return [_insert(conn, *row) for row in rows]

    def retract(self, item_id: str, annotator: str, origin: str = "expert",
                model_version: int | None = None, note: str | None = None) -> int:
        """Remove an item's label by appending a retraction event; returns its id."""
        return self.record(item_id, None, annotator, origin=origin, model_version=model_version,
                           note=note)

    def undo(self, annotator: str) -> LabelEvent | None:
        """Revert ``annotator``'s latest event that is not an undo and not undone yet.

        Appends an ``'undo'`` event that gives the item the label it had just before that event
        (a retraction if it had none) and records the reverted event id in ``undoes``. Repeated
        calls walk further back; returns the new event, or None when nothing is left to undo.
        """
        annotator = check_text(annotator, "annotator")
        with self.db.write() as conn:
            target = conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events AS e "
                "WHERE e.annotator = ? AND e.origin != 'undo' AND e.undoes IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM events AS u WHERE u.undoes = e.event_id) "
                "ORDER BY e.event_id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if target is None:
                return None
            undone = LabelEvent(*target)
            before = conn.execute(
                "SELECT label FROM events WHERE item_id = ? AND event_id < ? "
                "ORDER BY event_id DESC LIMIT 1",
                (undone.item_id, undone.event_id),
            ).fetchone()
            restored = before[0] if before else None
            event_id = _insert(conn, undone.item_id, restored, annotator, _time.time(), "undo",
                               None, f"undo of event {undone.event_id}", undone.event_id)
            row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?",
                               (event_id,)).fetchone()
        return LabelEvent(*row)

    # ------------------------------------------------------------------ reading events
    def current(self) -> dict[str, str]:
        """Item id -> current label, for every item whose latest event is not a retraction.

        Computed in SQL once, then kept up to date from the events appended since (by any thread
        or process), so repeated calls cost only the new events. This is exact because writers
        are serialised: event ids become visible in increasing order, never with a later gap.
        """
        with self._cache_lock:
            with self.db.read() as conn:
                if not self._cache_valid:
                    rows = conn.execute(_LATEST).fetchall()
                    self._cache = {item: label for item, label, _ in rows if label is not None}
                    self._cache_last_id = max((r[2] for r in rows), default=0)
                    self._cache_valid = True
                else:
                    for event_id, item, label in conn.execute(
                        "SELECT event_id, item_id, label FROM events WHERE event_id > ? "
                        "ORDER BY event_id", (self._cache_last_id,)
                    ):
                        if label is None:
                            self._cache.pop(item, None)
                        else:
                            self._cache[item] = label
                        self._cache_last_id = event_id
            return dict(self._cache)

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

    def last_event_id(self) -> int:
        """The id of the newest event (0 when empty); a cheap 'has anything changed?' check."""
        return int(self.db.query("SELECT MAX(event_id) FROM events")[0][0] or 0)

    def __len__(self) -> int:
        """Number of events (not of labelled items)."""
        return int(self.db.query("SELECT COUNT(*) FROM events")[0][0])

    def label_counts(self) -> dict[str, int]:
        """Class name -> number of items currently carrying it; every class, in schema order."""
        with self.db.read() as conn:
            counts = {name: 0 for (name,) in conn.execute(
                "SELECT name FROM classes ORDER BY position, name")}
            for label, n in conn.execute(
                f"SELECT label, COUNT(*) FROM ({_LATEST}) WHERE label IS NOT NULL GROUP BY label"
            ):
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
            local = {item: label for item, label, _ in conn.execute(_LATEST)}
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
            for row in applied:
                _insert(conn, *row)
        return ImportReport(imported=len(applied), skipped_duplicates=duplicates, conflicts=conflicts)


def _insert(conn: sqlite3.Connection, item_id: str, label: str | None, annotator: str,
            time: float, origin: str, model_version: int | None, note: str | None,
            undoes: int | None = None) -> int:
    cursor = conn.execute(
        "INSERT INTO events(item_id, label, annotator, time, origin, model_version, note, undoes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (item_id, label, annotator, time, origin, model_version, note, undoes),
    )
    return int(cursor.lastrowid)
