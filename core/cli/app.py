"""The ``tailwise`` command: a thin layer of I/O over ``core`` calls."""

from __future__ import annotations

from typing import Annotated

import typer

from core import __version__

app = typer.Typer(
    name="tailwise",
    help="Active labelling for class-imbalanced data: find and learn the rare classes first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


AllowOutside = Annotated[
    bool,
    typer.Option("--allow-outside", help="Allow data, label and store paths outside the project file's folder."),
]
"""The one ``--allow-outside`` flag every command that reads a project file takes."""


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tailwise {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Tailwise command-line interface."""
