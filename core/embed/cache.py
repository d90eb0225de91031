"""On-disk cache of embeddings: one ``.npy`` file per (data fingerprint, encoder settings) key.

Files are written with ``allow_pickle=False`` and read the same way; a write goes to a temporary
file first so a crash never leaves a half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1


def cache_key(fingerprint: str, settings: dict[str, Any]) -> str:
    """SHA-256 of the data fingerprint and the JSON of the encoder settings."""
    payload = json.dumps({"v": CACHE_VERSION, "data": fingerprint, "encoder": settings},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def cache_path(cache_dir: str | Path, kind: str, key: str) -> Path:
    return Path(cache_dir) / "embeddings" / f"{kind}-{key[:32]}.npy"


def load_cached(path: Path, n_items: int) -> np.ndarray | None:
    """The cached matrix, or ``None`` when absent, unreadable or of the wrong length."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != n_items or arr.dtype != np.float32:
        return None
    return arr


def store_cached(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
    os.replace(tmp, path)
