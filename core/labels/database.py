"""SQLite plumbing of the label store: the file, its schema, connections and transactions.

Schema (``LABEL_SCHEMA_VERSION`` = 3)::

    events(event_id INTEGER PRIMARY KEY AUTOINCREMENT,
           item_id TEXT, label TEXT NULL,        -- NULL label = retraction
           annotator TEXT, time REAL,            -- unix seconds, UTC
           origin TEXT,                          -- 'expert', 'bulk', 'import', 'simulated', 'undo', 'pseudo', ...
           model_version INTEGER NULL, note TEXT NULL,
           undoes INTEGER NULL,                  -- the event an 'undo' event reverts
           action_id INTEGER NOT NULL,           -- one user action (a click, a bulk label, an undo)
           split TEXT NOT NULL DEFAULT 'train')  -- 'train' or 'test': the expert-curated test set
      index (item_id, event_id), index (annotator, event_id), index (undoes), index (action_id)
    classes(name TEXT PRIMARY KEY, colour TEXT, rare INTEGER, description TEXT, position INTEGER)
    meta(key TEXT PRIMARY KEY, value TEXT)        -- 'schema_version', 'created'

The file runs in WAL mode with ``synchronous=FULL``: a write transaction returns only after its
COMMIT is fsynced, so a committed event survives SIGKILL of the process. One connection per
thread (and per process); writers take ``BEGIN IMMEDIATE`` with a busy timeout and retry, so
several threads and processes may write the same file at once. Triggers refuse any UPDATE or
DELETE of an event: the log is append-only.

Migrations run in one transaction when an older store is opened: version 1 -> 2 adds
``action_id`` and gives every existing event its own action (``action_id = event_id``); 2 -> 3
adds ``split`` with every existing event in ``train``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from core.errors import LabelStoreError

__all__ = ["DEFAULT_TIMEOUT_S", "LABEL_SCHEMA_VERSION", "Database"]

LABEL_SCHEMA_VERSION = 3
DEFAULT_TIMEOUT_S = 30.0

_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'label events are append-only: record a new event instead'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'label events are append-only: record a retraction instead'); END;
"""

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
    undoes        INTEGER REFERENCES events(event_id),
    action_id     INTEGER NOT NULL,
    split         TEXT NOT NULL DEFAULT 'train'
);
CREATE INDEX IF NOT EXISTS events_by_item ON events(item_id, event_id);
CREATE INDEX IF NOT EXISTS events_by_annotator ON events(annotator, event_id);
CREATE INDEX IF NOT EXISTS events_by_undoes ON events(undoes) WHERE undoes IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_action ON events(action_id, event_id);
""" + _TRIGGERS

# Version n -> n + 1, each run inside the opening transaction. Events stay append-only for every
# writer: only a migration lifts the update trigger, and only for its own transaction.
_MIGRATIONS = {
    1: """
ALTER TABLE events ADD COLUMN action_id INTEGER;
DROP TRIGGER events_no_update;
UPDATE events SET action_id = event_id;
CREATE INDEX IF NOT EXISTS events_by_action ON events(action_id, event_id);
""" + _TRIGGERS,
    2: """
ALTER TABLE events ADD COLUMN split TEXT NOT NULL DEFAULT 'train';
""",
}

T = TypeVar("T")


class Database:
    """One SQLite file: per-thread connections, retrying transactions, schema creation.

    Safe to use from several threads and several processes. Open one per process; a forked child
    opens fresh connections instead of touching its parent's.
    """

    def __init__(self, path: str | Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self._local = threading.local()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        if self.path.exists() and not self.path.is_file():
            raise LabelStoreError(f"label store {self.path}: not a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._initialise()

    # ------------------------------------------------------------------ connections
    def close(self) -> None:
        """Close every connection opened in this process."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        if os.getpid() == self._pid:
            for _, conn in connections:
                conn.close()
        self._local = threading.local()

    @property
    def open_connections(self) -> int:
        """How many connections this process holds (one per live thread that used the file)."""
        with self._connections_lock:
            return len(self._connections)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
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
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB: bulk actions touch many index pages
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: not a SQLite database or unreadable "
                                  f"({err}); point label_store at a new file or an existing "
                                  "Tailwise store") from None
        return conn

    def retry_locked(self, action: Callable[[], T]) -> T:
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

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE (with retry) ... COMMIT, or ROLLBACK on error."""
        conn = self.connection()
        self.retry_locked(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except BaseException as err:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.Error):
                raise LabelStoreError(f"label store {self.path}: {err}") from err
            raise
        try:
            self.retry_locked(lambda: conn.execute("COMMIT"))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees one snapshot."""
        conn = self.connection()
        self.retry_locked(lambda: conn.execute("BEGIN"))
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple]:
        """Rows of one read-only statement (autocommit: its own snapshot)."""
        return self.connection().execute(sql, params).fetchall()

    # ------------------------------------------------------------------ schema
    def _initialise(self) -> None:
        conn = self.connection()
        try:
            mode = self.retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: not a SQLite database ({err}); "
                                  "point label_store at a new or existing Tailwise store") from None
        if str(mode).lower() != "wal":
            raise LabelStoreError(f"label store {self.path}: cannot switch to WAL mode (got {mode!r}); "
                                  "keep the store on a local file system")
        try:
            with self.write() as conn:
                version = _schema_version(conn)
                if version is None:
                    _run_script(conn, _SCHEMA)
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                                 (str(LABEL_SCHEMA_VERSION),))
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created', ?)",
                                 (datetime.now(UTC).isoformat(),))
                elif version > LABEL_SCHEMA_VERSION:
                    raise LabelStoreError(
                        f"label store {self.path} has schema version {version}; this Tailwise reads "
                        f"up to {LABEL_SCHEMA_VERSION}: upgrade Tailwise"
                    )
                else:
                    for old in range(version, LABEL_SCHEMA_VERSION):
                        _run_script(conn, _MIGRATIONS[old])
                    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                 (str(LABEL_SCHEMA_VERSION),))
        except sqlite3.DatabaseError as err:
            raise LabelStoreError(f"label store {self.path}: {err}") from None

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the ``meta`` table."""
        with self.read() as conn:
            version = _schema_version(conn)
        return int(version or 0)

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a healthy file."""
        return "\n".join(str(r[0]) for r in self.query("PRAGMA integrity_check"))


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the open transaction (``executescript`` would COMMIT
    first). Statements are split on ``;`` at a line end; trigger bodies keep theirs mid-line."""
    for statement in script.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _schema_version(conn: sqlite3.Connection) -> int | None:
    has_meta = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
    if not has_meta:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else None
