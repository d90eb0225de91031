"""``tailwise simulate``: replay active labelling on a labelled table with a ground-truth oracle.

Thin I/O around :func:`core.simulate.simulate`: load the data (a CSV/Parquet file, or a project
file), run, write ``curve.csv``, ``summary.json`` and ``curve.png`` into ``--out``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from core.cli.app import AllowOutside, app
from core.cli.retrain_cmd import _clear_errors, progress_reporter
from core.project import MODEL_KINDS

ModelKind = Enum("ModelKind", {name: name for name in MODEL_KINDS}, type=str)


def _data_project(data: Path, id_column: str, label_column: str, features: str | None):
    """A throw-away project naming a CSV/Parquet file (so loading and its checks are shared)."""
    from core.errors import ConfigError
    from core.project import parse_project

    suffix = data.suffix.lower()
    kind = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
    if kind is None:
        raise ConfigError(f"--data: {data} is not a .csv or .parquet file")
    columns = [c.strip() for c in features.split(",") if c.strip()] if features else None
    spec = {
        "data": {
            "kind": kind,
            "path": str(data.resolve()),
            "id_column": id_column,
            "label_column": label_column,
            "feature_columns": columns,
        }
    }
    return parse_project(spec, source="--data", base_dir=data.resolve().parent, allow_outside=True)


@app.command()
def simulate(
    data: Path | None = typer.Option(
        None, "--data", help="CSV or Parquet table, one row per item."
    ),
    id_column: str = typer.Option("id", "--id-column", help="Column of stable item ids."),
    label_column: str | None = typer.Option(
        None, "--label-column", help="Ground-truth column the oracle reads."
    ),
    features: str | None = typer.Option(
        None, "--features", help="Comma-separated feature columns (default: every numeric column)."
    ),
    project: Path | None = typer.Option(
        None, "--project", help="A project file instead of --data."
    ),
    strategy: str | None = typer.Option(
        None, "--strategy", help="Query strategy (default: the project's, else auto)."
    ),
    budget: int = typer.Option(
        200, "--budget", min=1, help="Labels in total, cold start included."
    ),
    batch: int | None = typer.Option(None, "--batch", min=1, help="Items per round (default: 10)."),
    seed: int | None = typer.Option(
        None, "--seed", min=0, help="Random seed (default: the project's, else 0)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for curve.csv, summary.json, curve.png."
    ),
    model: ModelKind | None = typer.Option(
        None,
        "--model",
        help="Learner; auto picks the best by cross-validation every round "
        "(default: the project's model, else auto).",
    ),
    test_fraction: float = typer.Option(
        0.3, "--test-fraction", min=0.0, max=0.9, help="Stratified share held out for evaluation."
    ),
    test_ids: Path | None = typer.Option(
        None, "--test-ids", help="File of test item ids, one per line (overrides --test-fraction)."
    ),
    cold_start: int | None = typer.Option(
        None, "--cold-start", min=0, help="Random labels to start from (default: 10)."
    ),
    target_class: str | None = typer.Option(
        None, "--target-class", help="Class for the target_class strategy."
    ),
    noise: float = typer.Option(
        0.0, "--noise", help="Share of oracle answers flipped to another class, 0 <= RATE < 1 "
        "(a fallible expert; recorded in summary.json)."
    ),
    noise_mode: str = typer.Option(
        "uniform", "--noise-mode", help="uniform: a uniformly drawn other class; class: each "
        "class is confused with one other class."
    ),
    allow_outside: AllowOutside = False,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Replay active labelling with an oracle reading the ground truth; write a learning curve."""
    import numpy as np

    from core.data import load_dataset
    from core.errors import ConfigError
    from core.project import default_model_config, load_project
    from core.quality.noise import check_noise
    from core.query import STRATEGY_NAMES
    from core.simulate import simulate as run_simulation
    from core.simulate import write_outputs

    with _clear_errors():
        check_noise(noise, noise_mode)
        if (data is None) == (project is None):
            raise ConfigError("give either --data FILE (with --label-column) or --project FILE")
        if project is not None:
            proj = load_project(project, allow_outside=allow_outside)
            if label_column:
                proj.data.label_column = label_column
        else:
            if not label_column:
                raise ConfigError(
                    "--label-column: simulation needs the ground-truth column of --data"
                )
            proj = _data_project(data, id_column, label_column, features)
        # An image folder's ground truth is its sub-folders, a demo's is built in; a table's
        # is the column data.label_column names.
        if not proj.data.label_column and proj.data.kind not in ("image_folder", "demo"):
            raise ConfigError(
                f"{project}: data.label_column is not set; simulation needs ground "
                "truth (set it in the file or pass --label-column)"
            )
        name = strategy or (proj.query.strategy if project is not None else "auto")
        if name not in STRATEGY_NAMES:
            raise ConfigError(
                f"--strategy: unknown strategy {name!r}; choose one of: "
                + ", ".join(STRATEGY_NAMES)
            )
        if model is None:
            model_cfg = proj.model if project is not None else default_model_config("auto")
        else:
            model_cfg = default_model_config(model.value)
        with progress_reporter(not quiet) as progress:
            dataset = load_dataset(
                proj, allow_outside=True if project is None else allow_outside, progress=progress
            )
            if dataset.ground_truth is None:
                raise ConfigError(
                    f"{proj.data.path}: no ground truth: simulation needs every image in a "
                    "sub-folder named after its class (cat/001.png)"
                    if proj.data.kind == "image_folder"
                    else f"column {proj.data.label_column!r} gave no ground truth")
            if not quiet:
                typer.echo(f"data: {dataset.feature_note()}")
            test_rows = None
            if test_ids is not None:
                wanted = [
                    ln.strip()
                    for ln in test_ids.read_text(encoding="utf-8").splitlines()
                    if ln.strip()
                ]
                unknown = [w for w in wanted if not dataset.has(w)]
                if unknown:
                    raise ConfigError(
                        f"--test-ids: {len(unknown)} ids are not in the data "
                        f"(first: {unknown[0]!r})"
                    )
                test_rows = np.unique(dataset.positions(wanted))
            result = run_simulation(
                dataset.features,
                dataset.ground_truth,
                dataset.ids,
                strategy=name,
                budget=budget,
                batch=batch or (proj.query.batch_size if project is not None else 10),
                seed=seed if seed is not None else (proj.seed if project is not None else 0),
                cold_start=cold_start
                if cold_start is not None
                else (proj.query.cold_start if project is not None else 10),
                test_fraction=test_fraction,
                model=model_cfg,
                test_rows=test_rows,
                rare_classes=tuple(proj.rare_classes),
                target_class=target_class or proj.query.target_class,
                progress=progress,
                noise=noise,
                noise_mode=noise_mode,
            )
        paths = write_outputs(result, out, title=f"{name} on {dataset.name}")
    final = result.summary["final"]
    if result.summary.get("budget_note"):
        typer.echo(f"note: {result.summary['budget_note']}")
    typer.echo(
        f"{name}: {result.curve[-1]['labels']} labels, balanced accuracy {final['balanced_accuracy']:.3f}, "
        f"tail recall {final['tail_recall']:.3f}, {result.summary['classes_found']}/"
        f"{result.summary['n_classes']} classes found; wrote {paths['curve']}, {paths['summary']}, "
        f"{paths['plot']}"
    )
    if noise:
        typer.echo(f"noise: {result.summary['n_flipped']} of {len(result.labelled_ids)} oracle "
                   f"answers flipped ({noise_mode}, rate {noise})")
    choice = result.summary.get("model_choice")
    if choice:
        typer.echo(f"learner: {choice['reason']}")
