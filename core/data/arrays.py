"""NumPy ``.npz`` archives: an image array (or a 2-D feature matrix), ids and optional labels.

Arrays are read with ``allow_pickle=False``: ids and labels must be stored as fixed-width strings
(``numpy`` dtype ``U``) or integers, never as Python objects. An archive without the id array
gets ids ``item-000001``, ... from its row order, unless ``data.id_column`` names an array other
than the default ``id``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from core.data.checks import (
    clean_ids,
    clean_labels,
    generated_ids,
    require_columns,
    require_finite,
    require_rows,
)
from core.data.images import pixel_features
from core.data.request import Loaded, LoadRequest
from core.errors import DataError

DEFAULT_IMAGE_FIELD = "images"


def load_npz(request: LoadRequest) -> Loaded:
    """Load a ``kind: npz`` source."""
    cfg, path = request.config, request.path
    assert path is not None
    image_name = cfg.image_field or DEFAULT_IMAGE_FIELD
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise DataError(
            f"{path.name}: not a readable .npz archive ({err}); write it with numpy.savez"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name}: holds a single array, not an .npz archive of named arrays")
    with archive:
        names = list(archive.files)
        wanted = {"data.image_field": [image_name]}
        if request.id_required:
            wanted["data.id_column"] = [cfg.id_column]
        if cfg.label_column:
            wanted["data.label_column"] = [cfg.label_column]
        require_columns(path, names, wanted, what="array")
        data = _array(archive, path, image_name)
        raw_ids = _array(archive, path, cfg.id_column) if cfg.id_column in names else None
        raw_labels = _array(archive, path, cfg.label_column) if cfg.label_column else None

    n = len(data) if data.ndim else 0
    require_rows(path, n)
    for name, arr in ((cfg.id_column, raw_ids), (cfg.label_column, raw_labels)):
        if arr is not None and (arr.ndim != 1 or len(arr) != n):
            raise DataError(
                f"{path.name}: array {name!r} has shape {arr.shape}; "
                f"expected ({n},), one entry per row of {image_name!r}"
            )
    ids = (
        clean_ids(path, raw_ids.tolist(), cfg.id_column)
        if raw_ids is not None
        else generated_ids(n)
    )
    truth = (
        clean_labels(path, raw_labels.tolist(), cfg.label_column, ids)
        if raw_labels is not None
        else None
    )

    if data.ndim == 2:  # a plain feature matrix
        _require_numeric_array(path, image_name, data)
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused below
            features = data.astype(np.float32)
        feature_names = [f"{image_name}[{j}]" for j in range(features.shape[1])]
        require_finite(path, features, feature_names, ids)
        images = None
    else:
        images = _as_uint8_images(path, image_name, data, ids)
        features, feature_names = pixel_features(images)
    return Loaded(
        ids=ids, features=features, feature_names=feature_names, images=images, ground_truth=truth
    )


def _array(archive, path: Path, name: str) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(
                f"{path.name}: array {name!r} stores Python objects, "
                "which Tailwise never unpickles; "
                "save ids and labels as strings (numpy dtype 'U') or integers"
            ) from None
        raise DataError(f"{path.name}: array {name!r} is unreadable ({err})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{path.name}: array {name!r} is unreadable ({err})") from None


def _require_numeric_array(path: Path, name: str, data: np.ndarray) -> None:
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise DataError(f"{path.name}: array {name!r} is not numeric (dtype {data.dtype})")


def _as_uint8_images(path: Path, name: str, data: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(n, h, w)`` grey or ``(n, h, w, 3)`` RGB uint8 from uint8, 0..255 ints or [0, 1] floats."""
    _require_numeric_array(path, name, data)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4 and data.shape[-1] == 4:
        data = data[..., :3]  # drop alpha
    if not (data.ndim == 3 or (data.ndim == 4 and data.shape[-1] == 3)):
        raise DataError(
            f"{path.name}: array {name!r} has shape {data.shape}; "
            "expected (n, height, width) grey, "
            "(n, height, width, 3) RGB images or an (n, features) matrix"
        )
    if data.dtype == np.uint8:
        return data
    if np.issubdtype(data.dtype, np.floating):
        flat = data.reshape(len(data), -1)
        require_finite(path, flat, [f"{name}[{j}]" for j in range(flat.shape[1])], ids)
        if data.min() < 0 or data.max() > 1:
            raise DataError(
                f"{path.name}: float images in {name!r} must lie in [0, 1] "
                f"(found {data.min():g}..{data.max():g}); scale them or store uint8"
            )
        return np.rint(data * 255).astype(np.uint8)
    if data.min() < 0 or data.max() > 255:
        raise DataError(
            f"{path.name}: integer images in {name!r} must lie in 0..255 "
            f"(found {data.min()}..{data.max()}); store them as uint8"
        )
    return data.astype(np.uint8)


def save_npz(path: str | Path, arrays: dict[str, np.ndarray], *, compress: bool = True) -> Path:
    """Write ``arrays`` as an ``.npz`` archive, byte-for-byte reproducible (fixed zip timestamps).

    ``numpy.savez`` stamps the current time into the archive, so the same arrays would get a new
    SHA-256 on every write; pinning ``data.sha256`` needs identical bytes. Object arrays are
    refused.
    """
    import zipfile as zf

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    method = zf.ZIP_DEFLATED if compress else zf.ZIP_STORED
    with zf.ZipFile(tmp, "w", compression=method) as archive:
        for name, arr in arrays.items():
            info = zf.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.asarray(arr), allow_pickle=False)
    tmp.replace(path)
    return path
