"""The label store: every expert decision, durably, as an append-only log of events in SQLite.

Schema (``LABEL_SCHEMA_VERSION`` = 1)::

    events(event_id INTEGER PRIMARY KEY AUTOINCREMENT,
           item_id TEXT, label TEXT NULL,        -- NULL label = retraction
           annotator TEXT, time REAL,            -- unix seconds, UTC
           origin TEXT,                          -- 'expert', 'bulk', 'import', 'simulated', 'undo', 'pseudo', ...
           model_version INTEGER NULL, note TEXT NULL,
           undoes INTEGER NULL)                  -- the event an 'undo' event reverts
      index (item_id, event_id), index (annotator, event_id), index (undoes)
    classes(name TEXT PRIMARY KEY, colour TEXT, rare INTEGER, description TEXT, position INTEGER)
    meta(key TEXT PRIMARY KEY, value TEXT)        -- 'schema_version'

Guarantees:

- Append-only: events are never updated or deleted (triggers refuse it). The current label of an
  item is its latest event; a retraction or an undo is itself a new event, so history is complete.
- Durable: the database runs in WAL mode with ``synchronous=FULL``; ``record`` returns an event id
  only after COMMIT (fsynced), so an acknowledged label survives SIGKILL of the process and, as far
  as the disk honours fsync, a power cut.
- Concurrent: one SQLite connection per thread (and per process); writers take ``BEGIN IMMEDIATE``
  with a busy timeout and retry, so several threads and processes may label the same file at once.
- Checked: a label must name a class of the ``classes`` table, otherwise ``LabelStoreError`` names
  it and lists the known classes. Imports never silently overwrite a different local label.

``undo(annotator)`` reverts that annotator's latest event not yet undone by appending an ``'undo'``
event with the label the item had just before it (``undoes`` names the reverted event); calling it
again walks further back. ``current()`` is cached and refreshed from the events appended since.

Exchange format: JSON Lines (one object per line) or CSV with the columns ``EXCHANGE_FIELDS``, the
fields of ``core.project.LabelEventRecord``; ``write_events_jsonl`` / ``read_events_jsonl`` /
``events_sha256`` serve both the store and project export.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import numbers
import os
import sqlite3
import threading
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import ValidationError

from core.errors import LabelStoreError
from core.project import ClassConfig, LabelEventRecord

__all__ = [
    "EXCHANGE_FIELDS",
    "LABEL_SCHEMA_VERSION",
    "ORIGINS",
    "ImportReport",
    "LabelEvent",
    "LabelStore",
    "events_sha256",
    "read_events_csv",
    "read_events_jsonl",
    "write_events_jsonl",
]

LABEL_SCHEMA_VERSION = 1
# Origins Tailwise writes itself; others are accepted (any short lower-case word).
ORIGINS = ("expert", "bulk", "import", "simulated", "undo", "pseudo")
# Columns of the JSON Lines / CSV exchange format, in order (the fields of LabelEventRecord).
EXCHANGE_FIELDS = ("item_id", "label", "annotator", "time", "origin", "model_version", "note")

DEFAULT_TIMEOUT_S = 30.0
# Two imported events are the same when item, label and annotator match and times differ by less.
_SAME_TIME_S = 1e-5
_MAX_TEXT = 1024  # ids, labels, annotators, origins
_MAX_NOTE = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    name        TEXT PRIMARY KEY,
    colour      TEXT NOT NULL,
    rare        INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    position    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id       TEXT NOT NULL,
    label         TEXT,
    annotator     TEXT NOT NULL,
    time          REAL NOT NULL,
    origin        TEXT NOT NULL,
    model_version INTEGER,
    note          TEXT,
    undoes        INTEGER REFERENCES events(event_id)
);
CREATE INDEX IF NOT EXISTS events_by_item ON events(item_id, event_id);
CREATE INDEX IF NOT EXISTS events_by_annotator ON events(annotator, event_id);
CREATE INDEX IF NOT EXISTS events_by_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'label events are append-only: record a new event instead'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'label events are append-only: record a retraction instead'); END;
"""

_EVENT_COLUMNS = "event_id, item_id, label, annotator, time, origin, model_version, note, undoes"

# The latest event of every item, found through the (item_id, event_id) index.
_LATEST = """
SELECT e.item_id, e.label, e.event_id
FROM events AS e
JOIN (SELECT item_id, MAX(event_id) AS last FROM events GROUP BY item_id) AS l
  ON e.event_id = l.last
"""


@dataclass(frozen=True)
class LabelEvent:
    """One immutable entry of the label log; ``label is None`` means the label was retracted."""

    event_id: int
    item_id: str
    label: str | None
    annotator: str
    time: float
    origin: str
    model_version: int | None = None
    note: str | None = None
    undoes: int | None = None  # for origin 'undo': the event this one reverts

    @property
    def is_retraction(self) -> bool:
        return self.label is None

    def to_record(self) -> dict[str, Any]:
        """The portable fields (``EXCHANGE_FIELDS``), as written to JSON Lines and CSV."""
        return {name: getattr(self, name) for name in EXCHANGE_FIELDS}


@dataclass(frozen=True)
class ImportReport:
    """What ``LabelStore.import_events`` did.

    ``conflicts`` lists ``(item_id, local_label, incoming_label)`` for items whose incoming label
    differs from a different current local label; with ``on_conflict='keep'`` those items were left
    unchanged, with ``'replace'`` the incoming events were appended anyway.
    """

    imported: int
    skipped_duplicates: int
    conflicts: list[tuple[str, str | None, str | None]] = field(default_factory=list)


# --------------------------------------------------------------------------- exchange helpers


def _canonical_line(record: Mapping[str, Any]) -> str:
    return json.dumps({k: record.get(k) for k in EXCHANGE_FIELDS}, ensure_ascii=False,
                      allow_nan=False, separators=(",", ":")) + "\n"


def _as_record_dict(event: LabelEvent | LabelEventRecord | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(event, LabelEvent):
        return event.to_record()
    if isinstance(event, LabelEventRecord):
        return event.model_dump()
    if isinstance(event, Mapping):
        return {k: event.get(k) for k in EXCHANGE_FIELDS}
    raise LabelStoreError(
        f"cannot export {type(event).__name__} as a label event; pass LabelEvent, "
        "LabelEventRecord or dict objects"
    )


def _encode_events(events: Iterable[LabelEvent | LabelEventRecord | Mapping[str, Any]]) -> bytes:
    return "".join(_canonical_line(_as_record_dict(e)) for e in events).encode("utf-8")


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_events_jsonl(events: Iterable[LabelEvent | LabelEventRecord | Mapping[str, Any]],
                       path: str | Path) -> str:
    """Write events as canonical JSON Lines (atomically); returns the SHA-256 of the file."""
    data = _encode_events(events)
    _write_atomically(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def events_sha256(source: str | Path | Iterable[LabelEvent | LabelEventRecord | Mapping[str, Any]]) -> str:
    """SHA-256 hex digest of a JSON Lines file, or of the canonical JSON Lines form of events.

    Both agree: ``events_sha256(events) == write_events_jsonl(events, p) == events_sha256(p)``.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise LabelStoreError(f"{path}: labels file not found")
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(_encode_events(source)).hexdigest()


def _record_from(raw: Any, where: str) -> LabelEventRecord:
    if not isinstance(raw, Mapping):
        raise LabelStoreError(f"{where}: a label event must be an object with the fields "
                              f"{', '.join(EXCHANGE_FIELDS)}, got {type(raw).__name__}")
    try:
        record = LabelEventRecord.model_validate(dict(raw))
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<event>'}: "
            + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            for e in err.errors()
        )
        raise LabelStoreError(f"{where}: invalid label event ({problems}); "
                              f"the fields are {', '.join(EXCHANGE_FIELDS)}") from None
    if not record.item_id:
        raise LabelStoreError(f"{where}: item_id is empty")
    return record


def read_events_jsonl(path: str | Path) -> list[LabelEventRecord]:
    """Read and validate a JSON Lines file of label events (blank lines are skipped).

    A malformed line raises ``LabelStoreError`` naming the file and line number.
    """
    return [record for _, record in _read_jsonl_located(Path(path))]


def _read_jsonl_located(path: Path) -> list[tuple[str, LabelEventRecord]]:
    if not path.is_file():
        raise LabelStoreError(f"{path}: labels file not found")
    located: list[tuple[str, LabelEventRecord]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        for number, line in enumerate(_lines(fh, path), start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise LabelStoreError(f"{where}: not valid JSON ({err.msg}, column {err.colno}); "
                                      "each line must be one JSON object") from None
            located.append((where, _record_from(raw, where)))
    return located


def _lines(fh: Any, path: Path) -> Iterator[str]:
    try:
        yield from fh
    except UnicodeDecodeError as err:
        raise LabelStoreError(f"{path}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None


def read_events_csv(path: str | Path) -> list[LabelEventRecord]:
    """Read and validate a CSV file of label events with a header row of ``EXCHANGE_FIELDS``.

    ``item_id`` and ``label`` are required columns; an empty label is a retraction.
    """
    return [record for _, record in _read_csv_located(Path(path))]


def _read_csv_located(path: Path) -> list[tuple[str, LabelEventRecord]]:
    if not path.is_file():
        raise LabelStoreError(f"{path}: labels file not found")
    located: list[tuple[str, LabelEventRecord]] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(_lines(fh, path))
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in EXCHANGE_FIELDS]
        missing = [c for c in ("item_id", "label") if c not in header]
        if unknown or missing:
            raise LabelStoreError(
                f"{path}: line 1: "
                + (f"unknown column(s) {unknown}; " if unknown else "")
                + (f"missing column(s) {missing}; " if missing else "")
                + f"the header must use the columns {', '.join(EXCHANGE_FIELDS)}"
            )
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if None in row:
                raise LabelStoreError(f"{where}: more values than header columns")
            located.append((where, _record_from(_csv_row_to_raw(row, where), where)))
    return located


def _csv_row_to_raw(row: Mapping[str, str | None], where: str) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in row.items():
        if value is None:
            raise LabelStoreError(f"{where}: fewer values than header columns")
        raw[key] = value
    for key in ("label", "note", "model_version", "time"):
        if raw.get(key) == "":
            raw[key] = None
    if raw.get("time") is not None:
        try:
            raw["time"] = float(raw["time"])
        except ValueError:
            pass  # an ISO 8601 string; checked by _to_unix
    if raw.get("model_version") is not None:
        try:
            raw["model_version"] = int(raw["model_version"])
        except ValueError:
            raise LabelStoreError(f"{where}: model_version must be an integer, "
                                  f"got {raw['model_version']!r}") from None
    if raw.get("annotator") in (None, ""):
        raw.pop("annotator", None)
    if raw.get("origin") in (None, ""):
        raw.pop("origin", None)
    return raw


def _to_unix(value: float | str | None, where: str, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise LabelStoreError(f"{where}: time {value!r} is neither unix seconds nor an "
                                  "ISO 8601 date-time such as 2026-11-28T10:00:00Z") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    value = float(value)
    if not math.isfinite(value):
        raise LabelStoreError(f"{where}: time must be a finite number, got {value!r}")
    return value


def _check_text(value: Any, name: str, *, allow_none: bool = False, limit: int = _MAX_TEXT) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise LabelStoreError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise LabelStoreError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return str(value)  # plain str, also for numpy.str_


# --------------------------------------------------------------------------- the store


class LabelStore:
    """Durable, append-only store of label events and the class schema, in one SQLite file.

    Safe to use from several threads (one connection per thread) and several processes (SQLite
    locking, WAL mode). Open one ``LabelStore`` per process; do not carry it across ``fork``.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._cache_lock = threading.Lock()
        self._cache: dict[str, str] = {}
        self._cache_last_id = 0
        self._cache_valid = False
        if self.path.exists() and not self.path.is_file():
            raise LabelStoreError(f"label store {self.path}: not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    # ------------------------------------------------------------------ connections
    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this store opened in this process."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        if os.getpid() == self._pid:
            for _, conn in connections:
                conn.close()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise LabelStoreError(f"label store {self.path} is closed")
        if os.getpid() != self._pid:
            # Forked child: never touch the parent's connections; open fresh ones.
            self._pid = os.getpid()
            self._local = threading.local()
            with self._connections_lock:
                self._connections = []
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._connections_lock:
                # Close the connections of threads that have ended, so thread churn cannot leak.
                for thread, old in self._connections:
                    if not thread.is_alive():
                        old.close()
                self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
                self._connections.append((threading.current_thread(), conn))
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: not a SQLite database or unreadable "
                                  f"({err}); point label_store at a new file or an existing "
                                  "Tailwise store") from None
        return conn

    def _retry_locked(self, action: Any) -> Any:
        """Run ``action()``, retrying while SQLite reports the database locked or busy."""
        deadline = _time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as err:
                message = str(err).lower()
                if ("locked" not in message and "busy" not in message) or _time.monotonic() > deadline:
                    raise LabelStoreError(f"label store {self.path}: {err}") from err
                _time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE (with retry) ... COMMIT, or ROLLBACK on error."""
        conn = self._conn()
        self._retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise LabelStoreError(f"label store {self.path}: {err}") from err
            raise
        try:
            self._retry_locked(lambda: conn.execute("COMMIT"))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self._conn()
        self._retry_locked(lambda: conn.execute("BEGIN"))
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _initialise(self) -> None:
        conn = self._conn()
        try:
            mode = self._retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: not a SQLite database ({err}); "
                                  "point label_store at a new or existing Tailwise store") from None
        if str(mode).lower() != "wal":
            raise LabelStoreError(f"label store {self.path}: cannot switch to WAL mode (got {mode!r}); "
                                  "keep the store on a local file system")
        try:
            with self._write() as conn:
                version = self._schema_version(conn)
                if version is None:
                    # executescript would COMMIT first; run the statements inside this transaction.
                    for statement in _SCHEMA.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                                 (str(LABEL_SCHEMA_VERSION),))
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)",
                                 (datetime.now(UTC).isoformat(),))
                elif version > LABEL_SCHEMA_VERSION:
                    raise LabelStoreError(
                        f"label store {self.path} has schema version {version}; this Tailwise reads "
                        f"up to {LABEL_SCHEMA_VERSION}: upgrade Tailwise"
                    )
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: {err}") from None

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else None

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the store's ``meta`` table."""
        with self._read() as conn:
            version = self._schema_version(conn)
        return int(version or 0)

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
        ids = [_check_text(i, "item_id") for i in item_ids]
        annotator = _check_text(annotator, "annotator")
        origin = _check_text(origin, "origin")
        note = _check_text(note, "note", allow_none=True, limit=_MAX_NOTE)
        model_version = self._check_model_version(model_version)
        if label is not None:
            label = _check_text(label, "label")
        if not ids:
            return []
        now = _time.time()
        with self._write() as conn:
            if label is not None:
                self._require_classes(conn, [label])
            rows = [(item, label, annotator, now, origin, model_version, note) for item in ids]
            return [self._insert(conn, *row) for row in rows]

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
        annotator = _check_text(annotator, "annotator")
        with self._write() as conn:
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
            event_id = self._insert(conn, undone.item_id, restored, annotator, _time.time(), "undo",
                                    None, f"undo of event {undone.event_id}", undone.event_id)
            row = conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?",
                               (event_id,)).fetchone()
        return LabelEvent(*row)

    @staticmethod
    def _insert(conn: sqlite3.Connection, item_id: str, label: str | None, annotator: str,
                time: float, origin: str, model_version: int | None, note: str | None,
                undoes: int | None = None) -> int:
        cursor = conn.execute(
            "INSERT INTO events(item_id, label, annotator, time, origin, model_version, note, undoes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, label, annotator, time, origin, model_version, note, undoes),
        )
        return int(cursor.lastrowid)

    @staticmethod
    def _check_model_version(model_version: Any) -> int | None:
        if model_version is None:
            return None
        if isinstance(model_version, bool) or not isinstance(model_version, numbers.Integral):
            raise LabelStoreError(f"model_version must be an integer or None, got {model_version!r}")
        return int(model_version)  # also numpy integers

    def _require_classes(self, conn: sqlite3.Connection, labels: Iterable[str],
                         where: Mapping[str, str] | None = None) -> None:
        known = [r[0] for r in conn.execute("SELECT name FROM classes ORDER BY position, name")]
        unknown = sorted(set(labels) - set(known))
        if not unknown:
            return
        place = ""
        if where:
            place = " (" + ", ".join(f"{name!r} at {where[name]}" for name in unknown) + ")"
        names = ", ".join(repr(n) for n in unknown)
        listing = ", ".join(repr(n) for n in known) if known else "none are defined yet"
        raise LabelStoreError(
            f"unknown class {names}{place}; known classes: {listing}. "
            "Add it to the project's classes (or LabelStore.add_class) first"
        )

    # ------------------------------------------------------------------ reading events
    def current(self) -> dict[str, str]:
        """Item id -> current label, for every item whose latest event is not a retraction.

        Computed in SQL once, then kept up to date from the events appended since (by any thread
        or process), so repeated calls cost only the new events. This is exact because writers
        are serialised: event ids become visible in increasing order, never with a later gap.
        """
        with self._cache_lock:
            with self._read() as conn:
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
        rows = self._conn().execute(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE item_id = ? ORDER BY event_id", (item_id,)
        ).fetchall()
        return [LabelEvent(*r) for r in rows]

    def events(self, since_id: int = 0, limit: int | None = None) -> list[LabelEvent]:
        """Events with ``event_id > since_id``, oldest first (at most ``limit`` of them)."""
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id > ? ORDER BY event_id"
        params: tuple[Any, ...] = (int(since_id),)
        if limit is not None:
            sql += " LIMIT ?"
            params += (int(limit),)
        return [LabelEvent(*r) for r in self._conn().execute(sql, params).fetchall()]

    def event(self, event_id: int) -> LabelEvent | None:
        """One event by id, or None."""
        row = self._conn().execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?",
                                   (int(event_id),)).fetchone()
        return LabelEvent(*row) if row else None

    def last_event_id(self) -> int:
        """The id of the newest event (0 when empty); a cheap 'has anything changed?' check."""
        row = self._conn().execute("SELECT MAX(event_id) FROM events").fetchone()
        return int(row[0] or 0)

    def __len__(self) -> int:
        """Number of events (not of labelled items)."""
        return int(self._conn().execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def label_counts(self) -> dict[str, int]:
        """Class name -> number of items currently carrying it; every class, in schema order."""
        with self._read() as conn:
            counts = {name: 0 for (name,) in conn.execute(
                "SELECT name FROM classes ORDER BY position, name")}
            for label, n in conn.execute(
                f"SELECT label, COUNT(*) FROM ({_LATEST}) WHERE label IS NOT NULL GROUP BY label"
            ):
                counts[label] = int(n)
        return counts

    def labelled_ids(self) -> list[str]:
        """Ids of the items that currently have a label, in the order they got it (latest event)."""
        rows = self._conn().execute(
            f"SELECT item_id FROM ({_LATEST}) WHERE label IS NOT NULL ORDER BY event_id").fetchall()
        return [r[0] for r in rows]

    def annotators(self) -> list[str]:
        """Every annotator that has recorded an event, sorted."""
        rows = self._conn().execute("SELECT DISTINCT annotator FROM events ORDER BY annotator")
        return [r[0] for r in rows]

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a healthy file."""
        rows = self._conn().execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    # ------------------------------------------------------------------ classes
    def classes(self) -> list[ClassConfig]:
        """The label schema, in display order."""
        rows = self._conn().execute(
            "SELECT name, colour, rare, description FROM classes ORDER BY position, name").fetchall()
        return [ClassConfig(name=n, colour=c, rare=bool(r), description=d) for n, c, r, d in rows]

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes()]

    def add_class(self, config: ClassConfig) -> ClassConfig:
        """Add a class at the end; an existing class with the same name must be identical."""
        config = _as_class(config)
        with self._write() as conn:
            existing = self._class_row(conn, config.name)
            if existing is not None:
                if existing != config:
                    raise LabelStoreError(
                        f"class {config.name!r} already exists with different settings "
                        f"({existing.model_dump()}); use update_class to change it")
                return existing
            position = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM classes").fetchone()[0]
            self._insert_class(conn, config, position)
        return config

    def update_class(self, name: str | ClassConfig, /, **changes: Any) -> ClassConfig:
        """Change an existing class's colour, rare flag or description; returns the new class.

        Either ``update_class("cat", rare=True)`` or ``update_class(ClassConfig(name="cat", ...))``.
        Class names cannot change, since events refer to them.
        """
        if isinstance(name, ClassConfig):
            changes = {**name.model_dump(exclude={"name"}), **changes}
            name = name.name
        bad = sorted(set(changes) - {"colour", "rare", "description"})
        if bad:
            raise LabelStoreError(f"update_class: cannot change {bad}; "
                                  "only colour, rare and description can change")
        with self._write() as conn:
            existing = self._class_row(conn, name)
            if existing is None:
                self._require_classes(conn, [name])  # raises, listing the known classes
                raise AssertionError("unreachable")
            updated = _as_class({**existing.model_dump(), **changes})
            conn.execute("UPDATE classes SET colour = ?, rare = ?, description = ? WHERE name = ?",
                         (updated.colour, int(updated.rare), updated.description, updated.name))
        return updated

    def set_classes(self, classes: Sequence[ClassConfig], *, prune: bool = False) -> list[ClassConfig]:
        """Seed the schema from a project file's classes, in their order.

        Missing classes are added and listed ones take the file's colour, rare flag, description
        and order. Classes absent from the list stay (after the listed ones); with ``prune=True``
        those that no event has ever used are removed. Classes with labels are never removed.
        """
        configs = [_as_class(c) for c in classes]
        names = [c.name for c in configs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LabelStoreError(f"set_classes: duplicate class names {dupes}")
        with self._write() as conn:
            extra = [r[0] for r in conn.execute("SELECT name FROM classes ORDER BY position, name")
                     if r[0] not in names]
            for position, config in enumerate(configs):
                self._insert_class(conn, config, position, replace=True)
            position = len(configs)
            for name in extra:
                used = conn.execute("SELECT 1 FROM events WHERE label = ? LIMIT 1", (name,)).fetchone()
                if prune and not used:
                    conn.execute("DELETE FROM classes WHERE name = ?", (name,))
                else:
                    conn.execute("UPDATE classes SET position = ? WHERE name = ?", (position, name))
                    position += 1
        return self.classes()

    @staticmethod
    def _class_row(conn: sqlite3.Connection, name: str) -> ClassConfig | None:
        row = conn.execute("SELECT name, colour, rare, description FROM classes WHERE name = ?",
                           (name,)).fetchone()
        if row is None:
            return None
        return ClassConfig(name=row[0], colour=row[1], rare=bool(row[2]), description=row[3])

    @staticmethod
    def _insert_class(conn: sqlite3.Connection, config: ClassConfig, position: int,
                      replace: bool = False) -> None:
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        conn.execute(f"{verb} INTO classes(name, colour, rare, description, position) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (config.name, config.colour, int(config.rare), config.description, position))

    # ------------------------------------------------------------------ export / import
    def export_jsonl(self, path: str | Path) -> str:
        """Write every event, oldest first, as JSON Lines; returns the file's SHA-256."""
        return write_events_jsonl(self.events(), path)

    def export_csv(self, path: str | Path) -> Path:
        """Write every event, oldest first, as CSV with a header of ``EXCHANGE_FIELDS``."""
        import io

        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(EXCHANGE_FIELDS)
        for event in self.events():
            record = event.to_record()
            record["time"] = repr(float(record["time"]))
            writer.writerow(["" if record[k] is None else record[k] for k in EXCHANGE_FIELDS])
        path = Path(path)
        _write_atomically(path, buffer.getvalue().encode("utf-8"))
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
        rows, first_use = self._import_rows(self._load_import(source))
        duplicates = 0
        conflicts: list[tuple[str, str | None, str | None]] = []
        with self._write() as conn:
            self._require_classes(conn, list(first_use), where=first_use)
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
                self._insert(conn, *row)
        return ImportReport(imported=len(applied), skipped_duplicates=duplicates, conflicts=conflicts)

    @staticmethod
    def _import_rows(located: list[tuple[str, LabelEventRecord]]) -> tuple[list[tuple], dict[str, str]]:
        """Rows ready to insert, and where each label is first used (for error messages)."""
        now = _time.time()
        rows: list[tuple] = []
        first_use: dict[str, str] = {}
        for where, rec in located:
            rows.append((_check_text(rec.item_id, f"{where}: item_id"), rec.label,
                         _check_text(rec.annotator, f"{where}: annotator"),
                         _to_unix(rec.time, where, now),
                         _check_text(rec.origin or "import", f"{where}: origin"),
                         rec.model_version, rec.note))
            if rec.label is not None:
                first_use.setdefault(rec.label, where)
        return rows, first_use

    @staticmethod
    def _load_import(source: Any) -> list[tuple[str, LabelEventRecord]]:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if path.suffix.lower() == ".csv":
                return _read_csv_located(path)
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                return _read_jsonl_located(path)
            raise LabelStoreError(f"{path}: label files end in .jsonl, .ndjson or .csv")
        if isinstance(source, (bytes, Mapping)):
            raise LabelStoreError("import_events takes a file path or an iterable of events, "
                                  f"got {type(source).__name__}")
        located = []
        for i, event in enumerate(source, start=1):
            where = f"event {i}"
            if isinstance(event, LabelEventRecord):
                located.append((where, event))
            elif isinstance(event, LabelEvent):
                located.append((where, _record_from(event.to_record(), where)))
            else:
                located.append((where, _record_from(event, where)))
        return located


def _as_class(config: ClassConfig | Mapping[str, Any]) -> ClassConfig:
    if isinstance(config, ClassConfig):
        return config
    try:
        return ClassConfig.model_validate(dict(config))
    except (ValidationError, TypeError, ValueError) as err:
        raise LabelStoreError(f"invalid class {config!r}: {err}") from None
