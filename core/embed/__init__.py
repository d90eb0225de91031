"""Encoders turn a data set's items into embeddings ``(n, d)`` float32, cached on disk.

``encode(dataset, config, cache_dir=..., seed=..., progress=None, model=None)`` picks the encoder
named by ``config.kind`` from ``ENCODER_REGISTRY`` (the names of ``core.project.ENCODER_KINDS``):

* ``tabular`` — standardised features, optional PCA;
* ``pretrained-image`` — ImageNet EfficientNet-Lite0 features (1,280-dim), offline;
* ``self-supervised`` — a denoising autoencoder trained on the whole pool (``config.dim``);
* ``model`` — the trained classifier's penultimate layer over the ``config.base`` embedding.

The cache key is the data set's fingerprint plus a hash of the encoder's settings (and the seed
for encoders that use one), so changing either recomputes; entries are ``.npy`` files written
and read without pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.data.base import Dataset
from core.embed.cache import cache_key, cache_path, load_cached, store_cached
from core.embed.model_layer import ModelLayerEncoder, base_config
from core.embed.pretrained import PretrainedImageEncoder
from core.embed.self_supervised import SelfSupervisedEncoder
from core.embed.tabular import TabularEncoder
from core.errors import ConfigError, DataError
from core.project import EncoderConfig

Progress = Callable[[int, int, str], None]

ENCODER_REGISTRY = {
    enc.name: enc
    for enc in (TabularEncoder, PretrainedImageEncoder, SelfSupervisedEncoder, ModelLayerEncoder)
}


def get_encoder(kind: str):
    """A fresh encoder for ``kind`` (one of ``core.project.ENCODER_KINDS``)."""
    try:
        return ENCODER_REGISTRY[kind]()
    except KeyError:
        raise ConfigError(
            f"encoder.kind: unknown encoder {kind!r}; use one of {', '.join(ENCODER_REGISTRY)}"
        ) from None


def encode(dataset: Dataset, config: EncoderConfig | None = None, *, cache_dir: str | Path | None,
           seed: int = 0, progress: Progress | None = None, model=None) -> np.ndarray:
    """Embeddings of every item of ``dataset`` (rows in dataset order), float32 ``(n, d)``.

    ``cache_dir=None`` disables the cache. ``model`` is used by the ``model`` encoder only.
    """
    config = EncoderConfig() if config is None else config
    if config.kind == "model":
        base = encode(dataset, base_config(config), cache_dir=cache_dir, seed=seed, progress=progress)
        return ModelLayerEncoder().encode(dataset, config, seed=seed, progress=progress, model=model,
                                          base=base)
    encoder = get_encoder(config.kind)
    settings = encoder.settings(config)
    if encoder.uses_seed:
        settings["seed"] = int(seed)
    path = None
    if cache_dir is not None and dataset.fingerprint:  # no fingerprint, no safe cache key
        path = cache_path(cache_dir, config.kind, cache_key(dataset.fingerprint, settings))
        cached = load_cached(path, len(dataset))
        if cached is not None:
            if progress is not None:
                progress(1, 1, f"{config.kind} embedding loaded from cache")
            return cached
    out = encoder.encode(dataset, config, seed=seed, progress=progress)
    if out.shape[0] != len(dataset) or not np.isfinite(out).all():
        raise DataError(f"encoder {config.kind!r} produced an invalid embedding for {dataset.name!r} "
                        "(wrong row count or non-finite values); check the input features")
    if path is not None:
        store_cached(path, out)
    return out


__all__ = ["ENCODER_REGISTRY", "base_config", "encode", "get_encoder"]
