"""Tabular encoder: standardised features, optionally reduced with PCA.

The encoder is a fitted, per-row transform (:class:`TabularTransform`): column statistics merged
from chunks (Chan et al.'s parallel update, rounded to float32) and, with ``pca_components``, PCA
axes fitted on at most ``PCA_FIT_ROWS`` rows chosen by a hash of their ids. The same transform,
saved as arrays, embeds a Parquet partition on a Dask worker exactly as the whole pool is
embedded in one process, however the rows are split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.base import Dataset
from core.errors import DataError
from core.project import EncoderConfig

PCA_FIT_ROWS = 50_000
STATS_CHUNK = 65_536


@dataclass(frozen=True)
class ColumnStats:
    """Count, mean and sum of squared deviations per column (float64), mergeable in any split."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, chunk: int = STATS_CHUNK) -> ColumnStats:
        """Statistics of the rows of ``x``, computed ``chunk`` rows at a time."""
        x = np.asarray(x)
        stats = cls(0, np.zeros(x.shape[1]), np.zeros(x.shape[1]))
        for start in range(0, len(x), chunk):
            block = np.asarray(x[start:start + chunk], dtype=np.float64)
            mean = block.mean(axis=0)
            stats = stats.merge(cls(len(block), mean, ((block - mean) ** 2).sum(axis=0)))
        return stats

    def merge(self, other: ColumnStats) -> ColumnStats:
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.n * other.n / n)
        return ColumnStats(n, mean, m2)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"n": np.asarray([self.n], dtype=np.int64), "mean": self.mean, "m2": self.m2}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ColumnStats:
        return cls(int(arrays["n"][0]), np.asarray(arrays["mean"]), np.asarray(arrays["m2"]))


def merge_stats(parts: list[ColumnStats]) -> ColumnStats:
    """Merge statistics of row blocks in the order given."""
    out = ColumnStats(0, np.zeros(0), np.zeros(0))
    for part in parts:
        out = out.merge(part)
    return out


class TabularTransform:
    """``features -> embedding``: ``(x - mean) / scale``, then ``(z - pca_mean) @ components.T``."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, pca_mean: np.ndarray | None = None,
                 components: np.ndarray | None = None) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.pca_mean = None if pca_mean is None else np.asarray(pca_mean, dtype=np.float32)
        self.components = None if components is None else np.asarray(components, dtype=np.float32)

    @classmethod
    def from_stats(cls, stats: ColumnStats) -> TabularTransform:
        """Standardisation from column statistics (constant columns are only centred)."""
        std = np.sqrt(stats.m2 / max(stats.n, 1))
        return cls(stats.mean, np.where(std > 1e-12, std, 1.0))

    @property
    def dim(self) -> int:
        return len(self.mean) if self.components is None else len(self.components)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.mean):
            raise DataError(f"tabular encoder: expected {len(self.mean)} feature columns, got "
                            f"shape {x.shape}")
        return (x - self.mean) / self.scale

    def with_pca(self, rows: np.ndarray, n_components: int, seed: int) -> TabularTransform:
        """This transform followed by PCA axes fitted on ``rows`` (raw features)."""
        from sklearn.decomposition import PCA

        z = self.standardise(rows)
        n_comp = min(n_components, z.shape[0], z.shape[1])
        if n_comp >= z.shape[1]:
            return self
        pca = PCA(n_components=n_comp, random_state=seed).fit(z)
        return TabularTransform(self.mean, self.scale, pca.mean_, pca.components_)

    def apply(self, features: np.ndarray, chunk: int = STATS_CHUNK) -> np.ndarray:
        """The embedding of every row, float32, computed ``chunk`` rows at a time."""
        features = np.asarray(features)
        out = np.empty((len(features), self.dim), dtype=np.float32)
        for start in range(0, len(features), chunk):
            z = self.standardise(features[start:start + chunk])
            if self.components is not None:
                z = (z - self.pca_mean) @ self.components.T
            out[start:start + chunk] = z
        return out

    # ------------------------------------------------------------------ arrays (safetensors)
    def state(self) -> dict[str, np.ndarray]:
        arrays = {"mean": self.mean, "scale": self.scale}
        if self.components is not None:
            arrays.update(pca_mean=self.pca_mean, components=self.components)
        return arrays

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> TabularTransform:
        try:
            return cls(arrays["mean"], arrays["scale"], arrays.get("pca_mean"), arrays.get("components"))
        except KeyError as err:
            raise DataError(f"tabular encoder: the saved arrays lack {err.args[0]!r}") from None

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in self.state().items()})

    @classmethod
    def from_bytes(cls, data: bytes) -> TabularTransform:
        from safetensors.numpy import load

        return cls.from_state(load(data))


def pca_fit_mask(ids: np.ndarray, n_total: int, limit: int = PCA_FIT_ROWS) -> np.ndarray:
    """Which of ``ids`` PCA is fitted on: all when the pool has at most ``limit`` items, else
    those whose id hashes below ``limit / n_total`` (the same items however the pool is split)."""
    if n_total <= limit:
        return np.ones(len(ids), dtype=bool)
    return id_hash_below(ids, limit / n_total)


def id_hash_below(ids: np.ndarray, fraction: float) -> np.ndarray:
    """A deterministic pseudo-random subset of ``ids`` of about ``fraction`` of them."""
    import pandas as pd

    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    hashed = pd.util.hash_array(np.asarray(ids, dtype=object))
    return hashed < np.uint64(int(max(fraction, 0.0) * 2**64))


def fit_tabular(features: np.ndarray, ids: np.ndarray, config: EncoderConfig,
                seed: int) -> TabularTransform:
    """The tabular transform of a pool held in memory."""
    transform = TabularTransform.from_stats(ColumnStats.of(features))
    if config.pca_components is not None:
        rows = features[pca_fit_mask(ids, len(features))]
        transform = transform.with_pca(rows, config.pca_components, seed)
    return transform


class TabularEncoder:
    """Each column centred and scaled to unit variance; ``pca_components`` keeps that many PCs."""

    name = "tabular"
    uses_seed = True  # PCA's randomized solver

    def settings(self, config: EncoderConfig) -> dict:
        return {"kind": self.name, "pca_components": config.pca_components, "version": 2}

    def encode(self, dataset: Dataset, config: EncoderConfig, *, seed: int, progress=None,
               model=None) -> np.ndarray:
        return fit_tabular(dataset.features, dataset.ids, config, seed).apply(dataset.features)


def standardise(features: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (constant columns only centred)."""
    return TabularTransform.from_stats(ColumnStats.of(features)).apply(features)
