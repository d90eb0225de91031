"""``load_dataset``: the registry of source kinds and the checks every source goes through."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data.arrays import load_npz
from core.data.base import Dataset
from core.data.demos import build_demo, demo_sha256
from core.data.folders import image_folder_sha256, load_image_folder
from core.data.hashing import file_sha256, fingerprint
from core.data.images import MAX_IMAGE_SIDE
from core.data.parquet_parts import parquet_files, parquet_sha256
from core.data.request import Loaded, LoadRequest, Progress
from core.data.tables import load_table
from core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from core.project import ProjectConfig


def _load_demo(request: LoadRequest) -> Loaded:
    from core.data.images import pixel_features

    name = request.config.demo
    data = build_demo(name, request.seed)
    features, names = pixel_features(data.images)
    return Loaded(
        ids=data.ids,
        features=features,
        feature_names=names,
        images=data.images,
        ground_truth=data.labels,
        source_sha256=demo_sha256(data),
    )


SOURCES: dict[str, Callable[[LoadRequest], Loaded]] = {
    "csv": load_table,
    "parquet": load_table,
    "npz": load_npz,
    "image_folder": load_image_folder,
    "demo": _load_demo,
}
"""Source kind (``data.kind`` in the project file) -> loader."""


def data_sha256(path: str | Path, kind: str | None = None) -> str:
    """The digest ``data.sha256`` pins: a file's SHA-256, an image folder's manifest digest, or
    for a Parquet folder or glob the digest of its files' (name, SHA-256) list."""
    path = Path(path)
    if kind == "parquet":
        return parquet_sha256(parquet_files(path))
    return image_folder_sha256(path) if path.is_dir() else file_sha256(path)


def load_dataset(
    project: ProjectConfig, *, allow_outside: bool | None = None, progress: Progress | None = None,
    keep_ids: frozenset[str] | set[str] = frozenset(),
) -> Dataset:
    """Load and validate the items ``project.data`` names.

    Paths resolve against the project file's folder and may not leave it unless ``allow_outside``
    (default: what the project was loaded with). Raises ``DataError`` naming the file, column or
    row at fault; a pinned ``data.sha256`` that does not match the data is refused. With
    ``data.max_items`` a larger Parquet pool is loaded as a sample that always holds ``keep_ids``
    (the labelled items).
    """
    cfg = project.data
    allow = (
        bool(getattr(project, "_allow_outside", False)) if allow_outside is None else allow_outside
    )
    if cfg.kind not in SOURCES:
        raise ConfigError(
            f"data.kind: unknown kind {cfg.kind!r}; choose one of: {', '.join(SOURCES)}"
        )
    base = project.base_dir

    def resolve(folder: Path, relative: str, where: str) -> Path:
        full = (folder / Path(relative).expanduser()).resolve()
        if not allow and not full.is_relative_to(base.resolve()):
            raise DataError(
                f"{where}: {relative!r} points outside the project folder {str(base)!r}; "
                "move the file into the folder or pass allow_outside (CLI: --allow-outside)"
            )
        return full

    path, source_sha = None, ""
    if cfg.kind != "demo":
        path = project.resolve(cfg.path, allow_outside=allow, field="data.path")
        _require_exists(path, cfg.kind, cfg.path)
    try:
        if path is not None:
            source_sha = data_sha256(path, cfg.kind)
            _check_pin(cfg.sha256, source_sha, path)
        features = getattr(project, "features", None)
        if features is not None and not features.empty and cfg.kind not in ("csv", "parquet"):
            raise ConfigError(f"features: derived columns need a table (data.kind csv or "
                              f"parquet), not {cfg.kind!r}")
        request = LoadRequest(
            config=cfg, path=path, resolve=resolve, seed=project.seed, progress=progress,
            features=features, keep_ids=frozenset(keep_ids),
        )
        loaded = SOURCES[cfg.kind](request)
    except OSError as err:  # permissions, vanished files, I/O errors: name the file
        where = err.filename or path
        raise DataError(
            f"{where}: cannot read it ({err.strerror or err}); check that the file "
            "exists and is readable"
        ) from None
    source_sha = loaded.source_sha256 or source_sha

    # Info and image columns leave the default features; empty ones keep older fingerprints.
    unused = {k for k in ("info_columns", "image_columns", "max_items") if not getattr(cfg, k)}
    options = cfg.model_dump(mode="json", exclude={"sha256", "path", "image_hosts"} | unused)
    if features is not None and not features.empty:  # derived columns change the features
        options["features"] = features.model_dump(mode="json")
    if loaded.extra_digests:
        options["extra"] = hashlib.sha256("\n".join(loaded.extra_digests).encode()).hexdigest()
    if loaded.images is not None:
        options["max_image_side"] = MAX_IMAGE_SIDE
    if cfg.kind == "demo":
        options["seed"] = project.seed
    if loaded.pool_size is not None:  # a sample: which items it holds is part of the data
        options["sample"] = hashlib.sha256("\n".join(loaded.ids.tolist()).encode()).hexdigest()
    features = np.ascontiguousarray(loaded.features, dtype=np.float32)
    name = cfg.demo if cfg.kind == "demo" else Path(cfg.path).stem
    return Dataset(
        ids=loaded.ids,
        features=features,
        feature_names=list(loaded.feature_names),
        images=loaded.images,
        ground_truth=loaded.ground_truth,
        fingerprint=fingerprint(source_sha, options),
        name=name or "dataset",
        columns=dict(loaded.columns),
        pool_size=loaded.pool_size,
    )


def _require_exists(path: Path, kind: str, written: str | None) -> None:
    if kind == "parquet":  # a file, a folder of *.parquet files or a glob
        parquet_files(path, written)
        return
    if not path.exists():
        raise DataError(
            f"data.path: {written!r} not found (looked for {path}); "
            "fix the path in the project file (it is relative to the project file)"
        )
    if kind == "image_folder" and not path.is_dir():
        raise DataError(f"data.path: {path} is a file, but kind 'image_folder' needs a folder")
    if kind != "image_folder" and not path.is_file():
        raise DataError(
            f"data.path: {path} is a folder, but kind {kind!r} needs a file "
            "(use kind 'image_folder' for a folder of images)"
        )


def _check_pin(expected: str | None, actual: str, path: Path) -> None:
    if expected is None:
        return
    if expected.strip().lower() != actual:
        raise DataError(
            f"data.sha256: {path.name} does not match the pinned digest (expected {expected}, "
            f"actual {actual}); the data changed since the project was written. Check that this is "
            "the right data, then update data.sha256 to the actual value."
        )
