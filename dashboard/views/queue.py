"""The queue: the next batch from the chosen strategy, each item with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import panel as pn

from core.layout import QueueOptions
from dashboard.state import AppState
from dashboard.style import class_select, html_pane


def shown_label(state: AppState, item: str, label: str) -> str:
    """The label the queue shows: none for an item queued for this annotator's second opinion
    (another annotator's label would sway an independent answer)."""
    return "" if state.is_second_opinion(item) else label


def queue_frame(state: AppState) -> pd.DataFrame:
    """The queued items with score, reason and current label ('' when unlabelled), read from
    the shared map table for the queued rows only (not the whole label store)."""
    column = state.frame.columns["label"]
    names = np.asarray(column.categories, dtype=object)[column.codes[state.queue_rows()]]
    labels = {i: shown_label(state, i, str(n).strip()) for i, n in zip(state.queue_ids, names)}
    text = lambda values: np.asarray(values, dtype=object)
    return pd.DataFrame({
        "item": text(state.queue_ids),
        "score": np.round(np.asarray(state.queue_scores, dtype=float), 3),
        "reason": text(state.queue_reasons),
        "label": text([labels.get(i, "") for i in state.queue_ids]),
    }, columns=["item", "score", "reason", "label"])


class QueueView(pn.viewable.Viewer):
    """Strategy, batch size and target class; 'next batch'; click an item to select it."""

    def __init__(self, state: AppState, options: QueueOptions | None = None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.options = options or QueueOptions()
        if self.options.strategy:
            state.strategy = self.options.strategy
        if self.options.batch_size:
            state.batch_size = self.options.batch_size
        if self.options.target_class:
            state.target_class = self.options.target_class
        # Reasons are the point of the queue: their column takes the free width and wraps.
        self.table = pn.widgets.Tabulator(
            queue_frame(state), show_index=False, disabled=True, selectable=False, height=300,
            sizing_mode="stretch_width", layout="fit_columns",
            widths={"item": 100, "score": 75, "label": 80},
            formatters={"reason": {"type": "textarea"}},
            hidden_columns=[] if self.options.show_reasons else ["reason"], css_classes=["tw-queue"])
        self.table.on_click(self._on_click)
        state.param.watch(self._refresh, "queue_ids")  # labels: patched cell by cell below
        state.param.watch(self._on_changes, "changes")

    def _refresh(self, *_):
        self.table.value = queue_frame(self.state)

    def _on_changes(self, *_):
        """Patch the label cell of just the queued items that changed (no table reload)."""
        queue = self.state.queue_ids
        if self.state.last_changed is None:  # a bulk action: reload the few queued rows
            self._refresh()
            return
        changed = set(self.state.last_changed)
        rows = [i for i, item in enumerate(queue) if item in changed]
        if not rows:
            return
        if len(self.table.value) != len(queue):
            self._refresh()
            return
        labels = self.state.labels_of([queue[i] for i in rows])
        self.table.patch({"label": [(i, shown_label(self.state, queue[i], labels.get(queue[i], "")))
                                    for i in rows]})

    def _on_click(self, event) -> None:
        if event.row is not None and event.row < len(self.state.queue_ids):
            self.state.select([self.state.queue_ids[event.row]])

    async def _next(self, _event) -> None:
        await self.state.next_batch_async()

    def __panel__(self):
        s = self.state
        strategy = pn.widgets.Select.from_param(s.param.strategy, label="Strategy", css_classes=["tw-strategy"],
                                                sizing_mode="stretch_width")
        batch = pn.widgets.IntInput.from_param(s.param.batch_size, label="Batch size", width=100)
        target = class_select(s, none="(none)", label="Target class", value=s.target_class or "",
                              css_classes=["tw-target-class"], sizing_mode="stretch_width")
        target.param.watch(lambda e: setattr(s, "target_class", e.new or None), "value")
        button = pn.widgets.Button(label="▶ Next batch", color="success", css_classes=["tw-next-batch"],
                                   sizing_mode="stretch_width", disabled=s.param.job.rx() == "queue")
        button.on_click(self._next)
        chosen_by = html_pane(pn.bind(
            lambda v: f'<span class="tw-queue-model" data-version="{"" if v is None else int(v)}" hidden></span>',
            s.param.queue_model), height=0, margin=0)
        return pn.Column(pn.Row(strategy, batch), target, button, self.table, chosen_by,
                         sizing_mode="stretch_width")
