"""Calibration you can see, and how many of each class the pool still holds.

Per class: a reliability diagram (is a probability of 0.8 right 80 % of the time?) before and after
the calibration the round chose, with the class-balanced expected calibration error (ECE); the
estimated number of items of each class among the unlabelled items with a 90 % interval; and the
stopping guidance (what more labels would still buy). All of it is computed by the engine on the
training thread after every retrain (``core.quality``); this view only formats it.
"""

from __future__ import annotations

import pandas as pd
import panel as pn

from core.quality.prevalence import prevalence_text
from dashboard.state import AppState, escape
from dashboard.style import html_pane, on_document
from dashboard.views.metrics import stopping_html

SOURCES = {"ground_truth": "held-out ground truth", "test_split": "the expert-labelled test split",
           "cv": "out-of-fold predictions of the expert labels"}
ECE_COLUMNS = ["class", "held-out items", "ECE before", "ECE after", "change"]
FEW_CHECKS = 10  # labelled items per class below which the prevalence is not to be trusted
PREVALENCE_COLUMNS = ["class", "labelled", "≈ in the pool", "90 % interval", "in words"]


def _report(state: AppState) -> dict | None:
    model = state.session.state
    return None if model is None else model.calibration


def ece_frame(state: AppState) -> pd.DataFrame:
    """Per class: held-out items and ECE before and after calibration (rare classes marked ★)."""
    per_class = (_report(state) or {}).get("per_class") or {}
    rare = set(state.rare_classes)
    rows = []
    for name, values in per_class.items():
        before, after = values["ece_before"], values["ece_after"]
        change = "–" if before <= 0 else f"{100 * (after - before) / before:+.0f} %"
        rows.append({"class": name + (" ★" if name in rare else ""), "held-out items": values["n"],
                     "ECE before": f"{before:.3f}", "ECE after": f"{after:.3f}",
                     "change": change})
    return pd.DataFrame(rows, columns=ECE_COLUMNS)


def reliability_data(state: AppState, name: str | None) -> dict[str, dict[str, list]]:
    """Columns of the reliability diagram of class ``name``: ``before`` and ``after``, each
    ``{"p": mean probability per bin, "observed": share of the class in the bin, "weight"}``."""
    values = ((_report(state) or {}).get("per_class") or {}).get(name or "") or {}
    out = {}
    for key in ("before", "after"):
        bins = values.get(key) or []
        out[key] = {"p": [b[0] for b in bins], "observed": [b[1] for b in bins],
                    "weight": [b[2] for b in bins]}
    return out


def prevalence_frame(state: AppState) -> pd.DataFrame:
    """Per class: current training labels and the estimated count among the unlabelled items
    with its interval and in words ("≈ 41 more 'merger' in the pool, 90 % interval 28–57")."""
    model = state.session.state
    prevalence = (model.prevalence if model is not None else None) or {}
    level = ((model.prevalence_details or {}).get("level", 0.9) if model is not None else 0.9)
    labelled = state.label_counts(split="train")
    rare = set(state.rare_classes)
    rows = [{"class": name + (" ★" if name in rare else ""), "labelled": int(labelled.get(name, 0)),
             "≈ in the pool": f"{v['estimate']:,.0f}",
             "90 % interval": f"{v['low']:,.0f} – {v['high']:,.0f}",
             "in words": prevalence_text(name, v, level)} for name, v in prevalence.items()]
    return pd.DataFrame(rows, columns=PREVALENCE_COLUMNS)


def prevalence_note(state: AppState) -> str:
    """What the prevalence intervals rest on (HTML): checked by out-of-fold labels, by too few
    of them (amber: wide intervals, rough estimates), or by none yet (amber)."""
    model = state.session.state
    if model is None or not model.prevalence:
        return ""
    checked = int((model.prevalence_details or {}).get("checked_by") or 0)
    if checked >= FEW_CHECKS * len(model.prevalence):
        return (f"<div class='tw-prevalence-note tw-muted'>Checked by {checked:,} labelled items "
                "(their out-of-fold predictions), which also corrects for them not being a random "
                "sample.</div>")
    if checked:
        return (f"<div class='tw-prevalence-note tw-warning'>Checked by only {checked:,} labelled "
                f"items (fewer than {FEW_CHECKS} per class): they show little of how often the "
                "model is wrong, so the intervals are wide and the estimates rough. Label more "
                "items of every class and retrain.</div>")
    return ("<div class='tw-prevalence-note tw-warning'>Not checked by any labels yet (too few "
            "for out-of-fold predictions): the estimates are the model's own, unchecked, and the "
            "intervals are as wide as that leaves them. Label a few items of every class and "
            "retrain.</div>")


def calibration_text(state: AppState) -> str:
    """Where the reliability figures come from, in a sentence (HTML, escaped)."""
    model = state.session.state
    report = _report(state)
    if model is None:
        return "<div class='tw-calibration-summary tw-muted'>No model yet: retrain first.</div>"
    if not report or not report.get("per_class"):
        return (f"<div class='tw-calibration-summary tw-muted'>Model v{model.model_version}: not "
                "enough held-out labels to judge the calibration yet (label more items of at least "
                "two classes, or build a test split).</div>")
    source = SOURCES.get(report["source"], report["source"])
    error = float(report.get("label_error") or 0.0)
    read = (f" (fitted with the labels read as wrong {100 * error:.0f} % of the time, as the "
            "suspect labels suggest)" if error > 0 else "")
    return (f"<div class='tw-calibration-summary' data-source='{escape(report['source'])}'>"
            f"Model v{model.model_version}: calibration <b>{escape(report['method'])}</b>{read}, "
            f"judged on {report['n']:,} items of {escape(source)}. ECE is class-balanced (each "
            "class weighs the same); lower is better, 0 is perfect.</div>")


class CalibrationView(pn.viewable.Viewer):
    """ECE per class with a reliability diagram of the chosen class, the prevalence table and the
    stopping guidance; redrawn in place when a new model arrives."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.text = html_pane(calibration_text(state), css_classes=["tw-calibration-text"])
        self.ece = pn.pane.DataFrame(ece_frame(state), index=False, escape=True,
                                     sizing_mode="stretch_width", css_classes=["tw-ece-table"])
        self.choose = pn.widgets.Select(label="Reliability of class", options=self._classes(),
                                        value=self._first_class(), width=180,
                                        css_classes=["tw-reliability-class"])
        self.prevalence = pn.pane.DataFrame(prevalence_frame(state), index=False, escape=True,
                                            sizing_mode="stretch_width",
                                            css_classes=["tw-prevalence-table"])
        self.prevalence_note = html_pane(prevalence_note(state))
        self.stopping = html_pane(stopping_html(state), css_classes=["tw-stopping-pane"])
        self._sources: dict = {}
        self._figure = None
        self.choose.param.watch(lambda *_: self._redraw_diagram(), "value")
        state.param.watch(self._update, ["model_version", "labels_version", "classes_version"])

    def _classes(self) -> list[str]:
        per_class = (_report(self.state) or {}).get("per_class") or {}
        return list(per_class)

    def _first_class(self) -> str | None:
        """The first rare class with a report, else the first class with one."""
        classes = self._classes()
        rare = [c for c in self.state.rare_classes if c in classes]
        return (rare or classes or [None])[0]

    def _update(self, *_) -> None:
        self.text.object = calibration_text(self.state)
        self.ece.object = ece_frame(self.state)
        self.prevalence.object = prevalence_frame(self.state)
        self.prevalence_note.object = prevalence_note(self.state)
        self.stopping.object = stopping_html(self.state)
        classes = self._classes()
        if classes != self.choose.options:
            keep = self.choose.value if self.choose.value in classes else self._first_class()
            self.choose.options = classes
            self.choose.value = keep
        self._redraw_diagram()

    def _redraw_diagram(self) -> None:
        if not self._sources:
            return
        data = reliability_data(self.state, self.choose.value)
        figure, sources = self._figure, self._sources

        def edit():
            for key, source in sources.items():
                source.data = data[key]
            figure.title.text = self._title()

        on_document(figure, edit)

    def _title(self) -> str:
        name = self.choose.value
        values = ((_report(self.state) or {}).get("per_class") or {}).get(name or "")
        if not values:
            return "Reliability diagram"
        return (f"Reliability of {name!s}: ECE {values['ece_before']:.3f} before, "
                f"{values['ece_after']:.3f} after")

    def _diagram(self):
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure

        data = reliability_data(self.state, self.choose.value)
        fig = figure(height=300, title=self._title(), x_range=(0, 1), y_range=(0, 1.02),
                     x_axis_label="predicted probability of the class",
                     y_axis_label="observed share of the class", tools="hover",
                     tooltips=[("predicted", "@p{0.00}"), ("observed", "@observed{0.00}"),
                               ("weight", "@weight{0.000}")],
                     sizing_mode="stretch_width", toolbar_location=None)
        fig.line([0, 1], [0, 1], color="#999999", line_dash="dashed", legend_label="perfect")
        for key, colour in (("before", "#e15759"), ("after", "#3b6ea8")):
            source = self._sources[key] = ColumnDataSource(data[key])
            name = "before calibration" if key == "before" else "after calibration"
            fig.line("p", "observed", source=source, color=colour, line_width=2, legend_label=name)
            fig.scatter("p", "observed", source=source, color=colour, size=7, legend_label=name)
        legend = fig.legend[0]  # below the plot: bins near 0 and 1 stay visible
        legend.orientation = "horizontal"
        fig.add_layout(legend, "below")
        self._figure = fig
        return pn.Column(pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
                         css_classes=["tw-reliability"], sizing_mode="stretch_width")

    def __panel__(self):
        calibration = pn.Column(self.text, self.ece, self.choose, self._diagram(),
                                sizing_mode="stretch_width")
        prevalence = pn.Column(
            html_pane("<b>How many are left?</b> Estimated items of each class among the "
                      "unlabelled items (calibrated probabilities), with a 90 % interval."),
            self.prevalence, self.prevalence_note, self.stopping, sizing_mode="stretch_width")
        return pn.Column(pn.Row(calibration, prevalence, sizing_mode="stretch_width"),
                         css_classes=["tw-calibration"], sizing_mode="stretch_width")
