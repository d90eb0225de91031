"""Keep the page offline: Panel's own login and logout pages, and stylesheet links redrawn later.

``panel serve --basic-auth`` shows Panel's login page, which links its logo and favicon from
Panel's CDN: in an air-gapped lab the browser's first request would leave the server. The same
files ship with Panel and the server serves them under ``static/extensions/panel/``, so the pages
are rendered pointing there instead. A template given with ``--basic-login-template`` or
``--logout-template`` is left alone (only Panel's own templates are wrapped).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalResources", "local_stylesheets", "offline_auth_pages"]


class LocalResources:
    """A Jinja template rendered with Panel's files taken from this server, not the CDN."""

    def __init__(self, template: Any, local_dist: str) -> None:
        self.template = template
        self.local_dist = local_dist

    def render(self, *args: Any, **kwargs: Any) -> str:
        kwargs["PANEL_CDN"] = self.local_dist
        return self.template.render(*args, **kwargs)


def offline_auth_pages() -> None:
    """Make Panel's login and logout handlers render their pages with local resources.

    Called once when the server has loaded the app (``server_lifecycle.on_server_loaded``),
    after Panel chose the templates. Relative URLs, so a ``--prefix`` keeps working.
    """
    from panel import auth
    from panel.io.resources import LOCAL_DIST

    pages = ((auth.BasicLoginHandler, "_login_template", auth.BASIC_LOGIN_TEMPLATE),
             (auth.LogoutHandler, "_logout_template", auth.LOGOUT_TEMPLATE))
    for handler, attribute, panels_own in pages:
        if getattr(handler, attribute, None) is panels_own:
            setattr(handler, attribute, LocalResources(panels_own, LOCAL_DIST))


def local_stylesheets() -> None:
    """Keep Panel from pointing a page's stylesheets at its CDN when it redraws a detached view.

    Panel shares one stylesheet object per URL among all the components of a page (its per-page
    cache). When a component's model is updated while detached from the page (a pane in a tab
    not shown: ``Tabs(dynamic=True)`` takes hidden tabs off the page), Panel has no page to ask
    where its files come from and rewrites the shared object to its CDN (``cdn.holoviz.org``):
    the page then fetches ``loading.css`` and the theme's CSS from there, which an air-gapped
    lab sees as failed requests. Reproduced: open another tab, label an item.

    With Panel's files served by this server (its default resources), such a rewrite gets this
    server's path instead. Installed once when the server loads (``server_lifecycle``).
    """
    import panel.io.resources as resources
    import panel.reactive as reactive

    original = resources.patch_stylesheet
    if getattr(original, "keeps_local", False):
        return

    def patch_stylesheet(stylesheet: Any, dist_url: str) -> None:
        if dist_url == resources.CDN_DIST and not resources.use_cdn():
            dist_url = resources.get_dist_path()
        original(stylesheet, dist_url)

    patch_stylesheet.keeps_local = True  # type: ignore[attr-defined]
    # Panel's modules call it by these two names (panel.theme.base imports it when it runs).
    resources.patch_stylesheet = reactive.patch_stylesheet = patch_stylesheet
