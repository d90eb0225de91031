"""The ``tailwise`` command: a thin layer of I/O over ``core`` calls.

Help is in plain words: options show what they take (``--out DIR``, ``--budget N``,
``--device auto|cpu|cuda``), flags show nothing after their name, and the usage line names
arguments without braces (``tailwise demo [OPTIONS] DIR``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from core import __version__

_WORDS = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}
_PATH_WORDS = {"out": "DIR", "project": "FILE", "data": "FILE", "from_file": "FILE",
               "test_ids": "FILE", "predictions": "FILE"}


def _plain(param: Any) -> None:
    """Give a parameter a plain help form (see the module docstring); idempotent."""
    if getattr(param, "_tailwise_plain", False):
        return
    param._tailwise_plain = True
    if param.param_type_name == "argument":
        if param.metavar is None:
            param.metavar = param.name.upper()
        param.display_type_rich = lambda ctx=None: None
        return
    param._get_number_range_help_str = lambda: None
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        param.display_type_rich = lambda ctx=None: None
        return
    if param.metavar is not None:
        return
    descriptor = param.type_descriptor
    if descriptor.is_choice and descriptor.choices:
        param.metavar = "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    elif descriptor.is_path:
        param.metavar = _PATH_WORDS.get(param.name, "PATH")
    else:
        param.metavar = _WORDS.get(getattr(descriptor, "annotation", str), "TEXT")


class PlainCommand(TyperCommand):
    """A command whose help shows plain placeholders (``DIR``, ``N``), never ``<bool>``/``{DIR}``."""

    def get_params(self, ctx):  # type: ignore[override]
        params = super().get_params(ctx)
        for param in params:
            _plain(param)
        return params

    def collect_usage_pieces(self, ctx) -> list[str]:  # type: ignore[override]
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                continue
            name = param.metavar or param.name.upper()
            piece = name if param.required else f"[{name}]"
            pieces.append(piece + ("..." if param.nargs != 1 else ""))
        return pieces


class PlainGroup(TyperGroup):
    """The ``tailwise`` group with plain help for its own options."""

    def get_params(self, ctx):  # type: ignore[override]
        params = super().get_params(ctx)
        for param in params:
            _plain(param)
        return params


class _Typer(typer.Typer):
    def command(self, *args: Any, cls: type | None = None, **kwargs: Any):  # type: ignore[override]
        return super().command(*args, cls=cls or PlainCommand, **kwargs)


app = _Typer(
    name="tailwise",
    help="Active labelling for class-imbalanced data: find and learn the rare classes first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=PlainGroup,
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
