"""Data sources and built-in demos.

``load_dataset(project)`` turns the project's ``data`` section into a :class:`Dataset`:

* ``csv`` / ``parquet`` — one row per item; ``id_column`` (required when named; under the default
  name ``id`` a table without that column gets ids ``item-000001``... from its row order),
  ``feature_columns`` (default: every numeric column but id/label/image), optional ``label_column``
  (ground truth) and ``image_field`` (a column of image paths relative to the table).
* ``npz`` — an image array named ``image_field`` (default ``images``; ``(n, h, w)`` or
  ``(n, h, w, 3)``, uint8 or floats in [0, 1]; a 2-D array is read as a feature matrix), ids and
  labels as string or integer arrays. Never unpickled.
* ``image_folder`` — PNG/JPEG files, one sub-folder per class; ids are relative paths.
* ``demo`` — a built-in demo set made in memory from the project seed.

Table sources may add derived columns (``features`` in the project file, ``core.data.derived``)
and keep their catalogue columns (numbers, info and image-path columns) in ``Dataset.columns``.

``make_demo(name, folder)`` writes a demo as an ``.npz`` file plus a ready ``project.yaml``.
"""

from __future__ import annotations

from core.data.arrays import save_npz
from core.data.base import Dataset
from core.data.demos import (
    DEFAULT_DEMO,
    DEMO_NAMES,
    DEMOS,
    build_demo,
    load_fashion_mnist,
    make_demo,
)
from core.data.hashing import file_sha256
from core.data.loading import SOURCES, data_sha256, load_dataset
from core.data.longtail import long_tail_counts, long_tail_indices

__all__ = [
    "DEFAULT_DEMO",
    "DEMO_NAMES",
    "DEMOS",
    "SOURCES",
    "Dataset",
    "build_demo",
    "data_sha256",
    "file_sha256",
    "load_dataset",
    "load_fashion_mnist",
    "long_tail_counts",
    "long_tail_indices",
    "make_demo",
    "save_npz",
]
