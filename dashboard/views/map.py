"""The map: every item at its 2-D position, coloured by label, prediction, uncertainty, ...

Below ``raster_threshold`` items the points are drawn by Bokeh (with hover). Above it the map is
HoloViews' own ``datashade`` + ``dynspread`` of the project's shared map table
(:class:`core.mapframe.MapFrame`): every pan/zoom re-aggregates on the server, a label or a retrain
rewrites only the changed rows' codes in that one table and bumps its version, and a tab redraws
only when the version it drew is stale (the periodic refresh costs nothing otherwise; the queue
and the selection are overlays and never re-send the raster). Box, lasso and tap selections arrive
as geometry (``BoundsXY``/``Lasso``/``Tap`` streams) and are mapped to item ids on the server by
the grid index in ``core.geometry``; the selection, the queue, labelled rare items and (when asked)
the predicted clusters' outlines are drawn as overlays on top.

While experts label, the Bokeh points are not redrawn: the points whose labels changed (in this tab
or another) are patched in the browser's data source (a few values per click instead of the whole
pool). They are redrawn in full only when what they show changes as a whole: the colouring, the
class colours, a model (when colouring by it), the queue (when colouring by score), a bulk action
or the map itself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.core.property.validation import without_property_validation

from core.clusters import cluster_outlines
from core.layout import COLOUR_BY, MapOptions
from dashboard.state import AppState, escape
from dashboard.streams import selection_streams
from dashboard.style import holoviews, html_pane, on_document

UNLABELLED = "#c8c8c8"
MAX_HIGHLIGHTS = 20_000
# Points are drawn on a plain canvas up to this many, with WebGL above. HoloViews draws with WebGL
# by default; without a GPU (a VM, a remote desktop, headless Chromium) the browser emulates it
# and copies the whole WebGL canvas onto the page at every repaint: with five tabs following
# each other's labels that copy was 60 % of each browser's CPU time (2,400 points), while a
# canvas repaints a few thousand points in a few milliseconds.
WEBGL_MIN_POINTS = 10_000
CONTINUOUS = ("uncertainty", "score")
MODEL_COLOURS = ("predicted", "uncertainty", "score", "cluster")  # redrawn when the model changes
# Point-table columns -> the names HoloViews gives them in the Bokeh data source.
# Columns of a drawn layer as HoloViews names them in its Bokeh source.
_LAYER_COLUMNS = {"rare_colour": "color", "score_colour": "color"}
_PATCHED = {"colour": "color", "line": "line_color", "size": "size", "shown_label": "shown_label"}
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


def _same(value):
    """Identity, bound to a parameter: how an operation argument follows that parameter."""
    return value


def colour_points(points: pd.DataFrame, colour_by: str, class_colours: dict[str, str]):
    """Colours for every point plus legend entries ``[(name, colour)]`` (or a value range)."""
    if colour_by in CONTINUOUS:
        values = np.asarray(points[colour_by], dtype=float)
        ok = np.isfinite(values)
        legend = [(f"{values[ok].min():.2f} – {values[ok].max():.2f}", "viridis")] if ok.any() else []
        return _viridis(values), legend
    column = np.asarray(points[colour_by]).astype(str).astype(object)
    if colour_by in ("label", "predicted"):
        mapping = dict(class_colours)
    else:
        names = sorted({v for v in column if v not in ("", "-1")}, key=lambda v: (len(v), v))
        mapping = {v: _CATEGORY_PALETTE[i % len(_CATEGORY_PALETTE)] for i, v in enumerate(names)}
    colours = np.array([mapping.get(v, UNLABELLED) for v in column], dtype=object)
    present = set(column.tolist())
    legend = [(name, colour) for name, colour in mapping.items() if name in present]
    return colours, legend


def _never_constant(table: pd.DataFrame) -> None:
    """Keep the styled columns varying: HoloViews sends a column whose values are all equal as
    one constant, and a constant cannot be patched later. The last point differs invisibly."""
    last = table.index[-1]
    if table["size"].nunique() == 1:
        table.loc[last, "size"] = table["size"].iloc[-1] + 1e-3
    for column in ("colour", "line"):
        if table[column].nunique() == 1:
            value = str(table[column].iloc[-1])
            table.loc[last, column] = value[:-1] + ("0" if value[-1] != "0" else "1")


class MapView(pn.viewable.Viewer):
    """The map with its colour-by control and legend. CSS class ``tw-map`` on the plot's box."""

    rendered = param.String(default="", doc="Colour-by of the last map drawn (for scripts/tests).")
    rendered_version = param.Integer(default=-1, doc="Map-table version of the last raster drawn.")
    aggregator = param.Parameter(default=None, doc="The raster's datashader reduction.")
    cmap = param.Parameter(default=None, doc="The raster's colour map.")
    clims = param.Parameter(default=None, doc="The values the colour map spans (None: the data's).")
    redraw = param.Integer(default=0, doc="Bumped to redraw the points in full.")
    patched = param.Integer(default=0, doc="Points patched in place so far (for scripts/tests).")
    layers_version = param.Integer(default=0, doc="Bumped to redraw the star and selection "
                                   "layers through HoloViews (first drawing, a moved map).")
    layer_updates = param.Integer(default=0, doc="Star/selection layers updated in place so far.")
    outline = param.Boolean(default=False, doc="Outline the predicted clusters (computed on "
                            "demand by the project's cluster method, again for each new model).")
    outlines_version = param.Integer(default=0, doc="Bumped to redraw the outlines.")
    outlines_drawn = param.Integer(default=0, doc="Outlines in the layer drawn last (for scripts/tests).")

    def __init__(self, state: AppState, options: MapOptions | None = None,
                 raster_threshold: int = 50_000, **params) -> None:
        super().__init__(**params)
        hv = holoviews()

        self.state = state
        self.options = options or MapOptions()
        if self.options.colour_by in COLOUR_BY and state.colour_by == "label":
            state.colour_by = self.options.colour_by
        self.rasterised = len(state.dataset) > raster_threshold
        self._source = None  # the Bokeh data source of the drawn points (for patching)
        self._drawn_xy = state.xy
        if self.rasterised:
            base = self._raster_map()
        else:
            base = hv.DynamicMap(pn.bind(self._points, state.param.colour_by,
                                         state.param.classes_version, self.param.redraw))
            state.param.watch(self._on_changes, "changes")
            state.param.watch(self._on_summary, "labels_version")
            state.param.watch(self._on_model, "model_version")
            state.param.watch(self._on_queue, "queue_ids")
            state.param.watch(self._on_map_moved, "map_version")
        self.bounds, self.lasso, self.tap = selection_streams(
            base, self._on_bounds, self._on_lasso, self._on_tap)
        # The star and selection layers are drawn by HoloViews once (and when the map moves),
        # then kept up to date by replacing their Bokeh sources' columns: a refresh of the whole
        # overlay costs tens of milliseconds per tab, and every label of every tab would ask one.
        # Stars change only when a changed item is, or was, labelled with a rare class.
        self._layer_sources: dict[str, Any] = {}
        self._rare_rows = np.empty(0, dtype=np.int64)  # rows the stars are drawn at
        self._layers_xy = state.xy
        state.param.watch(self._rare_changes, "changes")
        state.param.watch(lambda *_: self._update_layer("rare", self._rare_frame()), "classes_version")
        state.param.watch(lambda *_: self._update_layer("selected", self._selected_frame()), "selection")
        if self.options.highlight_queue:  # every tab's queue changes with every new model
            state.param.watch(lambda *_: self._update_layer("queue", self._queue_frame()), "queue_ids")
        state.param.watch(self._layers_moved, "map_version")
        self.outline = self.options.outline_clusters
        self._outlines_asked = self._outline_inputs()  # what the outline layer was last asked to show
        self.param.watch(self._outlines_changed, "outline")  # at once (off needs no clusters)
        self.param.watch(self._want_outlines, "outline")
        state.param.watch(self._want_outlines, "model_version")
        state.param.watch(self._outlines_changed, ["cluster_state", "map_version"])
        if self.outline and pn.state.curdoc is not None:  # a layout that shows them from the start
            pn.state.onload(self._want_outlines)
        overlay = base * hv.DynamicMap(pn.bind(self._outlines, self.param.outlines_version))
        overlay = overlay * hv.DynamicMap(pn.bind(self._rare, self.param.layers_version))
        if self.options.highlight_queue:
            overlay = overlay * hv.DynamicMap(pn.bind(self._queue, state.param.colour_by,
                                                      self.param.layers_version))
        overlay = overlay * hv.DynamicMap(pn.bind(self._selected, self.param.layers_version))
        backend = "webgl" if len(state.dataset) >= WEBGL_MIN_POINTS else "canvas"
        self.plot = overlay.opts(
            hv.opts.Overlay(responsive=True, height=self.options.height, show_legend=False,
                            xaxis=None, yaxis=None, toolbar="above",
                            backend_opts={"plot.output_backend": backend}),
        )
        self.pane = pn.pane.HoloViews(self.plot, sizing_mode="stretch_width",
                                      height=self.options.height, linked_axes=False)

    # ------------------------------------------------------------------ layers
    def _table(self) -> pd.DataFrame:
        return self.state.points(annotators=self.state.colour_by == "annotator")

    def _class_colours(self) -> dict[str, str]:
        return {c.name: c.colour for c in self.state.classes}

    def _style(self, table: pd.DataFrame, colour_by: str) -> pd.DataFrame:
        """Add the drawn columns (colour, size, outline, hover text) to a point table."""
        for name, values in self._styled(table, colour_by).items():
            table[name] = values
        if len(table) > 1:
            _never_constant(table)
        return table

    def _styled(self, table, colour_by: str) -> dict[str, np.ndarray]:
        """The drawn columns of a point table (or of a mapping with its ``label``, ``predicted``
        and ``rare`` columns, which is how a few changed points are restyled without pandas)."""
        colour, _ = colour_points(table, colour_by, self._class_colours())
        rare = np.asarray(table["rare"], dtype=bool) & self.options.emphasise_rare
        size = np.full(len(colour), float(self.options.point_size))
        size[colour == UNLABELLED] *= 0.7
        size[rare] *= 1.6
        dash = lambda values: np.where(np.asarray(values) == "", "–", values).astype(object)  # noqa: E731
        return {"colour": colour, "size": size, "line": np.where(rare, "#222222", colour).astype(object),
                "shown_label": dash(table["label"]), "shown_predicted": dash(table["predicted"])}

    def _points(self, colour_by, *_):
        hv = holoviews()

        table = self._style(self._table(), colour_by)
        self.rendered = colour_by
        self._drawn_xy = self.state.xy
        vdims = ["id", "shown_label", "shown_predicted", "uncertainty", "colour", "size", "line"]
        return hv.Points(table, kdims=["x", "y"], vdims=vdims).opts(
            color="colour", size="size", line_color="line", alpha=0.85, nonselection_alpha=0.85,
            selection_alpha=0.85, selection_color="colour",
            tools=["hover", "box_select", "lasso_select", "tap"], active_tools=["box_select", "wheel_zoom"],
            hover_tooltips=[("id", "@id"), ("label", "@shown_label"), ("prediction", "@shown_predicted"),
                            ("uncertainty", "@uncertainty{0.00}")],
            hooks=[self._keep_source],
        )

    def _keep_source(self, plot, element) -> None:
        """HoloViews hook: keep the points' Bokeh data source, to patch changed points into it."""
        self._source = plot.handles.get("source")

    # ------------------------------------------------------------------ keeping up with labels
    def _on_changes(self, *_):
        """Recolour just the points whose labels changed (colouring by label)."""
        items = self.state.last_changed
        if self.state.colour_by != "label":
            return
        if items is None or self._source is None:
            self.redraw += 1  # a bulk action, or nothing drawn yet
            return
        dataset = self.state.dataset
        rows = dataset.positions([i for i in items if dataset.has(i)])
        if not len(rows):
            return
        # From the shared map table (already up to date), not a point table: a few rows of it
        # cost microseconds, and every tab restyles the points every label of every tab changes.
        frame = self.state.frame
        label, predicted = frame.values("label", rows), frame.values("predicted", rows)
        rare = set(self.state.rare_classes)
        shown = np.where(label != "", label, predicted)
        table = self._styled({"label": label, "predicted": predicted,
                              "rare": np.fromiter((s in rare for s in shown), bool, len(rows))}, "label")
        data = self._source.data
        if any(key not in data for key in ("color", "line_color", "size")):
            self.redraw += 1  # a column that was constant is a scalar, not a column: redraw
            return
        patch = {key: [(int(r), v) for r, v in zip(rows, table[column].tolist())]
                 for column, key in _PATCHED.items() if key in data}
        source = self._source
        # Bokeh would validate the whole data source (every point) after each patch: the patch
        # holds our own colours and sizes, so it is applied unvalidated.
        on_document(source, without_property_validation(lambda: source.patch(patch)))
        self.patched += len(rows)

    def _on_summary(self, *_):
        if self.state.colour_by in ("annotator", "cluster"):
            self.redraw += 1  # who labelled what, new clusters: redrawn at the summaries' pace

    def _on_model(self, *_):
        if self.state.colour_by in MODEL_COLOURS:
            self.redraw += 1

    def _on_queue(self, *_):
        if self.state.colour_by == "score":
            self.redraw += 1

    def _on_map_moved(self, *_):
        if self.state.xy is not self._drawn_xy:  # the map was recomputed
            self.redraw += 1

    # ------------------------------------------------------------------ the raster
    def _raster_map(self):
        """``dynspread(datashade(points))`` over the shared table, redrawn when its version moves."""
        from holoviews.operation.datashader import datashade, dynspread

        hv = holoviews()
        self._shade(self.state.colour_by)
        self.state.param.watch(lambda e: self._shade(e.new), "colour_by")
        self.state.param.watch(lambda e: self._shade(self.state.colour_by), "classes_version")
        self.state.param.watch(self._categories_grew, "map_version")
        points = hv.DynamicMap(self._frame_points, streams=[hv.streams.Params(self.state, ["map_version"])])
        shaded = datashade(points, aggregator=pn.bind(_same, self.param.aggregator),
                           cmap=pn.bind(_same, self.param.cmap), cnorm="linear",
                           clims=pn.bind(_same, self.param.clims), precompute=True)
        spread = dynspread(shaded, threshold=0.5, max_px=3)
        return spread.apply(self._drawn).opts(
            tools=["box_select", "lasso_select", "tap"], active_tools=["box_select", "wheel_zoom"])

    def _frame_points(self, map_version: int):
        hv = holoviews()

        table = self.state.frame.table()
        return hv.Points(table, kdims=["x", "y"], vdims=[c for c in table.columns if c not in "xy"])

    def _drawn(self, element):
        self.param.update(rendered=self.state.colour_by, rendered_version=self.state.map_version)
        return element

    def _shade(self, colour_by: str) -> None:
        """The reduction and colours of the raster for ``colour_by``.

        Categories are drawn by the largest category code in each pixel (labelled above
        unlabelled, then in class order) through a stepped colour map: the same picture as the
        points drawn in that order, at a fraction of the cost of blending every category's counts
        (about 40 ms instead of 150 ms for an 800x600 raster of 11 categories).
        """
        import datashader as ds

        frame = self.state.frame
        if colour_by == "annotator" and not frame.annotators_loaded:
            _, latest = self.state.session.store.changes_since(0)
            frame.load_annotators({i: who for i, (lab, who) in latest.items() if lab is not None})
        if colour_by in frame.columns:
            self._categories = (colour_by, tuple(frame.columns[colour_by].categories))
            colours = list(self._colour_key(colour_by).values())
            top = max(len(colours) - 1, 1)
            stepped = [colours[min(int(round(b / 255 * top)), len(colours) - 1)] for b in range(256)]
            self.param.update(aggregator=ds.max(f"{colour_by}_code"), cmap=stepped, clims=(0, top))
        elif colour_by == "uncertainty":
            from bokeh.palettes import Viridis256

            self._categories = None
            self.param.update(aggregator=ds.mean("uncertainty"), cmap=list(Viridis256), clims=None)
        else:  # "score": the queue overlay carries the colours; the pool stays grey
            self._categories = None
            self.param.update(aggregator=ds.count(), cmap=[UNLABELLED, UNLABELLED], clims=None)

    def _colour_key(self, column: str) -> dict[str, str]:
        names = self.state.frame.columns[column].categories
        if column in ("label", "predicted"):
            colours = self._class_colours()
            return {n: colours.get(n, UNLABELLED) for n in names}
        others = sorted((n for n in names if n.strip() and n != "-1"), key=lambda v: (len(v), v))
        key = {n: _CATEGORY_PALETTE[i % len(_CATEGORY_PALETTE)] for i, n in enumerate(others)}
        return {n: key.get(n, UNLABELLED) for n in names}

    def _categories_grew(self, _event) -> None:
        """A new class (or annotator, cluster) appeared: extend the colour key."""
        if self._categories is None:
            return
        column, known = self._categories
        if tuple(self.state.frame.columns[column].categories) != known:
            self._shade(column)

    def _rare_frame(self) -> pd.DataFrame:
        """Stars at the items labelled with a rare class (an even subsample of many), after two
        undrawn rows (no position) in two colours: HoloViews then always sends the colours as
        a column, so the layer keeps one shape and can be updated in place."""
        rows = np.empty(0, dtype=np.int64)
        if self.options.emphasise_rare:
            table = self.state.frame
            rows = table.rows_in("label", self.state.rare_classes)
            if len(rows) > MAX_HIGHLIGHTS:  # many rare labels are marked by an even subsample
                rows = rows[np.linspace(0, len(rows) - 1, MAX_HIGHLIGHTS).astype(np.int64)]
        self._rare_rows = rows
        colours = self._class_colours()
        column = self.state.frame.columns["label"]
        names = np.asarray(column.categories, dtype=object)[column.codes[rows]]
        return pd.DataFrame({"x": np.r_[np.nan, np.nan, self.state.xy[rows, 0]],
                             "y": np.r_[np.nan, np.nan, self.state.xy[rows, 1]],
                             "rare_colour": ["#000000", "#000001",
                                             *(colours.get(str(n), UNLABELLED) for n in names)]})

    def _rare(self, *_):
        hv = holoviews()

        return hv.Points(self._rare_frame(), kdims=["x", "y"], vdims=["rare_colour"]).opts(
            marker="star", size=self.options.point_size * 2.6, color="rare_colour", line_color="#111111",
            line_width=1, tools=[], hooks=[self._keep_layer("rare")])

    def _keep_layer(self, name: str):
        """HoloViews hook: keep a layer's Bokeh data source, to update it in place."""
        def keep(plot, element) -> None:
            self._layer_sources[name] = plot.handles.get("source")
        return keep

    def _update_layer(self, name: str, frame: pd.DataFrame) -> None:
        """Replace the columns of layer ``name``'s Bokeh source (on the document's next tick), or
        redraw the layers through HoloViews when nothing is drawn yet or the columns differ."""
        source = self._layer_sources.get(name)
        data = {_LAYER_COLUMNS.get(c, c): frame[c].to_numpy() for c in frame.columns}
        if source is None or set(source.data) != set(data):
            self.layers_version += 1
            return
        on_document(source, without_property_validation(lambda: setattr(source, "data", data)))
        self.layer_updates += 1

    def _layers_moved(self, *_) -> None:
        if self.state.xy is not self._layers_xy:  # the map was recomputed: new positions
            self._layers_xy = self.state.xy
            self.layers_version += 1

    def _rare_changes(self, *_) -> None:
        """Update the stars only when one of the changed items is rare now or was drawn as rare."""
        items = self.state.last_changed
        if items is not None:
            dataset = self.state.dataset
            rows = dataset.positions([i for i in items if dataset.has(i)])
            rare = set(self.state.rare_classes)
            names = self.state.frame.values("label", rows)
            if not any(str(n) in rare for n in names) and not np.isin(rows, self._rare_rows).any():
                return
        self._update_layer("rare", self._rare_frame())

    # ------------------------------------------------------------------ cluster outlines
    def _outline_inputs(self) -> tuple:
        clusters = self.state.shown_clusters if self.outline else None
        return (self.outline, id(self.state.xy), None if clusters is None else id(clusters.assignment))

    def _outlines_changed(self, *_) -> None:
        """Redraw the outlines only when what they show changed: the toggle, the clusters or the
        map's positions (the map table's version also moves with every label)."""
        inputs = self._outline_inputs()
        if inputs != self._outlines_asked:
            self._outlines_asked = inputs
            self.outlines_version += 1

    async def _want_outlines(self, *_) -> None:
        """Outlines asked for (or a new model while they are shown): compute the clusters on the
        work pool first when this tab has none for its model."""
        if self.outline and self.state.shown_clusters is None and self.state.cluster_state != "computing":
            try:
                await self.state.clusters_async()
            except Exception as err:  # noqa: BLE001  (cluster_state and the error say why)
                self.state.error = f"clustering failed: {err}"
        self._outlines_changed()

    def _outlines(self, *_):
        hv = holoviews()

        clusters = self.state.shown_clusters if self.outline else None
        rings = [] if clusters is None else cluster_outlines(self.state.xy, clusters.assignment)
        self.outlines_drawn = len(rings)
        return hv.Path([{"x": o.polygon[:, 0], "y": o.polygon[:, 1]} for o in rings]).opts(
            color="#333333", line_width=1.5, line_dash="dashed", alpha=0.8, tools=[])

    def _queue_frame(self) -> pd.DataFrame:
        """The queued items' positions (and, on a raster coloured by score, their colours)."""
        rows = self.state.queue_rows()
        frame = pd.DataFrame({"x": self.state.xy[rows, 0], "y": self.state.xy[rows, 1]})
        if self.rasterised and self.state.colour_by == "score":
            # The raster is grey then: the queued items carry the query-score colours.
            frame["score_colour"] = _viridis(np.asarray(self.state.queue_scores, dtype=float))
        return frame

    def _queue(self, *_):
        """The queue's rings, drawn by HoloViews once (and when the colouring or the map
        changes); a new batch replaces their source's columns in place."""
        hv = holoviews()

        frame = self._queue_frame()
        if "score_colour" in frame:
            return hv.Points(frame, kdims=["x", "y"], vdims=["score_colour"]).opts(
                marker="circle", size=self.options.point_size * 3, color="score_colour",
                line_color="#ff7f0e", line_width=2, tools=[], hooks=[self._keep_layer("queue")])
        return hv.Points(frame, kdims=["x", "y"]).opts(
            marker="circle", size=self.options.point_size * 3, fill_alpha=0, line_color="#ff7f0e",
            line_width=2, line_dash="dashed", tools=[], hooks=[self._keep_layer("queue")])

    def _selected_frame(self) -> pd.DataFrame:
        rows = self.state.selected_rows()
        if len(rows) > MAX_HIGHLIGHTS:  # a huge selection is outlined by an even subsample
            rows = rows[np.linspace(0, len(rows) - 1, MAX_HIGHLIGHTS).astype(np.int64)]
        return pd.DataFrame({"x": self.state.xy[rows, 0], "y": self.state.xy[rows, 1]})

    def _selected(self, *_):
        hv = holoviews()

        return hv.Points(self._selected_frame(), kdims=["x", "y"]).opts(
            marker="circle", size=self.options.point_size * 2.4, fill_alpha=0, line_color="#d62728",
            line_width=2.5, tools=[], hooks=[self._keep_layer("selected")])

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
    def _legend_entries(self, colour_by: str) -> list[tuple[str, str]]:
        """Legend entries from the shared table's category counts (no point table), except for
        annotators in the points view (who labelled what is read only when asked)."""
        frame = self.state.frame
        if colour_by == "annotator" and not frame.annotators_loaded:
            return colour_points(self._table(), colour_by, self._class_colours())[1]
        if colour_by in frame.columns:
            key = self._colour_key(colour_by)
            present = frame.counts(colour_by)
            names = [c for c in key if c.strip() and c in present and c != "-1"]
            if colour_by in ("label", "predicted"):  # in the class order of the schema
                order = {c.name: i for i, c in enumerate(self.state.classes)}
                names.sort(key=lambda n: order.get(n, len(order)))
            return [(n, key[n]) for n in names]
        values = (self.state.frame.uncertainty if colour_by == "uncertainty"
                  else np.asarray(self.state.queue_scores, dtype=float))
        ok = np.isfinite(values)
        return [(f"{values[ok].min():.2f} – {values[ok].max():.2f}", "viridis")] if ok.any() else []

    def _legend(self, colour_by, *_):
        legend = self._legend_entries(colour_by)
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
        shown = len(self.state.dataset)
        pool = getattr(self.state.dataset, "pool_size", None)
        count = (f"{shown:,} of {pool:,} items: a sample plus every labelled item "
                 "(tailwise score scores them all)" if pool else f"{shown:,} items")
        return (f'<div class="tw-legend">{body}{extra}'
                f'<span class="tw-legend-mode">{count} · {mode}</span></div>')

    def __panel__(self):
        colour = pn.widgets.Select.from_param(
            self.state.param.colour_by, label="Colour by", width=180,
            css_classes=["tw-colour-by"])
        colour.options = {COLOUR_NAMES[c]: c for c in COLOUR_BY}
        selection = pn.bind(lambda sel: f'<span class="tw-selection-count" data-count="{len(sel)}">'
                                        f"<b>{len(sel)}</b> selected</span>", self.state.param.selection)
        legend = html_pane(pn.bind(self._legend, self.state.param.colour_by,
                                   self.state.param.labels_version, self.state.param.classes_version,
                                   self.state.param.model_version, self.state.param.queue_scores),
                           sizing_mode="stretch_width")
        recompute = pn.widgets.Button(
            label="Recompute map", css_classes=["tw-recompute-map"], color="light", width=130,
            description="Project the current embedding again (the map otherwise stays put)",
            disabled=self.state.param.job.rx() != "")
        recompute.on_click(self._recompute)
        outline = pn.widgets.Checkbox.from_param(self.param.outline, name="Outline clusters",
                                                 css_classes=["tw-outline-clusters"], width=140,
                                                 align="center")
        return pn.Column(
            # Wraps instead of overflowing into the next card on a narrow map (a laptop screen).
            pn.FlexBox(colour, html_pane(selection, width=110), outline, recompute,
                       align_items="center", flex_wrap="wrap", gap="0 16px",
                       sizing_mode="stretch_width"),
            pn.Column(self.pane, css_classes=["tw-map"], sizing_mode="stretch_width"),
            legend,
            html_pane(pn.bind(
                lambda c, v: (f'<span class="tw-map-rendered" data-colour-by="{escape(c)}" '
                              f'data-version="{int(v)}" hidden></span>'),
                self.param.rendered, self.param.rendered_version), height=0, margin=0),
            html_pane(pn.bind(lambda n: f'<span class="tw-map-outlines" data-count="{int(n)}" hidden></span>',
                              self.param.outlines_drawn), height=0, margin=0),
            sizing_mode="stretch_width",
        )
