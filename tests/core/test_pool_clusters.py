"""The pool's shared k-means clustering (core.query.pool_clusters) and discovery's use of it."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from core.errors import DataError
from core.query import QueryContext
from core.query.pool_clusters import PoolClusterCache, bucket_k
from core.query.strategies import Discovery


def _pool(n: int = 3_000, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (12, d))
    return (centres[rng.integers(0, 12, n)] + rng.normal(0, 1, (n, d))).astype(np.float32)


def _ctx(x: np.ndarray, labelled_rows, seed: int | None = 3, reserved=None, rng_seed: int = 0):
    labelled = np.zeros(len(x), bool)
    labelled[list(labelled_rows)] = True
    labels = np.where(labelled, "a", None).astype(object)
    labels[np.flatnonzero(labelled)[::2]] = "b"
    return QueryContext.without_model(
        embedding=x, pool_ids=np.array([f"i{j}" for j in range(len(x))], dtype=object),
        labelled_mask=labelled, labels=labels, rng=np.random.default_rng(rng_seed),
        cluster_seed=seed, reserved=reserved)


def test_bucket_k_rounds_up_by_at_most_a_quarter():
    values = [bucket_k(k) for k in range(1, 2_000)]
    for k, b in zip(range(1, 2_000), values):
        assert k <= b <= max(8, 1.25 * k)
    assert values == sorted(values)  # monotone
    assert bucket_k(131) == bucket_k(140) == 160  # asks of 1 to 10 items at 130 labels: one k


def test_clustering_is_fitted_once_and_assigns_the_nearest_centre():
    x, cache = _pool(), PoolClusterCache()
    first = cache.get(x, 20, seed=1)
    again = cache.get(x, 20, seed=1)
    assert again is first and cache.fits == 1
    rows = np.array([5, 0, 17, 5, 2_999])
    got = first.assignment(x, rows)
    d2 = ((x[rows, None, :] - first.centres[None]) ** 2).sum(axis=2)
    np.testing.assert_array_equal(got, d2.argmin(axis=1))
    assert first.n_assigned == 4  # only the rows asked about, each once
    np.testing.assert_array_equal(first.assignment(x, rows[::-1]), got[::-1])


def test_a_new_embedding_k_or_seed_is_a_new_clustering():
    x, cache = _pool(), PoolClusterCache()
    base = cache.get(x, 20, seed=1)
    assert cache.get(x.copy(), 20, seed=1) is not base  # equal values, another array
    assert cache.get(x, 24, seed=1) is not base
    assert cache.get(x, 20, seed=2) is not base
    assert cache.get(x, 20, seed=(1, 30)) is not base  # seed and label count
    assert cache.get(x, 20, seed=(1, 30)) is cache.get(x, 20, seed=(1, 30))
    assert cache.fits == 5
    with pytest.raises(ValueError, match="seed"):
        cache.get(x, 20, seed=-1)
    with pytest.raises(ValueError, match="not the embedding"):
        base.assignment(x.copy(), np.arange(3))


def test_a_freed_embedding_is_never_matched_by_a_new_one():
    cache = PoolClusterCache()
    x = _pool()
    cache.get(x, 20, seed=1)
    del x
    gc.collect()
    y = _pool(seed=1)  # may well get the freed array's id
    entry = cache.get(y, 20, seed=1)
    assert cache.fits == 2 and entry.follows(y)


def test_the_cache_is_bounded():
    cache = PoolClusterCache(max_entries=2)
    x = _pool()
    for k in (10, 12, 14):
        cache.get(x, k, seed=0)
    assert len(cache) == 2
    cache.get(x, 10, seed=0)  # the oldest went: fitted again
    assert cache.fits == 4
    with pytest.raises(ValueError):
        PoolClusterCache(max_entries=0)


def test_concurrent_requests_share_one_fit():
    x, cache = _pool(20_000), PoolClusterCache()
    start = threading.Barrier(4)
    entries, assigned, errors = [], [], []

    def ask(rows):
        try:
            start.wait()
            entry = cache.get(x, 40, seed=5)
            entries.append(entry)
            assigned.append((rows, entry.assignment(x, rows)))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    rng = np.random.default_rng(0)
    threads = [threading.Thread(target=ask, args=(rng.choice(len(x), 5_000, replace=False),))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.fits == 1 and all(e is entries[0] for e in entries)
    whole = entries[0].assignment(x, np.arange(len(x)))
    for rows, got in assigned:
        np.testing.assert_array_equal(got, whole[rows])


def test_subset_contexts_know_their_rows_in_the_whole_pool():
    x = _pool()
    ctx = _ctx(x, range(10))
    sub = ctx.subset(np.arange(100, 400))
    subsub = sub.subset(np.array([0, 5, 299]))
    emb, rows = subsub.source_rows(np.arange(3))
    assert emb is x
    np.testing.assert_array_equal(rows, [100, 105, 399])
    assert sub.cluster_seed == ctx.cluster_seed
    with pytest.raises(DataError, match="cluster_seed"):
        _ctx(x, range(10), seed="3")


def test_discovery_shares_the_pool_clustering_between_the_requests_of_a_round(monkeypatch):
    import core.query.strategies as strategies

    cache = PoolClusterCache()
    monkeypatch.setattr(strategies, "POOL_CLUSTERS", cache)
    x = _pool()
    ctx = _ctx(x, range(0, 300, 10))  # 30 labels: k = bucket(30 + 10) = 40
    tab_a = Discovery().query(ctx, 10)
    reserved = np.zeros(len(x), bool)
    reserved[tab_a.positions] = True  # tab B is not offered tab A's batch
    tab_b = Discovery().query(ctx.for_request(reserved=reserved, requester="b"), 10)
    tab_c = Discovery().query(ctx.for_request(requester="c"), 7)  # an ask of 7: the same k
    assert cache.fits == 1
    assert not set(tab_a.positions) & set(tab_b.positions)
    assert len(tab_c) == 7
    # The next round (10 more labels): a new label state, a new clustering (as the k-means of
    # every query was re-seeded by the label count before) ...
    Discovery().query(_ctx(x, list(range(0, 300, 10)) + tab_a.positions.tolist()), 10)
    assert cache.fits == 2
    # ... and another embedding (a new model's learned embedding) is never served the old one.
    Discovery().query(_ctx(x.copy(), range(0, 300, 10)), 10)
    assert cache.fits == 3
    # Without a cluster seed, discovery fits its own k-means per request (the cache is unused).
    Discovery().query(_ctx(x, range(0, 300, 10), seed=None), 10)
    assert cache.fits == 3


def test_discovery_picks_do_not_depend_on_who_fitted_the_clustering(monkeypatch):
    import core.query.strategies as strategies

    x = _pool(30_000)  # above the sub-pool's max_pool: each request sees a kNN sub-pool
    from core.query import get_strategy

    picks = []
    for _ in range(2):
        monkeypatch.setattr(strategies, "POOL_CLUSTERS", PoolClusterCache())  # fresh each time
        ctx = _ctx(x, range(0, 3_000, 100))
        first = get_strategy("discovery").query(ctx, 10)
        again = ctx.for_request(rng=np.random.default_rng(0))  # the same request, clustering cached
        second = get_strategy("discovery").query(again, 10)
        np.testing.assert_array_equal(first.positions, second.positions)
        picks.append(first.positions)
    np.testing.assert_array_equal(picks[0], picks[1])
    assert len(set(picks[0].tolist())) == 10 and not ctx.labelled_mask[picks[0]].any()
