"""Imbalance-aware models: the PyTorch MLP head and scikit-learn baselines, saved as safetensors.

``build_model(config, seed)`` gives a fresh estimator with ``fit(X, y, X_unlabelled=None)``,
``predict``, ``predict_proba``, ``embed``, ``classes_`` and ``n_features_in_``;
``save_model`` / ``load_model`` persist it without pickle.
"""

from core.models.io import load_model, save_model
from core.models.losses import LOSS_REGISTRY, build_loss
from core.models.registry import MODEL_REGISTRY, build_model
from core.models.samplers import SAMPLER_EXPONENTS

__all__ = [
           "LOSS_REGISTRY",
           "MODEL_REGISTRY",
           "SAMPLER_EXPONENTS",
           "build_loss",
           "build_model",
           "load_model",
           "save_model",
]
