"""Label spreading over the kNN graph of the embedding, for the few-label regime.

With a few dozen labels a classifier sees a handful of points per class, while the unlabelled
pool shows where the classes' dense regions are. Label spreading (Zhou et al., NIPS 2004) lets
each label flow along a k-nearest-neighbour graph of labelled + unlabelled items:
``F <- alpha * S F + (1 - alpha) * Y`` with ``S = D^-1/2 W D^-1/2``. For long-tailed data every
class starts with the same total mass (each label weighs ``1 / n_c``) and the result is
class-mass normalised (Zhu et al., ICML 2003), so the head classes do not flood the graph.
Items outside the graph (new rows, the test split) get the mean distribution of their ``k``
nearest graph nodes, as scikit-learn's ``LabelSpreading.predict_proba`` does.

``model: auto`` blends these probabilities into its learner's while labels are few
(``AutoConfig.spreading_labels``); the graph state is plain arrays, saved with the model.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LabelSpreading"]


def _knn(query: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Rows of ``ref`` nearest each row of ``query`` (exact, faiss's flat index: about 3 x
    faster than blocked numpy for 10^5 queries)."""
    import faiss

    index = faiss.IndexFlatL2(ref.shape[1])
    index.add(np.ascontiguousarray(ref, dtype=np.float32))
    _, found = index.search(np.ascontiguousarray(query, dtype=np.float32), k)
    return found


class LabelSpreading:
    """Class-balanced label spreading on a kNN graph (fit once per retrain, plain arrays).

    After :meth:`fit`: ``nodes_`` (graph rows, float32) and ``dist_`` (their class
    distributions, rows summing to 1, or 0 where no label reached them).
    """

    def __init__(self, n_neighbors: int = 7, alpha: float = 0.8, max_iter: int = 30,
                 max_unlabelled: int = 3_000, seed: int = 0) -> None:
        self.n_neighbors = n_neighbors
        self.alpha = alpha
        self.max_iter = max_iter
        self.max_unlabelled = max_unlabelled
        self.seed = seed

    def fit(self, X: np.ndarray, codes: np.ndarray, n_classes: int,
            X_unlabelled: np.ndarray) -> LabelSpreading:
        """Spread the labels ``codes`` (0..n_classes-1) of ``X`` over ``X`` + ``X_unlabelled``.

        At most ``max_unlabelled`` unlabelled rows (a random sample) join the graph.
        """
        from scipy import sparse

        Xu = np.asarray(X_unlabelled, dtype=np.float32)
        if len(Xu) > self.max_unlabelled:
            rng = np.random.default_rng(self.seed)
            Xu = Xu[np.sort(rng.choice(len(Xu), self.max_unlabelled, replace=False))]
        nodes = np.concatenate([np.asarray(X, dtype=np.float32), Xu])
        n, n_lab = len(nodes), len(X)
        k = min(self.n_neighbors + 1, n)
        idx = _knn(nodes, nodes, k)
        rows = np.repeat(np.arange(n), k)
        W = sparse.csr_matrix((np.ones(n * k), (rows, idx.ravel())), shape=(n, n))
        W.setdiag(0)
        W.eliminate_zeros()
        W = ((W + W.T) > 0).astype(np.float64)  # symmetric connectivity
        deg = np.asarray(W.sum(axis=1)).ravel()
        inv = 1.0 / np.sqrt(np.maximum(deg, 1e-12))
        S = sparse.diags(inv) @ W @ sparse.diags(inv)
        counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
        Y = np.zeros((n, n_classes))
        Y[np.arange(n_lab), codes] = 1.0 / np.maximum(counts[codes], 1.0)  # equal mass per class
        F = Y.copy()
        for _ in range(self.max_iter):
            F = self.alpha * (S @ F) + (1.0 - self.alpha) * Y
        mass = F.sum(axis=0)
        F = F / np.where(mass > 0, mass, 1.0)  # class-mass normalisation
        total = F.sum(axis=1, keepdims=True)
        self.nodes_ = nodes
        self.dist_ = np.where(total > 0, F / np.where(total > 0, total, 1.0), 0.0)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Mean distribution of each row's ``n_neighbors`` nearest graph nodes; a row no label
        reached gets the uniform distribution."""
        k = min(self.n_neighbors, len(self.nodes_))
        idx = _knn(X, self.nodes_, k)
        P = self.dist_[idx].mean(axis=1)
        total = P.sum(axis=1, keepdims=True)
        uniform = np.full_like(P, 1.0 / P.shape[1])
        return np.where(total > 1e-12, P / np.where(total > 1e-12, total, 1.0), uniform)

    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays (what the model file keeps)."""
        return {"nodes": self.nodes_, "dist": self.dist_}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray], n_neighbors: int = 7) -> LabelSpreading:
        model = cls(n_neighbors=n_neighbors)
        model.nodes_ = np.asarray(tensors["nodes"], dtype=np.float32)
        model.dist_ = np.asarray(tensors["dist"], dtype=np.float64)
        return model
