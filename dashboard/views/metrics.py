"""How good is the model, class by class: counts, recall/precision, learning curve, confusion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn

from core.layout import MetricsOptions
from dashboard.state import AppState, escape
from dashboard.style import holoviews, html_pane


def _source(metrics: dict) -> str:
    if metrics.get("source") == "ground_truth":
        return f"on {metrics.get('n_evaluated', metrics.get('n', 0)):,} held-out items with ground truth"
    if metrics.get("source") == "cv":
        return f"cross-validated on expert labels ({metrics.get('folds', '?')} folds)"
    return ""


def class_table(state: AppState) -> pd.DataFrame:
    """Per class: rare flag, labelled count, predicted count, recall, precision, support."""
    session_state = state.session.state
    labelled = state.session.store.label_counts()
    predicted = {}
    per_class = {}
    if session_state is not None:
        names, counts = np.unique(session_state.predicted.astype(str), return_counts=True)
        predicted = dict(zip(names.tolist(), counts.tolist()))
        per_class = session_state.metrics.get("per_class", {})
    rows = []
    for cls in state.classes:
        m = per_class.get(cls.name, {})
        rows.append({
            "class": cls.name + (" ★" if cls.rare else ""),
            "labelled": int(labelled.get(cls.name, 0)),
            "predicted": int(predicted.get(cls.name, 0)),
            "recall": m.get("recall", np.nan),
            "precision": m.get("precision", np.nan),
            "support": m.get("support", np.nan),
        })
    return pd.DataFrame(rows, columns=["class", "labelled", "predicted", "recall", "precision", "support"])


class MetricsView(pn.viewable.Viewer):
    """Class counts (labelled vs predicted), per-class recall and precision, learning curve."""

    def __init__(self, state: AppState, options: MetricsOptions | None = None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.options = options or MetricsOptions()

    def _summary(self, *_):
        st = self.state.session.state
        if st is None:
            return "<div class='tw-metrics-summary tw-muted'>No model yet: label at least two classes and retrain.</div>"
        m = st.metrics
        if m.get("evaluable") is False:
            return (f"<div class='tw-metrics-summary'>model v{st.model_version}: "
                    f"{escape(m.get('reason', 'not enough labels to measure'))}</div>")
        cells = [("balanced accuracy", m.get("balanced_accuracy")), ("macro F1", m.get("macro_f1")),
                 ("tail recall", m.get("tail_recall"))]
        tiles = "".join(f"<div class='tw-tile'><div class='tw-tile-value'>{'–' if v is None else f'{v:.3f}'}"
                        f"</div><div class='tw-tile-name'>{n}</div></div>" for n, v in cells)
        tail = ", ".join(escape(t) for t in m.get("tail_classes", []))
        return (f"<div class='tw-metrics-summary'><div class='tw-tiles'>{tiles}</div>"
                f"<div class='tw-muted'>model v{st.model_version}, {escape(_source(m))}; tail: {tail}</div></div>")

    def _table(self, *_):
        frame = class_table(self.state)
        return pn.pane.DataFrame(frame, index=False, float_format="{:.2f}".format, escape=True,
                                 sizing_mode="stretch_width", css_classes=["tw-class-table"])

    def _curve(self, *_):
        hv = holoviews()

        history = self.state.session.history
        if not history:
            return pn.pane.Markdown("*The learning curve appears after the first retrain.*")
        frame = pd.DataFrame([{"labels": r.n_labels, "balanced accuracy": r.balanced_accuracy,
                               "tail recall": r.tail_recall, "version": r.model_version} for r in history])
        curves = [
            hv.Curve(frame, "labels", (col, "score"), label=col).opts(tools=["hover"])
            * hv.Scatter(frame, "labels", (col, "score"), label=col).opts(size=6)
            for col in ("balanced accuracy", "tail recall") if frame[col].notna().any()
        ]
        if not curves:
            return pn.pane.Markdown("*Not enough labels to measure yet.*")
        plot = hv.Overlay(curves).opts(
            title="Learning curve", ylim=(0, 1.02), responsive=True, height=260, legend_position="bottom_right")
        return pn.pane.HoloViews(plot, sizing_mode="stretch_width")

    def _counts(self, *_):
        hv = holoviews()

        frame = class_table(self.state)
        long = frame.melt(id_vars="class", value_vars=["labelled", "predicted"], var_name="kind", value_name="items")
        bars = hv.Bars(long, ["class", "kind"], "items").opts(
            title="Items per class", responsive=True, height=260, logy=False, xrotation=45,
            tools=["hover"], multi_level=False, legend_position="top_right")
        return pn.pane.HoloViews(bars, sizing_mode="stretch_width")

    def __panel__(self):
        v = self.state.param.labels_version
        parts = [html_pane(pn.bind(self._summary, v), sizing_mode="stretch_width"),
                 pn.panel(pn.bind(self._table, v))]
        charts = []
        if self.options.show_counts:
            charts.append(pn.panel(pn.bind(self._counts, v)))
        if self.options.show_learning_curve:
            charts.append(pn.panel(pn.bind(self._curve, self.state.param.model_version)))
        return pn.Column(*parts, pn.Row(*charts, sizing_mode="stretch_width"),
                         css_classes=["tw-metrics"], sizing_mode="stretch_width")


class ConfusionView(pn.viewable.Viewer):
    """Confusion matrix of the latest model (rows: true class, columns: predicted)."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state

    def _matrix(self, *_):
        hv = holoviews()

        st = self.state.session.state
        if st is None or "confusion" not in st.metrics:
            return pn.pane.Markdown("*The confusion matrix appears once the model can be measured.*")
        classes = st.metrics["classes"]
        matrix = np.asarray(st.metrics["confusion"], dtype=float)
        recall_rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        data = [(p, t, recall_rows[i, j], int(matrix[i, j]))
                for i, t in enumerate(classes) for j, p in enumerate(classes)]
        heat = hv.HeatMap(data, ["predicted", "true"], ["share", "count"]).opts(
            cmap="Blues", colorbar=True, tools=["hover"], responsive=True, height=380,
            xrotation=45, invert_yaxis=True, title=f"Confusion matrix (model v{st.model_version}, row-normalised)",
            clim=(0, 1))
        labels = hv.Labels(heat, vdims="count").opts(text_font_size="8pt", text_color="#333333")
        return pn.pane.HoloViews(heat * labels, sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Column(pn.panel(pn.bind(self._matrix, self.state.param.model_version)),
                         css_classes=["tw-confusion"], sizing_mode="stretch_width")
