"""``tailwise`` CLI. Each sub-module registers its commands on :data:`app`."""

from core.cli.app import app
from core.cli import project_cmds, simulate_cmd, retrain_cmd  # noqa: F401,E402  (registers commands)

__all__ = ["app"]
