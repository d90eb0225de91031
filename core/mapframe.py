"""The table every rasterised map of a project draws, shared by all browser sessions.

One :class:`MapFrame` per prepared project holds ``x``, ``y`` (float32) and the columns the map is
coloured by, as integer category codes in numpy arrays updated **in place**:
a label action recolours only its items (the store says which items changed since the last event
applied), a retrain rewrites only the rows whose prediction changed, and a refresh when nothing
changed costs one comparison. Views datashade :meth:`MapFrame.table`, a pandas DataFrame made of
those very arrays (no copy; rebuilt, in microseconds, per version), so no browser session holds a
pool-sized copy.

The grid index the selection tools use (:class:`~core.geometry.PointIndex`) is built once here
too. This module never imports panel, bokeh or holoviews.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import numpy as np

from core.geometry import PointIndex

# The category of items without a label / prediction / annotator: a blank, which no class name can
# be (names are stripped); datashader drops an empty-string category.
UNLABELLED = " "
CATEGORICAL = ("label", "predicted", "cluster", "annotator")
CONTINUOUS = ("uncertainty",)
APPLY_CHUNK = 32_768  # label changes applied per C pass (between them other threads may run)


def _code_dtype(n_categories: int) -> type:
    return np.int8 if n_categories < 127 else np.int16 if n_categories < 32_000 else np.int32


class _Column:
    """A categorical column: categories (``UNLABELLED`` first) and codes updated in place."""

    def __init__(self, n: int, categories: Sequence[str] = ()) -> None:
        self.categories: list[str] = [UNLABELLED]
        self.index: dict[str, int] = {UNLABELLED: 0}
        self.codes = np.zeros(n, dtype=_code_dtype(1 + len(categories)))
        self.extend(categories)

    def extend(self, names) -> bool:
        """Add unseen categories (at the end: existing codes keep their meaning)."""
        new = [str(c) for c in dict.fromkeys(names) if str(c) not in self.index]
        for name in new:
            self.index[name] = len(self.categories)
            self.categories.append(name)
        if np.iinfo(self.codes.dtype).max < len(self.categories):
            self.codes = self.codes.astype(_code_dtype(len(self.categories)))
        return bool(new)

    def codes_of(self, names) -> np.ndarray:
        """The codes of ``names`` (None or '' -> ``UNLABELLED``), new names added. One lookup per
        distinct name; the per-item pass is a C loop (``map``), no Python code per item."""
        names = names if isinstance(names, (list, tuple)) else list(names)
        distinct = list(dict.fromkeys(names))
        shown = [UNLABELLED if v is None or v == "" else str(v) for v in distinct]
        self.extend(shown)
        lookup = {v: self.index[name] for v, name in zip(distinct, shown)}
        return np.fromiter(map(lookup.__getitem__, names), dtype=self.codes.dtype, count=len(names))

    def categorical(self):
        import pandas as pd

        return pd.Categorical.from_codes(self.codes, categories=self.categories, validate=False)


class MapFrame:
    """The shared map table of one project (see the module docstring)."""

    def __init__(self, ids: np.ndarray, index: dict[str, int], xy: np.ndarray,
                 classes: Sequence[str] = ()) -> None:
        self.ids = ids
        self._index = index
        self.xy = np.asarray(xy, dtype=np.float64)
        self.n = len(self.xy)
        self.point_index = PointIndex(self.xy)
        xy = self.xy
        self.columns = {name: _Column(self.n, classes if name in ("label", "predicted") else ())
                        for name in CATEGORICAL}
        self.uncertainty = np.full(self.n, np.nan, dtype=np.float32)
        self._x = np.ascontiguousarray(xy[:, 0], dtype=np.float32)
        self._y = np.ascontiguousarray(xy[:, 1], dtype=np.float32)
        self._table: tuple[int, Any] | None = None
        self.version = 0  # bumped on every change a view must redraw
        self.event_id = 0  # the last label event applied
        self.model_version: int | None = None
        self.cluster_version: Any = None
        self.annotators_loaded = False
        self._lock = threading.RLock()

    def table(self):
        """A pandas DataFrame over the current arrays (``x, y`` float32, the categorical columns and
        their integer codes as ``<name>_code``, ``uncertainty``), built without copying them; the
        same object until the next change."""
        import pandas as pd

        with self._lock:
            if self._table is None or self._table[0] != self.version:
                columns = {"x": self._x, "y": self._y}
                columns.update({name: self.columns[name].categorical() for name in CATEGORICAL})
                # the same codes as numbers, for reductions that need them (max code per pixel)
                columns.update({f"{name}_code": self.columns[name].codes for name in CATEGORICAL})
                columns["uncertainty"] = self.uncertainty
                self._table = (self.version, pd.DataFrame(columns, copy=False))
            return self._table[1]

    # ------------------------------------------------------------------ updates
    def _set(self, name: str, rows: np.ndarray, values) -> int:
        """Give ``rows`` the categories ``values``; returns how many rows changed."""
        column = self.columns[name]
        codes = column.codes_of(values)
        changed = column.codes[rows] != codes
        column.codes[rows[changed]] = codes[changed]
        return int(changed.sum())

    def apply_labels(self, changes: dict[str, tuple[str | None, str]], last_event_id: int) -> int:
        """Apply ``item id -> (current label or None, annotator)`` of the events up to
        ``last_event_id``; returns how many rows changed colour.

        A bulk action's 10^5 items go through in chunks of C loops (``map`` over the id index and
        the few distinct labels, numpy for the rest): the thread doing it (the store's, in the
        dashboard) hands the interpreter to the page-serving thread between chunks instead of
        holding it for seconds in a Python loop per item."""
        with self._lock:
            if last_event_id <= self.event_id:
                return 0
            items, values = list(changes), list(changes.values())
            changed = 0
            for start in range(0, len(items), APPLY_CHUNK):
                chunk = items[start:start + APPLY_CHUNK]
                rows = np.fromiter(map(self._index.get, chunk, repeat(-1)), dtype=np.int64,
                                   count=len(chunk))
                known = np.flatnonzero(rows >= 0)
                pairs = values[start:start + APPLY_CHUNK]
                if len(known) < len(chunk):
                    rows, pairs = rows[known], [pairs[k] for k in known.tolist()]
                labels = list(map(itemgetter(0), pairs))
                changed += self._set("label", rows, labels)
                if self.annotators_loaded:
                    who = list(map(itemgetter(1), pairs))
                    changed += self._set("annotator", rows, [None if lab is None else w
                                                              for lab, w in zip(labels, who)])
            self.event_id = last_event_id
            if changed:
                self.version += 1
            return changed

    def apply_model(self, model_version: int, classes: Sequence[str], best: np.ndarray,
                    uncertainty: np.ndarray) -> int:
        """A new model's predictions (``best``: index into ``classes`` per row): only rows whose
        predicted class changed are rewritten; returns how many."""
        with self._lock:
            if model_version == self.model_version:
                return 0
            column = self.columns["predicted"]
            column.extend(classes)
            lookup = np.array([column.index[str(c)] for c in classes], dtype=column.codes.dtype)
            new = lookup[np.asarray(best, dtype=np.int64)]
            changed = np.flatnonzero(column.codes != new)
            column.codes[changed] = new[changed]
            np.copyto(self.uncertainty, np.asarray(uncertainty, dtype=np.float32))
            self.model_version = model_version
            self.version += 1
            return len(changed)

    def apply_clusters(self, key: Any, assignment: np.ndarray) -> None:
        """Predicted clusters (cached by the engine per model version)."""
        with self._lock:
            if key == self.cluster_version:
                return
            column = self.columns["cluster"]
            values = np.asarray(assignment, dtype=np.int64)
            names = [str(v) for v in np.unique(values)]
            column.extend(sorted(names, key=lambda v: (len(v), v)))
            lookup = {int(v): column.index[str(v)] for v in np.unique(values)}
            column.codes[:] = np.vectorize(lookup.__getitem__, otypes=[column.codes.dtype])(values)
            self.cluster_version = key
            self.version += 1

    def load_annotators(self, latest: dict[str, str]) -> None:
        """Who set each current label (``item id -> annotator``), once; kept up to date after."""
        with self._lock:
            if self.annotators_loaded:
                return
            rows = np.fromiter((self._index[i] for i in latest if i in self._index), dtype=np.int64)
            self._set("annotator", rows, [latest[i] for i in latest if i in self._index])
            self.annotators_loaded = True
            self.version += 1

    def add_classes(self, names: Sequence[str]) -> None:
        with self._lock:
            grew = [self.columns[column].extend(names) for column in ("label", "predicted")]
            if any(grew):
                self.version += 1

    # ------------------------------------------------------------------ reading
    def counts(self, name: str, rows: np.ndarray | None = None) -> dict[str, int]:
        """Items per category of a categorical column (unlabelled under ``UNLABELLED``), among
        ``rows`` when given (one ``bincount`` of their codes: a box of 10^5 items costs ms)."""
        column = self.columns[name]
        codes = column.codes if rows is None else column.codes[np.asarray(rows, dtype=np.int64)]
        counts = np.bincount(codes.astype(np.int64), minlength=len(column.categories))
        return {c: int(k) for c, k in zip(column.categories, counts) if k}

    def values(self, name: str, rows: np.ndarray) -> np.ndarray:
        """The categories of ``rows`` in a categorical column (object array, '' for none)."""
        column = self.columns[name]
        names = np.asarray(column.categories, dtype=object)
        names[0] = ""  # UNLABELLED
        return names[column.codes[np.asarray(rows, dtype=np.int64)]]

    def rows_in(self, name: str, categories: Sequence[str]) -> np.ndarray:
        """Rows whose category is one of ``categories``."""
        column = self.columns[name]
        wanted = [column.index[c] for c in categories if c in column.index]
        return np.flatnonzero(np.isin(column.codes, wanted)) if wanted else np.empty(0, np.int64)

    def value_range(self, name: str) -> tuple[float, float] | None:
        values = self.uncertainty if name == "uncertainty" else None
        if values is None or not np.isfinite(values).any():
            return None
        return float(np.nanmin(values)), float(np.nanmax(values))
