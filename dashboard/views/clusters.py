"""Predicted clusters of the embedding: size, label purity, dominant class; click to select.

The cluster method (``clusters.method``: kmeans, hdbscan, linkage) can be switched here; the
server recomputes (cached per model version and method) and the page says so meanwhile.
"""

from __future__ import annotations

import html

import pandas as pd
import panel as pn

from core.project import CLUSTER_METHODS
from dashboard.state import AppState

METHOD_HELP = {
    "kmeans": "k-means: even-sized clusters; rare classes tend to merge into neighbours",
    "hdbscan": "HDBSCAN: dense regions, as many as the data has",
    "linkage": "linkage: learned from your labels which neighbours belong together",
}


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
        self.method = pn.widgets.Select(
            label="Cluster method", options=list(CLUSTER_METHODS), value=state.cluster_method,
            css_classes=["tw-cluster-method"], width=150, disabled=not state.offers("settings"))
        self.method.param.watch(self._switch, "value")
        self.note = pn.pane.HTML("", css_classes=["tw-clusters-status"], sizing_mode="stretch_width")
        state.param.watch(self._stale, ["model_version"])
        state.param.watch(self._show_state, ["cluster_state", "cluster_method"])

    def _empty(self) -> pd.DataFrame:
        """No rows yet, but the column types of a summary (Tabulator picks formatters from them)."""
        numbers = {"cluster": "int64", "size": "int64", "n_labelled": "int64", "purity": "float64"}
        return pd.DataFrame({c: pd.Series([], dtype=numbers.get(c, object)) for c in self.COLUMNS})

    def _stale(self, *_):
        if len(self.table.value):
            self.button.label = "Recompute clusters (model changed)"

    def _show_state(self, *_) -> None:
        """What the clusters are, or that they are being computed, or why they failed."""
        s = self.state
        method = html.escape(s.cluster_method)
        if s.cluster_state == "computing":
            text = f"<span class='tw-computing'>Computing clusters by <b>{method}</b>…</span>"
        elif s.cluster_state.startswith("failed"):
            text = (f"<div class='tw-clusters-error' role='alert' style='color:#b00020'>"
                    f"Clustering by <b>{method}</b> {html.escape(s.cluster_state)}</div>")
        elif s.cluster_state == "ready" and s.shown_clusters is not None:
            c = s.shown_clusters
            text = (f"<b>{len(c.summary)}</b> clusters by <b>{method}</b> "
                    f"({html.escape(METHOD_HELP.get(c.used, c.used))})")
            if c.note:
                text += f"<div class='tw-clusters-fallback'>{html.escape(c.note)}</div>"
        else:
            text = ""
        self.note.object = text

    async def _compute(self, _event=None) -> None:
        await self._refresh(self.state.clusters_async)

    async def _switch(self, event) -> None:
        if event.new == self.state.session.project.clusters.method and len(self.table.value) \
                and self.state.cluster_state == "ready":
            return
        await self._refresh(lambda: self.state.set_cluster_method_async(event.new))

    async def _refresh(self, compute) -> None:
        self.button.loading = True
        self.method.disabled = True
        try:
            clusters = await compute()
            if clusters is None:  # refused: the reason is on the page
                self.method.value = self.state.session.project.clusters.method
                return
            summary = clusters.summary.copy()
            for column in ("dominant", "predicted"):
                summary[column] = summary[column].fillna("").astype(str).astype(object)
            self.table.value = summary.sort_values("size", ascending=False).reset_index(drop=True)
            self.button.label = "Recompute clusters"
            if self.method.value != self.state.cluster_method:
                self.method.value = self.state.cluster_method  # another tab switched it
            self.state.labels_version += 1  # the map can now colour by cluster
        except Exception as err:  # noqa: BLE001
            self.state.error = f"clustering failed: {err}"
        finally:
            self.button.loading = False
            self.method.disabled = not self.state.offers("settings")
            self._show_state()

    def _on_click(self, event) -> None:
        if event.row is not None and event.row < len(self.table.value):
            self.state.select_cluster(int(self.table.value.iloc[event.row]["cluster"]))

    def __panel__(self):
        return pn.Column(
            pn.Row(self.method, self.button, pn.pane.Markdown("Click a cluster to select it on the map."),
                   align="end"),
            self.note, self.table, sizing_mode="stretch_width")
