"""The latest label events of every annotator (who, what, when, how)."""

from __future__ import annotations

import time

import pandas as pd
import panel as pn

from dashboard.state import AppState


def recent_events(state: AppState, limit: int = 50) -> pd.DataFrame:
    """The ``limit`` latest label events, newest first."""
    store = state.session.store
    events = store.events(since_id=max(store.last_event_id() - limit, 0))
    rows = [{"event": e.event_id, "when": time.strftime("%H:%M:%S", time.localtime(e.time)),
             "item": e.item_id, "label": "(removed)" if e.label is None else e.label,
             "annotator": e.annotator, "origin": e.origin,
             "model": "" if e.model_version is None else f"v{e.model_version}", "note": e.note or ""}
            for e in reversed(events[-limit:])]
    return pd.DataFrame(rows, columns=["event", "when", "item", "label", "annotator", "origin", "model", "note"])


class HistoryView(pn.viewable.Viewer):
    """Recent label events; refreshes with every label change in this or another session."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        # One pane whose table is replaced in place (a new pane per change costs the server more).
        self.table = pn.pane.DataFrame(recent_events(state), index=False, escape=True,
                                       sizing_mode="stretch_width")
        state.param.watch(self._update, "labels_version")

    def _update(self, *_):
        self.table.object = recent_events(self.state)

    def __panel__(self):
        return pn.Column(self.table, css_classes=["tw-history-view"], sizing_mode="stretch_width")
