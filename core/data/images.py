"""Reading PNG/JPEG files into one uint8 array of a common size and colour mode (Pillow)."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGE_SIDE = 96
"""Images are scaled down so that their longer side is at most this many pixels."""

_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}

Progress = Callable[[int, int, str], None]


def _open_error(path: Path, err: Exception) -> DataError:
    return DataError(
        f"{path}: unreadable image ({type(err).__name__}: {err}); replace or remove the file"
    )


def common_shape(
    sizes: Sequence[tuple[int, int]], max_side: int = MAX_IMAGE_SIDE
) -> tuple[int, int]:
    """The most frequent ``(width, height)``, scaled down to fit ``max_side``."""
    (width, height), _ = min(Counter(sizes).items(), key=lambda kv: (-kv[1], kv[0]))
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def read_images(
    paths: Sequence[Path], progress: Progress | None = None
) -> tuple[np.ndarray, list[str]]:
    """Decode ``paths`` to ``(n, h, w)`` (all grey) or ``(n, h, w, 3)`` uint8, plus file digests.

    Every image is converted to the common colour mode and resized to the common size
    (see :func:`common_shape`). An unreadable file raises ``DataError`` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    errors = (
        OSError,
        ValueError,
        SyntaxError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
    )
    sizes, modes = [], set()
    for path in paths:  # headers only: Pillow opens lazily
        try:
            with Image.open(path) as img:
                sizes.append(img.size)
                modes.add(img.mode)
        except FileNotFoundError:
            raise DataError(
                f"{path}: image file not found; fix the path or remove the row"
            ) from None
        except errors as err:
            raise _open_error(path, err) from None
    width, height = common_shape(sizes)
    grey = modes <= _GREY_MODES
    shape = (len(paths), height, width) if grey else (len(paths), height, width, 3)
    out = np.empty(shape, dtype=np.uint8)
    digests = []
    for i, path in enumerate(paths):
        raw = path.read_bytes()
        digests.append(hashlib.sha256(raw).hexdigest())
        try:
            with Image.open(io.BytesIO(raw)) as img:
                img.load()
                img = img.convert("L" if grey else "RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.LANCZOS)
                out[i] = np.asarray(img, dtype=np.uint8)
        except errors as err:
            raise _open_error(path, err) from None
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1, len(paths), "reading images")
    if progress is not None:
        progress(len(paths), len(paths), "reading images")
    return out, digests


def pixel_features(images: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Flattened pixels scaled to [0, 1] as float32, with names ``px00000`` ..."""
    flat = images.reshape(len(images), -1).astype(np.float32)
    flat /= 255.0
    width = max(5, len(str(flat.shape[1])))
    return flat, [f"px{j:0{width}d}" for j in range(flat.shape[1])]


def list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden entries skipped), sorted by path."""
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())
