"""Projectors: the parametric map that places items beyond the UMAP sample, and the PCA map."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.parametric import LinearMap, ParametricMap, projector_from_bytes
from core.project import MapConfig
from core.projection import fit_map


def _blobs(n_per: int = 300, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, size=(4, dim))
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(4), n_per)


def test_parametric_map_learns_a_layout_and_places_new_rows_in_their_blob():
    x, y = _blobs()
    # A target layout: each blob at a corner of a square, with a little spread.
    corners = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=np.float32)
    rng = np.random.default_rng(1)
    target = corners[y] + rng.normal(0, 0.5, size=(len(x), 2)).astype(np.float32)
    train = rng.random(len(x)) < 0.7
    projector = ParametricMap(steps=600, seed=0).fit(x[train], target[train])
    placed = projector.transform(x[~train])
    err = np.linalg.norm(placed - corners[y[~train]], axis=1)
    assert np.median(err) < 1.5, f"held-out rows placed {np.median(err):.2f} from their corner"


def test_parametric_map_is_chunk_independent_and_survives_a_byte_round_trip():
    x, _ = _blobs(n_per=100)
    xy = x[:, :2] * 2 + 1
    projector = ParametricMap(steps=200, seed=3).fit(x, xy)
    whole = projector.transform(x)
    np.testing.assert_array_equal(whole, projector.transform(x, chunk=37))
    again = projector_from_bytes(projector.to_bytes())
    assert isinstance(again, ParametricMap)
    np.testing.assert_array_equal(whole, again.transform(x))
    # Same seed, same data: the same weights.
    np.testing.assert_array_equal(whole, ParametricMap(steps=200, seed=3).fit(x, xy).transform(x))


def test_projectors_refuse_bad_input_with_a_clear_error():
    x, _ = _blobs(n_per=20)
    with pytest.raises(DataError, match="not fitted"):
        ParametricMap().transform(x)
    with pytest.raises(DataError, match=r"\(m, 2\) targets"):
        ParametricMap().fit(x, x[:, :3])
    projector = ParametricMap(steps=20).fit(x, x[:, :2])
    with pytest.raises(DataError, match="expected 16 columns"):
        projector.transform(x[:, :5])
    with pytest.raises(DataError, match="incomplete"):
        ParametricMap.from_state({"mean": np.zeros(3, np.float32)})


def test_linear_map_is_the_pca_map_and_round_trips():
    x, y = _blobs(n_per=50)
    xy, projector = fit_map(x, MapConfig(method="pca"))
    assert isinstance(projector, LinearMap)
    np.testing.assert_allclose(xy, projector.transform(x), rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(projector.transform(x), projector_from_bytes(projector.to_bytes()).transform(x))


@pytest.mark.slow
def test_umap_on_a_sample_plus_parametric_placement_reports_epochs():
    """The real thing, small: UMAP on 300 of 1,200 items, the other 900 placed by the network."""
    x, y = _blobs()
    seen: list[tuple[int, int, str]] = []
    xy, projector = fit_map(x, MapConfig(method="umap", sample_size=300), seed=0,
                            progress=lambda d, t, m: seen.append((d, t, m)))
    assert xy.shape == (len(x), 2) and np.isfinite(xy).all()
    assert isinstance(projector, ParametricMap)
    assert any("epoch" in m and d > 0 for d, t, m in seen), "UMAP's epochs were not reported"
    assert any("placing 900 more items" in m for _, _, m in seen)
    # Every blob stays together: each item is nearer its own blob's centre than any other's.
    centres = np.array([np.median(xy[y == k], axis=0) for k in range(4)])
    nearest = np.argmin(((xy[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == y).mean() > 0.97
