"""The selected items up close: thumbnails or features, label, probabilities, label history."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import panel as pn

from core.layout import InspectorOptions
from dashboard.state import AppState, escape
from dashboard.style import html_pane


def thumbnail_png(image: np.ndarray, size: int) -> bytes:
    """An 8x8 / 28x28 / RGB image upscaled with nearest neighbour (pixels stay crisp), as PNG."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).astype(np.uint8)
    picture = Image.fromarray(array)
    scale = max(1, size // max(array.shape[:2]))
    picture = picture.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


class InspectorView(pn.viewable.Viewer):
    """What the selection is: images or a feature table, label, prediction, history."""

    def __init__(self, state: AppState, options: InspectorOptions | None = None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.options = options or InspectorOptions()

    def _thumbnails(self, rows: np.ndarray, labels: np.ndarray) -> str:
        images = self.state.dataset.images
        predicted = self.state.session.state.predicted if self.state.session.state else None
        cells = []
        size = self.options.thumbnail_px if len(rows) == 1 else max(48, self.options.thumbnail_px // 2)
        for row in rows[: self.options.max_thumbnails]:
            png = base64.b64encode(thumbnail_png(images[row], size)).decode()
            label = labels[row] or "–"
            guess = f" · pred {escape(predicted[row])}" if predicted is not None else ""
            cells.append(
                f'<figure class="tw-thumb"><img src="data:image/png;base64,{png}" '
                f'style="image-rendering: pixelated" alt="item {escape(self.state.dataset.ids[row])}"/>'
                f'<figcaption>{escape(self.state.dataset.ids[row])}<br>{escape(label)}{guess}</figcaption>'
                '</figure>')
        more = len(rows) - self.options.max_thumbnails
        tail = f'<div class="tw-more">+{more} more</div>' if more > 0 else ""
        return f'<div class="tw-thumbs">{"".join(cells)}{tail}</div>'

    def _features(self, row: int) -> str:
        ds = self.state.dataset
        values = ds.features[row]
        shown = min(len(values), 24)
        body = "".join(f"<tr><td>{escape(n)}</td><td>{v:.4g}</td></tr>"
                       for n, v in zip(ds.feature_names[:shown], values[:shown]))
        more = f"<tr><td colspan=2>… {len(values) - shown} more</td></tr>" if len(values) > shown else ""
        return f'<table class="tw-features"><tr><th>feature</th><th>value</th></tr>{body}{more}</table>'

    def _probabilities(self, row: int) -> str:
        state = self.state.session.state
        if state is None:
            return "<p class='tw-muted'>no model yet</p>"
        proba = state.proba[row]
        colours = {c.name: c.colour for c in self.state.classes}
        bars = []
        for k in np.argsort(-proba)[:5]:
            name, p = state.classes[k], float(proba[k])
            bars.append(
                f'<div class="tw-prob"><span class="tw-prob-name">{escape(name)}</span>'
                f'<span class="tw-prob-bar" style="width:{p * 100:.0f}%;'
                f'background:{escape(colours.get(name, "#888888"))}"></span>'
                f'<span class="tw-prob-value">{p:.2f}</span></div>')
        return f'<div class="tw-probs"><b>predicted</b>{"".join(bars)}</div>'

    def _history(self, item: str) -> str:
        events = self.state.session.store.history(item)
        if not events:
            return "<p class='tw-muted'>no label events yet</p>"
        rows = "".join(
            f"<tr><td>{escape(_when(e.time))}</td><td>{escape(e.label if e.label is not None else '(removed)')}</td>"
            f"<td>{escape(e.annotator)}</td><td>{escape(e.origin)}</td>"
            f"<td>{'' if e.model_version is None else 'v' + str(e.model_version)}</td>"
            f"<td>{escape(e.note or '')}</td></tr>"
            for e in reversed(events[-20:]))
        return ('<table class="tw-history"><tr><th>when</th><th>label</th><th>who</th><th>origin</th>'
                f"<th>model</th><th>note</th></tr>{rows}</table>")

    def render(self, selection: list[str], *_) -> str:
        """The inspector's HTML for ``selection`` (every user text escaped)."""
        if not selection:
            return ("<div class='tw-inspector tw-muted'>Select items on the map (box, lasso or tap), "
                    "or take the next batch from the queue.</div>")
        rows = self.state.session.positions(selection)
        labels = self.state.session.labels_by_row()
        parts = [f"<div class='tw-inspector'><h4>{len(rows)} selected</h4>"]
        if self.state.dataset.is_image:
            parts.append(self._thumbnails(rows, labels))
        if len(rows) == 1:
            row, item = int(rows[0]), selection[0]
            parts.append(f"<p><b class='tw-item-id' data-item='{escape(item)}'>{escape(item)}</b> · label: <b>{escape(labels[row] or '–')}</b></p>")
            if not self.state.dataset.is_image:
                parts.append(self._features(row))
            parts.append(self._probabilities(row))
            parts.append("<b>history</b>" + self._history(item))
        else:
            values, counts = np.unique(np.where(labels[rows] == None, "–", labels[rows]).astype(str),
                                       return_counts=True)
            parts.append("<p>labels: " + ", ".join(f"{escape(v)} × {c}" for v, c in zip(values, counts)) + "</p>")
        parts.append("</div>")
        return "".join(parts)

    def __panel__(self):
        s = self.state
        return html_pane(pn.bind(self.render, s.param.selection, s.param.labels_version),
                            sizing_mode="stretch_width", css_classes=["tw-inspector-box"])
