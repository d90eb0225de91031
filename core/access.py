"""Who may do what on a shared Tailwise server: viewers look, annotators label, admins manage.

The project file's ``access`` section lists user names per role (``core.project.AccessConfig``);
without it every user may do everything (a server on your own machine). The engine checks every
action against the policy (``Session`` for labels and class edits, the dashboard's per-browser
state for everything else), so a hidden button is never the only guard.

Roles and what they allow (each role includes the ones before it):

=========== ==================================================================================
viewer      ``view``: see the map, the queue, labels, history and metrics
annotator   ``label`` (label, skip, undo their own work), ``query`` (ask for a batch),
            ``retrain``, ``recompute_map``
admin       ``edit_classes`` (create, recolour, mark rare, rename), ``import``, ``export``,
            ``settings``, ``save_layout``, ``resolve`` (settle a disagreement between
            annotators: the resolution is a label event of origin ``resolution``)
=========== ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import AccessError
from core.project import AccessConfig

__all__ = ["ACTIONS", "ROLES", "AccessPolicy"]

ROLES = ("viewer", "annotator", "admin")
# Action -> the least role that may do it.
ACTIONS: dict[str, str] = {
    "view": "viewer",
    "label": "annotator",
    "query": "annotator",
    "retrain": "annotator",
    "recompute_map": "annotator",
    "edit_classes": "admin",
    "import": "admin",
    "export": "admin",
    "settings": "admin",
    "save_layout": "admin",
    "resolve": "admin",
}
_WHAT = {
    "view": "see this project", "label": "label items", "query": "ask for a batch",
    "retrain": "retrain the model", "recompute_map": "recompute the map",
    "edit_classes": "edit the classes", "import": "import project files",
    "export": "export the project", "settings": "change settings", "save_layout": "save layouts",
    "resolve": "resolve conflicts between annotators",
}


@dataclass(frozen=True)
class AccessPolicy:
    """The roles of a project's users; ``config=None`` lets everyone do everything."""

    config: AccessConfig | None = None

    @property
    def open(self) -> bool:
        """True when the project has no ``access`` section."""
        return self.config is None

    def role(self, user: str | None) -> str | None:
        """The user's role ('admin', 'annotator', 'viewer'), or None when they have none."""
        config = self.config
        if config is None:
            return "admin"
        if not user:
            return None
        if user in config.admins:
            return "admin"
        if config.annotators == "*" or user in config.annotators:
            return "annotator"
        if config.viewers == "*" or user in config.viewers:
            return "viewer"
        return None

    def allows(self, user: str | None, action: str) -> bool:
        """Whether ``user`` may do ``action`` (one of ``ACTIONS``)."""
        if action not in ACTIONS:
            raise KeyError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        role = self.role(user)
        return role is not None and ROLES.index(role) >= ROLES.index(ACTIONS[action])

    def require(self, user: str | None, action: str) -> None:
        """Raise ``AccessError`` unless ``user`` may do ``action``."""
        if self.allows(user, action):
            return
        role = self.role(user)
        who = repr(user) if user else "an anonymous user"
        has = f"is a {role}" if role else "has no role in this project"
        raise AccessError(
            f"{who} {has} and may not {_WHAT[action]} (needs the {ACTIONS[action]} role); "
            "ask an admin of the project to change the access section of the project file")
