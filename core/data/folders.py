"""A folder of PNG/JPEG images; one sub-folder per class gives the ground truth.

Item ids are the images' paths relative to the folder (``cat/001.png``). The ground truth is the
first folder of that path when every image sits in a sub-folder, and absent otherwise. Images are
converted to grey (when all are grey) or RGB and resized to a common size
(see :func:`core.data.images.common_shape`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.data.hashing import file_sha256, manifest_sha256
from core.data.images import list_image_files, pixel_features, read_images
from core.data.request import Loaded, LoadRequest
from core.errors import DataError


def load_image_folder(request: LoadRequest) -> Loaded:
    """Load a ``kind: image_folder`` source."""
    folder = request.path
    assert folder is not None
    if not folder.is_dir():
        raise DataError(f"{folder}: kind 'image_folder' needs a folder, this is a file")
    files = list_image_files(folder)
    if not files:
        raise DataError(
            f"{folder}: the data is empty: no .png/.jpg/.jpeg images in the folder "
            "(one sub-folder per class, e.g. cats/001.png)"
        )
    rel = [f.relative_to(folder).as_posix() for f in files]
    images, _ = read_images(files, request.progress)
    features, names = pixel_features(images)
    parts = [r.split("/") for r in rel]
    truth = None
    if all(len(p) > 1 for p in parts):
        truth = np.array([p[0] for p in parts], dtype=object)
    ids = np.array(rel, dtype=object)
    return Loaded(
        ids=ids, features=features, feature_names=names, images=images, ground_truth=truth
    )


def image_folder_sha256(folder: Path) -> str:
    """The digest ``data.sha256`` pins for an image folder: the manifest of its image files."""
    files = list_image_files(folder)
    return manifest_sha256((f.relative_to(folder).as_posix(), file_sha256(f)) for f in files)
