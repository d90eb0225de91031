"""Export the labelled items as a table: CSV, Parquet or FITS (the astronomers' format, via astropy).

One row per currently labelled item: ``id``, ``label``, ``annotator``, ``time`` (ISO 8601 UTC),
``split`` (train or test), ``origin``, and — when a model is given — ``predicted`` and one
``p_<class>`` probability column per class. Test-split items were never trained on, so their
predictions are honest; training items' predictions are in-sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.labels import iso_time

EXPORT_FORMATS = ("csv", "parquet", "fits")
TEXT_COLUMNS = ("id", "label", "annotator", "time", "split", "origin", "predicted")


def labelled_table(store, dataset, state: Any = None):
    """A pandas DataFrame of the current labels (latest event per item), with predictions."""
    import pandas as pd

    latest: dict[str, Any] = {}
    for event in store.events():
        latest[event.item_id] = event
    current = [e for e in latest.values() if e.label is not None]
    current.sort(key=lambda e: e.event_id)
    frame = pd.DataFrame({
        "id": [e.item_id for e in current],
        "label": [e.label for e in current],
        "annotator": [e.annotator for e in current],
        "time": [iso_time(e.time) for e in current],
        "split": [e.split for e in current],
        "origin": [e.origin for e in current],
    }, columns=["id", "label", "annotator", "time", "split", "origin"])
    if state is not None:
        rows = np.array([dataset._index.get(e.item_id, -1) for e in current], dtype=np.int64)
        known = rows >= 0
        predicted = np.full(len(current), "", dtype=object)
        predicted[known] = state.predicted[rows[known]]
        frame["predicted"] = predicted
        for j, name in enumerate(state.classes):
            values = np.full(len(current), np.nan)
            values[known] = state.proba[rows[known], j]
            frame[f"p_{name}"] = values
    return frame


def write_labelled(frame, path: str | Path, fmt: str, *, meta: dict[str, str] | None = None) -> Path:
    """Write ``frame`` as ``fmt`` (csv, parquet or fits) to ``path``, atomically."""
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"--format: {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--out: {path} is a folder; give a file name such as labels.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    elif fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        _fits_table(frame, meta or {}).write(tmp, format="fits", overwrite=True)
    tmp.replace(path)
    return path


def _fits_table(frame, meta: dict[str, str]):
    """An astropy Table: text as UTF-8 bytes (FITS strings are bytes), numbers as float64."""
    from astropy.table import Table

    table = Table()
    for name in frame.columns:
        values = frame[name].to_numpy()
        if name in TEXT_COLUMNS:
            encoded = [str(v).encode("utf-8") for v in values]
            width = max((len(v) for v in encoded), default=1) or 1
            table[name] = np.array(encoded, dtype=f"S{width}")
        else:
            table[name] = np.asarray(values, dtype=np.float64)
    table.meta["EXTNAME"] = "LABELS"
    table.meta["ORIGIN"] = "Tailwise"
    for key, value in meta.items():
        table.meta[key[:8].upper()] = str(value)[:68]
    return table
