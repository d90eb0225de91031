"""Keep Panel's own login and logout pages offline.

``panel serve --basic-auth`` shows Panel's login page, which links its logo and favicon from
Panel's CDN: in an air-gapped lab the browser's first request would leave the server. The same
files ship with Panel and the server serves them under ``static/extensions/panel/``, so the pages
are rendered pointing there instead. A template given with ``--basic-login-template`` or
``--logout-template`` is left alone (only Panel's own templates are wrapped).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalResources", "offline_auth_pages"]


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
