"""The dashboard's stylesheet, shared by the HTML panes (they live in shadow DOM)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import panel as pn

CSS_FILE = Path(__file__).with_name("tailwise.css")


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return CSS_FILE.read_text(encoding="utf-8")


# System fonts: the page never asks another server for a font (it must work offline).
SYSTEM_FONT = ("system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, "
               "'Noto Sans', 'Liberation Sans', sans-serif")


@lru_cache(maxsize=1)
def offline_design():
    """Panel's Fast design without the Google Fonts stylesheet it links by default; every other
    resource of the design is served by the Panel server itself."""
    from panel.theme.fast import Fast

    # Named "Fast" on purpose: Panel finds a design's bundled files under its lower-cased name.
    return type("Fast", (Fast,), {
        "_resources": {kind: value for kind, value in Fast._resources.items() if kind != "font"},
        "__doc__": "The Fast design, minus its Google Fonts stylesheet (the page stays offline).",
    })


def html_pane(obj, **params) -> pn.pane.HTML:
    """An HTML pane carrying the Tailwise stylesheet."""
    if "width" not in params:
        params.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(obj, stylesheets=[stylesheet()], **params)


def class_select(state, *, none: str | None = None, **params) -> pn.widgets.Select:
    """A picker of the project's classes that follows schema edits (``state.classes_version``);
    ``none`` names an extra first option whose value is ``""``."""
    def options():
        names = {c.name: c.name for c in state.classes}
        return {none: ""} | names if none else list(names)

    select = pn.widgets.Select(options=options(), **params)
    state.param.watch(lambda *_: setattr(select, "options", options()), "classes_version")
    return select


def holoviews():
    """HoloViews with its Bokeh backend loaded (once per process)."""
    import holoviews as hv

    if "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)
    return hv


def on_document(model, edit) -> None:
    """Run ``edit`` (a change to Bokeh ``model`` made outside Panel's parameters) where Bokeh
    allows it: on the document's next tick when it is served (the callback that asked may not
    hold the document, e.g. after an ``await``), at once otherwise (tests, notebooks)."""
    doc = getattr(model, "document", None)
    if doc is not None and doc.session_context is not None:
        doc.add_next_tick_callback(edit)
    else:
        edit()
