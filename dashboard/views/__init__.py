"""The dashboard's views, by the names layout files use (``core.layout.VIEW_NAMES``); a layout's
own ``plots`` become views too (``dashboard.views.plots``).

Each view is a ``panel.viewable.Viewer`` built as ``View(state, options)`` or ``View(state)``.
The ``project`` view (export / import / layouts) lives in ``dashboard/views/project.py`` when
installed; until then a placeholder stands in its place.
"""

from __future__ import annotations

import importlib

import panel as pn

from dashboard.views.agreement import AgreementView
from dashboard.views.annotator import AnnotatorView
from dashboard.views.calibration import CalibrationView
from dashboard.views.clusters import ClustersView
from dashboard.views.history import HistoryView
from dashboard.views.inspector import InspectorView
from dashboard.views.labelling import LabellingView
from dashboard.views.map import MapView
from dashboard.views.metrics import ConfusionView, MetricsView
from dashboard.views.queue import QueueView
from dashboard.views.retrain import RetrainView
from dashboard.views.review import ReviewView
from dashboard.views.testset import TestSetView

TITLES = {
    "annotator": "Annotator", "map": "Map", "inspector": "Inspector", "labelling": "Label",
    "queue": "Queue", "retrain": "Model", "metrics": "Metrics", "confusion": "Confusion matrix",
    "history": "History", "clusters": "Clusters", "project": "Project", "testset": "Test set",
    "review": "Review", "agreement": "Agreement", "calibration": "Calibration & prevalence",
}


class ProjectPlaceholder(pn.viewable.Viewer):
    """Stands in for the export/import view until ``dashboard/views/project.py`` exists."""

    def __init__(self, state, app=None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.app = app

    def __panel__(self):
        return pn.pane.Markdown("Export and import of project files: `tailwise export` on the command line.",
                                css_classes=["tw-project"])


def _project_view():
    try:
        module = importlib.import_module("dashboard.views.project")
    except ModuleNotFoundError as err:
        if err.name != "dashboard.views.project":
            raise
        return ProjectPlaceholder
    return module.ProjectView


def view_classes() -> dict[str, type]:
    """Map of view name -> Viewer class."""
    return {
        "annotator": AnnotatorView, "map": MapView, "inspector": InspectorView,
        "labelling": LabellingView, "queue": QueueView, "retrain": RetrainView,
        "metrics": MetricsView, "confusion": ConfusionView, "history": HistoryView,
        "clusters": ClustersView, "project": _project_view(), "testset": TestSetView,
        "review": ReviewView, "agreement": AgreementView, "calibration": CalibrationView,
    }
