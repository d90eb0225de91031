"""The 2-D map and the predicted clusters."""

from __future__ import annotations

import numpy as np
import pytest

from core.clusters import cluster_embedding, default_cluster_count, summarise_clusters
from core.project import MapConfig
from core.projection import array_digest, cached_projection, project_2d


def _blobs(n_per=60, centres=((0, 0, 0), (8, 0, 0), (0, 8, 0)), seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, 0.5, size=(n_per, 3)) for c in centres]).astype(np.float32)
    y = np.repeat(np.arange(len(centres)), n_per)
    return x, y


def test_pca_map_separates_blobs_and_is_deterministic():
    x, y = _blobs()
    xy = project_2d(x, MapConfig(method="pca"))
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32
    np.testing.assert_array_equal(xy, project_2d(x, MapConfig(method="pca")))
    centres = np.array([xy[y == k].mean(axis=0) for k in range(3)])
    spread = max(np.linalg.norm(xy[y == k] - centres[k], axis=1).max() for k in range(3))
    assert min(np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)) > spread


def test_neighbour_placement_beyond_the_sample_keeps_items_near_their_blob(monkeypatch):
    from core import projection

    # Replace UMAP by an exact linear map so that the test checks the placement of the rest.
    monkeypatch.setattr(projection, "_umap", lambda x, config, seed, init, report: x[:, :2].copy())
    x, y = _blobs(n_per=200)
    config = MapConfig(method="umap", sample_size=100)
    must = np.array([0, 1, 2, 599])
    xy = project_2d(x, config, seed=1, must_include=must)
    np.testing.assert_allclose(xy[must], x[must, :2], rtol=1e-5)  # labelled rows are in the sample
    for k in range(3):
        assert np.linalg.norm(xy[y == k].mean(axis=0) - x[y == k, :2].mean(axis=0)) < 1.0


def test_cached_projection_reuses_the_file(tmp_path, monkeypatch):
    x, _ = _blobs()
    config = MapConfig(method="pca")
    first = cached_projection(x, config, tmp_path)
    assert len(list(tmp_path.glob("map-*.npy"))) == 1
    from core import projection

    monkeypatch.setattr(projection, "fit_map", lambda *a, **k: pytest.fail("cache missed"))
    np.testing.assert_array_equal(first, cached_projection(x, config, tmp_path))
    assert array_digest(x) != array_digest(x + 1)


def test_clusters_recover_blobs_and_summary_counts_labels():
    x, y = _blobs()
    assignment = cluster_embedding(x, 3, seed=0)
    for k in range(3):  # each blob falls in one cluster
        assert len(set(assignment[y == k].tolist())) == 1
    labels = np.full(len(x), None, dtype=object)
    labels[:5] = "a"
    labels[5] = "b"
    summary = summarise_clusters(assignment, labels, predicted=np.array(["a"] * len(x), dtype=object))
    first = summary.set_index("cluster").loc[assignment[0]]
    assert first["size"] == 60 and first["n_labelled"] == 6
    assert first["dominant"] == "a" and first["purity"] == pytest.approx(5 / 6)
    assert summary["size"].sum() == len(x)
    assert summary["n_labelled"].sum() == 6
    assert default_cluster_count(10_000) == 50
