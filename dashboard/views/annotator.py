"""Who is labelling, and what just happened: annotator name, status line, errors."""

from __future__ import annotations

import panel as pn

from dashboard.state import AppState, escape
from dashboard.style import html_pane


class AnnotatorView(pn.viewable.Viewer):
    """Annotator name (per browser session), the last confirmation and the last error."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state

    def _status(self, status: str, error: str, job: str, message: str, saved: int) -> str:
        parts = [f'<span class="tw-saved" data-saved="{int(saved)}" hidden></span>']
        if error:
            parts.append(f'<div class="tw-error" role="alert">⚠ {escape(error)}</div>')
        if job:
            parts.append(f'<div class="tw-job">{escape(job)}: {escape(message)}</div>')
        if status:
            parts.append(f'<div class="tw-status">✓ {escape(status)}</div>')
        if len(parts) == 1:
            parts.append('<div class="tw-status tw-idle">ready</div>')
        return "".join(parts)

    def __panel__(self):
        name = pn.widgets.TextInput.from_param(
            self.state.param.annotator, label="Annotator", placeholder="your name",
            css_classes=["tw-annotator"], sizing_mode="stretch_width")
        refresh = pn.widgets.Button(label="↻ Refresh", css_classes=["tw-refresh"], color="light",
                                    width=90, description="Show labels and models from other sessions")
        refresh.on_click(lambda _: self.state.refresh())
        status = html_pane(pn.bind(self._status, self.state.param.status, self.state.param.error,
                                      self.state.param.job, self.state.param.job_message,
                                      self.state.param.saved_events),
                              css_classes=["tw-status-box"], sizing_mode="stretch_width")
        return pn.Column(pn.Row(name, refresh, align="end"), status, sizing_mode="stretch_width")
