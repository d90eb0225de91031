"""Who is labelling, and what just happened: annotator name, role, status line, errors.

With authentication the annotator is the logged-in user (the field is read-only); without it the
tab must choose a name before its first label, and this browser remembers it.
"""

from __future__ import annotations

import panel as pn

from dashboard.client import NameMemory
from dashboard.state import AppState, escape
from dashboard.style import html_pane


class AnnotatorView(pn.viewable.Viewer):
    """Annotator name (per browser session), the last confirmation and the last error."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state

    def _status(self, status: str, notice: str, error: str, job: str, message: str,
                saved: int) -> str:
        parts = [f'<span class="tw-saved" data-saved="{int(saved)}" hidden></span>']
        if error:
            parts.append(f'<div class="tw-error" role="alert">⚠ {escape(error)}</div>')
        if job:
            parts.append(f'<div class="tw-job">{escape(job)}: {escape(message)}</div>')
        if status:
            parts.append(f'<div class="tw-status">✓ {escape(status)}</div>')
        if notice:
            parts.append(f'<div class="tw-notice">↻ {escape(notice)}</div>')
        if len(parts) == 1:
            parts.append('<div class="tw-status tw-idle">ready</div>')
        return "".join(parts)

    def _who(self, annotator: str) -> str:
        s = self.state
        if s.user:
            text = f"signed in as <b>{escape(s.user)}</b>"
        elif annotator.strip():
            text = f"labelling as <b>{escape(annotator.strip())}</b>"
        else:
            return ('<div class="tw-who tw-annotator-missing">choose your name before labelling '
                    "(this browser remembers it)</div>")
        role = s.role
        text += f" · {escape(role)}" if role and not s.session.access.open else ""
        return f'<div class="tw-who" data-role="{escape(role or "")}">{text}</div>'

    def __panel__(self):
        s = self.state
        name = pn.widgets.TextInput.from_param(
            s.param.annotator, label="Annotator", placeholder="your name (needed before labelling)",
            css_classes=["tw-annotator"], sizing_mode="stretch_width", disabled=bool(s.user))
        memory = NameMemory(value=s.annotator, locked=bool(s.user), height=0, width=0, margin=0)
        if not s.user:
            memory.param.watch(lambda e: setattr(s, "annotator", e.new), "value")
            s.param.watch(lambda e: setattr(memory, "value", e.new), "annotator")
        refresh = pn.widgets.Button(label="↻ Refresh", css_classes=["tw-refresh"], color="light",
                                    width=90, description="Show labels and models from other sessions")
        refresh.on_click(lambda _: s.refresh(now=True))
        who = html_pane(pn.bind(self._who, s.param.annotator), sizing_mode="stretch_width")
        status = html_pane(pn.bind(self._status, self.state.param.status, self.state.param.notice,
                                      self.state.param.error,
                                      self.state.param.job, self.state.param.job_message,
                                      self.state.param.saved_events),
                              css_classes=["tw-status-box"], sizing_mode="stretch_width")
        return pn.Column(pn.Row(name, refresh, align="end"), who, status, memory,
                         sizing_mode="stretch_width")
