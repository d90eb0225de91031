"""Commands registered on core.cli.app (filled in by its issue)."""
