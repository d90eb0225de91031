"""Imbalance-aware models: the PyTorch MLP head, scikit-learn learners and ``auto``, which picks
the best of them at every retrain; all saved as safetensors.

``build_model(config, seed)`` gives a fresh estimator with ``fit(X, y, X_unlabelled=None)``,
``predict``, ``predict_proba``, ``embed``, ``classes_`` and ``n_features_in_``;
``save_model`` / ``load_model`` persist it without pickle.
"""

from core.models.io import load_model, save_model
from core.models.losses import LOSS_REGISTRY, build_loss
from core.models.registry import MODEL_REGISTRY, build_model
from core.models.samplers import SAMPLER_EXPONENTS
from core.models.selection import ModelChoice

__all__ = [
           "LOSS_REGISTRY",
           "MODEL_REGISTRY",
           "SAMPLER_EXPONENTS",
           "ModelChoice",
           "build_loss",
           "build_model",
           "load_model",
           "save_model",
]
