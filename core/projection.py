"""The 2-D map: UMAP fitted on a sample of the embedding, the rest placed by nearest neighbours.

The map must stay put while experts work: it is cached on disk keyed by the embedding and the map
settings, and a recomputation on request starts from the previous layout (``init``) so that
clusters keep their places.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.project import MapConfig

Progress = Callable[[int, int, str], None]


def array_digest(*arrays: np.ndarray, extra: object = None) -> str:
    """A short, stable SHA-256 digest of arrays (shape, dtype, bytes) and a JSON-able extra."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:24]


def project_2d(
    embedding: np.ndarray,
    config: MapConfig,
    *,
    seed: int = 0,
    must_include: np.ndarray | None = None,
    init: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Map ``embedding`` (n, d) to ``(n, 2)`` float32 coordinates.

    UMAP is fitted on at most ``config.sample_size`` rows (rows in ``must_include``, e.g. the
    labelled items, always among them); the other rows are placed at the distance-weighted mean
    of their nearest fitted neighbours, which scales to millions of rows.
    """
    x = np.asarray(embedding, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if config.method == "pca" or n < 5:
        return _pca_2d(x)
    rng = np.random.default_rng(seed)
    sample = _choose_sample(n, config.sample_size, must_include, rng)
    if progress:
        progress(0, 2, f"fitting UMAP on {len(sample):,} items")
    fitted = _umap(x[sample], config, seed, None if init is None else init[sample])
    xy = np.empty((n, 2), dtype=np.float32)
    xy[sample] = fitted
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    if len(rest):
        if progress:
            progress(1, 2, f"placing {len(rest):,} more items")
        xy[rest] = _place_by_neighbours(x[sample], fitted, x[rest])
    if progress:
        progress(2, 2, "map ready")
    return xy


def _choose_sample(n: int, size: int, must: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    must = np.unique(must) if must is not None and len(must) else np.zeros(0, dtype=np.int64)
    must = must[:size]
    others = np.setdiff1d(np.arange(n), must, assume_unique=True)
    extra = rng.choice(others, size=size - len(must), replace=False)
    return np.sort(np.concatenate([must, extra]))


def _pca_2d(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] < 2:
        return np.column_stack([centred[:, 0], np.zeros(len(x))]).astype(np.float32)
    _, _, vt = np.linalg.svd(centred[: min(len(x), 50_000)], full_matrices=False)
    xy = centred @ vt[:2].T
    # A fixed sign convention keeps the picture from flipping between runs.
    xy *= np.sign(xy[np.abs(xy).argmax(axis=0), [0, 1]])
    return xy.astype(np.float32)


def _umap(x: np.ndarray, config: MapConfig, seed: int, init: np.ndarray | None) -> np.ndarray:
    import umap  # heavy (numba JIT): imported only when a map is computed

    n_neighbors = int(min(config.n_neighbors, max(2, len(x) - 1)))
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=config.min_dist,
        random_state=seed,
        init="spectral" if init is None or len(x) <= n_neighbors else np.asarray(init, np.float32),
        n_jobs=1,
    )
    return reducer.fit_transform(x).astype(np.float32)


def _place_by_neighbours(fit_x: np.ndarray, fit_xy: np.ndarray, rest: np.ndarray, k: int = 10) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(fit_x))
    nn = NearestNeighbors(n_neighbors=k).fit(fit_x)
    out = np.empty((len(rest), 2), dtype=np.float32)
    for start in range(0, len(rest), 50_000):
        dist, idx = nn.kneighbors(rest[start:start + 50_000])
        w = 1.0 / (dist + 1e-6)
        w /= w.sum(axis=1, keepdims=True)
        out[start:start + 50_000] = np.einsum("nk,nkd->nd", w, fit_xy[idx])
    return out


def cached_projection(
    embedding: np.ndarray,
    config: MapConfig,
    cache_dir: Path,
    *,
    seed: int = 0,
    must_include: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """``project_2d`` with an on-disk cache keyed by the embedding, the settings and the seed."""
    key = array_digest(embedding, extra={"map": config.model_dump(), "seed": seed})
    path = Path(cache_dir) / f"map-{key}.npy"
    if path.exists():
        xy = np.load(path, allow_pickle=False)
        if xy.shape == (len(embedding), 2):
            return xy
    xy = project_2d(embedding, config, seed=seed, must_include=must_include, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, xy, allow_pickle=False)
    tmp.replace(path)
    return xy
