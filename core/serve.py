"""Where the dashboard and the default project live, and the ``panel serve`` command that runs them.

Shared by ``tailwise serve`` and ``panel serve dashboard`` (``dashboard.app``), so both open the
same project and say where it and its label store are. Locating the installed ``dashboard``
package never imports it (nor Panel).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.data.demos import DEFAULT_DEMO
from core.errors import ConfigError


def demo_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Per-user folder of the built-in demo: ``$TAILWISE_HOME/demo`` or ``~/.tailwise/demo``."""
    home = environ.get("TAILWISE_HOME")
    return (Path(home) if home else Path.home() / ".tailwise") / "demo"


def default_project(environ: Mapping[str, str] = os.environ) -> Path:
    """``$TAILWISE_PROJECT``, else the per-user demo project (written on first use)."""
    chosen = environ.get("TAILWISE_PROJECT")
    if chosen:
        return Path(chosen).expanduser()
    path = demo_folder(environ) / "project.yaml"
    if not path.exists():
        from core.data import make_demo

        path = make_demo(DEFAULT_DEMO, path.parent)
    return path


def where_it_lives(project_path: str | Path) -> str:
    """'project: ... · label store: ...' for the start-up message (paths absolute)."""
    from core.project import load_project

    project = load_project(project_path)
    store = project.resolve(project.label_store, allow_outside=True, field="label_store")
    cache = project.resolve(project.cache_dir, allow_outside=True, field="cache_dir")
    return (f"project: {Path(project_path).resolve()}\n"
            f"label store: {store}\n"
            f"cache (embeddings, maps): {cache}")


def dashboard_dir() -> Path:
    """The installed ``dashboard`` package folder (what ``panel serve`` runs)."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the dashboard package is not installed; reinstall tailwise "
                          "(pip install tailwise)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / "main.py").is_file():
        raise ConfigError(f"{folder}: the dashboard package has no main.py; reinstall tailwise")
    return folder


def serve_command(project: str | Path, panel_options: Sequence[str] = ()) -> list[str]:
    """``python -m panel serve <dashboard> [options] --args --project PROJECT``.

    Options after a literal ``--args`` among ``panel_options`` go to the dashboard too.
    """
    options = list(panel_options)
    app_args: list[str] = []
    if "--args" in options:
        at = options.index("--args")
        options, app_args = options[:at], options[at + 1:]
    return [sys.executable, "-m", "panel", "serve", str(dashboard_dir()), *options,
            "--args", "--project", str(Path(project).resolve()), *app_args]
