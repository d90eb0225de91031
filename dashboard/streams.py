"""Selection geometry from a plot to the server: one place that wires the HoloViews streams."""

from __future__ import annotations

from collections.abc import Callable

from dashboard.style import holoviews


def selection_streams(source, on_box: Callable, on_lasso: Callable, on_tap: Callable):
    """``BoundsXY``, ``Lasso`` and ``Tap`` streams on ``source``, each calling its handler; the
    server maps the geometry to rows (``core.geometry.PointIndex``)."""
    hv = holoviews()
    bounds = hv.streams.BoundsXY(source=source)
    lasso = hv.streams.Lasso(source=source)
    tap = hv.streams.Tap(source=source)
    bounds.add_subscriber(on_box)
    lasso.add_subscriber(on_lasso)
    tap.add_subscriber(on_tap)
    return bounds, lasso, tap
