"""The curated test set: search items by criteria, step through the matches, label them into the
*test* split (measured, never trained on). Criteria are parsed by ``core.expr`` — never ``eval``.
"""

from __future__ import annotations

import pandas as pd
import panel as pn
import param

from core.errors import TailwiseError
from core.expr.parser import COMPARISONS
from dashboard.state import AppState, escape
from dashboard.style import html_pane

OPERATORS = [op for op in COMPARISONS if op != "="]


class TestSetView(pn.viewable.Viewer):
    """Criteria builder and search; the matches, one at a time, labelled into the test split."""

    __test__ = False  # not a pytest test class, despite its name

    matches = param.List(default=[], doc="Ids of the items meeting the last criteria.")
    cursor = param.Integer(default=0, doc="Which match is selected (index into matches).")
    message = param.String(default="")
    problem = param.String(default="", doc="Why the last criteria were refused ('' when fine).")

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self._columns: list[str] = []
        self.column = pn.widgets.Select(label="Column", css_classes=["tw-criteria-column"], width=130)
        self.operator = pn.widgets.Select(label="Operator", options=OPERATORS, value="<", width=70,
                                          css_classes=["tw-criteria-operator"])
        self.value = pn.widgets.TextInput(label="Value", placeholder="0.5 or 'text'", width=110,
                                          css_classes=["tw-criteria-value"])
        self.join = pn.widgets.Select(label="Join", options=["AND", "OR"], value="AND", width=70)
        self.add = pn.widgets.Button(label="Add", css_classes=["tw-criteria-add"], width=60,
                                     align="end")
        self.add.on_click(lambda _: self.add_condition())
        self.criteria = pn.widgets.TextInput(
            label="Criteria", placeholder="e.g. g_r < -0.1 AND u_g < 0.6", css_classes=["tw-criteria"],
            sizing_mode="stretch_width")
        self.unlabelled = pn.widgets.Checkbox(label="only items without a label", value=True)
        self.search_button = pn.widgets.Button(label="Search", color="primary", width=90,
                                               css_classes=["tw-search"])
        self.search_button.on_click(lambda _: self.search())
        self.prev = pn.widgets.Button(label="◀ Prev", width=80, css_classes=["tw-prev-match"])
        self.next = pn.widgets.Button(label="Next ▶", width=80, css_classes=["tw-next-match"])
        self.prev.on_click(lambda _: self.step(-1))
        self.next.on_click(lambda _: self.step(1))
        self.test_class = pn.widgets.Select(label="Class", css_classes=["tw-test-class"], width=150)
        self.label_button = pn.widgets.Button(label="Label into the test set", color="warning",
                                              css_classes=["tw-label-test"], align="end")
        self.label_button.on_click(lambda _: self.label_current(self.test_class.value))
        self.table = pn.widgets.Tabulator(pd.DataFrame({"id": []}), show_index=False, disabled=True,
                                          selectable=False, height=220, sizing_mode="stretch_width",
                                          layout="fit_data_stretch", css_classes=["tw-matches"])
        self.table.on_click(self._on_click)
        self._refresh_choices()
        state.param.watch(lambda *_: self._refresh_choices(), ["labels_version", "model_version"])

    # ------------------------------------------------------------------ choices
    def _refresh_choices(self) -> None:
        from core.search import item_column_names

        self._columns = item_column_names(self.state.session)
        self.column.options = self._columns
        if self.column.value not in self._columns and self._columns:
            numeric = self.state.dataset.numeric_columns()
            self.column.value = numeric[0] if numeric else self._columns[0]
        names = [c.name for c in self.state.classes]
        self.test_class.options = names
        if self.test_class.value not in names and names:
            self.test_class.value = names[0]

    # ------------------------------------------------------------------ actions
    def add_condition(self) -> str:
        """Append 'column op value' to the criteria (quoting text values, back-quoting odd names)."""
        column, value = self.column.value, (self.value.value or "").strip()
        if not column or not value:
            self._refuse("choose a column and type a value first")
            return self.criteria.value
        name = column if column.isidentifier() else f"`{column}`"
        try:
            float(value)
        except ValueError:
            if not (value[0] == value[-1] and value[0] in "'\""):
                value = "'" + value.replace("'", "") + "'"
        condition = f"{name} {self.operator.value} {value}"
        current = (self.criteria.value or "").strip()
        self.criteria.value = f"{current} {self.join.value} {condition}" if current else condition
        return self.criteria.value

    def search(self, criteria: str | None = None) -> list[str]:
        """Find the items meeting the criteria and select the first one."""
        from core.search import find_items

        text = self.criteria.value if criteria is None else criteria
        self.criteria.value = text
        try:
            result = find_items(self.state.session, text or "", unlabelled_only=self.unlabelled.value)
        except TailwiseError as err:
            self._refuse(str(err))
            return []
        self.problem = ""
        self.matches = result.ids
        self.cursor = 0
        self.message = f"{len(result)} items match"
        self._fill_table(result)
        if result.ids:
            self.state.select(result.ids[:1])
        return result.ids

    def step(self, delta: int) -> str | None:
        """Select the previous/next match."""
        if not self.matches:
            return None
        self.cursor = (self.cursor + delta) % len(self.matches)
        item = self.matches[self.cursor]
        self.state.select([item])
        return item

    def label_current(self, label: str | None) -> list[int]:
        """Label the selected match into the test split and move on to the next match."""
        if not self.matches or not label:
            self._refuse("search first, then choose a class")
            return []
        item = self.matches[self.cursor]
        if self.state.selection != [item]:
            self.state.select([item])
        events = self.state.label_selection(label, split="test")
        if events:
            self._fill_table()
            if self.cursor + 1 < len(self.matches):
                self.step(1)
        return events

    def _refuse(self, reason: str) -> None:
        self.problem = reason
        self.message = ""

    def _on_click(self, event) -> None:
        if event.row is not None and event.row < len(self.matches):
            self.cursor = int(event.row)
            self.state.select([self.matches[self.cursor]])

    def _fill_table(self, result=None) -> None:
        from core.search import item_columns

        columns = item_columns(self.state.session)
        rows = self.state.session.positions(self.matches)
        used = [] if result is None else [c for c in result.expression.columns if c in columns]
        used = used or [c for c in self.table.value.columns if c in columns and c not in
                        ("id", "label", "split")]
        frame = {"id": self.matches, "label": columns["label"][rows], "split": columns["split"][rows]}
        for name in used[:6]:
            frame[name] = columns[name][rows]
        self.table.value = pd.DataFrame(frame)

    # ------------------------------------------------------------------ rendering
    def _status(self, message: str, problem: str, matches: list, cursor: int, *_):
        test = self.state.label_counts(split="test")
        total = sum(test.values())
        counts = ", ".join(f"{escape(k)} {v}" for k, v in test.items() if v) or "none yet"
        parts = [f"<div class='tw-test-summary' data-n='{total}'>Test split: <b>{total}</b> items "
                 f"({counts}) — measured after each retrain, never trained on.</div>"]
        if problem:
            parts.append(f"<div class='tw-error tw-criteria-error' role='alert'>{escape(problem)}</div>")
        elif message:
            where = f" · showing {cursor + 1} of {len(matches)}" if matches else ""
            parts.append(f"<div class='tw-search-result' data-count='{len(matches)}'>"
                         f"{escape(message)}{where}</div>")
        return "".join(parts)

    def __panel__(self):
        status = html_pane(pn.bind(self._status, self.param.message, self.param.problem,
                                   self.param.matches, self.param.cursor,
                                   self.state.param.labels_version), sizing_mode="stretch_width")
        return pn.Column(
            pn.pane.Markdown("**Build a test set**: search the catalogue, then label the matches "
                             "into the test split.", margin=(0, 5)),
            pn.Row(self.column, self.operator, self.value, self.join, self.add),
            pn.Row(self.criteria, self.search_button, align="end", sizing_mode="stretch_width"),
            self.unlabelled,
            status,
            pn.Row(self.prev, self.next, self.test_class, self.label_button, align="end"),
            self.table,
            css_classes=["tw-testset"], sizing_mode="stretch_width",
        )
