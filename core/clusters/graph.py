"""The embedding's kNN graph, exact for small pools and approximate (faiss IVF) for large ones,
and the connected components of a set of kept edges.

Graph methods work on a reduced copy of the embedding (:func:`reduced`: centred, scaled, at most
``MAX_DIMS`` principal components) so that 10^6 items get their neighbours in well under a minute
on two cores.
"""

from __future__ import annotations

import numpy as np

MAX_DIMS = 32
EXACT_ROWS = 20_000  # up to this many items the graph is exact (blocked brute force)
PCA_FIT_ROWS = 20_000
NPROBE = 6


def reduced(x: np.ndarray, seed: int, max_dims: int = MAX_DIMS) -> np.ndarray:
    """``x`` centred and scaled to unit mean variance, projected on at most ``max_dims`` principal
    components (fitted on a seeded sample of at most ``PCA_FIT_ROWS`` rows)."""
    x = np.asarray(x, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= PCA_FIT_ROWS else x[np.sort(rng.choice(len(x), PCA_FIT_ROWS, replace=False))]
    mean = sample.mean(axis=0)
    z = x - mean
    if x.shape[1] > max_dims and len(sample) > max_dims:
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        z = z @ vt[:max_dims].T.astype(np.float32)
        scale_rows = (sample - mean) @ vt[:max_dims].T
    else:
        scale_rows = sample - mean
    scale = float(np.sqrt((np.asarray(scale_rows, np.float64) ** 2).sum(axis=1).mean())) or 1.0
    return np.ascontiguousarray(z / scale, dtype=np.float32)


def knn_graph(z: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(neighbours, distances)``, each ``(n, k)``: every row's ``k`` nearest other rows (nearest
    first; -1 and ``inf`` where an approximate search found fewer) and Euclidean distances."""
    from core.query.neighbours import exact_nearest

    n = len(z)
    k = int(min(k, n - 1))
    if k < 1:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32)
    if n <= EXACT_ROWS:
        idx, d2 = exact_nearest(z, z, k + 1)
    else:
        idx, d2 = _ivf_search(z, k + 1, seed)
    return _drop_self(idx, d2, k)


def _ivf_search(z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    n, d = z.shape
    nlist = int(np.clip(np.sqrt(n), 16, 4096))
    rng = np.random.default_rng(seed)
    train = z[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))]
    index = faiss.index_factory(d, f"IVF{nlist},SQ8")
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(train)
    index.add(z)
    faiss.extract_index_ivf(index).nprobe = NPROBE
    d2, idx = index.search(z, k)
    return idx.astype(np.int64), np.where(idx >= 0, np.maximum(d2, 0.0), np.inf).astype(np.float32)


def _drop_self(idx: np.ndarray, d2: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row itself from its neighbour list (keeping ``k`` others, nearest first)."""
    n = len(idx)
    own = idx == np.arange(n)[:, None]
    # rows whose own entry was not found (duplicates, approximate search) drop their last entry
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    keep = ~own
    out_idx = idx[keep].reshape(n, -1)[:, :k]
    out_d = np.sqrt(d2[keep].reshape(n, -1)[:, :k])
    return out_idx, out_d.astype(np.float32)


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected components (ids ``0..K-1`` by first row) of the undirected graph of edges
    ``src[i] -- dst[i]`` over ``n`` nodes."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from core.clusters.base import relabel

    graph = coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, comp = connected_components(graph, directed=False)
    return relabel(comp)
