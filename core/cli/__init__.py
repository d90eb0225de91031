"""``tailwise`` CLI. Each sub-module registers its commands on :data:`app`."""

from core.cli import project_cmds, retrain_cmd, simulate_cmd  # noqa: F401  (registers commands)
from core.cli.app import app

__all__ = ["app"]
