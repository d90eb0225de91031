"""The map: every item at its 2-D position, coloured by label, prediction, uncertainty, ...

Below ``raster_threshold`` items the points are drawn by Bokeh (with hover); above it the server
rasterises them with datashader for each pan/zoom. Either way box, lasso and tap selections arrive
as geometry (``BoundsXY``/``Lasso``/``Tap`` streams) and are mapped to item ids on the server by
the grid index in ``core.geometry``; the selection, the queue and labelled rare items are drawn as
overlays on top.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn
import param

from core.layout import COLOUR_BY, MapOptions
from dashboard.state import AppState, escape
from dashboard.style import holoviews, html_pane

UNLABELLED = "#c8c8c8"
MAX_HIGHLIGHTS = 20_000
CONTINUOUS = ("uncertainty", "score")
COLOUR_NAMES = {
    "label": "current label", "predicted": "predicted class", "uncertainty": "uncertainty",
    "score": "query score", "cluster": "predicted cluster", "annotator": "annotator",
}
_CATEGORY_PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#17becf",
)


def _viridis(values: np.ndarray) -> np.ndarray:
    from bokeh.palettes import Viridis256

    out = np.full(len(values), UNLABELLED, dtype=object)
    ok = np.isfinite(values)
    if ok.any():
        lo, hi = float(values[ok].min()), float(values[ok].max())
        scaled = (values[ok] - lo) / (hi - lo) if hi > lo else np.full(ok.sum(), 0.5)
        out[ok] = np.asarray(Viridis256, dtype=object)[np.clip((scaled * 255).astype(int), 0, 255)]
    return out


def colour_points(points: pd.DataFrame, colour_by: str, class_colours: dict[str, str]):
    """Colours for every point plus legend entries ``[(name, colour)]`` (or a value range)."""
    if colour_by in CONTINUOUS:
        values = points[colour_by].to_numpy(dtype=float)
        ok = np.isfinite(values)
        legend = [(f"{values[ok].min():.2f} – {values[ok].max():.2f}", "viridis")] if ok.any() else []
        return _viridis(values), legend
    column = points[colour_by].astype(str).to_numpy(dtype=object)
    if colour_by in ("label", "predicted"):
        mapping = dict(class_colours)
    else:
        names = sorted({v for v in column if v not in ("", "-1")}, key=lambda v: (len(v), v))
        mapping = {v: _CATEGORY_PALETTE[i % len(_CATEGORY_PALETTE)] for i, v in enumerate(names)}
    colours = np.array([mapping.get(v, UNLABELLED) for v in column], dtype=object)
    present = set(column.tolist())
    legend = [(name, colour) for name, colour in mapping.items() if name in present]
    return colours, legend


class MapView(pn.viewable.Viewer):
    """The map with its colour-by control and legend. CSS class ``tw-map`` on the plot's box."""

    rendered = param.String(default="", doc="Colour-by of the last map drawn (for scripts/tests).")

    def __init__(self, state: AppState, options: MapOptions | None = None,
                 raster_threshold: int = 50_000, **params) -> None:
        super().__init__(**params)
        hv = holoviews()

        self.state = state
        self.options = options or MapOptions()
        if self.options.colour_by in COLOUR_BY and state.colour_by == "label":
            state.colour_by = self.options.colour_by
        self.rasterised = len(state.dataset) > raster_threshold
        self._raster_cache: tuple | None = None
        watch = [state.param.colour_by, state.param.labels_version, state.param.queue_ids,
                 state.param.model_version]
        if self.rasterised:
            self._range = hv.streams.RangeXY()
            base = hv.DynamicMap(pn.bind(self._raster, *watch), streams=[self._range])
        else:
            base = hv.DynamicMap(pn.bind(self._points, *watch))
        self.bounds = hv.streams.BoundsXY(source=base)
        self.lasso = hv.streams.Lasso(source=base)
        self.tap = hv.streams.Tap(source=base)
        self.bounds.add_subscriber(self._on_bounds)
        self.lasso.add_subscriber(self._on_lasso)
        self.tap.add_subscriber(self._on_tap)
        overlay = base * hv.DynamicMap(pn.bind(self._rare, state.param.labels_version))
        if self.options.highlight_queue:
            overlay = overlay * hv.DynamicMap(pn.bind(self._queue, state.param.queue_ids))
        overlay = overlay * hv.DynamicMap(pn.bind(self._selected, state.param.selection))
        self.plot = overlay.opts(
            hv.opts.Overlay(responsive=True, height=self.options.height, show_legend=False,
                            xaxis=None, yaxis=None, toolbar="above"),
        )
        self.pane = pn.pane.HoloViews(self.plot, sizing_mode="stretch_width",
                                      height=self.options.height, linked_axes=False)

    # ------------------------------------------------------------------ layers
    def _table(self) -> pd.DataFrame:
        return self.state.points(annotators=self.state.colour_by == "annotator")

    def _class_colours(self) -> dict[str, str]:
        return {c.name: c.colour for c in self.state.classes}

    def _points(self, colour_by, *_):
        hv = holoviews()

        table = self._table()
        table["colour"], _ = colour_points(table, colour_by, self._class_colours())
        self.rendered = colour_by
        unlabelled = table["colour"].to_numpy() == UNLABELLED
        size = np.full(len(table), float(self.options.point_size))
        size[unlabelled] *= 0.7
        if self.options.emphasise_rare:
            size[table["rare"].to_numpy()] *= 1.6
        table["size"] = size
        table["line"] = np.where(table["rare"] & self.options.emphasise_rare, "#222222", table["colour"])
        table["shown_label"] = table["label"].replace("", "–")
        table["shown_predicted"] = table["predicted"].replace("", "–")
        vdims = ["id", "shown_label", "shown_predicted", "uncertainty", "colour", "size", "line"]
        return hv.Points(table, kdims=["x", "y"], vdims=vdims).opts(
            color="colour", size="size", line_color="line", alpha=0.85, nonselection_alpha=0.85,
            selection_alpha=0.85, selection_color="colour",
            tools=["hover", "box_select", "lasso_select", "tap"], active_tools=["box_select", "wheel_zoom"],
            hover_tooltips=[("id", "@id"), ("label", "@shown_label"), ("prediction", "@shown_predicted"),
                            ("uncertainty", "@uncertainty{0.00}")],
        )

    def _raster_table(self, key: tuple) -> pd.DataFrame:
        """x, y and a categorical colour per point; rebuilt only when colours change, not on zoom."""
        if self._raster_cache is None or self._raster_cache[0] != key:
            table = self._table()
            colours, _ = colour_points(table, key[0], self._class_colours())
            frame = pd.DataFrame({"x": table["x"], "y": table["y"], "colour": pd.Categorical(colours)})
            self._raster_cache = (key, frame)
        return self._raster_cache[1]

    def _raster(self, colour_by, *args, x_range=None, y_range=None):
        import datashader as ds
        import datashader.transfer_functions as tf
        hv = holoviews()

        table = self._raster_table((colour_by, *map(str, args)))
        self.rendered = colour_by
        xy = self.state.xy
        pad = lambda lo, hi: (lo - 0.02 * (hi - lo + 1e-9), hi + 0.02 * (hi - lo + 1e-9))
        x_range = tuple(x_range) if x_range else pad(xy[:, 0].min(), xy[:, 0].max())
        y_range = tuple(y_range) if y_range else pad(xy[:, 1].min(), xy[:, 1].max())
        canvas = ds.Canvas(plot_width=800, plot_height=600, x_range=x_range, y_range=y_range)
        agg = canvas.points(table, "x", "y", agg=ds.count_cat("colour"))
        key = {c: c for c in table["colour"].cat.categories}
        image = tf.dynspread(tf.shade(agg, color_key=key, min_alpha=60), threshold=0.5, max_px=3)
        bounds = (x_range[0], y_range[0], x_range[1], y_range[1])
        rgba = np.flipud(image.to_numpy().view(np.uint8).reshape(image.shape + (4,)))
        return hv.RGB(rgba, bounds=bounds, vdims=list("RGBA")).opts(
            tools=["box_select", "lasso_select", "tap"], active_tools=["box_select", "wheel_zoom"])

    def _rare(self, *_):
        hv = holoviews()

        if not self.options.emphasise_rare:
            return hv.Points([], kdims=["x", "y"])
        labels = self.state.session.labels_by_row()
        rare = self.state.rare_classes
        rows = np.flatnonzero(np.isin(labels.astype(str), rare)) if rare else np.empty(0, int)
        colours = self._class_colours()
        frame = pd.DataFrame({"x": self.state.xy[rows, 0], "y": self.state.xy[rows, 1],
                              "rare_colour": [colours.get(str(labels[r]), UNLABELLED) for r in rows]})
        return hv.Points(frame, kdims=["x", "y"], vdims=["rare_colour"]).opts(
            marker="star", size=self.options.point_size * 2.6, color="rare_colour", line_color="#111111",
            line_width=1, tools=[])

    def _queue(self, *_):
        hv = holoviews()

        rows = self.state.queue_rows()
        return hv.Points(self.state.xy[rows], kdims=["x", "y"]).opts(
            marker="circle", size=self.options.point_size * 3, fill_alpha=0, line_color="#ff7f0e",
            line_width=2, line_dash="dashed", tools=[])

    def _selected(self, *_):
        hv = holoviews()

        rows = self.state.selected_rows()
        if len(rows) > MAX_HIGHLIGHTS:  # a huge selection is outlined by an even subsample
            rows = rows[np.linspace(0, len(rows) - 1, MAX_HIGHLIGHTS).astype(np.int64)]
        return hv.Points(self.state.xy[rows], kdims=["x", "y"]).opts(
            marker="circle", size=self.options.point_size * 2.4, fill_alpha=0, line_color="#d62728",
            line_width=2.5, tools=[])

    # ------------------------------------------------------------------ selection streams
    def _on_bounds(self, bounds=None, **_):
        if bounds is not None:
            self.state.select_box(*bounds)

    def _on_lasso(self, geometry=None, **_):
        if geometry is not None and len(geometry) >= 3:
            geometry = np.asarray(geometry, dtype=float)
            self.state.select_lasso(geometry[:, 0], geometry[:, 1])

    def _on_tap(self, x=None, y=None, **_):
        if x is not None and y is not None:
            self.state.select_tap(x, y)

    async def _recompute(self, _event) -> None:
        await self.state.recompute_map_async()

    # ------------------------------------------------------------------ layout
    def _legend(self, colour_by, *_):
        _, legend = colour_points(self._table(), colour_by, self._class_colours())
        rare = set(self.state.rare_classes)
        if colour_by in CONTINUOUS:
            body = "".join(
                f'<span class="tw-legend-item">{escape(COLOUR_NAMES[colour_by])}: {escape(text)} '
                '<span class="tw-gradient"></span></span>' for text, _ in legend)
        else:
            body = "".join(
                f'<span class="tw-legend-item{" tw-rare" if name in rare else ""}">'
                f'<span class="tw-swatch" style="background:{escape(colour)}"></span>'
                f'{escape(name)}{" ★" if name in rare else ""}</span>'
                for name, colour in legend)
        extra = ('<span class="tw-legend-item"><span class="tw-ring tw-ring-queue"></span>queued</span>'
                 '<span class="tw-legend-item"><span class="tw-ring"></span>selected</span>')
        mode = "rasterised" if self.rasterised else "points"
        return (f'<div class="tw-legend">{body}{extra}'
                f'<span class="tw-legend-mode">{len(self.state.dataset):,} items · {mode}</span></div>')

    def __panel__(self):
        colour = pn.widgets.Select.from_param(
            self.state.param.colour_by, label="Colour by", width=180,
            css_classes=["tw-colour-by"])
        colour.options = {COLOUR_NAMES[c]: c for c in COLOUR_BY}
        selection = pn.bind(lambda sel: f'<span class="tw-selection-count" data-count="{len(sel)}">'
                                        f"<b>{len(sel)}</b> selected</span>", self.state.param.selection)
        legend = html_pane(pn.bind(self._legend, self.state.param.colour_by,
                                      self.state.param.labels_version), sizing_mode="stretch_width")
        recompute = pn.widgets.Button(
            label="Recompute map", css_classes=["tw-recompute-map"], color="light", width=130,
            description="Project the current embedding again (the map otherwise stays put)",
            disabled=self.state.param.job.rx() != "")
        recompute.on_click(self._recompute)
        return pn.Column(
            pn.Row(colour, html_pane(selection, width=160), pn.HSpacer(), recompute,
                   align="center", sizing_mode="stretch_width"),
            pn.Column(self.pane, css_classes=["tw-map"], sizing_mode="stretch_width"),
            legend,
            html_pane(self.param.rendered.rx().rx.pipe(
                lambda c: f'<span class="tw-map-rendered" data-colour-by="{escape(c)}" hidden></span>'),
                height=0, margin=0),
            sizing_mode="stretch_width",
        )
