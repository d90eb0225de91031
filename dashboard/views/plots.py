"""Domain plots from the layout file (scatter / line / histogram of any columns, or a plugin view),
coloured by label or prediction, with selection linked both ways with the map.

Linking uses the same server-side geometry as the map: box, lasso and tap arrive as geometry
(HoloViews streams) and a grid index (``core.geometry.PointIndex``, over the plot's own axes
scaled to [0, 1]) turns them into rows, which become the session's selection; every view draws
that selection. Items whose plotted values are missing (NaN) are left out of the plot.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import panel as pn

from core.errors import ConfigError
from core.geometry import PointIndex
from dashboard.state import AppState, escape
from dashboard.streams import selection_streams
from dashboard.style import holoviews, html_pane

NO_COLOUR = "#4e79a7"
SELECTED = "#d62728"


def selection_digest(ids) -> str:
    """A short digest of a set of item ids (order-free), for pages and tests to compare."""
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]


def numeric_columns(state: AppState) -> list[str]:
    return state.dataset.numeric_columns()


class LinkedPlot(pn.viewable.Viewer):
    """A plot over (x, y) values per row whose box / lasso / tap selections select those rows,
    and which rings the session's selection. Subclasses give ``_element()``."""

    def __init__(self, state: AppState, title: str, x: np.ndarray, y: np.ndarray | None,
                 height: int = 360, x_only: bool = False, **params) -> None:
        super().__init__(**params)
        hv = holoviews()
        self.state = state
        self.title = title
        self.height = height
        self.x = np.asarray(x, dtype=np.float64)
        self.y = np.zeros_like(self.x) if y is None else np.asarray(y, dtype=np.float64)
        self.x_only = x_only
        self.rows = np.flatnonzero(np.isfinite(self.x) & np.isfinite(self.y))
        lo = np.array([self.x[self.rows].min(), self.y[self.rows].min()]) if len(self.rows) else np.zeros(2)
        hi = np.array([self.x[self.rows].max(), self.y[self.rows].max()]) if len(self.rows) else np.ones(2)
        self._lo, self._span = lo, np.where(hi > lo, hi - lo, 1.0)
        self.index = PointIndex(self._scaled(self.x[self.rows], self.y[self.rows]))
        base = hv.DynamicMap(pn.bind(self._element, state.param.labels_version,
                                     state.param.model_version))
        if x_only:
            self.bounds = hv.streams.BoundsX(source=base)
            self.bounds.add_subscriber(self._on_bounds_x)
        else:
            self.bounds, self.lasso, self.tap = selection_streams(
                base, self._on_bounds, self._on_lasso, self._on_tap)
        overlay = base * hv.DynamicMap(pn.bind(self._selected, state.param.selection))
        # The card around the plot carries the title.
        self.plot = overlay.opts(hv.opts.Overlay(responsive=True, height=height, toolbar="above",
                                                 show_legend=not x_only))
        self.pane = pn.pane.HoloViews(self.plot, sizing_mode="stretch_width", height=height,
                                      linked_axes=False)

    # ------------------------------------------------------------------ geometry
    def _scaled(self, x, y) -> np.ndarray:
        return np.column_stack([(np.asarray(x, float) - self._lo[0]) / self._span[0],
                                (np.asarray(y, float) - self._lo[1]) / self._span[1]])

    def _select(self, local: np.ndarray) -> None:
        self.state.select_rows(self.rows[np.asarray(local, dtype=np.int64)])

    def _on_bounds(self, bounds=None, **_):
        if bounds is not None:
            (x0, y0), (x1, y1) = self._scaled([bounds[0], bounds[2]], [bounds[1], bounds[3]])
            self._select(self.index.box(x0, y0, x1, y1))

    def _on_bounds_x(self, boundsx=None, **_):
        if boundsx is not None:
            x0, x1 = sorted(boundsx)
            inside = (self.x[self.rows] >= x0) & (self.x[self.rows] <= x1)
            self._select(np.flatnonzero(inside))

    def _on_lasso(self, geometry=None, **_):
        if geometry is not None and len(geometry) >= 3:
            scaled = self._scaled(np.asarray(geometry)[:, 0], np.asarray(geometry)[:, 1])
            self._select(self.index.lasso(scaled[:, 0], scaled[:, 1]))

    def _on_tap(self, x=None, y=None, **_):
        if x is None or y is None:
            return
        (sx, sy), = self._scaled([x], [y])
        row = self.index.nearest(sx, sy, 0.02)
        if row is None:
            self.state.clear_selection()
        else:
            self._select([row])

    # ------------------------------------------------------------------ layers
    def _table(self) -> pd.DataFrame:
        """id, label, predicted and colour of every row (colour by the plot's setting)."""
        from dashboard.views.map import colour_points

        points = self.state.points()
        colour_by = getattr(self, "colour_by", "label")
        if colour_by == "none":
            colours = np.full(len(points), NO_COLOUR, dtype=object)
        else:
            colours, _ = colour_points(points, colour_by, {c.name: c.colour for c in self.state.classes})
        return pd.DataFrame({"id": points["id"], "label": points["label"].replace("", "–"),
                             "predicted": points["predicted"].replace("", "–"), "colour": colours})

    def _element(self, *_):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def drawn_selection(self) -> np.ndarray:
        """Rows of the session's selection that this plot can draw (finite values)."""
        selected = self.state.selected_rows()
        return selected[np.isin(selected, self.rows)]

    def _selected(self, *_):
        hv = holoviews()
        rows = self.drawn_selection()
        if self.x_only:
            return hv.VLines(self.x[rows][:2000]).opts(color=SELECTED, alpha=0.35, line_width=1)
        return hv.Points((self.x[rows], self.y[rows]), kdims=["x", "y"]).opts(
            marker="circle", size=12, fill_alpha=0, line_color=SELECTED, line_width=2, tools=[])

    def _marker(self, selection, *_):
        ids = self.state.dataset.ids[self.drawn_selection()]
        return (f'<span class="tw-plot-selection" data-count="{len(ids)}" '
                f'data-digest="{selection_digest(ids)}" hidden></span>'
                f'<span class="tw-selection-digest" data-digest="{selection_digest(selection)}" hidden>'
                "</span>")

    def __panel__(self):
        missing = len(self.x) - len(self.rows)
        note = (f"<div class='tw-muted'>{missing:,} items without values are not shown.</div>"
                if missing else "")
        marker = html_pane(pn.bind(self._marker, self.state.param.selection), height=0, margin=0)
        return pn.Column(pn.Column(self.pane, css_classes=["tw-domain-plot"], sizing_mode="stretch_width"),
                         html_pane(note) if note else pn.Spacer(height=0), marker,
                         sizing_mode="stretch_width")


class DomainPlotView(LinkedPlot):
    """A scatter, line or histogram of the data's columns, as the layout's ``plots`` entry says."""

    def __init__(self, state: AppState, spec, name: str, **params) -> None:
        columns = state.dataset.columns
        needed = [spec.x] + ([spec.y] if spec.kind != "histogram" else [])
        numeric = numeric_columns(state)
        for column in needed:
            if column not in numeric:
                raise ConfigError(f"plot {name!r}: column {column!r} is not a numeric column of the "
                                  f"data; numeric columns: {', '.join(numeric) or 'none'}")
        self.spec = spec
        self.colour_by = spec.colour_by
        y = None if spec.kind == "histogram" else columns[spec.y]
        super().__init__(state, spec.title or name, columns[spec.x], y, height=spec.height,
                         x_only=spec.kind == "histogram", **params)

    def _element(self, *_):
        hv = holoviews()
        spec = self.spec
        table = self._table().iloc[self.rows]
        frame = table.assign(x=self.x[self.rows], y=self.y[self.rows])
        xdim = hv.Dimension("x", label=spec.x)
        groups = [("all", frame)] if self.colour_by == "none" else list(frame.groupby(self.colour_by))
        if spec.kind == "histogram":
            edges = np.histogram_bin_edges(frame["x"], bins=spec.bins)
            layers = []
            for value, part in groups:
                counts, _ = np.histogram(part["x"], bins=edges)
                colour = part["colour"].iloc[0]
                layers.append(hv.Histogram((edges, counts), kdims=[xdim], vdims=["items"],
                                           label=str(value)).opts(
                    fill_color=colour, fill_alpha=0.55, line_color=colour,
                    tools=["xbox_select", "hover"], active_tools=["xbox_select"]))
            return hv.Overlay(layers).opts(legend_position="top_right")
        ydim = hv.Dimension("y", label=spec.y)
        points = hv.Points(frame, kdims=[xdim, ydim], vdims=["id", "label", "predicted", "colour"]).opts(
            color="colour", size=getattr(spec, "point_size", 4), alpha=0.8, line_color="colour",
            # the session's selection is drawn as rings; Bokeh's own selection must not dim points
            selection_alpha=0.8, nonselection_alpha=0.8, selection_color="colour",
            tools=["hover", "box_select", "lasso_select", "tap"],
            active_tools=["box_select", "wheel_zoom"],
            hover_tooltips=[("id", "@id"), ("label", "@label"), ("prediction", "@predicted")])
        if spec.kind == "scatter":
            return points
        curves = [hv.Curve(part.sort_values("x"), kdims=[xdim], vdims=[ydim], label=str(value)).opts(
                  color=part["colour"].iloc[0], line_width=1.5)
                  for value, part in groups]
        return hv.Overlay([*curves, points.opts(size=3)])


class PluginPlotView(pn.viewable.Viewer):
    """A ``tailwise.views`` plugin's plot; asks for the columns its roles map to when the layout
    does not say and the data names them differently."""

    def __init__(self, state: AppState, spec, name: str, **params) -> None:
        from dashboard.plugins import load_view_plugin, resolve_roles

        super().__init__(**params)
        self.state, self.spec, self.plot_name = state, spec, name
        self.plugin = load_view_plugin(spec.plugin)
        self.numeric = numeric_columns(state)
        self.roles = resolve_roles(self.plugin, spec.columns, list(state.dataset.columns))
        self.body = pn.Column(sizing_mode="stretch_width")
        self.linked: LinkedPlot | None = None  # the plot, once every role has a column
        self._show()

    def missing_roles(self) -> list[str]:
        return [r for r in self.plugin.columns if r not in self.roles]

    def map_columns(self, mapping: dict[str, str]) -> None:
        """Take ``role -> column`` (from the form) and draw the plot once every role is mapped."""
        for role, column in mapping.items():
            if role not in self.plugin.columns:
                raise ConfigError(f"plot {self.plot_name!r}: {role!r} is not a role of {self.plugin.name!r}")
            if column not in self.state.dataset.columns:
                raise ConfigError(f"plot {self.plot_name!r}: unknown column {column!r}")
            self.roles[role] = column
        self._show()

    def _show(self) -> None:
        missing = self.missing_roles()
        if missing:
            self.body.objects = [self._form(missing)]
            return
        self.linked = _PluginLinked(self.state, self.plugin, self.roles,
                                    self.spec.title or self.plugin.title, self.spec)
        self.body.objects = [self.linked]

    def _form(self, missing: list[str]):
        selects = {role: pn.widgets.Select(label=f"{role}: {self.plugin.columns[role]}",
                                           options=self.numeric, css_classes=["tw-role-select"],
                                           sizing_mode="stretch_width")
                   for role in missing}
        button = pn.widgets.Button(label="Show the plot", color="primary", css_classes=["tw-role-apply"])
        button.on_click(lambda _: self.map_columns({r: s.value for r, s in selects.items()}))
        intro = html_pane(f"<div class='tw-role-form'><b>{escape(self.plugin.title)}</b> needs these "
                          "columns; this data set names them differently. Choose them "
                          "(or set <code>columns</code> in the layout file):</div>")
        return pn.Column(intro, *selects.values(), button, sizing_mode="stretch_width")

    def __panel__(self):
        return self.body


class _PluginLinked(LinkedPlot):
    def __init__(self, state, plugin, roles: dict[str, str], title: str, spec) -> None:
        self.plugin, self.roles, self.colour_by = plugin, dict(roles), spec.colour_by
        columns = state.dataset.columns
        x = columns[roles[plugin.x]] if plugin.x else np.full(len(state.dataset), np.nan)
        y = columns[roles[plugin.y]] if plugin.y else np.full(len(state.dataset), np.nan)
        super().__init__(state, title, x, y, height=spec.height)

    def _element(self, *_):
        table = self._table().rename(columns={"colour": "class_colour"})
        for role, column in self.roles.items():
            table[role] = np.asarray(self.state.dataset.columns[column])
        colours = {c.name: c.colour for c in self.state.classes}
        return self.plugin.plot(table.iloc[self.rows] if self.plugin.x else table, colours)


def plot_view(state: AppState, spec, name: str):
    """The view for one ``plots`` entry of a layout; a bad entry becomes a message, not a crash."""
    try:
        if spec.kind == "plugin":
            return PluginPlotView(state, spec, name)
        return DomainPlotView(state, spec, name)
    except ConfigError as err:
        return html_pane(f"<div class='tw-error'>{escape(err)}</div>")
