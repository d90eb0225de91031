"""Predicted clusters of the embedding: size, label purity, dominant class; click to select."""

from __future__ import annotations

import pandas as pd
import panel as pn

from dashboard.state import AppState


class ClustersView(pn.viewable.Viewer):
    """A table of clusters; clicking a row selects the whole cluster on the map."""

    COLUMNS = ("cluster", "size", "n_labelled", "purity", "dominant", "predicted")

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.table = pn.widgets.Tabulator(
            self._empty(), show_index=False, disabled=True, selectable=False, height=320,
            sizing_mode="stretch_width", layout="fit_data_stretch", css_classes=["tw-clusters"],
            formatters={"purity": {"type": "progress", "max": 1, "color": "#59a14f"}})
        self.table.on_click(self._on_click)
        self.button = pn.widgets.Button(label="Compute clusters", css_classes=["tw-clusters-refresh"],
                                        color="default", width=160)
        self.button.on_click(self._compute)
        state.param.watch(self._stale, ["model_version"])

    def _empty(self) -> pd.DataFrame:
        """No rows yet, but the column types of a summary (Tabulator picks formatters from them)."""
        numbers = {"cluster": "int64", "size": "int64", "n_labelled": "int64", "purity": "float64"}
        return pd.DataFrame({c: pd.Series([], dtype=numbers.get(c, object)) for c in self.COLUMNS})

    def _stale(self, *_):
        if len(self.table.value):
            self.button.label = "Recompute clusters (model changed)"

    async def _compute(self, _event=None) -> None:
        self.button.loading = True
        try:
            clusters = await self.state.clusters_async()
            summary = clusters.summary.copy()
            for column in ("dominant", "predicted"):
                summary[column] = summary[column].fillna("").astype(str).astype(object)
            self.table.value = summary.sort_values("size", ascending=False).reset_index(drop=True)
            self.button.label = "Recompute clusters"
            self.state.labels_version += 1  # the map can now colour by cluster
        except Exception as err:  # noqa: BLE001
            self.state.error = f"clustering failed: {err}"
        finally:
            self.button.loading = False

    def _on_click(self, event) -> None:
        if event.row is not None and event.row < len(self.table.value):
            self.state.select_cluster(int(self.table.value.iloc[event.row]["cluster"]))

    def __panel__(self):
        return pn.Column(pn.Row(self.button, pn.pane.Markdown("Click a cluster to select it on the map.")),
                         self.table, sizing_mode="stretch_width")
