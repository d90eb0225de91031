"""Tabular encoder: standardised features, optionally reduced with PCA."""

from __future__ import annotations

import numpy as np

from core.data.base import Dataset
from core.project import EncoderConfig


class TabularEncoder:
    """Each column centred and scaled to unit variance; ``pca_components`` keeps that many PCs."""

    name = "tabular"
    uses_seed = True  # PCA's randomized solver

    def settings(self, config: EncoderConfig) -> dict:
        return {"kind": self.name, "pca_components": config.pca_components}

    def encode(self, dataset: Dataset, config: EncoderConfig, *, seed: int, progress=None,
               model=None) -> np.ndarray:
        X = standardise(dataset.features)
        if config.pca_components is not None:
            n_comp = min(config.pca_components, X.shape[0], X.shape[1])
            if n_comp < X.shape[1]:
                from sklearn.decomposition import PCA

                X = PCA(n_components=n_comp, random_state=seed).fit_transform(X)
        return np.ascontiguousarray(X, dtype=np.float32)


def standardise(features: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (constant columns only centred)."""
    X = np.asarray(features, dtype=np.float64)
    std = X.std(axis=0)
    return ((X - X.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)).astype(np.float32)
