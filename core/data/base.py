"""The in-memory form every data source produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """Items with stable string ids, numeric features and optional images and ground truth.

    ``features`` is always present: for image data it holds the flattened pixels scaled to [0, 1],
    so every encoder can fall back on it. ``ground_truth`` is used for simulation and evaluation
    only, never shown to the model as a label (nor among ``columns``).
    """

    ids: np.ndarray  # (n,) object array of str, unique
    features: np.ndarray  # (n, d) float32, finite
    feature_names: list[str]
    images: np.ndarray | None = None  # (n, h, w) or (n, h, w, 3) uint8
    ground_truth: np.ndarray | None = None  # (n,) object array of str
    fingerprint: str = ""  # SHA-256 of the source bytes and loading options
    name: str = "dataset"
    # Table sources: the catalogue's columns by name — numeric (float64), derived, info columns
    # (any type) and image-path columns — for criteria, domain plots and the inspector.
    columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    pool_size: int | None = None  # items in the whole source when this is a sample of it
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._index:
            self._index.update({item: i for i, item in enumerate(self.ids.tolist())})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_image(self) -> bool:
        return self.images is not None

    def positions(self, item_ids) -> np.ndarray:
        """Row positions of ``item_ids``; raises ``KeyError`` naming the first unknown id."""
        try:
            return np.fromiter((self._index[str(i)] for i in item_ids), dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"unknown item id {err.args[0]!r}") from None

    def has(self, item_id: str) -> bool:
        return str(item_id) in self._index

    def feature_note(self) -> str:
        """One line saying what the model learns from: ``600 items, 5 feature columns ('f0', ...);
        not used as features: 'text'``. Printed by the command line after loading, so that a
        text column left out of the features is never a surprise."""
        from core.data.checks import quote_list

        note = f"{len(self):,} items, "
        if self.feature_names and self.is_image and self.feature_names[0].startswith("px"):
            note += f"{len(self.feature_names):,} pixel features"
        else:
            note += (f"{len(self.feature_names):,} feature column(s) "
                     f"({quote_list(self.feature_names, limit=8)})")
        used = set(self.feature_names)
        unused = [name for name in self.columns if name not in used]
        if unused:
            note += f"; not used as features: {quote_list(unused, limit=8)}"
        return note

    def numeric_columns(self) -> list[str]:
        """Names of the numeric ``columns`` (what scatter plots and criteria compare)."""
        return [name for name, values in self.columns.items() if values.dtype.kind in "biuf"]
