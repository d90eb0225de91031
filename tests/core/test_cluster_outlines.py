"""Cluster outlines on the 2-D map (``core.clusters.cluster_outlines``)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as Polygon

from core.clusters import cluster_outlines
from core.errors import DataError


def _three_blobs(rng, sizes=(300, 60, 8)):
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    xy = np.vstack([rng.normal(c, 1.0, size=(n, 2)) for c, n in zip(centres, sizes)])
    return xy, np.repeat(np.arange(3), sizes)


def test_each_outline_encloses_its_cluster_and_no_other():
    rng = np.random.default_rng(0)
    xy, assignment = _three_blobs(rng)
    outlines = cluster_outlines(xy, assignment, keep=1.0)
    assert [o.cluster for o in outlines] == [0, 1, 2] and [o.size for o in outlines] == [300, 60, 8]
    for outline in outlines:
        ring = outline.polygon
        assert np.array_equal(ring[0], ring[-1])
        inside = Polygon(ring).contains_points(xy, radius=1e-9)
        own = assignment == outline.cluster
        assert inside[own].mean() > 0.95 and not inside[~own].any()


def test_stray_members_do_not_stretch_an_outline():
    rng = np.random.default_rng(1)
    xy, assignment = _three_blobs(rng, sizes=(200, 50, 50))
    xy[0] = [100.0, 100.0]  # one member of cluster 0 placed far away on the map
    trimmed = cluster_outlines(xy, assignment, keep=0.9)[0].polygon
    full = cluster_outlines(xy, assignment, keep=1.0)[0].polygon
    assert trimmed.max() < 10 < full.max()


def test_small_clusters_and_the_cap():
    rng = np.random.default_rng(2)
    xy, assignment = _three_blobs(rng)
    assert [o.cluster for o in cluster_outlines(xy, assignment, min_size=10)] == [0, 1]
    assert [o.cluster for o in cluster_outlines(xy, assignment, most=1)] == [0]


def test_degenerate_clusters_get_a_small_box():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [5.0, 5.0]])  # cluster 0 on a line
    outlines = cluster_outlines(xy, np.array([0, 0, 0, 1]), min_size=1)
    assert len(outlines) == 2 and all(o.polygon.shape == (5, 2) for o in outlines)
    assert Polygon(outlines[0].polygon).contains_points(xy[:3]).all()
    assert Polygon(outlines[1].polygon).contains_point(xy[3])
    assert cluster_outlines(np.empty((0, 2)), np.empty(0, dtype=int)) == []


@pytest.mark.parametrize(("xy", "assignment", "match"), [
    (np.zeros((4, 3)), np.zeros(4), r"shape \(n, 2\)"),
    (np.zeros((4, 2)), np.zeros(3), "one cluster id per map position"),
])
def test_bad_input_is_named(xy, assignment, match):
    with pytest.raises(DataError, match=match):
        cluster_outlines(xy, assignment)
