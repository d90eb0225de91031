"""The class schema kept in the label store: names, colours, rare flags, descriptions, order.

Labels name classes, so a label must name a class of this table (``require``). Classes that carry
labels are never removed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from core.errors import LabelStoreError
from core.labels.database import Database
from core.project import ClassConfig

__all__ = ["ClassSchema", "as_class"]

_COLUMNS = "name, colour, rare, description"


class ClassSchema:
    """The ``classes`` table of one label-store file."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[ClassConfig]:
        """The label schema, in display order."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM classes ORDER BY position, name")
        return [ClassConfig(name=n, colour=c, rare=bool(r), description=d) for n, c, r, d in rows]

    def add(self, config: ClassConfig | Mapping[str, Any]) -> ClassConfig:
        """Add a class at the end; an existing class with the same name must be identical."""
        config = as_class(config)
        with self.db.write() as conn:
            existing = _row(conn, config.name)
            if existing is not None:
                if existing != config:
                    raise LabelStoreError(
                        f"class {config.name!r} already exists with different settings "
                        f"({existing.model_dump()}); use update_class to change it")
                return existing
            position = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM classes").fetchone()[0]
            _insert(conn, config, position)
        return config

    def update(self, name: str | ClassConfig, /, **changes: Any) -> ClassConfig:
        """Change an existing class's colour, rare flag or description; returns the new class.

        Either ``update("cat", rare=True)`` or ``update(ClassConfig(name="cat", ...))``.
        """
        if isinstance(name, ClassConfig):
            changes = {**name.model_dump(exclude={"name"}), **changes}
            name = name.name
        bad = sorted(set(changes) - {"colour", "rare", "description"})
        if bad:
            raise LabelStoreError(f"update_class: cannot change {bad}; "
                                  "only colour, rare and description can change")
        with self.db.write() as conn:
            existing = _row(conn, name)
            if existing is None:
                require(conn, [name])  # raises, listing the known classes
                raise AssertionError("unreachable")
            updated = as_class({**existing.model_dump(), **changes})
            conn.execute("UPDATE classes SET colour = ?, rare = ?, description = ? WHERE name = ?",
                         (updated.colour, int(updated.rare), updated.description, updated.name))
        return updated

    def seed(self, classes: Sequence[ClassConfig]) -> list[ClassConfig]:
        """Append the listed classes that are missing, in order; existing ones stay as they are."""
        configs = [as_class(c) for c in classes]
        with self.db.write() as conn:
            position = conn.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM classes").fetchone()[0]
            for config in configs:
                if _row(conn, config.name) is None:
                    _insert(conn, config, position)
                    position += 1
        return self.all()

    def rename(self, old: str, new: str) -> ClassConfig:
        """Give a class a new name, keeping its place and settings. Refused when any label event
        names it (renaming would orphan those labels) or when ``new`` is taken."""
        with self.db.write() as conn:
            existing = _row(conn, old)
            if existing is None:
                require(conn, [old])
                raise AssertionError("unreachable")
            renamed = as_class({**existing.model_dump(), "name": new})
            if renamed.name == old:
                return existing
            if _row(conn, renamed.name) is not None:
                raise LabelStoreError(f"cannot rename {old!r} to {renamed.name!r}: that class exists")
            used = conn.execute("SELECT COUNT(*) FROM events WHERE label = ?", (old,)).fetchone()[0]
            if used:
                raise LabelStoreError(
                    f"cannot rename class {old!r}: {used} label event(s) name it and would be lost "
                    "to the new name; create the new class and relabel the items instead")
            conn.execute("UPDATE classes SET name = ? WHERE name = ?", (renamed.name, old))
        return renamed

    def replace(self, classes: Sequence[ClassConfig], *, prune: bool = False) -> list[ClassConfig]:
        """Make the listed classes the schema's first ones, in order, with the listed settings.

        Classes absent from the list stay (after the listed ones); with ``prune=True`` those that
        no event has ever used are removed. Classes with labels are never removed.
        """
        configs = [as_class(c) for c in classes]
        names = [c.name for c in configs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LabelStoreError(f"set_classes: duplicate class names {dupes}")
        with self.db.write() as conn:
            extra = [r[0] for r in conn.execute("SELECT name FROM classes ORDER BY position, name")
                     if r[0] not in names]
            for position, config in enumerate(configs):
                _insert(conn, config, position, replace=True)
            position = len(configs)
            for name in extra:
                used = conn.execute("SELECT 1 FROM events WHERE label = ? LIMIT 1", (name,)).fetchone()
                if prune and not used:
                    conn.execute("DELETE FROM classes WHERE name = ?", (name,))
                else:
                    conn.execute("UPDATE classes SET position = ? WHERE name = ?", (position, name))
                    position += 1
        return self.all()


def require(conn: sqlite3.Connection, labels: Iterable[str], where: Mapping[str, str] | None = None) -> None:
    """Raise ``LabelStoreError`` naming every label that is not a class (and where it was used)."""
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


def as_class(config: ClassConfig | Mapping[str, Any]) -> ClassConfig:
    """A validated ``ClassConfig`` (from one or from a mapping), else ``LabelStoreError``."""
    if isinstance(config, ClassConfig):
        return config
    try:
        return ClassConfig.model_validate(dict(config))
    except (ValidationError, TypeError, ValueError) as err:
        raise LabelStoreError(f"invalid class {config!r}: {err}") from None


def _row(conn: sqlite3.Connection, name: str) -> ClassConfig | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM classes WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None
    return ClassConfig(name=row[0], colour=row[1], rare=bool(row[2]), description=row[3])


def _insert(conn: sqlite3.Connection, config: ClassConfig, position: int, replace: bool = False) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    conn.execute(f"{verb} INTO classes(name, colour, rare, description, position) "
                 "VALUES (?, ?, ?, ?, ?)",
                 (config.name, config.colour, int(config.rare), config.description, position))
