"""How good is the model, class by class: counts, recall/precision, learning curve, confusion."""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import panel as pn

from core.layout import MetricsOptions
from dashboard.state import AppState, escape
from dashboard.style import holoviews, html_pane, on_document


DASH = "–"


def _number(value, digits: int = 2) -> str:
    """A metric for people: '0.83', or '–' when it is unknown (never NaN or '?')."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return DASH
    return f"{value:.{digits}f}"


def measurements(state: AppState) -> dict:
    """The model's measurements by source: ``ground_truth``, ``test_split``, ``cross_validated``
    (each a metrics dict or None) and ``headline`` (see ``core.metrics.headline``)."""
    from core.metrics import headline

    model = state.session.state
    if model is None:
        return {"ground_truth": None, "test_split": None, "cross_validated": None,
                "headline": headline(None, None, None)}
    m = model.metrics
    truth = m if m.get("source") == "ground_truth" else None
    cv = m if m.get("source") == "cv" else None
    return {"ground_truth": truth, "test_split": model.test_metrics, "cross_validated": cv,
            "headline": headline(truth, model.test_metrics, cv)}


SOURCE_NAMES = {"ground_truth": "held-out ground truth", "test_split": "expert-labelled test split",
                "cross_validated": "cross-validation on expert labels"}


_COUNTED: list = [None, {}]  # [weak reference to a model state, its predicted counts]


def predicted_counts(model_state) -> dict[str, int]:
    """Items per predicted class of a model, counted once per model for every page (at 10^6
    items a count per page and per summary cost each page half a second after a retrain)."""
    seen = _COUNTED[0]() if _COUNTED[0] is not None else None
    if seen is not model_state:
        counts = pd.Series(model_state.predicted, copy=False).value_counts(sort=False)
        _COUNTED[:] = [weakref.ref(model_state), {str(k): int(v) for k, v in counts.items()}]
    return _COUNTED[1]


def class_table(state: AppState) -> pd.DataFrame:
    """Per class: training and test labels, predicted count, recall, precision and support of the
    headline measurement. Text cells: unknown values are '–', never NaN."""
    session_state = state.session.state
    train = state.label_counts(split="train")
    test = state.label_counts(split="test")
    predicted, per_class = {}, {}
    if session_state is not None:
        predicted = predicted_counts(session_state)
        chosen = measurements(state)
        source = chosen["headline"]["source"]
        per_class = (chosen.get(source) or {}).get("per_class", {}) if source else {}
    support = _support_without_model(state) if session_state is None else {}
    rows = []
    for cls in state.classes:
        m = per_class.get(cls.name, {})
        rows.append({
            "class": cls.name + (" ★" if cls.rare else ""),
            "labelled": int(train.get(cls.name, 0)),
            "test": int(test.get(cls.name, 0)),
            "predicted": str(predicted.get(cls.name, 0)) if session_state is not None else DASH,
            "recall": _number(m.get("recall")) if m.get("support") else DASH,
            "precision": _number(m.get("precision")) if m else DASH,
            "support": str(m["support"]) if "support" in m else support.get(cls.name, DASH),
        })
    return pd.DataFrame(rows, columns=["class", "labelled", "test", "predicted", "recall",
                                       "precision", "support"])


def _support_without_model(state: AppState) -> dict[str, str]:
    """Before any model: how many held-out ground-truth items each class has (when known)."""
    truth = state.dataset.ground_truth
    if truth is None:
        return {}
    labelled = np.zeros(len(truth), dtype=bool)
    train = state.session.store.current(split="train")
    rows = [state.dataset._index[i] for i in train if state.dataset.has(i)]
    labelled[rows] = True
    names, counts = np.unique(truth[~labelled].astype(str), return_counts=True)
    return {n: str(c) for n, c in zip(names.tolist(), counts.tolist())}


def test_split_table(metrics: dict) -> pd.DataFrame:
    """Per class of the test split: items, recall and its 95 % (Wilson) interval, as text."""
    rows = []
    for name, values in metrics.get("per_class", {}).items():
        if not values.get("support"):
            continue
        low, high = values.get("recall_ci") or (None, None)
        rows.append({"class": name, "test items": values["support"],
                     "recall": _number(values["recall"]),
                     "95 % interval": f"{_number(low)} – {_number(high)}"})
    return pd.DataFrame(rows, columns=["class", "test items", "recall", "95 % interval"])


def curve_data(state: AppState) -> dict[str, list]:
    """The learning curve's columns: labels, balanced accuracy and tail recall per retrain."""
    history = state.session.history
    nan = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    return {"labels": [int(r.n_labels) for r in history],
            "balanced_accuracy": [nan(r.balanced_accuracy) for r in history],
            "tail_recall": [nan(r.tail_recall) for r in history],
            "version": [int(r.model_version) for r in history]}


def stopping_html(state: AppState) -> str:
    """Stopping guidance of the latest round (``core.quality.stopping``): what more labels would
    still buy, never a silent stop (HTML, escaped)."""
    model = state.session.state
    stopping = None if model is None else model.stopping
    if not stopping:
        return ("<div class='tw-stopping tw-muted'>Stopping guidance (what more labels would buy) "
                "appears after the first retrain.</div>")
    advice = str(stopping.get("advice", ""))
    head = "Keep labelling" if advice == "continue" else "Diminishing returns"
    return (f"<div class='tw-stopping' data-advice='{escape(advice)}'><b>{head}</b>: "
            f"{escape(stopping.get('text', ''))}</div>")


def counts_data(frame: pd.DataFrame) -> dict[str, list]:
    """Bars of labelled and predicted items per class, keyed ``(class, kind)``."""
    x, items, colour = [], [], []
    for _, row in frame.iterrows():
        for kind, tint in (("labelled", "#3b6ea8"), ("predicted", "#f28e2b")):
            x.append((str(row["class"]), kind))
            value = pd.to_numeric(row[kind], errors="coerce")  # '–' (no model yet) is none
            items.append(0 if pd.isna(value) else int(value))
            colour.append(tint)
    return {"x": x, "items": items, "colour": colour}


class MetricsView(pn.viewable.Viewer):
    """The headline measurement (ground truth > test split > cross-validation, with how many items
    it rests on), per-class counts and recall, the test split apart with confidence intervals,
    and the learning curve.

    Its panes and charts are built once and updated in place (new values into the same Bokeh
    data sources and panes): redrawing them from scratch on every change would cost every tab of
    the server its share of the one event loop they all use.
    """

    def __init__(self, state: AppState, options: MetricsOptions | None = None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.options = options or MetricsOptions()
        self.table = pn.pane.DataFrame(class_table(state), index=False, escape=True,
                                       sizing_mode="stretch_width", css_classes=["tw-class-table"])
        self.test_text = html_pane("", sizing_mode="stretch_width")
        self.test_table = pn.pane.DataFrame(test_split_table({}), index=False, escape=True,
                                            sizing_mode="stretch_width", css_classes=["tw-test-table"],
                                            visible=False)
        self._curve_source = None
        self.stopping = html_pane(stopping_html(state), sizing_mode="stretch_width",
                                  css_classes=["tw-stopping-pane"])
        self._counts_source = None
        self._counts_figure = None
        self._update_test_split()
        state.param.watch(self._update, ["labels_version", "classes_version", "model_version"])

    def _summary(self, *_):
        st = self.state.session.state
        if st is None:
            if self.state.job == "retrain":
                return "<div class='tw-metrics-summary tw-muted'>Training the first model…</div>"
            return ("<div class='tw-metrics-summary tw-muted'>No model yet: label items of at "
                    "least two classes and retrain.</div>")
        chosen = measurements(self.state)
        head = chosen["headline"]
        if head["source"] is None:
            return (f"<div class='tw-metrics-summary'>model v{st.model_version}: "
                    f"{escape(head['text'])}</div>")
        m = chosen[head["source"]]
        cells = [("balanced accuracy", m.get("balanced_accuracy")), ("macro F1", m.get("macro_f1")),
                 ("tail recall", m.get("tail_recall"))]
        tiles = "".join(f"<div class='tw-tile'><div class='tw-tile-value'>{_number(v, 3)}</div>"
                        f"<div class='tw-tile-name'>{n}</div></div>" for n, v in cells)
        tail = ", ".join(escape(t) for t in m.get("tail_classes", [])) or DASH
        return (f"<div class='tw-metrics-summary' data-source='{head['source']}'>"
                f"<div class='tw-tiles'>{tiles}</div>"
                f"<div class='tw-muted'>model v{st.model_version}: {escape(head['text'])}"
                f" · tail classes: {tail}</div></div>")

    def _update(self, *_):
        frame = class_table(self.state)
        self.table.object = frame
        self.stopping.object = stopping_html(self.state)
        self._update_test_split()
        if self._counts_source is not None:
            counts, figure, bars = counts_data(frame), self._counts_figure, self._counts_source

            def set_counts():
                figure.x_range.factors = counts["x"]
                bars.data = counts

            on_document(bars, set_counts)
        if self._curve_source is not None:
            curve, line = curve_data(self.state), self._curve_source
            on_document(line, lambda: setattr(line, "data", curve))

    def _update_test_split(self) -> None:
        """The test split's text and table, written into the panes built once."""
        st = self.state.session.state
        n_test = len(self.state.session.test_labels())
        test = st.test_metrics if st is not None and n_test else None
        if not n_test:
            text = ("<div class='tw-test-metrics tw-muted'>No test split yet: build one in the "
                    "Test set tab (search, then label into the test split).</div>")
        elif test is None:
            text = (f"<div class='tw-test-metrics' data-n='{n_test}'>{n_test} items in the test "
                    "split: retrain to measure the model on them.</div>")
        else:
            text = (f"<div class='tw-test-metrics' data-n='{test['n_evaluated']}'><b>Test split</b>: "
                    f"{test['n_evaluated']} expert-labelled items, never trained on — balanced "
                    f"accuracy {_number(test.get('balanced_accuracy'), 3)}, tail recall "
                    f"{_number(test.get('tail_recall'), 3)} (model v{st.model_version})</div>")
        self.test_text.object = text
        if test is not None:
            self.test_table.object = test_split_table(test)
        self.test_table.visible = test is not None

    def _counts_chart(self):
        from bokeh.models import ColumnDataSource, FactorRange
        from bokeh.plotting import figure

        data = counts_data(class_table(self.state))
        self._counts_source = source = ColumnDataSource(data)
        fig = figure(x_range=FactorRange(*data["x"]), height=240, title="Items per class",
                     tools="hover", tooltips=[("", "@x"), ("items", "@items")], sizing_mode="stretch_width",
                     toolbar_location=None)
        fig.vbar(x="x", top="items", width=0.9, source=source, fill_color="colour", line_color=None)
        fig.y_range.start = 0
        fig.xaxis.major_label_orientation = 0.8
        fig.xgrid.grid_line_color = None
        self._counts_figure = fig
        return pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    def _learning_chart(self):
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure

        self._curve_source = source = ColumnDataSource(curve_data(self.state))
        fig = figure(height=240, title="Learning curve (after each retrain)", y_range=(0, 1.02),
                     tools="hover", tooltips=[("labels", "@labels"), ("model", "v@version"),
                                              ("balanced accuracy", "@balanced_accuracy{0.000}"),
                                              ("tail recall", "@tail_recall{0.000}")],
                     sizing_mode="stretch_width", toolbar_location=None, x_axis_label="labels")
        for column, colour, name in (("balanced_accuracy", "#3b6ea8", "balanced accuracy"),
                                     ("tail_recall", "#e15759", "tail recall")):
            fig.line("labels", column, source=source, color=colour, line_width=2, legend_label=name)
            fig.scatter("labels", column, source=source, color=colour, size=6, legend_label=name)
        fig.legend.location = "bottom_right"
        return pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    def __panel__(self):
        s = self.state
        summary = html_pane(pn.bind(self._summary, s.param.labels_version, s.param.model_version,
                                    s.param.job), sizing_mode="stretch_width")
        parts = [summary, self.table, self.test_text, self.test_table]
        charts = []
        if self.options.show_counts:
            charts.append(self._counts_chart())
        if self.options.show_learning_curve:  # stopping guidance beside the learning curve
            charts.append(pn.Column(self._learning_chart(), self.stopping,
                                    sizing_mode="stretch_width"))
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
