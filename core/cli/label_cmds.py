"""``tailwise label``, ``tailwise search`` and ``tailwise export-labels``: labels in and out, headless.

``search`` finds items by criteria (``g_r > 0.4 and r < 19``) and can write them as a CSV to fill
in; ``label --from`` records such a file (``split`` test builds a curated test set);
``export-labels`` writes one row per labelled item as CSV, Parquet or FITS.
"""

from __future__ import annotations

import getpass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from core.cli.app import AllowOutside, app
from core.cli.retrain_cmd import clear_errors, progress_reporter


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"
    fits = "fits"


def _default_annotator() -> str:
    try:
        return getpass.getuser() or "cli"
    except (OSError, KeyError):  # no user name in containers without a passwd entry
        return "cli"


def _open(project: Path, allow_outside: bool):
    from core.session import Session

    return Session.open(project, allow_outside=allow_outside, resume_strategies=False)


@app.command()
def label(
    project: Annotated[Path, typer.Argument(help="Project file (.yaml/.yml/.json).")],
    from_file: Annotated[
        Path,
        typer.Option("--from", help="CSV with the columns id,label and optionally annotator and "
                     "split (train or test). Rows with an empty label are skipped."),
    ],
    annotator: Annotated[
        str | None,
        typer.Option("--annotator", help="Who labelled, for rows without an annotator "
                     "(default: your user name)."),
    ] = None,
    add_classes: Annotated[
        bool, typer.Option("--add-classes", help="Create classes the project does not list yet.")
    ] = False,
    allow_outside: AllowOutside = False,
) -> None:
    """Record labels from a CSV file in the project's label store (all checked before writing)."""
    from core.label_files import apply_label_file, read_label_file

    with clear_errors():
        labels = read_label_file(from_file)
        session = _open(project, allow_outside)
        try:
            result = apply_label_file(session, labels, annotator=annotator or _default_annotator(),
                                      add_classes=add_classes)
            store = session.store.path
        finally:
            session.store.close()
    splits = ", ".join(f"{n} {name}" for name, n in sorted(result.by_split.items()))
    typer.echo(f"labelled {result.labelled} items ({splits or 'none'}) in {store}")
    if result.created_classes:
        typer.echo(f"created classes: {', '.join(result.created_classes)}")
    if labels.skipped_blank:
        typer.echo(f"skipped {labels.skipped_blank} rows with an empty label")
    if labels.ignored_columns:
        typer.echo(f"ignored columns: {', '.join(labels.ignored_columns)}")


@app.command()
def search(
    project: Annotated[Path, typer.Argument(help="Project file (.yaml/.yml/.json).")],
    where: Annotated[
        str,
        typer.Option("--where", help="Criteria over columns, e.g. \"g_r > 0.4 and r < 19\" "
                     "(+ - * / **, log10 abs sqrt, < <= > >= == !=, and/or/not, 'text')."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="FILE", help="Write the matches as a CSV to fill in and pass to "
                     "tailwise label --from (columns id, label, split, then the columns used)."),
    ] = None,
    split: Annotated[
        str, typer.Option("--split", help="The split written in --out: test or train.")
    ] = "test",
    unlabelled: Annotated[
        bool, typer.Option("--unlabelled", help="Only items without a label yet.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 20,
    allow_outside: AllowOutside = False,
) -> None:
    """Find items whose columns meet criteria (the start of a curated test set)."""
    import pandas as pd

    from core.errors import ConfigError
    from core.search import find_items, item_columns

    with clear_errors():
        if split not in ("train", "test"):
            raise ConfigError(f"--split: {split!r} is neither 'train' nor 'test'")
        session = _open(project, allow_outside)
        try:
            result = find_items(session, where, unlabelled_only=unlabelled)
            columns = item_columns(session)
        finally:
            session.store.close()
        shown = [c for c in result.expression.columns if c in columns]
        frame = pd.DataFrame({"id": result.ids, "label": columns["label"][result.rows],
                              "split": split,
                              **{c: columns[c][result.rows] for c in shown}})
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(out, index=False)
    typer.echo(f"{len(result)} items match {where!r}")
    if len(result):
        typer.echo(frame.head(limit).to_string(index=False))
    if out is not None:
        typer.echo(f"wrote {out}: fill in the label column, then run "
                   f"tailwise label {project} --from {out}")


@app.command("export-labels")
def export_labels(
    project: Annotated[Path, typer.Argument(help="Project file (.yaml/.yml/.json).")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="File format.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="File to write.")],
    predictions: Annotated[
        bool,
        typer.Option("--predictions/--no-predictions",
                     help="Train the project's model and add predicted class and probabilities "
                     "(test-split items are never trained on)."),
    ] = True,
    allow_outside: AllowOutside = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Write one row per labelled item: id, label, annotator, time, split, prediction."""
    from core.errors import ModelError
    from core.label_export import labelled_table, write_labelled

    note = ""
    with clear_errors(), progress_reporter(not quiet) as progress:
        session = _open(project, allow_outside)
        try:
            state = None
            if predictions:
                try:
                    state = session.retrain(progress)
                except ModelError as err:
                    note = f" (no predictions: {err})"
            frame = labelled_table(session.store, session.dataset, state)
            write_labelled(frame, out, fmt.value, meta={
                "PROJECT": session.project.name,
                "MODELVER": "" if state is None else str(state.model_version),
            })
        finally:
            session.store.close()
    typer.echo(f"wrote {len(frame)} labelled items to {out}{note}")
