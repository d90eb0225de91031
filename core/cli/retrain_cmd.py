"""``tailwise retrain``, ``tailwise export`` and ``tailwise import``: thin I/O over core calls.

Every command turns a Tailwise error (bad file, bad data, bad labels) into one paragraph on
stderr and exit status 2; it never prints a traceback for bad input. ``clear_errors`` and
``progress_reporter`` are shared with the other commands.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from core.cli.app import AllowOutside, app

BAD_INPUT = 2


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class LabelsMode(str, Enum):
    inline = "inline"
    file = "file"


@contextmanager
def clear_errors() -> Iterator[None]:
    """Report bad input as one paragraph and exit 2; anything else is a bug (exit 1)."""
    from core.errors import TailwiseError

    try:
        yield
    except typer.Exit:
        raise
    except (TailwiseError, OSError, ValueError, KeyError) as err:
        message = str(err).strip() or type(err).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(BAD_INPUT) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as err:  # noqa: BLE001  (a bug, not bad input: still no traceback)
        typer.echo(
            f"internal error ({type(err).__name__}): {err}. Please report it with the "
            "command you ran.",
            err=True,
        )
        raise typer.Exit(1) from None


_clear_errors = clear_errors  # the name core/cli/simulate_cmd.py imports


@contextmanager
def progress_reporter(enabled: bool = True) -> Iterator[Callable[[int, int, str], None]]:
    """A ``progress(done, total, message)`` callback: a rich bar on a terminal, log lines otherwise."""
    if not enabled:
        yield lambda done, total, message: None
        return
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task("starting", total=1)

            def update(done: int, total: int, message: str) -> None:
                bar.update(task, completed=done, total=max(total, 1), description=message)

            yield update
        return

    last: list[str] = [""]

    def log(done: int, total: int, message: str) -> None:
        line = f"[{done}/{total}] {message}" if total > 1 else message
        if line != last[0]:
            last[0] = line
            print(line, file=sys.stderr, flush=True)

    yield log


Scheduler = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Embed and score the pool on Dask: 'local' or 'local:N' (a LocalCluster of N worker "
        "processes) or a scheduler address 'tcp://HOST:PORT'. Needs Parquet data "
        "(data.kind: parquet, a file, folder or glob) and a tabular encoder.",
    ),
]


@app.command()
def retrain(
    project: Annotated[Path, typer.Argument(help="Project file (.yaml/.yml/.json).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (default: <project stem>-retrain beside the project file).",
        ),
    ] = None,
    device: Annotated[
        Device | None,
        typer.Option(
            "--device", help="Where the model trains (default: the project's model.device)."
        ),
    ] = None,
    allow_outside: AllowOutside = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    scheduler: Scheduler = None,
) -> None:
    """Train the project's model headless; write model, predictions, metrics and a report."""
    from core.headless import retrain_project

    with clear_errors(), progress_reporter(not quiet) as progress:
        result = retrain_project(
            project,
            out,
            device=device.value if device else None,
            allow_outside=allow_outside,
            progress=progress,
            scheduler=scheduler,
        )
    test = result.metrics.get("n_test_labels", 0)
    typer.echo(
        f"trained on {result.n_labels} labels of {len(result.classes)} classes over "
        f"{result.n_items} items" + (f" ({test} more in the test split, never trained on)" if test else "")
    )
    typer.echo(f"headline: {result.metrics['headline']['text']}")
    typer.echo(f"outputs in {result.out_dir} (report.md, metrics.json, predictions.parquet, model)")
    choice = result.metrics.get("model_choice")
    if choice:
        typer.echo(f"learner: {choice['reason']}")


@app.command("export")
def export_cmd(
    project: Annotated[
        Path, typer.Argument(help="Local project file whose labels and settings to share.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder to write the shareable project into.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Write JSON instead of YAML.")] = False,
    labels: Annotated[
        LabelsMode,
        typer.Option(
            "--labels", help="Labels inside the file, or in a sibling labels-<sha256>.jsonl."
        ),
    ] = LabelsMode.inline,
    layout: Annotated[
        str | None, typer.Option("--layout", help="Layout name to record (default: the project's).")
    ] = None,
    allow_outside: AllowOutside = False,
) -> None:
    """Write a shareable project file (settings, classes, layout, label history, data reference)."""
    from core.exchange import export_project, open_project_parts

    with clear_errors():
        parts = open_project_parts(project, allow_outside=allow_outside)
        path = export_project(
            parts, out, fmt="json" if as_json else "yaml", labels=labels.value, layout=layout
        )
    typer.echo(f"exported {len(parts.events)} label events to {path}")


@app.command("import")
def import_cmd(
    shared: Annotated[Path, typer.Argument(help="A shared project file (from tailwise export).")],
    project: Annotated[
        Path | None,
        typer.Option(
            "--project",
            "-p",
            help="Merge into this local project's label store, checking its data "
            "(default: the store beside the shared file).",
        ),
    ] = None,
    matched_only: Annotated[
        bool,
        typer.Option(
            "--matched-only",
            help="If the data's SHA-256 differs, keep only labels whose item ids exist in the data.",
        ),
    ] = False,
    allow_outside: AllowOutside = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Restore classes and labels from a shared project file into a local label store."""
    from core.exchange import import_project

    with clear_errors():
        from core.project import load_project

        local = load_project(project, allow_outside=allow_outside) if project is not None else None
        result = import_project(
            shared,
            into=local,
            allow_outside=allow_outside,
            on_hash_mismatch="matched_only" if matched_only else "error",
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "imported": result.n_imported,
                    "events": result.n_events,
                    "layout": result.layout,
                    "classes": [c.name for c in result.classes],
                    "conflicts": result.conflicts,
                    "class_conflicts": result.class_conflicts,
                    "skipped_ids": result.skipped_ids,
                    "data_hash_matched": result.data_hash_matched,
                    "warnings": result.warnings,
                    "store": str(result.store_path),
                },
                indent=2,
            )
        )
        return
    typer.echo(result.summary())
    for c in result.conflicts[:20]:
        typer.echo(f"  conflict: {_plain(c)}")
    for c in result.class_conflicts:
        typer.echo(f"  {c}")
    if result.n_imported:
        typer.echo(
            "run `tailwise retrain` (or retrain in the dashboard) to train on the imported labels"
        )


def _plain(conflict) -> object:
    if isinstance(conflict, dict):
        return f"{conflict['item_id']}: kept local {conflict['local']!r}, file has {conflict['incoming']!r}"
    return str(conflict)


@app.command()
def score(
    project: Annotated[Path, typer.Argument(help="Project file whose pool to score.")],
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Folder of a saved model (tailwise retrain --out).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    scheduler: Scheduler = None,
    allow_outside: AllowOutside = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Score a Parquet pool with a saved model (no training): per-part predictions and the top
    query candidates."""
    from core.score_job import score_project

    with clear_errors(), progress_reporter(not quiet) as progress:
        result = score_project(project, model, out, scheduler=scheduler,
                               allow_outside=allow_outside, progress=progress)
    typer.echo(
        f"scored {result.n_items} items in {result.n_parts} parts on {result.where} "
        f"({result.items_per_second:,.0f} items/s); outputs in {result.out_dir}"
    )
