"""The ``model`` encoder: the trained classifier's penultimate layer as the embedding.

The classifier is trained on a *base* embedding (``config.base``, tabular by default); this
encoder computes that base embedding (cached like any other) and maps it through
``model.embed``. The result changes with every retrain, so it is not cached. Before any model
exists it falls back to the base embedding and says so (a warning and a progress message).
"""

from __future__ import annotations

import warnings

import numpy as np

from core.data.base import Dataset
from core.project import EncoderConfig


def base_config(config: EncoderConfig) -> EncoderConfig:
    """The config of the embedding a ``model``-kind encoder's classifier is trained on."""
    if config.kind != "model":
        return config
    return config.model_copy(update={"kind": config.base})


class ModelLayerEncoder:
    """``model.embed(base embedding)``; the base embedding when no model is given."""

    name = "model"
    uses_seed = True

    def settings(self, config: EncoderConfig) -> dict:
        return {"kind": self.name, "base": config.base}

    def encode(self, dataset: Dataset, config: EncoderConfig, *, seed: int, progress=None,
               model=None, base: np.ndarray | None = None) -> np.ndarray:
        if model is None:
            message = (f"encoder 'model': no trained model yet, showing the {config.base!r} "
                       "embedding until the first retrain")
            warnings.warn(message, UserWarning, stacklevel=3)
            if progress is not None:
                progress(1, 1, message)
            return base
        out = np.asarray(model.embed(base), dtype=np.float32)
        if progress is not None:
            progress(1, 1, "model penultimate-layer embedding")
        return np.ascontiguousarray(out)
