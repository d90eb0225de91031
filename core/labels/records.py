"""The record types of the label store and the checks every written field goes through.

``LabelEvent`` is one immutable entry of the log; ``ImportReport`` says what an import did;
``EXCHANGE_FIELDS`` are the portable fields (JSON Lines / CSV / inline in a project file).
"""

from __future__ import annotations

import numbers
import time as _time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import LabelStoreError

# Origins Tailwise writes itself; others are accepted (any short lower-case word).
ORIGINS = ("expert", "bulk", "import", "simulated", "undo", "pseudo")
# Columns of the JSON Lines / CSV exchange format, in order (the fields of LabelEventRecord).
EXCHANGE_FIELDS = ("item_id", "label", "annotator", "time", "origin", "model_version", "note",
                   "split")
SPLITS = ("train", "test")
"""Where a labelled item serves: ``train`` (the model learns from it) or ``test`` (measured only)."""

MAX_TEXT = 1024  # ids, labels, annotators, origins
MAX_NOTE = 10_000


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
    action_id: int | None = None  # the user action (click, bulk label, undo, import) it belongs to
    split: str = "train"  # 'train' or 'test' (the expert-curated test set, never trained on)

    @property
    def is_retraction(self) -> bool:
        return self.label is None

    def to_record(self) -> dict[str, Any]:
        """The portable fields (``EXCHANGE_FIELDS``), as written to JSON Lines and CSV; the time
        as ISO 8601 UTC (``2026-11-28T10:00:00.123456Z``)."""
        record = {name: getattr(self, name) for name in EXCHANGE_FIELDS}
        record["time"] = iso_time(self.time)
        return record


def iso_time(seconds: float) -> str:
    """Unix seconds as ISO 8601 UTC with microseconds, e.g. ``2026-11-28T10:00:00.000000Z``."""
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")


def now() -> float:
    """Unix seconds rounded to microseconds, so the ISO 8601 form reads back to the same float."""
    return round(_time.time(), 6)


def check_split(split: Any, *, allow_none: bool = False) -> str | None:
    """'train' or 'test' (or None when allowed: keep the item's split), else an error."""
    if split is None and allow_none:
        return None
    if split not in SPLITS:
        raise LabelStoreError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return str(split)


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


def check_text(value: Any, name: str, *, allow_none: bool = False, limit: int = MAX_TEXT) -> str | None:
    """A non-empty string of at most ``limit`` characters (or None when allowed), else an error."""
    if value is None and allow_none:
        return None
    if not isinstance(value, str) or not value:
        raise LabelStoreError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise LabelStoreError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return str(value)  # plain str, also for numpy.str_


def check_model_version(model_version: Any) -> int | None:
    """An integer model version (numpy integers too) or None."""
    if model_version is None:
        return None
    if isinstance(model_version, bool) or not isinstance(model_version, numbers.Integral):
        raise LabelStoreError(f"model_version must be an integer or None, got {model_version!r}")
    return int(model_version)
