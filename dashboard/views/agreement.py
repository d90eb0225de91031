"""Agreement between experts: kappa and alpha with confidence intervals, overall and per class,
on the items several annotators labelled; and the conflicts an admin settles.

``agreement.double_share`` in the project file sends that share of every batch to a second
annotator (never the one who labelled the item), so the overlaps build up while labelling. The
numbers come from ``core.quality.agreement`` (bootstrap intervals: read on the work pool). A
resolution is a label event of origin ``resolution``; only admins may resolve, and the engine
checks it, not only this page.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Any

import pandas as pd
import panel as pn

from dashboard.state import AppState, escape
from dashboard.style import class_select, html_pane
from dashboard.views.review import OffLoopView

CONFLICT_COLUMNS = ["item", "labels", "current"]
AGREEMENT_COLUMNS = ["class", "items", "kappa", "kappa interval", "alpha", "alpha interval"]
DASH = "–"
# Agreement of each project's store as of its last event, shared by every tab: the bootstrap
# intervals cost seconds on a large overlap, and every tab would otherwise pay them.
_SHARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def shared_agreement(session: Any) -> tuple[list[dict], dict | None]:
    """``(open conflicts, agreement summary)`` of the session's store, computed once per new
    label event for all the tabs that ask (the others wait for that result)."""
    with _SHARED_LOCK:
        last = session.store.last_event_id()
        cached = _SHARED.get(session)
        if cached is None or cached[0] != last:
            cached = _SHARED[session] = (last, (session.conflicts(), session.agreement()))
        return cached[1]


def _value(stat: dict | None) -> str:
    value = None if stat is None else stat.get("value")
    return DASH if value is None or not math.isfinite(value) else f"{value:.2f}"


def _interval(stat: dict | None) -> str:
    if not stat or stat.get("low") is None or stat.get("high") is None:
        return DASH
    return f"{stat['low']:.2f} – {stat['high']:.2f}"


def agreement_frame(summary: dict | None) -> pd.DataFrame:
    """Per class (one class against the rest): items someone gave it, kappa and alpha with
    their intervals, as text ('–' where undefined)."""
    rows = [{"class": name, "items": int(values["items"]),
             "kappa": _value(values["kappa"]), "kappa interval": _interval(values["kappa"]),
             "alpha": _value(values["alpha"]), "alpha interval": _interval(values["alpha"])}
            for name, values in ((summary or {}).get("per_class") or {}).items()]
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def agreement_text(summary: dict | None, double_share: float) -> str:
    """The overall agreement in a sentence (HTML, user text escaped)."""
    share = (f"agreement.double_share is {double_share:g}: that share of every batch goes to a "
             "second annotator" if double_share else
             "set agreement.double_share in the project file (e.g. 0.1) to send a share of every "
             "batch to a second annotator")
    if summary is None:
        return (f"<div class='tw-agreement-summary' data-items='0'>No item has labels of two "
                f"annotators yet; {escape(share)}.</div>")
    method = "Cohen's" if summary["kappa_method"] == "cohen" else "Fleiss'"
    level = f"{100 * summary['confidence']:.0f} %"
    who = ", ".join(escape(a) for a in summary["annotators"])
    return (f"<div class='tw-agreement-summary' data-items='{summary['items']}' "
            f"data-disagreements='{summary['disagreements']}'>"
            f"<b>{summary['items']}</b> item{'s' * (summary['items'] != 1)} labelled by several "
            f"annotators ({who}): {method} kappa <b>{_value(summary['kappa'])}</b> "
            f"({level} interval {_interval(summary['kappa'])}), Krippendorff's alpha "
            f"<b>{_value(summary['alpha'])}</b> ({level} interval {_interval(summary['alpha'])}); "
            f"{summary['disagreements']} disagreement{'s' * (summary['disagreements'] != 1)}, "
            f"{summary.get('open_conflicts', 0)} still open. "
            f"<span class='tw-muted'>{escape(share)}.</span></div>")


def conflicts_frame(conflicts: list[dict]) -> pd.DataFrame:
    """One row per open conflict, oldest first: who gave which label, and the label in effect."""
    rows = [{"item": str(c["item"]),
             "labels": " · ".join(f"{who}: {label}" for who, label in c["labels"].items()),
             "current": "" if c.get("current") is None else str(c["current"])} for c in conflicts]
    return pd.DataFrame(rows, columns=CONFLICT_COLUMNS).astype(object)


class AgreementView(OffLoopView):
    """Overall and per-class agreement, and the open conflicts: click one, choose the label
    that settles it and press Resolve (admins)."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(state, **params)
        self.summary: dict | None = None
        self.conflicts: list[dict] = []
        self.chosen: str | None = None  # the conflict clicked last
        self.text = html_pane("", css_classes=["tw-agreement-text"])
        self.per_class = pn.pane.DataFrame(agreement_frame(None), index=False, escape=True,
                                           sizing_mode="stretch_width",
                                           css_classes=["tw-agreement-table"])
        self.table = pn.widgets.Tabulator(
            conflicts_frame([]), show_index=False, disabled=True, selectable=False, height=220,
            sizing_mode="stretch_width", layout="fit_columns", widths={"item": 100, "current": 80},
            css_classes=["tw-conflicts"])
        self.table.on_click(self._on_click)
        self.chosen_text = html_pane("", css_classes=["tw-conflict-chosen"])
        self.settle_as = class_select(state, label="Settle as", width=140,
                                      css_classes=["tw-settle-class"])
        self.resolve_button = pn.widgets.Button(label="Resolve", color="primary", width=110,
                                                css_classes=["tw-resolve"],
                                                disabled=not state.offers("resolve"))
        self.resolve_button.on_click(lambda _e: self.resolve())
        self._stale()

    def _read(self) -> tuple[list[dict], dict | None]:
        return shared_agreement(self.state.session)

    def _show(self, data: tuple[list[dict], dict | None]) -> None:
        self.conflicts, self.summary = data
        share = float(self.state.session.project.agreement.double_share)
        self.text.object = agreement_text(self.summary, share)
        self.per_class.object = agreement_frame(self.summary)
        self.table.value = conflicts_frame(self.conflicts)
        if self.chosen not in {c["item"] for c in self.conflicts}:
            self._choose(None)

    def _choose(self, item: str | None) -> None:
        self.chosen = item
        if item is None:
            self.chosen_text.object = ("<div class='tw-muted'>Click a conflict to inspect it and "
                                       "settle it.</div>")
            return
        conflict = next(c for c in self.conflicts if c["item"] == item)
        given = list(dict.fromkeys(conflict["labels"].values()))
        self.settle_as.value = given[0] if given[0] in self.settle_as.options else None
        labels = ", ".join(f"{escape(w)}: {escape(l)}" for w, l in conflict["labels"].items())
        self.chosen_text.object = (f"<div class='tw-conflict-item' data-item='{escape(item)}'>"
                                   f"<b>{escape(item)}</b>: {labels}</div>")

    def _on_click(self, event) -> None:
        if event.row is None or event.row >= len(self.table.value):
            return
        item = str(self.table.value.iloc[event.row]["item"])
        self.state.select([item])
        self._choose(item)

    def resolve(self, label: str | None = None) -> list[int]:
        """Settle the chosen conflict with ``label`` (default: the 'Settle as' class). The state
        refuses anyone but an admin, and so does the engine."""
        events = self.state.resolve(self.chosen or "", label or self.settle_as.value or "")
        if events:
            self.refresh()
        return events

    def __panel__(self):
        settle = pn.Row(self.settle_as, self.resolve_button, sizing_mode="stretch_width")
        return pn.Column(self.text, self.per_class,
                         html_pane("<b>Open conflicts</b> (admins settle them; every resolution "
                                   "is kept in the history)"),
                         self.table, self.chosen_text, settle, css_classes=["tw-agreement"],
                         sizing_mode="stretch_width")
