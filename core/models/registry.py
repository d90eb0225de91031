"""Models by name: the ``kind`` of a model config picks the class."""

from __future__ import annotations

from core.errors import ModelError
from core.models.base import TailwiseModel
from core.models.baselines import LogisticModel, RandomForestModel
from core.models.mlp import MLPClassifier
from core.project import LogisticConfig, MLPConfig, RandomForestConfig

MODEL_REGISTRY: dict[str, type[TailwiseModel]] = {
    MLPClassifier.kind: MLPClassifier,
    LogisticModel.kind: LogisticModel,
    RandomForestModel.kind: RandomForestModel,
}

CONFIG_CLASSES: dict[str, type] = {
    "mlp": MLPConfig,
    "logistic": LogisticConfig,
    "random_forest": RandomForestConfig,
}


def build_model(config: MLPConfig | LogisticConfig | RandomForestConfig | None = None,
                seed: int = 0) -> TailwiseModel:
    """A fresh, unfitted model for ``config`` (default: the MLP with ``MLPConfig()``)."""
    config = MLPConfig() if config is None else config
    kind = getattr(config, "kind", None)
    try:
        cls = MODEL_REGISTRY[kind]
    except KeyError:
        raise ModelError(
            f"model.kind: unknown model {kind!r}; use one of {', '.join(MODEL_REGISTRY)}"
        ) from None
    return cls(config=config, seed=seed)
