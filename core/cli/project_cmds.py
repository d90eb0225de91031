"""``tailwise validate`` and ``tailwise demo``: check a project file and its data; write a demo."""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from core.cli.app import AllowOutside, app
from core.errors import ConfigError, DataError

EXIT_INVALID = 2
"""Exit status when the project file or its data is invalid."""

# Kept in step with core.data.demos.DEMO_NAMES (a test checks), without importing numpy at CLI start.
DemoName = Enum("DemoName", {n: n for n in ("digits-lt", "fashion-mnist-lt", "sky-lt")}, type=str)
DEFAULT_DEMO = DemoName("digits-lt")


def next_steps(path: Path, n_labels: int) -> str:
    """What ``tailwise demo`` suggests once the project is written (commands that work as shown)."""
    project = shlex.quote(str(path))
    out = shlex.quote(str(path.parent / "retrain"))
    lines = [f"Next: tailwise serve {project}        (the dashboard; or add --show to open a browser)"]
    if n_labels:
        lines.append(f"  or: tailwise retrain {project} --out {out}   (headless: train, predict, report)")
    else:
        lines += [
            f"  or, headless: label items first, e.g. tailwise label {project} --from labels.csv",
            "      (a CSV with the columns id,label; or rerun this command with --force --labels 30),",
            f"      then tailwise retrain {project} --out {out}",
        ]
    return "\n".join(lines)


IMAGE_CHECK_ROWS = 1000
"""How many items' extra images ``validate`` looks at (reading every file of a catalogue is slow)."""


def image_column_warnings(config, dataset) -> list[str]:
    """One warning per image column whose first items point at missing, outside or remote images
    the dashboard would not show."""
    from core.item_images import image_ref

    warnings = []
    for column in config.data.image_columns:
        values = dataset.columns.get(column, [])[:IMAGE_CHECK_ROWS]
        problems = []
        for row, value in enumerate(values):
            ref = image_ref(config, column, value)
            if ref.kind == "refused":
                problems.append((row, ref.reason))
            elif ref.kind == "local" and not ref.path.is_file():
                problems.append((row, f"{value} not found"))
        if problems:
            row, reason = problems[0]
            warnings.append(
                f"data.image_columns {column!r}: {len(problems)} of the first {len(values)} items "
                f"have no image the dashboard can show (first: item {dataset.ids[row]!r}: {reason})")
    return warnings


def _fail(message: str, as_json: bool, kind: str) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": kind, "message": message}))
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_INVALID)


@app.command()
def validate(
    project: Annotated[
        Path, typer.Argument(metavar="PROJECT", help="Project file (.yaml, .yml or .json).")
    ],
    allow_outside: AllowOutside = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Check a project file and load its data.

    Exits 0 with a one-line summary, or 2 with the problems on stderr (each names its field,
    column, row or file).
    """
    from core.cli.retrain_cmd import progress_reporter
    from core.data import data_sha256, load_dataset
    from core.project import load_project

    try:
        config = load_project(project, allow_outside=allow_outside)
        with progress_reporter(not as_json) as progress:  # only image sources report progress
            dataset = load_dataset(config, allow_outside=allow_outside, progress=progress)
    except (ConfigError, DataError) as err:
        _fail(str(err), as_json, type(err).__name__)
        return
    classes = config.class_names
    unknown: list[str] = []
    if dataset.ground_truth is not None and classes:
        unknown = sorted(set(dataset.ground_truth.tolist()) - set(classes))
    data_where = config.data.demo if config.data.kind == "demo" else config.data.path
    summary = {
        "ok": True,
        "project": str(project),
        "name": config.name,
        "n_items": len(dataset),
        "n_features": int(dataset.features.shape[1]),
        "n_classes": len(classes),
        "rare_classes": config.rare_classes,
        "data_kind": config.data.kind,
        "data": data_where,
        "data_sha256": None
        if config.data.kind == "demo"
        else data_sha256(
            config.resolve(config.data.path, allow_outside=allow_outside, field="data.path"),
            config.data.kind,
        ),
        "fingerprint": dataset.fingerprint,
        "ground_truth": dataset.ground_truth is not None,
        "n_ground_truth_classes": (
            None if dataset.ground_truth is None else len(set(dataset.ground_truth.tolist()))
        ),
        "warnings": [],
    }
    if unknown:
        summary["warnings"].append(
            f"ground truth has classes not in the project's class list: {', '.join(unknown[:10])}"
        )
    summary["warnings"] += image_column_warnings(config, dataset)
    if as_json:
        typer.echo(json.dumps(summary))
    else:
        rare = f" ({len(config.rare_classes)} rare)" if config.rare_classes else ""
        n_truth = summary["n_ground_truth_classes"]
        truth = f", ground truth of {n_truth} classes" if n_truth is not None else ""
        typer.echo(
            f"ok: {config.name!r}: {len(dataset)} items, {len(classes)} classes{rare}, "
            f"{summary['n_features']} features, data {config.data.kind} {data_where}{truth}"
        )
    for warning in summary["warnings"]:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write the demo project into.")
    ],
    dataset: Annotated[
        DemoName, typer.Option("--dataset", help="Which demo data set (sky-lt: a star catalogue).")
    ] = DEFAULT_DEMO,
    labels: Annotated[
        int,
        typer.Option("--labels", min=0, help="Also label this many items, picked by the project's "
                     "query strategy and answered from the ground truth (origin 'demo')."),
    ] = 0,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of the long-tail draw and the project.")
    ] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a project.yaml already there.")
    ] = False,
) -> None:
    """Write a long-tailed demo data set and a ready project file into DIR."""
    from core.cli.retrain_cmd import progress_reporter
    from core.data import load_dataset
    from core.data.demos import PROJECT_FILE, make_demo
    from core.project import load_project

    target = directory / PROJECT_FILE
    if target.exists() and not force:
        _fail(
            f"{target} already exists; pass --force to overwrite it or choose another folder",
            False,
            "ConfigError",
        )
    try:
        path = make_demo(dataset.value, directory, seed=seed)
        config = load_project(path)
        data = load_dataset(config)
        if labels:
            store_path = config.resolve(config.label_store, field="label_store")
            if store_path.exists() and force:
                from core.labels import LabelStore

                with LabelStore(store_path) as existing:
                    if len(existing):
                        raise ConfigError(f"{store_path} already holds {len(existing)} label "
                                          "events; move it away to draw demo labels afresh")
            with progress_reporter() as progress:
                drawn = _demo_labels(path, labels, progress)
    except (ConfigError, DataError) as err:
        _fail(str(err), False, type(err).__name__)
        return
    path = path.resolve()
    rare = ", ".join(config.rare_classes)
    store = config.resolve(config.label_store, field="label_store")
    typer.echo(
        f"Wrote {path} ({dataset.value}: {len(data)} items, {len(config.classes)} classes; "
        f"rare: {rare})"
    )
    if labels:
        typer.echo(f"Labelled {drawn} items from the ground truth ({config.query.strategy} strategy, "
                   f"origin 'demo') into the label store {store}")
    else:
        typer.echo(f"Label store (created on first use): {store}")
    typer.echo(next_steps(path, labels))


def _demo_labels(path: Path, n: int, progress) -> int:
    from core.oracle import label_from_ground_truth
    from core.session import Session

    session = Session.open(path, resume_strategies=False)
    try:
        return label_from_ground_truth(session, n, progress=progress)
    finally:
        session.store.close()
