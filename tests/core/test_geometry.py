"""The grid index behind map selections: exact against brute force, robust to edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DataError
from core.geometry import PointIndex, points_in_polygon


def brute_lasso(xy: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    from matplotlib.path import Path

    return np.flatnonzero(Path(np.c_[xs, ys]).contains_points(xy))


def star(n: int = 60, r0: float = 1.0, r1: float = 0.45, k: int = 5, shift=(0.0, 0.0)):
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radius = np.where(np.arange(n) % 2 == 0, r0, r1) if k else np.full(n, r0)
    return radius * np.cos(theta) + shift[0], radius * np.sin(theta) + shift[1]


@pytest.mark.parametrize("n", [0, 1, 7, 5_000, 60_000])
def test_lasso_matches_brute_force(n):
    rng = np.random.default_rng(n)
    xy = rng.normal(size=(n, 2))
    index = PointIndex(xy)
    for xs, ys in (star(), star(200, 2.5, 0.2, shift=(0.5, -0.3)), star(4, 0.8, 0.8, k=0)):
        got = index.lasso(xs, ys)
        assert np.array_equal(got, brute_lasso(xy, xs, ys) if n else np.empty(0, int))


def test_lasso_concave_polygon_excludes_its_notch():
    # A U shape: points in the notch must not be selected.
    xy = np.array([[0.5, 0.5], [1.5, 1.5], [2.5, 0.5], [1.5, 0.5]])
    xs = np.array([0, 3, 3, 2, 2, 1, 1, 0], float)
    ys = np.array([0, 0, 2, 2, 1, 1, 2, 2], float)
    assert PointIndex(xy).lasso(xs, ys).tolist() == [0, 2, 3]


def test_lasso_with_fewer_than_three_vertices_selects_nothing():
    index = PointIndex(np.random.default_rng(0).normal(size=(100, 2)))
    assert index.lasso([0, 1], [0, 1]).size == 0
    assert index.lasso([0, 1, np.nan], [0, 1, 2]).size == 0


def test_box_in_any_corner_order_is_inclusive():
    xy = np.array([[0, 0], [1, 1], [2, 2], [1, 3]], float)
    index = PointIndex(xy)
    assert index.box(0, 0, 1, 1).tolist() == [0, 1]
    assert index.box(2, 3, 0.5, 0.5).tolist() == [1, 2, 3]


def test_nearest_respects_the_radius():
    xy = np.array([[0, 0], [1, 0], [5, 5]], float)
    index = PointIndex(xy)
    assert index.nearest(0.9, 0.1, radius=0.5) == 1
    assert index.nearest(3, 3, radius=0.5) is None
    assert index.nearest(3, 3) == 2


def test_identical_points_and_a_line_of_points():
    same = PointIndex(np.ones((10, 2)))
    assert same.box(0.5, 0.5, 1.5, 1.5).size == 10
    assert same.lasso([0, 2, 2, 0], [0, 0, 2, 2]).size == 10
    line = np.c_[np.linspace(0, 1, 50), np.zeros(50)]
    got = PointIndex(line).lasso([0.2, 0.6, 0.6, 0.2], [-1, -1, 1, 1])
    assert np.array_equal(got, brute_lasso(line, np.array([0.2, 0.6, 0.6, 0.2]), np.array([-1, -1, 1, 1])))


def test_points_in_polygon_even_odd():
    px, py = np.array([0.5, 2.0]), np.array([0.5, 0.5])
    assert points_in_polygon(px, py, np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])).tolist() == [True, False]


@pytest.mark.parametrize("bad", [np.zeros((3, 3)), np.array([[0.0, np.nan]])])
def test_bad_coordinates_raise_a_data_error(bad):
    with pytest.raises(DataError, match="map coordinates"):
        PointIndex(bad)
