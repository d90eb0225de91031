"""A pool given as many Parquet files: which files, how to split them, how to read one part.

``data: {kind: parquet, path: FOLDER}`` reads every ``*.parquet`` file in the folder, sorted by
name, as one pool; ``path`` may also be a glob (``parts/*.parquet``) or a single file. For the
Dask path (``core.executors``) the files are cut into :class:`ParquetPart` s of whole row groups,
each read on its own by :func:`read_part` with the column choices of a :class:`TableSpec` made
once on the driver, so every part is parsed exactly as the single-process loader parses the pool.
"""

from __future__ import annotations

import glob as globbing
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.data.checks import clean_labels, quote_list, require_finite
from core.data.hashing import file_sha256, manifest_sha256
from core.errors import DataError

GLOB_CHARS = frozenset("*?[")
PART_ROWS = 250_000  # target rows per Dask partition (whole row groups)


def is_glob(path: str | Path) -> bool:
    return any(c in GLOB_CHARS for c in str(path))


def parquet_files(path: str | Path, written: str | None = None) -> list[Path]:
    """The Parquet files ``data.path`` names: a file, a folder's ``*.parquet`` or a glob's matches,
    sorted by name. Raises ``DataError`` when there are none."""
    path = Path(path)
    shown = written or str(path)
    if is_glob(path):
        files = sorted(Path(p) for p in globbing.glob(str(path)) if Path(p).is_file())
        if not files:
            raise DataError(f"data.path: the pattern {shown!r} matches no file (looked for {path})")
    elif path.is_dir():
        files = sorted(p for p in path.glob("*.parquet") if p.is_file())
        if not files:
            raise DataError(f"data.path: the folder {shown!r} holds no *.parquet file; put the pool's "
                            "Parquet files there or point data.path at a file")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"data.path: {shown!r} not found (looked for {path}); fix the path in the "
                        "project file (it is relative to the project file)")
    return files


def parquet_sha256(files: list[Path]) -> str:
    """One file's SHA-256, or for several the digest of their (name, SHA-256) list in order."""
    if len(files) == 1:
        return file_sha256(files[0])
    return manifest_sha256((f.name, file_sha256(f)) for f in files)


def read_parquet_files(files: list[Path]):
    """All files as one pandas DataFrame (rows in file order); files must share their columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, ValueError, pa.ArrowException) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(f"{f.name}: cannot read it as PARQUET: {first}") from None
    names = tables[0].column_names
    for f, t in zip(files[1:], tables[1:]):
        if t.column_names != names:
            missing = sorted(set(names) - set(t.column_names))
            extra = sorted(set(t.column_names) - set(names))
            raise DataError(f"{f.name}: its columns differ from {files[0].name}'s (missing "
                            f"{quote_list(missing)}, extra {quote_list(extra)}); every file of the "
                            "pool needs the same columns")
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as err:
        raise DataError(f"the Parquet files' column types differ: {err}") from None
    return table.to_pandas()


# ---------------------------------------------------------------------------- parts (Dask)
@dataclass(frozen=True)
class ParquetPart:
    """Rows ``first_row .. first_row + n_rows`` of the pool: some row groups of one file."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    first_row: int
    n_rows: int

    def to_dict(self) -> dict:
        return {**asdict(self), "row_groups": list(self.row_groups)}

    @classmethod
    def from_dict(cls, data: dict) -> ParquetPart:
        return cls(**{**data, "row_groups": tuple(data["row_groups"])})


def plan_parts(files: list[Path], part_rows: int = PART_ROWS) -> list[ParquetPart]:
    """Cut ``files`` into parts of whole row groups of about ``part_rows`` rows, in pool order."""
    import pyarrow.parquet as pq

    parts: list[ParquetPart] = []
    offset = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= part_rows:
                parts.append(ParquetPart(len(parts), str(f), tuple(groups), offset, rows))
                offset += rows
                groups, rows = [], 0
        if groups:
            parts.append(ParquetPart(len(parts), str(f), tuple(groups), offset, rows))
            offset += rows
    return parts


@dataclass(frozen=True)
class TableSpec:
    """How every part is parsed: id column (or generated ids), feature columns, label column."""

    feature_names: tuple[str, ...]
    id_column: str | None  # None: ids item-000001... from global row numbers
    label_column: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "feature_names": list(self.feature_names)}

    @classmethod
    def from_dict(cls, data: dict) -> TableSpec:
        return cls(**{**data, "feature_names": tuple(data["feature_names"])})


@dataclass(frozen=True)
class PartRows:
    """What :func:`read_part` returns: ids, float32 features and the ground truth (or None)."""

    ids: np.ndarray
    features: np.ndarray
    truth: np.ndarray | None


def read_part(part: ParquetPart, spec: TableSpec) -> PartRows:
    """Read one part's ids, features and ground truth; bad values raise ``DataError``."""
    import pyarrow.parquet as pq

    path = Path(part.path)
    columns = list(spec.feature_names)
    for extra in (spec.id_column, spec.label_column):
        if extra and extra not in columns:
            columns.append(extra)
    try:
        table = pq.ParquetFile(path).read_row_groups(list(part.row_groups), columns=columns)
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path.name}: cannot read row groups {list(part.row_groups)}: {err}") from None
    frame = table.to_pandas()
    if spec.id_column:
        ids = frame[spec.id_column].astype(str).str.strip().to_numpy(dtype=object)
        if (ids == "").any() or frame[spec.id_column].isna().any():
            row = int(np.flatnonzero((ids == "") | frame[spec.id_column].isna().to_numpy())[0])
            raise DataError(f"{path.name}: {spec.id_column} is empty at row {part.first_row + row + 1} "
                            "of the pool; every item needs an id")
    else:
        start = part.first_row + 1
        ids = np.array([f"item-{i:06d}" for i in range(start, start + len(frame))], dtype=object)
    with np.errstate(over="ignore"):
        features = frame[list(spec.feature_names)].astype("float64").to_numpy().astype(np.float32)
    require_finite(path, features, list(spec.feature_names), ids)
    truth = None
    if spec.label_column:
        truth = clean_labels(path, frame[spec.label_column].tolist(), spec.label_column, ids)
    return PartRows(ids, features, truth)
