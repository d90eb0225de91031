"""The 2-D map: UMAP fitted on a sample of the embedding, the rest placed by a parametric map.

The map must stay put while experts work: it is cached on disk keyed by the embedding and the map
settings, and a recomputation on request starts from the previous layout (``init``) so that
clusters keep their places.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.project import MapConfig

if TYPE_CHECKING:
    from core.parametric import Projector

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
    """Map ``embedding`` (n, d) to ``(n, 2)`` float32 coordinates (see :func:`fit_map`)."""
    return fit_map(embedding, config, seed=seed, must_include=must_include, init=init,
                   progress=progress)[0]


def fit_map(
    embedding: np.ndarray,
    config: MapConfig,
    *,
    seed: int = 0,
    must_include: np.ndarray | None = None,
    init: np.ndarray | None = None,
    progress: Progress | None = None,
    parametric: bool | None = None,
) -> tuple[np.ndarray, Projector | None]:
    """``(xy (n, 2) float32, projector)`` for ``embedding`` (n, d).

    UMAP is fitted on at most ``config.sample_size`` rows (rows in ``must_include``, e.g. the
    labelled items, always among them), from an exact k-nearest-neighbour graph of the sample
    (cheaper than UMAP's own approximate search on a sample, and no numba compilation for it).
    A :class:`~core.parametric.ParametricMap` learns the sample's layout and places every other
    row in bounded-memory chunks. ``parametric=True`` trains it even when every row was in the
    sample (the projector then maps rows elsewhere, e.g. on Dask workers); ``None`` only when
    needed. PCA maps return a :class:`~core.parametric.LinearMap`.
    """
    from core.parametric import LinearMap, ParametricMap

    x = np.asarray(embedding, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32), None
    if config.method == "pca" or n < 5:
        projector = LinearMap.fit(x)
        return projector.transform(x), projector
    report = progress or (lambda done, total, message: None)
    rng = np.random.default_rng(seed)
    sample = _choose_sample(n, config.sample_size, must_include, rng)
    fitted = _umap(x[sample], config, seed, None if init is None else init[sample], report)
    xy = np.empty((n, 2), dtype=np.float32)
    xy[sample] = fitted
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    projector = None
    if len(rest) or parametric:
        projector = ParametricMap(seed=seed).fit(x[sample], fitted, progress=report)
    if len(rest):
        xy[rest] = projector.transform(
            x[rest], progress=lambda done, total, _: report(done, total,
                                                             f"placing {total:,} more items"))
    report(1, 1, "map ready")
    return xy, projector


def _choose_sample(n: int, size: int, must: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    must = np.unique(must) if must is not None and len(must) else np.zeros(0, dtype=np.int64)
    must = must[:size]
    others = np.setdiff1d(np.arange(n), must, assume_unique=True)
    extra = rng.choice(others, size=size - len(must), replace=False)
    return np.sort(np.concatenate([must, extra]))


_UMAP_COMPILED = False  # numba compiles UMAP's code once per process (~10 s)


def _umap(x: np.ndarray, config: MapConfig, seed: int, init: np.ndarray | None,
          report: Progress) -> np.ndarray:
    """UMAP of ``x`` from its exact kNN graph; epoch progress goes to ``report``."""
    global _UMAP_COMPILED

    import umap  # heavy (numba JIT): imported only when a map is computed
    from sklearn.neighbors import NearestNeighbors

    n_neighbors = int(min(config.n_neighbors, max(2, len(x) - 1)))
    what = f"fitting UMAP on {len(x):,} items"
    if not _UMAP_COMPILED:
        what += " (compiling UMAP first: the first map of a process takes ~10 s more)"
    report(0, 1, f"{what}: neighbour graph")
    dist, idx = NearestNeighbors(n_neighbors=n_neighbors, algorithm="brute").fit(x).kneighbors(x)
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=n_neighbors,
        min_dist=config.min_dist,
        random_state=seed,
        init="spectral" if init is None or len(x) <= n_neighbors else np.asarray(init, np.float32),
        n_jobs=1,
        precomputed_knn=(idx, dist.astype(np.float32), None),
        tqdm_kwds={"disable": False, "file": _EpochStream(report, what), "bar_format": "{n}/{total}",
                   "mininterval": 0.5, "ascii": True},
    )
    with warnings.catch_warnings():  # precomputed kNN without a search index: no transform(),
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")  # which we never call
        out = reducer.fit_transform(x).astype(np.float32)
    _UMAP_COMPILED = True
    return out


class _EpochStream:
    """A file tqdm writes ``done/total`` into (UMAP's epoch loop): forwarded as progress."""

    def __init__(self, report: Progress, what: str) -> None:
        self.report, self.what = report, what

    def write(self, text: str) -> None:
        match = re.search(r"(\d+)/(\d+)", text)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            self.report(done, max(total, 1), f"{self.what}: epoch {done}/{total}")

    def flush(self) -> None:
        pass


MAP_CACHE_VERSION = 2  # 2: exact-kNN UMAP on the sample + parametric placement


def cached_projection(
    embedding: np.ndarray,
    config: MapConfig,
    cache_dir: Path,
    *,
    seed: int = 0,
    must_include: np.ndarray | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """:func:`fit_map`'s coordinates with an on-disk cache keyed by the embedding, the settings
    and the seed; the projector is saved beside them (``map-KEY.projector.safetensors``)."""
    path = _map_path(embedding, config, cache_dir, seed)
    if path.exists():
        xy = np.load(path, allow_pickle=False)
        if xy.shape == (len(embedding), 2):
            return xy
    xy, projector = fit_map(embedding, config, seed=seed, must_include=must_include,
                            progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, xy, allow_pickle=False)
    tmp.replace(path)
    if projector is not None:
        weights = path.with_suffix(".projector.safetensors")
        tmp = weights.with_name(weights.name + ".tmp")
        tmp.write_bytes(projector.to_bytes())
        tmp.replace(weights)
    return xy


def _map_path(embedding: np.ndarray, config: MapConfig, cache_dir: Path, seed: int) -> Path:
    key = array_digest(embedding, extra={"map": config.model_dump(), "seed": seed,
                                         "v": MAP_CACHE_VERSION})
    return Path(cache_dir) / f"map-{key}.npy"


def map_projector(embedding: np.ndarray, xy: np.ndarray, config: MapConfig, cache_dir: Path | None,
                  *, seed: int = 0, progress: Progress | None = None) -> Projector:
    """The projector of the map ``xy`` of ``embedding``: the one :func:`cached_projection` saved,
    else one learned now from (a sample of) the map itself."""
    from core.parametric import LinearMap, ParametricMap, projector_from_bytes

    if cache_dir is not None:
        weights = _map_path(embedding, config, cache_dir, seed).with_suffix(".projector.safetensors")
        if weights.is_file():
            return projector_from_bytes(weights.read_bytes())
    if config.method == "pca" or len(embedding) < 5:
        return LinearMap.fit(np.asarray(embedding, dtype=np.float32))
    rng = np.random.default_rng(seed)
    rows = _choose_sample(len(embedding), config.sample_size, None, rng)
    return ParametricMap(seed=seed).fit(np.asarray(embedding[rows], dtype=np.float32), xy[rows],
                                        progress=progress)
