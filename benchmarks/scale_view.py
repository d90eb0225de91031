"""Scale benchmark, part "view": the dashboard's own map view (HoloViews datashade + dynspread of
the shared map table) at 10^5 and 10^6 items of a real session, and map-only at 10^7.

Server side, without a browser: ``dashboard.views.map.MapView`` over an ``AppState`` of a prepared
session (synthetic 32-d catalogue, PCA map), the plot evaluated as Bokeh would ask for it (an
800x600 raster). Measured: a lasso of about 10^4 items -> ``label_selection`` (the store commits,
the shared table updates the changed rows) -> the recoloured raster; pan and zoom redraws (the
``RangeXY`` stream of the datashade operation, median of 5 ranges). At 10^7 the same view runs over
a map table of synthetic points (no session: the engine is not needed to draw a map).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import param

TARGET_LABEL_S = 1.0
TARGET_REDRAW = {1_000_000: 0.150, 10_000_000: 0.500}
WIDTH, HEIGHT = 800, 600


def _streams(view):
    from holoviews.core.spaces import get_nested_streams
    from holoviews.streams import PlotSize, RangeXY

    streams = get_nested_streams(view.plot)
    return ([s for s in streams if isinstance(s, RangeXY)],
            [s for s in streams if isinstance(s, PlotSize)])


def _raster(view):
    overlay = view.plot[()]
    return next(el for el in overlay if type(el).__name__ == "RGB")


def _redraws(view, xy: np.ndarray, repeats: int = 5) -> dict:
    ranges, sizes = _streams(view)
    for s in sizes:
        s.event(width=WIDTH, height=HEIGHT)
    lo, hi = np.percentile(xy, [1, 99], axis=0)
    t0 = time.perf_counter()
    _raster(view)
    first = time.perf_counter() - t0
    out = {"first_s": first}
    rng = np.random.default_rng(0)
    times = {"pan": [], "zoom": []}
    for i in range(repeats):
        for kind, span in (("pan", 1.0), ("zoom", 0.2)):
            w = (hi - lo) * span
            centre = lo + (hi - lo) * rng.uniform(0.3, 0.7, 2)
            x_range = (float(centre[0] - w[0] / 2), float(centre[0] + w[0] / 2))
            y_range = (float(centre[1] - w[1] / 2), float(centre[1] + w[1] / 2))
            for s in ranges:
                s.event(x_range=x_range, y_range=y_range)
            t0 = time.perf_counter()
            _raster(view)
            times[kind].append(time.perf_counter() - t0)
    out["pan_s"] = float(np.median(times["pan"]))
    out["zoom_s"] = float(np.median(times["zoom"]))
    for s in ranges:  # back to the full extent
        s.event(x_range=None, y_range=None)
    return out


def session_view(n: int, folder: Path) -> dict:
    """The real view over a real session of ``n`` items."""
    from benchmarks._scale_data import write_pool
    from benchmarks.scale import lasso_polygon
    from core.session import Session
    from dashboard.state import AppState
    from dashboard.views.map import MapView

    project = write_pool(folder, n, map_method="pca")
    t0 = time.perf_counter()
    session = Session.open(project)
    session.prepare()
    out = {"prepare_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    state = AppState(session, annotator="bench")
    view = MapView(state)
    out["view_s"] = time.perf_counter() - t0
    out.update(_redraws(view, state.xy))
    xs, ys = lasso_polygon(state.xy, fraction=10_000 / n, vertices=40)
    t0 = time.perf_counter()
    ids = state.select_lasso(xs, ys)
    out["lasso_s"], out["lasso_items"] = time.perf_counter() - t0, len(ids)
    t0 = time.perf_counter()
    state.label_selection("c9")
    out["label_commit_s"] = time.perf_counter() - t0
    image = _raster(view)
    out["label_to_recoloured_s"] = time.perf_counter() - t0
    alpha = image.dimension_values("A", flat=True)
    out["raster_nonempty"] = bool((alpha > 0).any())
    session.store.close()
    return out


class _MapOnly(param.Parameterized):
    """What MapView reads from an AppState, over a map table of synthetic points."""

    colour_by = param.Selector(default="label", objects=["label", "predicted", "uncertainty", "score"])
    labels_version = param.Integer(default=0)
    map_version = param.Integer(default=0)
    model_version = param.Integer(default=None, allow_None=True)
    queue_ids = param.List(default=[])
    queue_scores = param.List(default=[])
    selection = param.List(default=[])
    job = param.String(default="")

    def __init__(self, frame, classes, **params):
        super().__init__(**params)
        self.frame, self.xy, self._classes = frame, frame.xy, classes
        self.dataset = np.zeros(frame.n)

    @property
    def classes(self):
        return self._classes

    @property
    def rare_classes(self):
        return [c.name for c in self._classes if c.rare]

    def queue_rows(self):
        return np.empty(0, np.int64)

    def selected_rows(self):
        return np.empty(0, np.int64)


def map_only_view(n: int) -> dict:
    """The same view code over ``n`` synthetic points (10 classes, 10 % labelled)."""
    from core.mapframe import MapFrame
    from core.project import ClassConfig
    from dashboard.views.map import MapView

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (10, 2))
    k = rng.choice(10, n, p=0.6 ** np.arange(10) / (0.6 ** np.arange(10)).sum())
    xy = (centres[k] + rng.normal(0, 1, (n, 2))).astype(np.float32)
    ids = np.arange(n)
    t0 = time.perf_counter()
    classes = [ClassConfig(name=f"c{i}", colour=f"#{(37 * i) % 256:02x}{(91 * i) % 256:02x}a0",
                           rare=i >= 7) for i in range(10)]
    frame = MapFrame(ids, {}, xy, [c.name for c in classes])
    labelled = rng.random(n) < 0.1
    frame.columns["label"].codes[labelled] = k[labelled] + 1
    frame.version += 1
    out = {"table_s": time.perf_counter() - t0}
    view = MapView(_MapOnly(frame, classes), raster_threshold=0)
    out.update(_redraws(view, xy))
    return out


def run(session_sizes=(100_000, 1_000_000), map_only_sizes=(10_000_000,)) -> dict:
    from benchmarks._common import load_average

    results: dict = {}
    for n in session_sizes:
        with tempfile.TemporaryDirectory(prefix="tailwise-bench-view-") as tmp:
            results[n] = session_view(n, Path(tmp))
        results[n]["load"] = load_average()
        print(f"view {n:,}: {results[n]}", flush=True)
    for n in map_only_sizes:
        results[n] = map_only_view(n)
        results[n]["load"] = load_average()
        results[n]["map_only"] = True
        print(f"view {n:,} (map only): {results[n]}", flush=True)
    return results


def report(results: dict) -> str:
    from benchmarks._common import markdown_table

    sizes = sorted(results)
    ms = lambda v: f"{1000 * v:.0f} ms" if v < 10 else f"{v:.1f} s"  # noqa: E731
    def cell(n, key, fmt=ms):
        return fmt(results[n][key]) if key in results[n] else "-"
    rows = [
        ["what", *[f"{n:,}" + (" (map only)" if results[n].get("map_only") else "") for n in sizes]],
    ]
    body = [
        ["session prepared (Parquet read, tabular embedding, PCA map)", *[cell(n, "prepare_s") for n in sizes]],
        ["map table + view built", *[cell(n, "view_s") if "view_s" in results[n] else cell(n, "table_s") for n in sizes]],
        ["first raster (numba compilation in the process included)", *[cell(n, "first_s") for n in sizes]],
        ["pan redraw, full zoom level (median of 5)", *[cell(n, "pan_s") for n in sizes]],
        ["zoom redraw, 20 % x 20 % window (median of 5)", *[cell(n, "zoom_s") for n in sizes]],
        ["lasso (40 vertices) -> item ids", *[cell(n, "lasso_s") for n in sizes]],
        ["items in that lasso", *[str(results[n].get("lasso_items", "-")) for n in sizes]],
        ["label them: store committed + map table updated", *[cell(n, "label_commit_s") for n in sizes]],
        ["label them -> raster recoloured (server side)", *[cell(n, "label_to_recoloured_s") for n in sizes]],
        ["load average after", *[results[n]["load"] for n in sizes]],
    ]
    lines = [markdown_table(rows[0], body), ""]
    for n in sizes:
        if "label_to_recoloured_s" in results[n] and n >= 1_000_000:
            t = results[n]["label_to_recoloured_s"]
            lines.append(f"- Target: label a lasso of 10^4 items on a {n:,}-item map -> store committed "
                         f"-> map recoloured <= {TARGET_LABEL_S:.0f} s (server side): {t:.2f} s "
                         f"({results[n]['lasso_items']:,} items), {'met' if t <= TARGET_LABEL_S else '**missed**'}")
    for n, target in TARGET_REDRAW.items():
        if n in results:
            t = max(results[n]["pan_s"], results[n]["zoom_s"])
            lines.append(f"- Target: zoom/pan redraw <= {1000 * target:.0f} ms at {n:,} items: "
                         f"{1000 * t:.0f} ms (slower of pan and zoom), {'met' if t <= target else '**missed**'}")
    return "\n".join(lines)
