"""Nearest-neighbour questions with bounded memory (core.query.neighbours)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from core.query import neighbours
from core.query.neighbours import ReferenceIndex, exact_nearest, nearest, pool_neighbours


def _clustered(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, (20, dim))
    return (centres[rng.integers(0, 20, n)] + rng.normal(0, 1, (n, dim))).astype(np.float32)


def _brute(x, ref, k):
    d2 = ((x[:, None, :].astype(np.float64) - ref[None, :, :]) ** 2).sum(axis=2)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d2, idx, axis=1)


@pytest.mark.parametrize("k", [1, 3])
def test_exact_search_in_small_blocks_equals_brute_force(monkeypatch, k):
    monkeypatch.setattr(neighbours, "BLOCK_FLOATS", 997)  # many ragged blocks
    x, ref = _clustered(300, seed=1), _clustered(400, seed=2)
    idx, d2 = exact_nearest(x, ref, k)
    want_idx, want_d2 = _brute(x, ref, k)
    np.testing.assert_allclose(d2, want_d2, rtol=1e-4, atol=1e-3)
    assert (idx == want_idx).mean() > 0.99  # ties aside


def test_large_reference_sets_use_bounded_memory_not_a_full_distance_matrix():
    x, ref = _clustered(4_000, seed=3), _clustered(60_000, seed=4)  # 4000 x 60000 floats = 960 MB
    tracemalloc.start()
    try:
        rows, dist = nearest(x, ref)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"
    # The index's answer is (nearly always) the true nearest row, or one as near.
    sample = np.random.default_rng(5).choice(len(x), 300, replace=False)
    _, true_d2 = exact_nearest(x[sample], ref, 1)  # checked against brute force above
    got = ((x[sample] - ref[rows[sample]]) ** 2).sum(axis=1)
    assert (got <= true_d2[:, 0] * 1.05 + 1e-6).mean() > 0.95
    np.testing.assert_allclose(dist[sample] ** 2, got, rtol=0.1, atol=0.5)  # 8-bit distances


def test_the_reference_index_follows_a_changing_set(monkeypatch):
    ref = _clustered(5_000, seed=6)
    index = ReferenceIndex(ref.shape[1])
    keys = index.update(ref)
    assert len(index.keys) == len(ref) and index.index.ntotal == len(ref)
    built = index.index
    # Drop 100 rows, add 200: the index is updated in place, not rebuilt.
    extra = _clustered(200, seed=7)
    changed = np.concatenate([ref[100:], extra])
    keys = index.update(changed)
    assert index.index is built and index.index.ntotal == len(changed)
    rows, _ = index.nearest(extra[:50] + 1e-4, keys)
    assert (rows[:, 0] >= len(ref) - 100).mean() > 0.9  # found among the new rows
    rows, _ = index.nearest(ref[:100], keys)
    assert (rows[:, 0] >= 0).all()  # removed rows are never returned, something else is
    # A mostly new set (a new embedding) trains a new index.
    index.update(_clustered(5_000, seed=8) * 3)
    assert index.index is not built


def test_pool_neighbours_through_the_index_agree_with_exact_search():
    pool = _clustered(20_000, seed=9)
    seeds = np.arange(0, 20_000, 97)
    exact = pool_neighbours(pool, seeds, 11, exact_rows=10**9)
    approx = pool_neighbours(pool, seeds, 11, exact_rows=1_000)
    assert (exact[:, 0] == seeds).mean() > 0.99
    recall = np.mean([len(set(a) & set(e)) / 11 for a, e in zip(approx, exact)])
    assert recall > 0.8
    again = pool_neighbours(pool, seeds, 11, exact_rows=1_000)
    np.testing.assert_array_equal(approx, again)  # the index is kept and answers the same
