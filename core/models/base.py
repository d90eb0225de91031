"""What every Tailwise model shares: the estimator contract and the persistence hooks.

A model follows scikit-learn's conventions (``__init__`` only stores ``config`` and ``seed``;
learned state ends in ``_``) and adds ``embed(X)`` plus two hooks used by ``core.models.io``:
``state()`` returns ``(tensors, meta)`` with only arrays and JSON values, and ``from_state``
rebuilds a fitted model from them without pickle.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from core.errors import ModelError
from core.models.validation import check_features, check_labels


class TailwiseModel(ClassifierMixin, BaseEstimator):
    """Base class of the registered models (see ``core.models.registry``)."""

    kind: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config=None, seed: int = 0):
        self.config = config
        self.seed = seed

    # ------------------------------------------------------------------ helpers
    def _config(self):
        """The config, defaulted and type-checked (``fit`` calls this, never ``__init__``)."""
        cfg = self.config if self.config is not None else self.config_class(kind=self.kind)
        if not isinstance(cfg, self.config_class):
            raise ModelError(
                f"model: {type(self).__name__} needs a {self.config_class.__name__}, "
                f"got {type(cfg).__name__}"
            )
        return cfg

    def _fit_inputs(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """Checked float32 features and class codes; sets ``classes_`` and ``n_features_in_``."""
        X = check_features(X)
        classes, codes = check_labels(y, len(X))
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        return X, codes

    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise ModelError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _check_X(self, X, name: str = "X") -> np.ndarray:
        self._check_fitted()
        return check_features(X, name=name, n_features=self.n_features_in_)

    # ------------------------------------------------------------------ contract
    def predict(self, X) -> np.ndarray:
        """Predicted class names (object array)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_proba(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, X) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def temperature(self) -> float:
        """Softmax temperature applied to the logits (1.0 when not calibrated)."""
        return float(getattr(self, "temperature_", 1.0))

    # ------------------------------------------------------------------ persistence hooks
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def from_state(cls, config, seed: int, tensors: dict[str, np.ndarray],
                   meta: dict[str, Any]) -> TailwiseModel:  # pragma: no cover - abstract
        raise NotImplementedError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float64 rows summing to one."""
    # Classes first: the max and the sum then run over whole contiguous rows of n items (several
    # times faster than reducing each item's handful of columns), the result C-ordered again.
    z = np.ascontiguousarray(np.asarray(logits, dtype=np.float64).T)
    z -= z.max(axis=0)
    np.exp(z, out=z)
    z /= z.sum(axis=0)
    return np.ascontiguousarray(z.T)
