"""``tailwise`` CLI. Each sub-module registers its commands on :data:`app`."""

from core.cli import (  # noqa: F401  (registers commands)
    label_cmds,
    project_cmds,
    retrain_cmd,
    serve_cmd,
    simulate_cmd,
)
from core.cli.app import app

__all__ = ["app"]
