"""Models by name: the ``kind`` of a model config picks the class."""

from __future__ import annotations

from core.errors import ModelError
from core.models.auto import AutoModel
from core.models.base import TailwiseModel
from core.models.learners import LEARNERS
from core.models.selection import EarlierOOF, ModelChoice
from core.project import AutoConfig, LearnerConfig

MODEL_REGISTRY: dict[str, type[TailwiseModel]] = {AutoModel.kind: AutoModel, **LEARNERS}

CONFIG_CLASSES: dict[str, type] = {cls.kind: cls.config_class for cls in MODEL_REGISTRY.values()}

AnyModelConfig = AutoConfig | LearnerConfig


def build_model(config: AnyModelConfig | None = None, seed: int = 0, *,
                previous: ModelChoice | None = None,
                earlier_oof: EarlierOOF | None = None) -> TailwiseModel:
    """A fresh, unfitted model for ``config`` (default: ``AutoConfig()``).

    ``previous`` (``auto`` only) is the last round's choice, which keeps the learner stable;
    ``earlier_oof`` (``auto`` only) out-of-fold predictions it may reuse (``oof_growth``).
    """
    config = AutoConfig() if config is None else config
    kind = getattr(config, "kind", None)
    try:
        cls = MODEL_REGISTRY[kind]
    except KeyError:
        raise ModelError(
            f"model.kind: unknown model {kind!r}; use one of {', '.join(MODEL_REGISTRY)}"
        ) from None
    if cls is AutoModel:
        return AutoModel(config=config, seed=seed, previous=previous, earlier_oof=earlier_oof)
    return cls(config=config, seed=seed)
