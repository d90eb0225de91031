"""Exchange formats of label events: canonical JSON Lines and CSV, read, written and hashed.

Both formats carry the columns ``EXCHANGE_FIELDS`` (the fields of ``core.project.LabelEventRecord``).
``write_events_jsonl`` / ``read_events_jsonl`` / ``events_sha256`` serve both the store and project
export; ``load_import`` turns a file or an iterable into validated records, each with where it
came from (file and line) for error messages.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time as _time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.errors import LabelStoreError
from core.labels.records import EXCHANGE_FIELDS, LabelEvent, check_text, iso_time
from core.project import LabelEventRecord

__all__ = [
    "events_csv_bytes",
    "events_sha256",
    "import_rows",
    "load_import",
    "read_events_csv",
    "read_events_jsonl",
    "write_atomically",
    "write_events_jsonl",
]

EventLike = LabelEvent | LabelEventRecord | Mapping[str, Any]


def _canonical_line(record: Mapping[str, Any]) -> str:
    """One event as canonical JSON: the exchange fields in order, numeric times as ISO 8601."""
    return json.dumps(_portable(record), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")) + "\n"


def _portable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The exchange fields of ``record``: a numeric time as ISO 8601 UTC, a missing split 'train'."""
    values = {k: record.get(k) for k in EXCHANGE_FIELDS}
    when = values["time"]
    if isinstance(when, (int, float)) and not isinstance(when, bool) and math.isfinite(when):
        values["time"] = iso_time(when)
    if values["split"] is None:
        values["split"] = "train"
    return values


def _as_record_dict(event: EventLike) -> dict[str, Any]:
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


def _encode_events(events: Iterable[EventLike]) -> bytes:
    return "".join(_canonical_line(_as_record_dict(e)) for e in events).encode("utf-8")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, fsync it, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_events_jsonl(events: Iterable[EventLike], path: str | Path) -> str:
    """Write events as canonical JSON Lines (atomically); returns the SHA-256 of the file."""
    data = _encode_events(events)
    write_atomically(Path(path), data)
    return hashlib.sha256(data).hexdigest()


def events_sha256(source: str | Path | Iterable[EventLike]) -> str:
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
    if raw.get("split") in (None, ""):
        raw.pop("split", None)
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
        return round(moment.timestamp(), 6)
    value = float(value)
    if not math.isfinite(value):
        raise LabelStoreError(f"{where}: time must be a finite number, got {value!r}")
    return round(value, 6)  # microseconds, as the store keeps them


def events_csv_bytes(events: Iterable[EventLike]) -> bytes:
    """Events as CSV (UTF-8) with a header of ``EXCHANGE_FIELDS``; times as ISO 8601 UTC."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXCHANGE_FIELDS)
    for event in events:
        record = _portable(_as_record_dict(event))
        writer.writerow(["" if record[k] is None else record[k] for k in EXCHANGE_FIELDS])
    return buffer.getvalue().encode("utf-8")


def load_import(source: str | Path | Iterable[EventLike]) -> list[tuple[str, LabelEventRecord]]:
    """Validated records from a ``.jsonl``/``.ndjson``/``.csv`` file or an iterable of events,
    each with where it came from (``"file: line 3"`` or ``"event 3"``)."""
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


def import_rows(located: list[tuple[str, LabelEventRecord]]) -> tuple[list[tuple], dict[str, str]]:
    """Rows ``(item_id, label, annotator, time, origin, model_version, note, split)`` ready to
    insert, and where each label is first used (for error messages). Times become unix seconds."""
    now = round(_time.time(), 6)  # microseconds, as the store keeps them
    rows: list[tuple] = []
    first_use: dict[str, str] = {}
    for where, rec in located:
        rows.append((check_text(rec.item_id, f"{where}: item_id"), rec.label,
                     check_text(rec.annotator, f"{where}: annotator"),
                     _to_unix(rec.time, where, now),
                     check_text(rec.origin or "import", f"{where}: origin"),
                     rec.model_version, rec.note, rec.split))
        if rec.label is not None:
            first_use.setdefault(rec.label, where)
    return rows, first_use
