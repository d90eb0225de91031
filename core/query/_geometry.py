"""Embedding-space helpers shared by the strategies: clustering, distances, typicality."""

from __future__ import annotations

import numpy as np

MAX_KMEANS_FIT = 20_000  # k-means is fitted on at most this many rows, then predicts the rest


def seed_of(rng: np.random.Generator) -> int:
    """An integer seed drawn from ``rng`` for libraries that take ``random_state``."""
    return int(rng.integers(0, 2**31 - 1))


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cluster rows of ``x`` into ``k`` groups; returns ``(assignment, centres)``.

    The centres are :func:`kmeans_centres`; every row is then assigned to its nearest centre.
    """
    x = np.asarray(x, dtype=np.float32)
    centres = kmeans_centres(x, k, rng)
    return nearest(x, centres)[0], centres


def kmeans_centres(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` (at most ``len(x)``) k-means centres of the rows of ``x``, float32.

    Uses scikit-learn's ``MiniBatchKMeans`` fitted on a random sample of at most
    ``MAX_KMEANS_FIT`` rows, so the cost stays bounded on large pools.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    k = int(max(1, min(k, len(x))))
    fit_rows = (
        x if len(x) <= MAX_KMEANS_FIT else x[rng.choice(len(x), MAX_KMEANS_FIT, replace=False)]
    )
    fit_rows = np.asarray(fit_rows, dtype=np.float32)
    if len(fit_rows) <= 5_000:
        model = KMeans(n_clusters=k, n_init=1, random_state=seed_of(rng), max_iter=100)
    else:  # k-means++ seeding dominates the cost: one seeding on a bounded sample of rows
        model = MiniBatchKMeans(
            n_clusters=k, n_init=1, random_state=seed_of(rng), batch_size=2048, max_iter=50,
            init_size=max(3 * k, 2048), compute_labels=False,  # every row is assigned below
        )
    # One OpenMP thread: the steps are small (2,048 rows), so a second thread only waits at each
    # step's barrier (about twice as slow on a busy machine); the centres do not depend on it.
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(fit_rows)
    return model.cluster_centers_.astype(np.float32)


MAX_LEARNED_ROWS = 5_000  # hdbscan / linkage inside a strategy cluster at most this many rows


def cluster_nodes(x: np.ndarray, k: int, rng: np.random.Generator, method: str = "kmeans",
                  labels: np.ndarray | None = None,
                  max_rows: int = MAX_LEARNED_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Cluster rows of ``x`` by the project's cluster ``method``; returns ``(assignment, centres)``
    with ``centres`` the cluster means. ``kmeans`` is :func:`kmeans` with ``k`` groups; the other
    methods (``core.clusters``) choose their own number and may learn from ``labels``.

    Above ``max_rows`` rows the other methods cluster every labelled row plus a seeded random
    sample of the rest (``max_rows`` in all), and each remaining row joins the cluster of its
    nearest clustered row: a strategy's round stays well under a second at 10^5 items (the kNN
    graph of ``linkage`` grows with the square of the rows clustered)."""
    if method == "kmeans":
        return kmeans(x, k, rng)
    from core.clusters import cluster_items

    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    rows = np.arange(n)
    if n > max_rows:
        known = np.zeros(n, bool) if labels is None else np.asarray(
            [v is not None for v in labels], bool)
        rest = np.flatnonzero(~known)
        take = max(0, max_rows - int(known.sum()))
        rows = np.sort(np.concatenate([np.flatnonzero(known),
                                       rng.choice(rest, min(take, len(rest)), replace=False)]))
    sub_labels = None if labels is None else np.asarray(labels, dtype=object)[rows]
    result = cluster_items(x[rows], method, sub_labels, seed=seed_of(rng))
    if result.used != method:  # nothing to learn from yet (no labels): the strategy's own k
        return kmeans(x, k, rng)
    assign = np.empty(n, np.int64)
    assign[rows] = result.assignment
    if len(rows) < n:
        others = np.setdiff1d(np.arange(n), rows)
        near, _ = nearest(x[others], x[rows])
        assign[others] = result.assignment[near]
    counts = np.bincount(assign).astype(np.float32)
    centres = np.zeros((len(counts), x.shape[1]), np.float32)
    np.add.at(centres, assign, x)
    return assign, centres / counts[:, None]


def nearest(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``x``: index of and Euclidean distance to its nearest row of ``ref``.

    Bounded memory whatever the sizes: exact in blocks for moderate ``ref``, through an index
    kept between calls for large ones (see :mod:`core.query.neighbours`).
    """
    from core.query.neighbours import nearest as indexed_nearest

    return indexed_nearest(x, ref)


def k_smallest_distances(
    x: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (into ``x``) of the ``k`` nearest rows to each query, and their squared distances."""
    x = np.asarray(x, dtype=np.float32)
    q = np.asarray(queries, dtype=np.float32)
    k = min(k, len(x))
    d2 = (x**2).sum(axis=1)[None, :] - 2.0 * q @ x.T + (q**2).sum(axis=1)[:, None]
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    return part, np.take_along_axis(d2, part, axis=1)


def typicality(
    x: np.ndarray, k: int = 20, rng: np.random.Generator | None = None, max_rows: int = 2_000
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's typicality: inverse mean distance to the ``k`` nearest neighbours.

    Returns ``(rows, typicality)`` where ``rows`` index ``x``; large groups are subsampled to
    ``max_rows`` rows first.
    """
    x = np.asarray(x, dtype=np.float32)
    rows = np.arange(len(x))
    if len(x) > max_rows:
        rng = rng if rng is not None else np.random.default_rng(0)
        rows = np.sort(rng.choice(len(x), max_rows, replace=False))
    sub = x[rows]
    if len(sub) == 1:
        return rows, np.ones(1)
    kk = min(k + 1, len(sub))
    _, d2 = k_smallest_distances(sub, sub, kk)
    d = np.sqrt(np.maximum(d2, 0.0))
    mean = d.sum(axis=1) / max(kk - 1, 1)  # the zero self-distance is among the kk
    return rows, 1.0 / (mean + 1e-12)


def greedy_k_center(
    x: np.ndarray,
    centres: np.ndarray,
    n: int,
    allowed: np.ndarray | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first traversal: ``n`` rows of ``x`` each farthest from ``centres`` + earlier picks.

    ``allowed`` (bool mask) restricts which rows may be picked; ``weights`` multiply the distances
    when choosing (e.g. the model's uncertainty). Returns ``(rows, distances)``.
    """
    x = np.asarray(x, dtype=np.float32)
    _, dist = nearest(x, centres) if len(centres) else (None, np.full(len(x), np.inf, np.float32))
    dist = dist.astype(np.float64)
    if allowed is not None:
        dist = np.where(allowed, dist, -np.inf)
    picks, gaps = [], []
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    for _ in range(min(n, len(x))):
        j = int(np.argmax(np.where(np.isfinite(dist), dist * w, dist)))
        if not np.isfinite(dist[j]) and dist[j] < 0:
            break
        picks.append(j)
        gaps.append(float(dist[j]))
        step = np.sqrt(np.maximum(((x - x[j]) ** 2).sum(axis=1), 0.0))
        dist = np.minimum(dist, step)
        dist[j] = -np.inf
    return np.asarray(picks, dtype=np.int64), np.asarray(gaps)
