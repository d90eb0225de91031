"""Labelling: one button per class (number-key shortcuts), cluster, accept, skip, undo, and (for
admins) creating and editing classes: colour, rare flag, description, name while no label uses it.
Class edits are kept in the label store, so they survive restarts."""

from __future__ import annotations

import re
from functools import partial

import panel as pn
import param
from panel.custom import JSComponent

from dashboard.state import AppState

SHORTCUT_KEYS = "1234567890"


def shortcut_keys(names: list[str]) -> dict[str, str]:
    """Key -> class name. A class named like a key ('0'..'9') gets that key; the others take the
    remaining keys in order."""
    keys = {n: n for n in names if n in SHORTCUT_KEYS}
    free = [k for k in SHORTCUT_KEYS if k not in keys]
    for name in names:
        if name not in keys.values() and free:
            keys[free.pop(0)] = name
    return keys


def css_slug(name: str) -> str:
    """A class name as a CSS-class suffix: ``tw-label-<slug>`` (non [A-Za-z0-9_-] -> '-')."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


class KeyShortcuts(JSComponent):
    """Reports number keys pressed anywhere on the page (outside text fields)."""

    key = param.String(default="", doc="'<key>:<counter>' of the last shortcut pressed.")

    _esm = """
    export function render({ model }) {
      let count = 0;
      const onKey = (event) => {
        const target = event.composedPath()[0];
        const tag = (target && target.tagName) || "";
        if (window.__twOffline) return;  // connection lost: nothing would be saved
        if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
        if (!/^[0-9]$/.test(event.key) && !["u", "s"].includes(event.key)) return;
        count += 1;
        model.key = event.key + ":" + count;
      };
      document.addEventListener("keydown", onKey);
      model.on("remove", () => document.removeEventListener("keydown", onKey));
      return document.createElement("span");
    }
    """


class LabellingView(pn.viewable.Viewer):
    """Labels go to the whole selection through the label store ("saved" after the commit)."""

    def __init__(self, state: AppState, **params) -> None:
        super().__init__(**params)
        self.state = state
        self.keys = KeyShortcuts(height=0, width=0, margin=0)
        self.keys.param.watch(self._on_key, "key")
        self._built = None

    def _on_key(self, event) -> None:
        """A key press: the refusals are shown at once, the writes run as tasks of their own (in
        order, on the store's writer), so the next key is taken while one is written."""
        key = event.new.split(":")[0]
        if key == "u":
            if self.state.can_label():
                pn.state.execute(self.state.undo_async)
        elif key == "s":
            self.state.skip()
        else:
            name = shortcut_keys([c.name for c in self.state.classes]).get(key)
            if name is not None and self.state.can_label():  # refusals shown at once
                pn.state.execute(partial(self.state.label_selection_async, name))

    def _buttons(self, *_):
        signature = tuple((c.name, c.colour, c.rare) for c in self.state.classes)
        if self._built is not None and self._built[0] == signature:
            return self._built[1]
        buttons = []
        key_of = {name: key for key, name in shortcut_keys([c.name for c in self.state.classes]).items()}
        for cls in self.state.classes:
            key = key_of.get(cls.name, "")
            hint = f" [{key}]" if key and key != cls.name else ""
            button = pn.widgets.Button(
                label=f"{cls.name}{' ★' if cls.rare else ''}{hint}",
                css_classes=[f"tw-label-{css_slug(cls.name)}", "tw-label"],
                # a tooltip only for a class with a description: hover popups cover neighbours
                description=cls.description or None,
                stylesheets=[(f".bk-btn {{ border-left: 8px solid {cls.colour} !important; "
                              f"{'font-weight: 700;' if cls.rare else ''} }}")],
                width=118, margin=(3, 3), disabled=not self.state.offers("label"))
            button.on_click(self._label_click(cls.name))
            buttons.append(button)
        box = pn.FlexBox(*buttons, sizing_mode="stretch_width")
        self._built = (signature, box)
        return box

    def _label_click(self, name: str):
        async def click(_event) -> None:  # large selections are written off the serving thread
            await self.state.label_selection_async(name)

        return click

    def _new_class_form(self):
        name = pn.widgets.TextInput(label="New class", placeholder="name", css_classes=["tw-new-class-name"],
                                    sizing_mode="stretch_width")
        colour = pn.widgets.ColorPicker(label="Colour", value="#e41a1c", width=70)
        rare = pn.widgets.Checkbox(label="rare", value=True, css_classes=["tw-new-class-rare"])
        create = pn.widgets.Button(label="Create class", css_classes=["tw-new-class"], color="default")

        def on_create(_):
            self.state.add_class(name.value, colour=colour.value, rare=rare.value)
            if not self.state.error:
                name.value = ""

        create.on_click(on_create)
        return pn.Card(name, pn.Row(colour, rare, align="end"), create, title="Create a class",
                       collapsed=True, sizing_mode="stretch_width")

    async def _undo_click(self, _event) -> None:
        await self.state.undo_async()

    def _edit_class_form(self):
        s = self.state
        names = lambda: [c.name for c in s.classes]  # noqa: E731
        choose = pn.widgets.Select(label="Class", options=names(), css_classes=["tw-edit-class-name"],
                                   sizing_mode="stretch_width")
        rename = pn.widgets.TextInput(label="Name", css_classes=["tw-edit-class-rename"],
                                      sizing_mode="stretch_width")
        colour = pn.widgets.ColorPicker(label="Colour", width=70, css_classes=["tw-edit-class-colour"])
        rare = pn.widgets.Checkbox(label="rare", css_classes=["tw-edit-class-rare"])
        description = pn.widgets.TextInput(label="Description", css_classes=["tw-edit-class-description"],
                                           sizing_mode="stretch_width")
        save = pn.widgets.Button(label="Save class", css_classes=["tw-edit-class"], color="default")

        def show(*_):
            cls = next((c for c in s.classes if c.name == choose.value), None)
            if cls is not None:
                rename.value, colour.value, rare.value = cls.name, cls.colour, cls.rare
                description.value = cls.description

        def on_save(_):
            if choose.value:
                s.edit_class(choose.value, new_name=rename.value, colour=colour.value,
                             rare=rare.value, description=description.value)

        def on_classes(*_):
            current = choose.value
            choose.options = names()
            if current in choose.options:
                choose.value = current
            show()

        choose.param.watch(show, "value")
        s.param.watch(on_classes, "classes_version")
        save.on_click(on_save)
        show()
        return pn.Card(choose, rename, pn.Row(colour, rare, align="end"), description, save,
                       title="Edit a class", collapsed=True, sizing_mode="stretch_width",
                       css_classes=["tw-edit-class-card"])

    def __panel__(self):
        s = self.state
        has_selection = s.param.selection.rx.len() > 0
        cluster = pn.widgets.Button(label="Select its cluster", css_classes=["tw-select-cluster"],
                                    disabled=has_selection.rx.not_(), width=130)
        cluster.on_click(lambda _: s.select_cluster_of_selection())
        accept = pn.widgets.Button(label="Accept prediction", css_classes=["tw-accept"],
                                   disabled=(has_selection & (s.param.model_version.rx() != None)).rx.not_(),
                                   width=130)
        accept.on_click(lambda _: s.accept_predictions())
        skip = pn.widgets.Button(label="Skip / unsure (s)", css_classes=["tw-skip"], width=130)
        skip.on_click(lambda _: s.skip())
        undo = pn.widgets.Button(label="↶ Undo (u)", css_classes=["tw-undo"], width=130)
        undo.on_click(self._undo_click)
        return pn.Column(
            pn.pane.Markdown("**Label the selection** (number keys; u undo, s skip)", margin=(0, 5)),
            pn.panel(pn.bind(self._buttons, s.param.classes_version)),
            pn.FlexBox(cluster, accept, skip, undo),
            *([self._new_class_form(), self._edit_class_form()] if s.offers("edit_classes") else []),
            self.keys,
            sizing_mode="stretch_width",
        )
