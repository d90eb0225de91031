"""Class-balanced logistic regression (scikit-learn), kept as plain arrays.

The fitted state is the coefficients and the standardisation, and predictions come from those
arrays, so a model loaded from safetensors predicts exactly what the fitted one did. The tree
ensembles live in ``core.models.trees``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.base import TailwiseModel, softmax
from core.models.validation import column_stats
from core.project import LogisticConfig


class LogisticModel(TailwiseModel):
    """Standardised features + multinomial logistic regression with balanced class weights."""

    kind = "logistic"
    config_class = LogisticConfig

    def fit(self, X, y, X_unlabelled=None) -> LogisticModel:
        """Fit on labelled items; ``X_unlabelled`` is accepted for the shared API and ignored."""
        from sklearn.linear_model import LogisticRegression

        cfg = self._config()
        X, codes = self._fit_inputs(X, y)
        self.mean_, self.scale_ = column_stats(X)
        clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, class_weight="balanced",
                                 random_state=self.seed)
        clf.fit((X - self.mean_) / self.scale_, codes)
        coef, intercept = clf.coef_, clf.intercept_
        if len(self.classes_) == 2:  # sklearn keeps one row for two classes: make it a 2-column softmax
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]])
        self.coef_ = coef.astype(np.float64)
        self.intercept_ = intercept.astype(np.float64)
        self.temperature_ = 1.0
        return self

    def decision_function(self, X) -> np.ndarray:
        Xs = (self._check_X(X) - self.mean_) / self.scale_
        return Xs.astype(np.float64) @ self.coef_.T + self.intercept_

    def predict_proba(self, X) -> np.ndarray:
        return softmax(self.decision_function(X))

    def embed(self, X) -> np.ndarray:
        """Class log-odds (one column per class): the model's view of each item."""
        return self.decision_function(X).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        return ({"coef": self.coef_, "intercept": self.intercept_, "mean": self.mean_,
                 "scale": self.scale_}, {"temperature": 1.0})

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> LogisticModel:
        model = cls(config=config, seed=seed)
        model.classes_ = np.array(meta["classes"], dtype=object)
        model.n_features_in_ = int(meta["n_features_in"])
        model.coef_ = np.asarray(tensors["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(tensors["intercept"], dtype=np.float64)
        model.mean_ = np.asarray(tensors["mean"], dtype=np.float32)
        model.scale_ = np.asarray(tensors["scale"], dtype=np.float32)
        model.temperature_ = 1.0
        return model
