"""The dashboard's stylesheet, shared by the HTML panes (they live in shadow DOM)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import panel as pn

CSS_FILE = Path(__file__).with_name("tailwise.css")


@lru_cache(maxsize=1)
def stylesheet() -> str:
    return CSS_FILE.read_text(encoding="utf-8")


def html_pane(obj, **params) -> pn.pane.HTML:
    """An HTML pane carrying the Tailwise stylesheet."""
    if "width" not in params:
        params.setdefault("sizing_mode", "stretch_width")
    return pn.pane.HTML(obj, stylesheets=[stylesheet()], **params)


def holoviews():
    """HoloViews with its Bokeh backend loaded (once per process)."""
    import holoviews as hv

    if "bokeh" not in hv.Store.renderers:
        hv.extension("bokeh", logo=False)
    return hv
