"""``tailwise serve [PROJECT] [panel serve options]``: the dashboard, from any folder.

Runs ``python -m panel serve`` on the installed ``dashboard`` package (no source tree needed), so
a plain ``pip install tailwise`` is enough. Without PROJECT it opens ``$TAILWISE_PROJECT`` or the
per-user demo (``~/.tailwise/demo``, written on first use) and says where that lives.
"""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from core.cli.app import app
from core.cli.retrain_cmd import clear_errors

SERVE_HELP = """Run the dashboard on PROJECT (default: $TAILWISE_PROJECT, else the built-in demo).

PROJECT comes first; every option after it goes to `panel serve`, e.g.
`tailwise serve my/project.yaml --show --port 5007`. Options for the dashboard itself follow
`--args`, e.g. `--args --layout review`.
"""


@app.command(
    help=SERVE_HELP,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    options_metavar="[PROJECT] [PANEL SERVE OPTIONS]",
)
def serve(ctx: typer.Context) -> None:
    from core.project import load_project
    from core.serve import default_project, serve_command, where_it_lives

    args = list(ctx.args)
    with clear_errors():
        if args and not args[0].startswith("-"):
            project, options = args[0], args[1:]
        else:
            project, options = default_project(), args
        load_project(project)  # a clear error now rather than on the loading page
        command = serve_command(project, options)
        typer.echo(where_it_lives(project))
    typer.echo("starting: " + " ".join(command[2:]), err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # become the server: signals (Ctrl-C, SIGTERM) reach it directly
        os.execv(command[0], command)
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)
