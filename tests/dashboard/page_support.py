"""Helpers for tests that build the dashboard's page without a server."""

from __future__ import annotations


def show_every_tab(app) -> None:
    """Render ``app``'s page and show each tab in turn: a hidden tab's view is built then."""
    import panel as pn

    app.body.get_root()
    for tabs in app.body.select(pn.Tabs):
        for k in range(len(tabs)):
            tabs.active = k
