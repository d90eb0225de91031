"""View plugins: custom HoloViews plots installed as packages, found through entry points.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."tailwise.views"]
    colour-magnitude = "my_package:ColourMagnitude"

and a layout places it by that name (``plots: {cmd: {kind: plugin, plugin: colour-magnitude}}``).
The object (a class, instantiated with no arguments, or an instance) provides

``title: str``
    shown above the plot;
``columns: dict[str, str]``
    the column *roles* it needs, each with a description (``{"colour": "a colour index, e.g. g−r"}``);
``x``, ``y``: role names (optional)
    which roles are the plot's axes, so box/lasso/tap selections link with the map;
``plot(data, classes) -> holoviews element``
    ``data`` is a DataFrame with one column per role plus ``id``, ``label``, ``predicted`` and
    ``class_colour`` (the colour the map gives the row); ``classes`` maps class name to colour.

The layout's ``columns`` maps roles to the data set's column names; a role missing there but
present under its own name in the data is taken as is; otherwise the dashboard shows a form
asking for it. Only installed packages are loaded (a layout names a plugin, never an import path).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from core.errors import ConfigError

GROUP = "tailwise.views"
RESERVED = ("id", "label", "predicted", "class_colour")
"""Columns the host adds to a plugin's data; no role may use these names."""


def available_view_plugins() -> dict[str, Any]:
    """Entry-point name -> entry point, for every installed ``tailwise.views`` plugin."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


@dataclass(frozen=True)
class ViewPlugin:
    """A loaded plugin, checked against the contract above."""

    name: str
    title: str
    columns: dict[str, str]
    x: str | None
    y: str | None
    impl: Any

    def plot(self, data, classes: dict[str, str]):
        return self.impl.plot(data, classes)


def load_view_plugin(name: str) -> ViewPlugin:
    """Load and check the plugin registered as ``name``; ``ConfigError`` says what is wrong."""
    found = available_view_plugins()
    if name not in found:
        known = ", ".join(sorted(found)) or "none are installed"
        raise ConfigError(f"no view plugin named {name!r} (entry-point group {GROUP!r}); "
                          f"installed: {known}")
    try:
        obj = found[name].load()
        impl = obj() if isinstance(obj, type) else obj
    except Exception as err:  # noqa: BLE001  (third-party code: report, never crash the page)
        raise ConfigError(f"view plugin {name!r} failed to load: {type(err).__name__}: {err}") from None
    columns = getattr(impl, "columns", None)
    if not isinstance(columns, dict) or not all(isinstance(k, str) for k in columns):
        raise ConfigError(f"view plugin {name!r}: 'columns' must be a dict of role -> description")
    clash = sorted(set(columns) & set(RESERVED))
    if clash:
        raise ConfigError(f"view plugin {name!r}: the roles {clash} clash with the columns the "
                          f"dashboard adds ({', '.join(RESERVED)}); rename them")
    if not callable(getattr(impl, "plot", None)):
        raise ConfigError(f"view plugin {name!r} has no plot(data, classes) method")
    x, y = getattr(impl, "x", None), getattr(impl, "y", None)
    for axis in (x, y):
        if axis is not None and axis not in columns:
            raise ConfigError(f"view plugin {name!r}: axis role {axis!r} is not one of its columns")
    return ViewPlugin(name=name, title=str(getattr(impl, "title", name)), columns=dict(columns),
                      x=x, y=y, impl=impl)


def resolve_roles(plugin: ViewPlugin, mapping: dict[str, str], available: list[str]) -> dict[str, str]:
    """Role -> data column for the roles that can be resolved (the layout's mapping, else a column
    named like the role). Unknown columns in the mapping raise ``ConfigError``."""
    roles: dict[str, str] = {}
    for role in plugin.columns:
        column = mapping.get(role) or (role if role in available else None)
        if column is None:
            continue
        if column not in available:
            raise ConfigError(f"plot {plugin.name!r}: role {role!r} maps to unknown column "
                              f"{column!r}; available: {', '.join(available)}")
        roles[role] = column
    return roles
