"""scikit-learn baselines with ``class_weight='balanced'``: logistic regression and random forest.

Both keep their fitted state as plain arrays (coefficients; the trees' node arrays) and predict from
those arrays, so a model loaded from safetensors predicts exactly what the fitted one did.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.base import TailwiseModel, softmax
from core.models.validation import check_features, check_labels, column_stats
from core.project import LogisticConfig, RandomForestConfig


class LogisticModel(TailwiseModel):
    """Standardised features + multinomial logistic regression with balanced class weights."""

    kind = "logistic"
    config_class = LogisticConfig

    def fit(self, X, y, X_unlabelled=None) -> LogisticModel:
        """Fit on labelled items; ``X_unlabelled`` is accepted for the shared API and ignored."""
        from sklearn.linear_model import LogisticRegression

        cfg = self._config()
        X = check_features(X)
        classes, codes = check_labels(y, len(X))
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        self.mean_, self.scale_ = column_stats(X)
        clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, class_weight="balanced",
                                 random_state=self.seed)
        clf.fit((X - self.mean_) / self.scale_, codes)
        coef, intercept = clf.coef_, clf.intercept_
        if len(classes) == 2:  # sklearn keeps one row for two classes: make it a 2-column softmax
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


_TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "value")


class RandomForestModel(TailwiseModel):
    """Random forest with ``class_weight='balanced'``; predicts by walking its stored node arrays."""

    kind = "random_forest"
    config_class = RandomForestConfig

    def fit(self, X, y, X_unlabelled=None) -> RandomForestModel:
        """Fit on labelled items; ``X_unlabelled`` is accepted for the shared API and ignored."""
        from sklearn.ensemble import RandomForestClassifier

        cfg = self._config()
        X = check_features(X)
        classes, codes = check_labels(y, len(X))
        self.classes_, self.n_features_in_ = classes, X.shape[1]
        forest = RandomForestClassifier(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth,
                                        class_weight="balanced", random_state=self.seed, n_jobs=1)
        forest.fit(X, codes)
        k = len(classes)
        parts: dict[str, list[np.ndarray]] = {name: [] for name in _TREE_ARRAYS}
        offsets = [0]
        for est in forest.estimators_:
            tree = est.tree_
            value = tree.value[:, 0, :].astype(np.float64)
            value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
            full = np.zeros((tree.node_count, k))
            full[:, est.classes_.astype(np.int64)] = value  # each tree saw every class code
            parts["children_left"].append(tree.children_left.astype(np.int64))
            parts["children_right"].append(tree.children_right.astype(np.int64))
            parts["feature"].append(tree.feature.astype(np.int64))
            parts["threshold"].append(tree.threshold.astype(np.float64))
            parts["value"].append(full)
            offsets.append(offsets[-1] + tree.node_count)
        self.nodes_ = {name: np.concatenate(arrs) for name, arrs in parts.items()}
        self.tree_offsets_ = np.asarray(offsets, dtype=np.int64)
        self.temperature_ = 1.0
        return self

    def _leaves(self, X: np.ndarray) -> list[np.ndarray]:
        """Global node index of the leaf each item reaches, per tree."""
        left, right = self.nodes_["children_left"], self.nodes_["children_right"]
        feature, threshold = self.nodes_["feature"], self.nodes_["threshold"]
        rows = np.arange(len(X))
        leaves = []
        for t in range(len(self.tree_offsets_) - 1):
            base = self.tree_offsets_[t]
            node = np.full(len(X), base, dtype=np.int64)
            active = left[node] != -1
            while active.any():
                idx = node[active]
                go_left = X[rows[active], feature[idx]] <= threshold[idx]
                node[active] = np.where(go_left, left[idx], right[idx]) + base
                active = left[node] != -1
            leaves.append(node)
        return leaves

    def predict_proba(self, X) -> np.ndarray:
        X = self._check_X(X)
        value = self.nodes_["value"]
        proba = np.zeros((len(X), len(self.classes_)))
        leaves = self._leaves(X)
        for node in leaves:
            proba += value[node]
        return proba / max(len(leaves), 1)

    def embed(self, X) -> np.ndarray:
        """Forest class-vote shares (one column per class)."""
        return self.predict_proba(X).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {f"nodes.{k}": v for k, v in self.nodes_.items()}
        tensors["tree_offsets"] = self.tree_offsets_
        return tensors, {"temperature": 1.0}

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> RandomForestModel:
        model = cls(config=config, seed=seed)
        model.classes_ = np.array(meta["classes"], dtype=object)
        model.n_features_in_ = int(meta["n_features_in"])
        model.nodes_ = {k: np.asarray(tensors[f"nodes.{k}"]) for k in _TREE_ARRAYS}
        model.tree_offsets_ = np.asarray(tensors["tree_offsets"], dtype=np.int64)
        model.temperature_ = 1.0
        return model


