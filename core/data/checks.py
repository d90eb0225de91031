"""Checks shared by every data source; each failure is a ``DataError`` naming column/row/file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import DataError

_SHOW = 5  # how many offending names an error message lists


def quote_list(names: Sequence[object], limit: int = _SHOW) -> str:
    """``'a', 'b', 'c' (and 4 more)`` for error messages."""
    shown = ", ".join(repr(str(n)) for n in list(names)[:limit])
    more = len(names) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")


def require_columns(
    source: Path, available: Sequence[str], wanted: dict[str, Sequence[str]], what: str = "column"
) -> None:
    """Raise naming every missing column and the setting that asked for it, listing what exists."""
    have = set(available)
    problems = []
    for setting, names in wanted.items():
        missing = [n for n in names if n not in have]
        if missing:
            plural = what + ("s" if len(missing) > 1 else "")
            problems.append(f"{setting}: {plural} {quote_list(missing, limit=20)} not found")
    if problems:
        raise DataError(
            f"{source.name}: "
            + "; ".join(problems)
            + f". Available {what}s: {quote_list(list(available), limit=30)}. "
            "Fix the name in the project file's data section."
        )


def require_rows(source: Path, n_rows: int) -> None:
    """Refuse a source without items."""
    if n_rows == 0:
        raise DataError(f"{source.name}: the data is empty (no items); add rows or images to it")


def clean_ids(source: Path, raw: Sequence[object], field: str) -> np.ndarray:
    """Turn raw ids into a unique object array of non-empty ``str``; name duplicates and blanks."""
    ids = np.empty(len(raw), dtype=object)
    blanks = []
    for i, value in enumerate(raw):
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
        text = text.strip()
        if not text:
            blanks.append(i + 1)
        ids[i] = text
    if blanks:
        raise DataError(
            f"{source.name}: {field} is empty at row(s) {quote_list(blanks)}; "
            "every item needs an id"
        )
    counts = Counter(ids.tolist())
    dupes = [item for item, c in counts.items() if c > 1]
    if dupes:
        raise DataError(
            f"{source.name}: {len(dupes)} duplicate id(s) in {field}: {quote_list(dupes)}; "
            "ids must be unique"
        )
    return ids


def generated_ids(n: int) -> np.ndarray:
    """Stable ids ``item-000001`` ... from 1-based row numbers (stable while the row order is)."""
    return np.array([f"item-{i:06d}" for i in range(1, n + 1)], dtype=object)


def require_finite(
    source: Path, features: np.ndarray, names: Sequence[str], ids: np.ndarray
) -> None:
    """Refuse NaN or infinite features, naming the first bad column and the row's id."""
    bad = ~np.isfinite(features)
    if not bad.any():
        return
    bad_cols = np.flatnonzero(bad.any(axis=0))
    col = int(bad_cols[0])
    row = int(np.flatnonzero(bad[:, col])[0])
    value = features[row, col]
    kind = "NaN" if np.isnan(value) else "an infinite value"
    n_bad = int(bad.sum())
    others = (
        f"; columns with bad values: {quote_list([names[c] for c in bad_cols])}"
        if len(bad_cols) > 1
        else ""
    )
    raise DataError(
        f"{source.name}: column {names[col]!r} has {kind} at row {row + 1} (id {ids[row]!r}); "
        f"{n_bad} missing or infinite value(s) in all{others}. Fill or drop them before loading."
    )


def clean_labels(source: Path, raw: Sequence[object], field: str, ids: np.ndarray) -> np.ndarray:
    """Ground-truth labels as an object array of ``str``; missing values are refused."""
    labels = np.empty(len(raw), dtype=object)
    missing = []
    for i, value in enumerate(raw):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            missing.append(ids[i])
            continue
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        text = str(value).strip()
        if not text:
            missing.append(ids[i])
        labels[i] = text
    if missing:
        raise DataError(
            f"{source.name}: ground-truth column {field!r} is empty for {len(missing)} item(s), "
            f"ids {quote_list(missing)}; fill them or remove data.label_column"
        )
    return labels
