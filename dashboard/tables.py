"""A Tabulator view helper: one table, its click handler, and whole-value or per-cell updates.

Panel 1.9's Tabulator ignores a new ``value`` that reaches the browser while the table is still
being built there (its ``setData`` returns early while ``_initializing``/``_building``);
:class:`dashboard.client.TableResync` makes every table show such data once it is built. Tables are
updated in place: building a new Tabulator per value destroyed tables the browser was still
drawing (page errors such as "Cannot read properties of null (reading 'verticalFillMode')").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import panel as pn


class RebuiltTable(pn.viewable.Viewer):
    """``table``: the ``pn.widgets.Tabulator``; setting ``value`` updates it in place."""

    def __init__(self, frame: pd.DataFrame, *, on_click: Callable[[Any], None] | None = None,
                 **table_params: Any) -> None:
        super().__init__()
        self._table_params = table_params
        self._on_click = on_click
        self.table = self._build(frame)
        self._holder = pn.Column(self.table, sizing_mode="stretch_width", margin=0)

    def _build(self, frame: pd.DataFrame) -> pn.widgets.Tabulator:
        table = pn.widgets.Tabulator(frame, **self._table_params)
        if self._on_click is not None:
            table.on_click(self._on_click)
        return table

    @property
    def value(self) -> pd.DataFrame:
        return self.table.value

    @value.setter
    def value(self, frame: pd.DataFrame) -> None:
        self.table.value = frame

    def patch(self, patch_value: dict) -> None:
        """Change a few cells in place (``Tabulator.patch``)."""
        self.table.patch(patch_value)

    def __panel__(self):
        return self._holder
