"""``python -m core.cli``: the ``tailwise`` command."""

from core.cli import app

if __name__ == "__main__":
    app()
