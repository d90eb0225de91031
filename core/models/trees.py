"""Tree ensembles with balanced class weights: random forest and gradient-boosted trees.

Both are scikit-learn estimators underneath. After ``fit`` the trees are also kept as plain node
arrays (children, split feature, threshold, leaf values), which is what ``state()`` saves: a model
loaded from safetensors predicts by walking those arrays, with the same results as the fitted
scikit-learn estimator (which a model fitted in this process uses, because it is faster).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.models.base import TailwiseModel, softmax
from core.project import GradientBoostingConfig, RandomForestConfig

NODE_ARRAYS = ("left", "right", "feature", "threshold", "value")
WALK_CHUNK = 4096  # rows walked through every tree at once (rows x trees int64 per step)


class _TreeEnsemble(TailwiseModel):
    """Shared by both ensembles: node arrays, the vectorised walk, persistence."""

    def _set_trees(self, trees: list[dict[str, np.ndarray]]) -> None:
        """Concatenate per-tree node arrays (local child indices; -1 marks a leaf)."""
        offsets = np.cumsum([0] + [len(t["left"]) for t in trees]).astype(np.int64)
        nodes: dict[str, np.ndarray] = {}
        for name in NODE_ARRAYS:
            parts = []
            for t, base in zip(trees, offsets[:-1]):
                arr = t[name]
                if name in ("left", "right"):
                    arr = np.where(arr >= 0, arr.astype(np.int64) + base, -1)
                parts.append(arr)
            nodes[name] = np.concatenate(parts)
        self.nodes_ = nodes
        self.tree_offsets_ = offsets

    def _leaves(self, X: np.ndarray) -> np.ndarray:
        """``(n, n_trees)`` global node index of the leaf each row reaches in each tree."""
        left, right = self.nodes_["left"], self.nodes_["right"]
        feature, threshold = self.nodes_["feature"], self.nodes_["threshold"]
        roots = self.tree_offsets_[:-1]
        out = np.empty((len(X), len(roots)), dtype=np.int64)
        for start in range(0, len(X), WALK_CHUNK):
            block = X[start:start + WALK_CHUNK]
            node = np.broadcast_to(roots, (len(block), len(roots))).copy()
            rows = np.arange(len(block))[:, None]
            inner = left[node] >= 0
            while inner.any():
                f = feature[node]
                go_left = block[rows, np.where(inner, f, 0)] <= threshold[node]
                node = np.where(inner, np.where(go_left, left[node], right[node]), node)
                inner = left[node] >= 0
            out[start:start + WALK_CHUNK] = node
        return out

    def embed(self, X) -> np.ndarray:
        """Class probabilities (one column per class): the ensemble's view of each item."""
        return self.predict_proba(X).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {f"nodes.{k}": v for k, v in self.nodes_.items()}
        tensors["tree_offsets"] = self.tree_offsets_
        tensors.update(self._extra_tensors())
        return tensors, {"temperature": 1.0}

    def _extra_tensors(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> _TreeEnsemble:
        model = cls(config=config, seed=seed)
        model.classes_ = np.array(meta["classes"], dtype=object)
        model.n_features_in_ = int(meta["n_features_in"])
        model.nodes_ = {k: np.asarray(tensors[f"nodes.{k}"]) for k in NODE_ARRAYS}
        model.tree_offsets_ = np.asarray(tensors["tree_offsets"], dtype=np.int64)
        model.temperature_ = 1.0
        model._load_extra(tensors)
        return model

    def _load_extra(self, tensors: dict[str, np.ndarray]) -> None:
        pass


class RandomForestModel(_TreeEnsemble):
    """Random forest with ``class_weight='balanced'``; probabilities are the trees' mean vote."""

    kind = "random_forest"
    config_class = RandomForestConfig

    def fit(self, X, y, X_unlabelled=None) -> RandomForestModel:
        """Fit on labelled items; ``X_unlabelled`` is accepted for the shared API and ignored."""
        from sklearn.ensemble import RandomForestClassifier

        cfg = self._config()
        X, codes = self._fit_inputs(X, y)
        forest = RandomForestClassifier(n_estimators=cfg.n_estimators, max_depth=cfg.max_depth,
                                        class_weight="balanced", random_state=self.seed, n_jobs=1)
        forest.fit(X, codes)
        k = len(self.classes_)
        trees = []
        for est in forest.estimators_:
            tree = est.tree_
            value = tree.value[:, 0, :].astype(np.float64)
            value = value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)
            full = np.zeros((tree.node_count, k))
            full[:, est.classes_.astype(np.int64)] = value  # each tree saw every class code
            trees.append({"left": tree.children_left, "right": tree.children_right,
                          "feature": tree.feature.astype(np.int64),
                          "threshold": tree.threshold.astype(np.float64), "value": full})
        self._set_trees(trees)
        self.estimator_ = forest
        self.temperature_ = 1.0
        return self

    def predict_proba(self, X) -> np.ndarray:
        X = self._check_X(X)
        if getattr(self, "estimator_", None) is not None:
            return self.estimator_.predict_proba(X).astype(np.float64)
        value = self.nodes_["value"]
        proba = np.zeros((len(X), len(self.classes_)))
        for start in range(0, len(X), WALK_CHUNK):
            leaves = self._leaves(X[start:start + WALK_CHUNK])
            part = proba[start:start + WALK_CHUNK]
            for t in range(leaves.shape[1]):  # tree by tree, as scikit-learn sums: same floats
                part += value[leaves[:, t]]
            part /= leaves.shape[1]
        return proba


class GradientBoostingModel(_TreeEnsemble):
    """Histogram gradient-boosted trees (scikit-learn) with ``class_weight='balanced'``.

    Sharp, axis-aligned class boundaries of tabular data are where trees beat linear and MLP
    heads. ``min_samples_leaf`` defaults to a value scaled with the number of labels, so a rare
    class with a handful of labels can still get leaves of its own.
    """

    kind = "gradient_boosting"
    config_class = GradientBoostingConfig

    def fit(self, X, y, X_unlabelled=None) -> GradientBoostingModel:
        """Fit on labelled items; ``X_unlabelled`` is accepted for the shared API and ignored."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        cfg = self._config()
        X, codes = self._fit_inputs(X, y)
        leaf = cfg.min_samples_leaf or int(np.clip(len(X) // 40, 2, 20))
        booster = HistGradientBoostingClassifier(
            max_iter=cfg.max_iter, learning_rate=cfg.learning_rate,
            max_leaf_nodes=cfg.max_leaf_nodes, min_samples_leaf=leaf,
            l2_regularization=cfg.l2_regularization, class_weight="balanced",
            early_stopping=False, random_state=self.seed)
        booster.fit(X, codes)
        trees, tree_class = [], []
        for iteration in booster._predictors:
            for j, predictor in enumerate(iteration):
                nodes = predictor.nodes
                leaf_mask = nodes["is_leaf"].astype(bool)
                trees.append({
                    "left": np.where(leaf_mask, -1, nodes["left"].astype(np.int64)),
                    "right": np.where(leaf_mask, -1, nodes["right"].astype(np.int64)),
                    "feature": nodes["feature_idx"].astype(np.int64),
                    "threshold": nodes["num_threshold"].astype(np.float64),
                    "value": nodes["value"].astype(np.float64),
                })
                tree_class.append(j)
        self._set_trees(trees)
        self.tree_class_ = np.asarray(tree_class, dtype=np.int64)
        self.baseline_ = np.asarray(booster._baseline_prediction, dtype=np.float64).reshape(-1)
        self.estimator_ = booster
        self.temperature_ = 1.0
        return self

    def decision_function(self, X) -> np.ndarray:
        """Raw boosting scores, one column per tree class (one column for two classes)."""
        X = self._check_X(X)
        if getattr(self, "estimator_", None) is not None:
            raw = self.estimator_._raw_predict(X)
            return np.asarray(raw, dtype=np.float64)
        value = self.nodes_["value"]
        raw = np.tile(self.baseline_, (len(X), 1))
        for start in range(0, len(X), WALK_CHUNK):
            leaves = self._leaves(X[start:start + WALK_CHUNK])
            part = raw[start:start + WALK_CHUNK]
            for t, j in enumerate(self.tree_class_):  # in boosting order, as scikit-learn sums
                part[:, j] += value[leaves[:, t]]
        return raw

    def predict_proba(self, X) -> np.ndarray:
        raw = self.decision_function(X)
        if raw.shape[1] == 1:  # binary: one tree per round, log-odds of the second class
            return softmax(np.hstack([np.zeros_like(raw), raw]))
        return softmax(raw)

    def _extra_tensors(self) -> dict[str, np.ndarray]:
        return {"tree_class": self.tree_class_, "baseline": self.baseline_}

    def _load_extra(self, tensors: dict[str, np.ndarray]) -> None:
        self.tree_class_ = np.asarray(tensors["tree_class"], dtype=np.int64)
        self.baseline_ = np.asarray(tensors["baseline"], dtype=np.float64)
