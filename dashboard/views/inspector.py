"""The selected items up close: thumbnails or features, extra images and info, label,
probabilities, label history.

Extra images (``data.image_columns``) are shown as tabs, local files inlined as data URIs after
the checks of ``core.item_images``; a remote image is shown only when its host is allowed, and
then the browser loads it — the server never fetches it. Info columns (``data.info_columns``)
form a table.
"""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import panel as pn
import param

from core.layout import InspectorOptions
from core.mapframe import UNLABELLED
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
    """What the selection is: images or a feature table, label, prediction, history (and who
    disagrees). Redrawn when the selection changes or one of its items is relabelled."""

    version = param.Integer(default=0, doc="Bumped when a selected item's label changed.")

    def __init__(self, state: AppState, options: InspectorOptions | None = None, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.options = options or InspectorOptions()
        state.param.watch(self._on_changes, "changes")

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

    def _info(self, row: int) -> str:
        """The item's ``data.info_columns`` as a table."""
        names = self.state.session.project.data.info_columns
        columns = self.state.dataset.columns
        cells = []
        for name in names:
            value = columns[name][row] if name in columns else ""
            shown = f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value)
            cells.append(f"<tr><td>{escape(name)}</td><td>{escape(shown or '–')}</td></tr>")
        return f'<table class="tw-info"><tr><th>info</th><th></th></tr>{"".join(cells)}</table>'

    def _extra_images(self, row: int) -> str:
        """One tab per ``data.image_columns`` column (CSS-only tabs: no round trip to switch)."""
        from core.errors import ConfigError
        from core.item_images import image_ref, read_image

        project = self.state.session.project
        columns = self.state.dataset.columns
        group = f"tw-img-{row}"
        inputs, labels, panels = [], [], []
        for k, column in enumerate(project.data.image_columns):
            ref = image_ref(project, column, columns[column][row] if column in columns else None)
            body = ""
            if ref.kind == "local":
                try:
                    mime, data = read_image(ref.path)
                    body = (f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}" '
                            f'alt="{escape(column)}" class="tw-extra-image"/>')
                except ConfigError as err:
                    body = f"<p class='tw-muted'>{escape(err)}</p>"
            elif ref.kind == "remote":
                body = (f'<img src="{escape(ref.url)}" alt="{escape(column)}" '
                        'class="tw-extra-image" referrerpolicy="no-referrer"/>')
            else:
                body = f"<p class='tw-muted'>{escape(ref.reason)}</p>"
            checked = " checked" if k == 0 else ""
            inputs.append(f'<input type="radio" name="{group}" id="{group}-{k}"{checked}/>')
            labels.append(f'<label for="{group}-{k}" class="tw-image-tab">{escape(column)}</label>')
            panels.append(f'<figure class="tw-image-panel" data-column="{escape(column)}">{body}</figure>')
        return (f'<div class="tw-image-tabs">{"".join(inputs)}<div class="tw-image-tab-row">'
                f'{"".join(labels)}</div><div class="tw-image-panels">{"".join(panels)}</div></div>')

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

    def _conflict(self, item: str) -> str:
        """A warning when annotators' labels in effect on ``item`` disagree (the history has all)."""
        stances = self.state.session.store.stances(item)
        if len(set(stances.values())) < 2:
            return ""
        who = ", ".join(f"{escape(a)}: <b>{escape(lab)}</b>" for a, lab in sorted(stances.items()))
        return f"<div class='tw-conflict' role='note'>⚠ experts disagree: {who}</div>"

    def _on_changes(self, *_) -> None:
        changed = self.state.last_changed  # None: a bulk action, anything may have changed
        if self.state.selection and (changed is None or set(self.state.selection) & set(changed)):
            self.version += 1

    def render(self, selection: list[str], *_) -> str:
        """The inspector's HTML for ``selection`` (every user text escaped)."""
        if not selection:
            return ("<div class='tw-inspector tw-muted'>Select items on the map (box, lasso or tap), "
                    "or take the next batch from the queue: its first item is shown here.</div>")
        rows = self.state.rows_of(selection)
        if len(rows) == 1:
            current = self.state.labels_of(selection)  # just this item: never every label
            labels = {int(rows[0]): current.get(selection[0])}  # row -> label
        else:
            # Many items (a box may hold 10^5): their labels from the shared map table, kept up
            # to date with the store, in one vectorised read (per-item store reads held the page
            # that every tab shares for seconds after a bulk label).
            shown = rows[: self.options.max_thumbnails]
            labels = {int(r): (v or None) for r, v in zip(shown, self.state.frame.values("label", shown))}
        parts = [f"<div class='tw-inspector'><h4>{len(rows)} selected</h4>"]
        if self.state.dataset.is_image:
            parts.append(self._thumbnails(rows, labels))
        if len(rows) == 1:
            row, item = int(rows[0]), selection[0]
            split = self.state.session.store.splits_of([item]).get(item)
            where = " <span class='tw-split-tag'>test split</span>" if split == "test" else ""
            # A second opinion is asked blind: another annotator's label would sway the answer.
            blind = self.state.is_second_opinion(item)
            shown = ("<span class='tw-second-opinion'>hidden: your second opinion is asked, "
                     "label it as you see it</span>" if blind
                     else f"<b>{escape(labels[row] or '–')}</b>")
            parts.append(f"<p><b class='tw-item-id' data-item='{escape(item)}'>{escape(item)}</b> · "
                         f"label: {shown}{where}</p>")
            data = self.state.session.project.data
            if data.image_columns:
                parts.append(self._extra_images(row))
            if data.info_columns:
                parts.append(self._info(row))
            if not self.state.dataset.is_image:
                parts.append(self._features(row))
            if not blind:
                parts.append(self._conflict(item))
            parts.append(self._probabilities(row))
            if not blind:
                parts.append("<b>history</b>" + self._history(item))
        else:
            counts = {"–" if value == UNLABELLED else value: count
                      for value, count in self.state.frame.counts("label", rows).items()}
            parts.append("<p>labels: " + ", ".join(f"{escape(v)} × {counts[v]}" for v in sorted(counts))
                         + "</p>")
        parts.append("</div>")
        return "".join(parts)

    def __panel__(self):
        s = self.state
        return html_pane(pn.bind(self.render, s.param.selection, s.param.labels_version,
                                 s.param.classes_version, self.param.version),
                            sizing_mode="stretch_width", css_classes=["tw-inspector-box"])
