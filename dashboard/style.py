"""The dashboard's stylesheet, shared by the HTML panes (they live in shadow DOM)."""

from __future__ import annotations

import inspect
import logging
from functools import lru_cache, wraps
from pathlib import Path

import panel as pn

from dashboard.state import describe, escape

log = logging.getLogger("tailwise")

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
    """An HTML pane carrying the Tailwise stylesheet. A bound function (``pn.bind``) is drawn
    under :func:`drawn_or_error`."""
    if "width" not in params:
        params.setdefault("sizing_mode", "stretch_width")
    if callable(obj) and hasattr(obj, "_dinfo"):
        obj = drawn_or_error(obj)
    return pn.pane.HTML(obj, stylesheets=[stylesheet()], **params)


def drawn_or_error(draw):
    """``draw`` (a function bound to parameters) that never raises: a failure is logged with its
    traceback and drawn as the error in the pane's place.

    A bound pane is redrawn by a watcher of the parameters it follows; an exception there went
    up into whatever set the parameter (e.g. the selection after a label) and stopped the other
    views following it too, so the page could show one selected item and an inspector that never
    followed it."""
    @wraps(draw)  # keeps the ``_dinfo`` Panel reads the dependencies from
    def drawn(*args, **kwargs):
        try:
            return draw(*args, **kwargs)
        except Exception as err:  # noqa: BLE001  (drawn in its place; the other views go on)
            log.exception("could not draw %s", getattr(inspect.unwrap(draw), "__qualname__", draw))
            return f"<div class='tw-error'>Could not show this part of the page: {escape(describe(err))}</div>"
    return drawn


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
