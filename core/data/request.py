"""What a source loader receives and returns (kept apart so every loader module can share it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.project import DataConfig, FeaturesConfig

DEFAULT_ID_COLUMN = "id"

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class LoadRequest:
    """One source to load: its settings, the resolved path and a resolver for paths it names."""

    config: DataConfig
    path: Path | None
    resolve: Callable[[Path, str, str], Path]  # (folder, relative, where) -> checked absolute path
    seed: int = 0
    progress: Progress | None = None
    features: FeaturesConfig | None = None  # derived columns (tables)
    keep_ids: frozenset[str] = frozenset()  # items a sample (data.max_items) always includes

    @property
    def id_required(self) -> bool:
        """Whether the id column must exist: it must when named other than the default ``id``.

        Under the default name a source without ids gets ``item-000001``, ... from its row order.
        """
        return self.config.id_column != DEFAULT_ID_COLUMN


@dataclass(frozen=True)
class Loaded:
    """The arrays a loader produced; ``load_dataset`` adds the fingerprint and name."""

    ids: np.ndarray
    features: np.ndarray
    feature_names: list[str]
    images: np.ndarray | None = None
    ground_truth: np.ndarray | None = None
    source_sha256: str = ""  # for sources without a path (demos); else load_dataset hashes it
    extra_digests: list[str] = field(default_factory=list)  # e.g. images a table points to
    pool_size: int | None = None  # items in the whole source, when only a sample was loaded
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # tables: catalogue columns
