"""Download the labelled items as CSV, Parquet or FITS (the same table as ``tailwise export-labels``,
with the current model's predictions)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import panel as pn

from core.label_export import EXPORT_FORMATS, labelled_table, write_labelled
from dashboard.state import AppState


def labelled_bytes(state: AppState, fmt: str) -> bytes:
    """The labelled items of ``state``'s project as a file of format ``fmt``, in memory."""
    session = state.session
    frame = labelled_table(session.store, session.dataset, session.state)
    meta = {"PROJECT": session.project.name,
            "MODELVER": "" if session.state is None else str(session.state.model_version)}
    with tempfile.TemporaryDirectory(prefix="tailwise-labels-") as folder:
        path = write_labelled(frame, Path(folder) / f"labels.{fmt}", fmt, meta=meta)
        return path.read_bytes()


class LabelExportView(pn.viewable.Viewer):
    """A format choice and a download button."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.format = pn.widgets.RadioButtonGroup(options=list(EXPORT_FORMATS), value="fits",
                                                  css_classes=["tw-labels-format"])
        self.download = pn.widgets.FileDownload(
            callback=self._file, filename="labels.fits", label="Download labels", color="primary",
            css_classes=["tw-labels-download"], embed=False)
        self.format.param.watch(lambda e: setattr(self.download, "filename", f"labels.{e.new}"), "value")

    def _file(self) -> io.BytesIO:
        return io.BytesIO(labelled_bytes(self.state, self.format.value))

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown("**Labels** — one row per labelled item: id, label, annotator, time "
                             "(ISO 8601), split, prediction and probabilities"),
            pn.Row(self.format, self.download), sizing_mode="stretch_width")
