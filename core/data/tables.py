"""CSV and Parquet tables: one row per item, numeric feature columns or a column of image paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.checks import (
    clean_ids,
    clean_labels,
    generated_ids,
    quote_list,
    require_columns,
    require_finite,
    require_rows,
)
from core.data.images import pixel_features, read_images
from core.data.parquet_parts import TableSpec, parquet_files, read_parquet_files
from core.data.request import Loaded, LoadRequest
from core.errors import DataError


def read_table(path: Path, kind: str, text_columns: list[str]):
    """Read a CSV file, or a Parquet file, folder or glob (one pool, files in name order), into a
    DataFrame; ``text_columns`` are kept as strings (CSV)."""
    import pandas as pd

    try:
        if kind == "csv":
            return pd.read_csv(path, dtype={c: str for c in text_columns})
        return read_parquet_files(parquet_files(path))
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the data is empty (no header, no rows)") from None
    except (ValueError, OSError) as err:  # parser errors, bad encodings, broken Parquet
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path.name}: cannot read it as {kind.upper()}: {first}") from None


def read_sample(request: LoadRequest):
    """``(DataFrame, pool size)``: a Parquet pool over ``data.max_items`` items as the rows whose
    id hashes into a share of about ``max_items`` of them, plus every ``keep_ids`` row; read part
    by part, so memory holds one part and the sample, never the pool. ``(None, size)`` when the
    pool is small enough to load whole."""
    import pandas as pd
    import pyarrow.parquet as pq

    from core.data.parquet_parts import plan_parts
    from core.embed.tabular import id_hash_below

    cfg = request.config
    if cfg.kind != "parquet":
        raise DataError(f"data.max_items: sampling needs a Parquet pool (data.kind parquet), "
                        f"not {cfg.kind!r}")
    files = parquet_files(request.path, cfg.path)
    size = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if size <= cfg.max_items:
        return None, size
    id_col = cfg.id_column
    if id_col not in pq.ParquetFile(files[0]).schema_arrow.names:
        raise DataError(f"data.max_items: sampling a pool needs stable ids; {files[0].name} has no "
                        f"{id_col!r} column (set data.id_column)")
    keep = list(request.keep_ids)
    frames = []
    try:
        for part in plan_parts(files):
            frame = pq.ParquetFile(part.path).read_row_groups(list(part.row_groups)).to_pandas()
            ids = frame[id_col].astype(str).str.strip().to_numpy(dtype=object)
            chosen = id_hash_below(ids, cfg.max_items / size) | np.isin(ids, keep)
            frames.append(frame[chosen])
            if request.progress is not None:
                request.progress(part.first_row + part.n_rows, size, f"sampling {size:,} items")
    except (ValueError, OSError) as err:
        raise DataError(f"cannot read the Parquet pool: {err}") from None
    return pd.concat(frames, ignore_index=True), size


def load_table(request: LoadRequest) -> Loaded:
    """Load a ``kind: csv`` or ``kind: parquet`` source, with its derived and catalogue columns."""
    from core.data.derived import derive_columns, derived_specs

    cfg, path = request.config, request.path
    assert path is not None
    id_col, label_col, image_col = cfg.id_column, cfg.label_column, cfg.image_field
    text = [c for c in (id_col, label_col, image_col, *cfg.image_columns) if c]
    df, pool_size = read_sample(request) if cfg.max_items else (None, None)
    sampled = df is not None
    if df is None:
        df = read_table(path, cfg.kind, text)
    columns = [str(c) for c in df.columns]
    derived_names = [name for name, _, _ in derived_specs(request.features)]

    wanted: dict[str, list[str]] = {}
    if request.id_required:
        wanted["data.id_column"] = [id_col]
    if label_col:
        wanted["data.label_column"] = [label_col]
    if image_col:
        wanted["data.image_field"] = [image_col]
    if cfg.feature_columns is not None:
        wanted["data.feature_columns"] = [c for c in cfg.feature_columns if c not in derived_names]
    if cfg.info_columns:
        wanted["data.info_columns"] = list(cfg.info_columns)
    if cfg.image_columns:
        wanted["data.image_columns"] = list(cfg.image_columns)
    require_columns(path, columns, wanted)
    require_rows(path, len(df))

    ids = (
        clean_ids(path, df[id_col].tolist(), id_col)
        if id_col in columns
        else generated_ids(len(df))
    )
    truth = clean_labels(path, df[label_col].tolist(), label_col, ids) if label_col else None

    images, digests = None, []
    if image_col:
        images, digests = _table_images(request, df[image_col].tolist(), ids)

    reserved = {id_col, label_col, image_col}
    catalogue = _catalogue_columns(df, [c for c in columns if c not in reserved])
    derived = derive_columns(catalogue, request.features, ids=ids, source=path.name,
                             hidden=[label_col] if label_col else [])
    catalogue.update(derived)

    if cfg.feature_columns is not None:
        names = list(cfg.feature_columns)
        if not names:
            raise DataError(f"{path.name}: data.feature_columns is empty; name at least one column")
    elif images is not None and not derived:
        names = []
    else:
        names = numeric_feature_names(df, path, cfg, extra=list(derived), ids=ids)

    if names:
        for name in names:
            if name not in derived:
                _require_numeric(path, df[name], name, ids)
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused below
            features = np.column_stack(
                [np.asarray(catalogue[n], dtype=np.float64) if n in derived
                 else df[n].astype("float64").to_numpy() for n in names]
            ).astype(np.float32)
        require_finite(path, features, names, ids)
    else:
        features, names = pixel_features(images)
    return Loaded(
        ids=ids,
        features=features,
        feature_names=names,
        images=images,
        ground_truth=truth,
        extra_digests=digests,
        columns=catalogue,
        pool_size=pool_size if sampled else None,
    )


def numeric_feature_names(df, path: Path, cfg, extra: list[str] = (),
                          ids: np.ndarray | None = None) -> list[str]:
    """Every numeric column but the id, label, image, info and image-path columns (plus
    ``extra``, the derived ones); a table without any is refused, and so is a column that is
    numeric but for a few stray cells (named by row and ``ids``)."""
    import pandas as pd

    columns = [str(c) for c in df.columns]
    shown_only = {cfg.id_column, cfg.label_column, cfg.image_field, *cfg.info_columns,
                  *cfg.image_columns}
    candidates = [c for c in columns if c not in shown_only]
    for name in candidates:
        if not pd.api.types.is_numeric_dtype(df[name]) and _mostly_numeric(df[name]):
            # A number column with a few stray cells is a data error, not a text column:
            # dropping it silently would lose a feature.
            row_ids = ids if ids is not None else np.arange(1, len(df) + 1).astype(str)
            _require_numeric(path, df[name], name, row_ids, hint=(
                "Fix the cell, or leave the column out explicitly by listing the feature "
                "columns you want in data.feature_columns (or naming it in data.info_columns)."))
    names = [c for c in candidates if pd.api.types.is_numeric_dtype(df[c])]
    names += list(extra)
    if not names:
        raise DataError(
            f"{path.name}: no numeric feature columns "
            f"(columns: {quote_list(columns, limit=30)}); "
            "name them in data.feature_columns or point data.image_field at image paths"
        )
    return names


def table_spec(path: Path, cfg, features=None) -> TableSpec:
    """How the Dask path parses every part of a Parquet pool: the columns :func:`load_table` would
    choose, read from the first file's head. Images and derived features need the whole table in
    one process and are refused here."""
    import pyarrow.parquet as pq

    from core.data.derived import derived_specs

    if cfg.image_field:
        raise DataError("data.image_field: scoring part by part reads numeric feature columns; "
                        "images need tailwise retrain without --scheduler")
    if derived_specs(features):
        raise DataError("features: derived columns are computed over the whole table; scoring "
                        "part by part (and on a Dask cluster) needs plain feature columns")
    files = parquet_files(path, cfg.path)
    head = next(pq.ParquetFile(files[0]).iter_batches(batch_size=64), None)
    if head is None:
        raise DataError(f"{files[0].name}: the data is empty (no items)")
    df = head.to_pandas()
    columns = [str(c) for c in df.columns]
    wanted: dict[str, list[str]] = {}
    if cfg.id_column != "id":
        wanted["data.id_column"] = [cfg.id_column]
    if cfg.label_column:
        wanted["data.label_column"] = [cfg.label_column]
    if cfg.feature_columns is not None:
        wanted["data.feature_columns"] = list(cfg.feature_columns)
    require_columns(files[0], columns, wanted)
    if cfg.feature_columns is not None:
        if not cfg.feature_columns:
            raise DataError(f"{files[0].name}: data.feature_columns is empty; name at least one column")
        names = list(cfg.feature_columns)
    else:
        names = numeric_feature_names(df, files[0], cfg)
    return TableSpec(tuple(names), cfg.id_column if cfg.id_column in columns else None,
                     cfg.label_column)


def _catalogue_columns(df, names: list[str]) -> dict[str, np.ndarray]:
    """Every named column as a numpy array: numbers as float64, anything else as text ('' for
    missing values)."""
    import pandas as pd

    out: dict[str, np.ndarray] = {}
    for name in names:
        column = df[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            out[name] = column.astype("float64").to_numpy()
        else:
            values = column.to_numpy(dtype=object)
            missing = pd.isna(values)
            out[name] = np.where(missing, "", values).astype(str).astype(object)
    return out


def _mostly_numeric(column) -> bool:
    """True when more than half of the column's non-empty cells read as numbers."""
    import pandas as pd

    present = column.dropna()
    if present.empty:
        return False
    converted = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    return int(converted.notna().sum()) * 2 > len(present)


def _require_numeric(path: Path, column, name: str, ids: np.ndarray, hint: str | None = None) -> None:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return
    values = column.tolist()
    converted = pd.to_numeric(column, errors="coerce").tolist()
    hint = hint or "Remove the column from data.feature_columns or encode it as numbers."
    for row, (raw, num) in enumerate(zip(values, converted)):
        if pd.isna(num) and not pd.isna(raw):
            raise DataError(
                f"{path.name}: feature column {name!r} is not numeric: row {row + 1} "
                f"(id {ids[row]!r}) holds {raw!r}. {hint}"
            )
    raise DataError(f"{path.name}: feature column {name!r} is not numeric (dtype {column.dtype})")


def _table_images(
    request: LoadRequest, raw_paths: list, ids: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    path = request.path
    assert path is not None
    folder, column = path.parent, request.config.image_field
    files = []
    for row, rel in enumerate(raw_paths):
        where = f"{path.name}: row {row + 1} (id {ids[row]!r}), column {column!r}"
        if rel is None or (isinstance(rel, float) and np.isnan(rel)) or not str(rel).strip():
            raise DataError(f"{where}: the image path is empty")
        files.append(request.resolve(folder, str(rel).strip(), where))
    return read_images(files, request.progress)
