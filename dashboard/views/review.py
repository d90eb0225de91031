"""Review: the labels the model doubts after each retrain, with the reason, to relabel, confirm
or retract.

Suspects come from the engine (``Session.suspects``: cleanlab's confident learning on
out-of-fold probabilities, ``core.quality``); a confirmed or relabelled item leaves the list, and
every decision is a label event. The list is read on the work pool, never on the event loop.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn

from dashboard.state import AppState, escape
from dashboard.style import class_select, html_pane

SUSPECT_COLUMNS = ["item", "label", "suggested", "score", "annotator", "reason"]


class OffLoopView(pn.viewable.Viewer):
    """A view showing an engine read (``_read``), redone on the work pool when the label store
    or the model moved on (``_show`` puts it on the page)."""

    watch_on: tuple[str, ...] = ("labels_version", "model_version")

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self._key: tuple | None = None
        self._asked = 0  # reads asked for; only the latest one is shown
        state.param.watch(self._stale, list(self.watch_on))

    def _read(self) -> Any:
        raise NotImplementedError

    def _show(self, data: Any) -> None:
        raise NotImplementedError

    def _relevant(self, events) -> bool:
        """Whether these parameter changes may change what the view shows (default: any)."""
        return True

    def _stale(self, *events) -> None:
        if events and not self._relevant(events):
            return
        key = (self.state.session.store.last_event_id(), self.state.session.state
               and self.state.session.state.model_version)
        if key != self._key:
            self._key = key
            self.refresh()

    def refresh(self) -> None:
        """Read again: on the work pool for a served page (``state.offload_reads``), else at
        once."""
        if not self.state.offload_reads:
            self._show(self._read())
            return
        self.state.spawn(self.refresh_async(), "reading the review data")

    async def refresh_async(self) -> None:
        self._asked += 1
        asked = self._asked
        try:
            data = await self.state.work_async(self._read)
        except Exception as err:  # noqa: BLE001  (shown; the next change tries again)
            self.state.error = f"could not read the review data: {err}"
            return
        if asked == self._asked:  # a later read replaces this one
            self._show(data)


def suspects_frame(suspects: list[dict]) -> pd.DataFrame:
    """One row per open suspect, most suspicious first."""
    rows = [{"item": str(s["id"]), "label": str(s["label"]), "suggested": str(s["suggested"]),
             "score": round(float(s["score"]), 3), "annotator": str(s.get("annotator") or ""),
             "reason": str(s.get("reason") or "")} for s in suspects]
    return pd.DataFrame(rows, columns=SUSPECT_COLUMNS).astype(
        {c: object for c in SUSPECT_COLUMNS if c != "score"})


class ReviewView(OffLoopView):
    """Suspect labels of the last retrain with their reasons; click one to inspect it, then
    relabel it (the suggested class by default), confirm it (it stops being suspect) or retract
    it. The actions apply to the selected items."""

    # Suspects change with a new model, or when a label of a listed one changes (this tab's or
    # another's: both arrive as ``changes``); the paced summaries add nothing.
    watch_on = ("model_version", "changes")

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(state, **params)
        self.suspects: list[dict] = []
        self.header = html_pane("", css_classes=["tw-review-header"])
        self.table = pn.widgets.Tabulator(
            suspects_frame([]), show_index=False, disabled=True, selectable=False, height=280,
            sizing_mode="stretch_width", layout="fit_columns",
            widths={"item": 90, "label": 70, "suggested": 85, "score": 65, "annotator": 90},
            formatters={"reason": {"type": "textarea"}}, css_classes=["tw-suspects"])
        self.table.on_click(self._on_click)
        self.relabel_as = class_select(state, label="Relabel as", css_classes=["tw-relabel-class"],
                                       width=140)
        allowed = state.offers("label")
        self.relabel_button = pn.widgets.Button(label="Relabel", css_classes=["tw-relabel"],
                                                disabled=not allowed, width=100)
        self.confirm_button = pn.widgets.Button(label="✓ Confirm label", color="success",
                                                css_classes=["tw-confirm"], disabled=not allowed,
                                                width=140)
        self.retract_button = pn.widgets.Button(label="Retract label", color="danger",
                                                css_classes=["tw-retract"], disabled=not allowed,
                                                width=130)
        self.relabel_button.on_click(lambda _e: self.relabel())
        self.confirm_button.on_click(lambda _e: self.confirm())
        self.retract_button.on_click(lambda _e: self.retract())
        self._stale()

    def _relevant(self, events) -> bool:
        """A label changes the list only when it touches a listed suspect (every tab's labels
        arrive as ``changes``; re-reading for each would cost every tab a store read)."""
        if any(e.name != "changes" for e in events):
            return True
        changed = self.state.last_changed
        return changed is None or not {s["id"] for s in self.suspects}.isdisjoint(changed)

    def _read(self) -> list[dict]:
        return self.state.session.suspects()

    def _show(self, suspects: list[dict]) -> None:
        self.suspects = suspects
        self.table.value = suspects_frame(suspects)
        model = self.state.session.state
        if model is None:
            text = "No model yet: suspect labels are checked after every retrain."
        elif not suspects:
            text = (f"No suspect labels after model v{model.model_version}: the model, trained "
                    "without each label, agrees with the labels it could check.")
        else:
            text = (f"{len(suspects)} label{'s' * (len(suspects) != 1)} the model doubts after "
                    f"model v{model.model_version} (confident learning on out-of-fold "
                    "probabilities), most suspicious first. Click one to inspect it, then "
                    "relabel, confirm or retract it.")
        self.header.object = (f"<div class='tw-review-summary' data-count='{len(suspects)}'>"
                              f"{escape(text)}</div>")

    def _on_click(self, event) -> None:
        if event.row is None or event.row >= len(self.table.value):
            return
        self._inspect(str(self.table.value.iloc[event.row]["item"]))

    def _inspect(self, item: str) -> None:
        """Select a suspect (the inspector shows it); 'Relabel as' offers its suggestion."""
        self.state.select([item])
        suggested = next((s["suggested"] for s in self.suspects if s["id"] == item), None)
        if suggested in self.relabel_as.options:
            self.relabel_as.value = suggested

    def _act(self, action) -> list[int]:
        """Run ``action(selected items)``; on success inspect the next suspect of the list as it
        was (the one after the first handled item), so a reviewer walks it without clicking."""
        handled = list(self.state.selection)
        listed = [s["id"] for s in self.suspects]
        events = action(handled)
        if events:
            first = min((listed.index(h) for h in handled if h in listed), default=-1)
            after = [i for i in listed[first + 1:] if i not in handled]
            still = {s["id"] for s in self.suspects}  # the list may have been read again already
            following = [i for i in after if i in still]
            if following:
                self._inspect(following[0])
        return events

    # ------------------------------------------------------------------ actions (server-side)
    def confirm(self) -> list[int]:
        """Confirm the selected items' labels: they leave the suspects."""
        return self._act(self.state.confirm)

    def relabel(self, label: str | None = None) -> list[int]:
        """Relabel the selected items (default: the class chosen in 'Relabel as')."""
        chosen = label or self.relabel_as.value
        return self._act(lambda items: self.state.relabel(items, chosen))

    def retract(self) -> list[int]:
        """Remove the selected items' labels."""
        return self._act(self.state.retract)

    def __panel__(self):
        actions = pn.Row(self.relabel_as, self.relabel_button, self.confirm_button,
                         self.retract_button, sizing_mode="stretch_width")
        return pn.Column(self.header, self.table, actions, css_classes=["tw-review"],
                         sizing_mode="stretch_width")
