"""Retrain button, progress while training, and the model version now in use."""

from __future__ import annotations

import time

import panel as pn

from dashboard.state import AppState, escape
from dashboard.style import html_pane


def model_caption(version: int | None, trained_at: float | None, job: str = "",
                  learner: str = "") -> str:
    """'model v3 · random forest · trained 12:03:04', 'training a new model… (v3 in use)' or
    'no model yet'."""
    if job == "retrain":
        return "training a new model…" + (f" (v{version} in use)" if version is not None else "")
    if version is None:
        return "no model yet: label two classes, then retrain"
    parts = [f"model v{version}"]
    if learner:
        parts.append(learner.replace("_", " "))
    if trained_at:
        parts.append(f"trained {time.strftime('%H:%M:%S', time.localtime(trained_at))}")
    return " · ".join(parts)


class RetrainView(pn.viewable.Viewer):
    """Retraining runs in a worker thread; the page stays usable and refreshes when it ends."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state

    async def _retrain(self, _event) -> None:
        await self.state.retrain_async()

    def __panel__(self):
        button = pn.widgets.Button(label="⟳ Retrain", color="primary", css_classes=["tw-retrain"],
                                   sizing_mode="stretch_width")
        button.on_click(self._retrain)
        busy = self.state.param.job.rx() == "retrain"
        button.disabled = busy
        progress = pn.indicators.Progress(
            value=(self.state.param.job_progress.rx() * 100).rx.pipe(int), max=100,
            visible=busy, sizing_mode="stretch_width", css_classes=["tw-retrain-progress"])
        version = html_pane(  # AppState updates version, time and learner in one step
            pn.bind(lambda v, t, job, learner: f'<span class="tw-model-version" data-version="{v or 0}">'
                                               f'{escape(model_caption(v, t, job, learner))}</span>',
                    self.state.param.model_version, self.state.param.trained_at,
                    self.state.param.job, self.state.param.learner),
            sizing_mode="stretch_width")
        background = html_pane(
            pn.bind(lambda text: f'<span class="tw-engine-activity tw-muted">{escape(text)}</span>'
                    if text else "", self.state.param.engine_activity),
            sizing_mode="stretch_width")
        why = html_pane(
            pn.bind(lambda reason: f'<div class="tw-learner tw-muted">{escape(reason)}</div>'
                    if reason else "", self.state.param.learner_reason),
            sizing_mode="stretch_width")
        return pn.Column(button, progress, version, why, background, sizing_mode="stretch_width")
