"""``tailwise retrain``: run the labelling pipeline from a project file with no user interface.

The job loads the data and labels through :class:`core.session.Session`, trains the configured
encoder and model, and writes into one output folder:

``model.safetensors`` + ``model.json``
    the fitted model (``core.models.io.save_model``);
``predictions.parquet``
    item id, current expert label, predicted class, one ``p_<class>`` probability column per class,
    ``uncertainty`` (1 - max probability), map coordinates ``x``/``y``, the predicted ``cluster``
    (by the project's ``clusters.method``; not written with ``--scheduler``) and, for unlabelled items,
    the query ``query_score``, ``query_rank`` and ``query_reason``. With ``--scheduler`` it is a
    folder of parts (``part-NNNNN.parquet``) that ``pandas.read_parquet`` reads as one table with
    the same columns; the query is then scored part by part and only the merged top-k is ranked;
``encoder.safetensors``, ``map.safetensors``
    the fitted tabular encoder (tabular encoders only) and the map's projector, which
    ``tailwise score`` needs to score new data with the saved model;
``metrics.json``
    per-class and balanced metrics cross-validated on the expert labels, on the expert-labelled
    test split (with Wilson intervals for per-class recall) when there is one, on the ground truth
    when the data has a label column, and the ``headline``: the most trustworthy of the three
    (ground truth > test split > cross-validation) with the number of items it rests on;
    Also the trust report (``core.quality``): ``prevalence`` (``{class: {"estimate", "low",
    "high"}}``, expected counts of each class among the *unlabelled* items with a 90 % interval),
    ``calibration`` (``{class: {"ece_before", "ece_after"}}`` on held-out labels; bins and method
    in ``calibration_details``), ``agreement`` (kappa and alpha between annotators with
    intervals; null when no item has labels of two annotators) and ``stopping`` (guidance);
``suspects.csv``
    the expert labels the model doubts, most suspicious first: ``id``, ``label``, ``suggested``,
    ``score`` (1 - out-of-fold probability of the label), ``reason``;
``report.md``
    a short summary for people.

Labels come from the project file when it carries them (an exported, shareable file: the job then
uses exactly those events, so the same file and seed give the same predictions); otherwise from
the project's local label store. This module never imports panel, bokeh or holoviews.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, ModelError
from core.jsonable import jsonable
from core.project import ProjectConfig, load_project

Progress = Callable[[int, int, str], None]

OUTPUT_FILES = (
    "model.safetensors",
    "model.json",
    "predictions.parquet",
    "metrics.json",
    "suspects.csv",
    "report.md",
)
ENCODER_FILE = "encoder.safetensors"
MAP_FILE = "map.safetensors"
OPTIONAL_FILES = (ENCODER_FILE, MAP_FILE)  # encoder: tabular encoders only


@dataclass(frozen=True)
class RetrainResult:
    """Where the job wrote its files, and the headline numbers."""

    out_dir: Path
    files: dict[str, Path]
    n_items: int
    n_labels: int
    classes: tuple[str, ...]
    metrics: dict[str, Any]
    label_source: str  # "project file" or the label store path
    seconds: float


def default_out_dir(project_path: str | Path) -> Path:
    """``<project stem>-retrain`` beside the project file."""
    path = Path(project_path)
    return path.with_name(f"{path.stem}-retrain")


def retrain_project(
    project_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    device: str | None = None,
    allow_outside: bool = False,
    progress: Progress | None = None,
    scheduler: str | None = None,
) -> RetrainResult:
    """Train the project's model on its labels and write model, predictions, metrics and report.

    ``device`` (``auto``/``cpu``/``cuda``) overrides the project's ``model.device``.
    """
    from core.device import select_device

    start = time.perf_counter()
    report = progress or (lambda done, total, msg: None)
    project_path = Path(project_path)
    project = load_project(project_path, allow_outside=allow_outside)
    mlp = project.model.mlp if project.model.kind == "auto" else project.model
    if device is not None and mlp.kind == "mlp":
        mlp.device = device
    # Fail early, with a clear message, on 'cuda' without a GPU.
    select_device(device or getattr(mlp, "device", "auto"))
    out = Path(out_dir) if out_dir is not None else default_out_dir(project_path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a file; choose a folder for the outputs")
    if scheduler is not None:
        from core.cluster_retrain import retrain_on_cluster

        return retrain_on_cluster(project, out, scheduler, allow_outside=allow_outside,
                                  progress=progress, start=start)

    with tempfile.TemporaryDirectory(prefix="tailwise-retrain-") as scratch:
        session, label_source = _open_session(project, Path(scratch), allow_outside=allow_outside)
        try:
            report(0, 1, f"loaded {len(session.dataset):,} items; embedding and map")
            session.prepare(progress)
            if session.state is None:  # prepare trains only when two classes are labelled
                session.retrain(progress)  # raises ModelError saying what is missing
            state = session.state
            report(0, 1, "cross-validating on the expert labels")
            metrics = _metrics(session, state)
            metrics["stopping"] = stopping_since_last_run(out, session, state) or metrics["stopping"]
            report(0, 1, "scoring the unlabelled items")
            predictions = _predictions(session, state)
            out.mkdir(parents=True, exist_ok=True)
            files = _write_outputs(
                out, session, state, predictions, metrics, label_source, time.perf_counter() - start
            )
        finally:
            _close(session.store)
    report(1, 1, f"wrote {len(files)} files to {out}")
    return RetrainResult(
        out_dir=out,
        files=files,
        n_items=len(session.dataset),
        n_labels=state.n_labels,
        classes=state.classes,
        metrics=metrics,
        label_source=label_source,
        seconds=time.perf_counter() - start,
    )


def _open_session(project: ProjectConfig, scratch: Path, *, allow_outside: bool):
    """A Session whose store holds the file's labels (a scratch copy) or the local store."""
    from core.exchange import check_data, read_project_labels
    from core.labels import LabelStore
    from core.session import Session

    if project.labels is not None:
        records = read_project_labels(project, allow_outside=allow_outside)
        matched, note = check_data(project, allow_outside=allow_outside)
        if not matched:
            from core.errors import DataError

            raise DataError(
                note + " Import the file into your project (tailwise import "
                "--matched-only) to keep the labels whose items exist in this data."
            )
        store = LabelStore(scratch / "labels.sqlite")
        store.set_classes(project.classes)
        store.import_events([r.model_dump() for r in records])
        source = "project file"
    else:
        store_path = project.resolve(
            project.label_store, allow_outside=allow_outside, field="label_store"
        )
        if not store_path.exists():
            raise ModelError(
                f"label_store: {str(store_path)!r} does not exist and the project file "
                "carries no labels; label some items first (or export the project "
                "with its labels)"
            )
        store = LabelStore(store_path)
        source = str(store_path)
    try:
        session = Session.open(project, allow_outside=allow_outside, store=store,
                               resume_strategies=False)  # output depends on the file alone
        return session, source
    except BaseException:
        _close(store)
        raise


# ------------------------------------------------------------------------------------- outputs
def _metrics(session, state) -> dict[str, Any]:
    """Cross-validated metrics on expert labels, plus test-split and ground-truth metrics when
    available, and the headline chosen among them."""
    from core.metrics import headline
    from core.pipeline import cv_metrics_of

    truth = state.metrics if state.metrics.get("source") == "ground_truth" else None
    cv = cv_metrics_of(session.project, session.dataset, session.base_embedding_(), state,
                       session.store.current(split="train"))
    test = state.test_metrics
    return {
        "project": session.project.name,
        "seed": session.project.seed,
        "model_version": state.model_version,
        "model": session.project.model.kind,
        "n_items": len(session.dataset),
        "n_labels": state.n_labels,
        "label_counts": state.label_counts,
        "classes": list(state.classes),
        "n_test_labels": 0 if test is None else int(test["n_evaluated"]),
        "cross_validated": cv,
        "test_split": test,
        "ground_truth": truth,
        "headline": headline(truth, test, cv),
        "model_choice": state.model_choice.to_dict() if state.model_choice else None,
        "fit_note": state.fit_note or None,  # a class-balanced subsample of plentiful labels
        **trust_metrics(session, state),
    }


def trust_metrics(session, state) -> dict[str, Any]:
    """The trust report's keys of metrics.json: prevalence, calibration, agreement, stopping."""
    from core.quality.reliability import ece_by_class

    return {
        "prevalence": state.prevalence,
        "prevalence_details": state.prevalence_details,
        "calibration": ece_by_class(state.calibration),
        "calibration_details": state.calibration or None,
        "agreement": session.agreement(),
        "stopping": state.stopping,
        "n_suspects": len(session.suspects()),
    }


def stopping_since_last_run(out: Path, session, state) -> dict[str, Any] | None:
    """Stopping guidance against the run that last wrote ``out`` (its ``predictions.parquet``
    and ``metrics.json``): a headless job has no earlier round in memory, so the change of
    predictions between rounds is measured against the previous job's. None without one."""
    import pandas as pd

    from core.quality.stopping import change_since, stopping_guidance

    target = out / "predictions.parquet"
    if not target.exists():
        return None
    try:
        before = pd.read_parquet(target, columns=["id", "predicted"])
    except (OSError, ValueError, KeyError) as err:  # unreadable or not ours: no comparison
        import warnings

        warnings.warn(f"could not read the previous {target} to measure prediction change: {err}",
                      stacklevel=2)
        return None
    previous = dict(zip(before["id"].astype(str), before["predicted"].astype(str)))
    change = change_since(previous, session.dataset.ids, state.predicted)
    earlier = None
    try:
        old = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
        earlier = (old.get("stopping") or {}).get("prediction_change")
    except (OSError, ValueError, AttributeError):
        pass
    return stopping_guidance(change, earlier, state.prevalence, session.rare_class_names(),
                             (state.prevalence_details or {}).get("unseen_classes", ()))


def _predictions(session, state):
    """One row per item: id, label, prediction, probabilities, map position, query score."""
    import pandas as pd

    from core.errors import EmptyPoolError

    n = len(session.dataset)
    labels = session.labels_by_row()
    xy = np.asarray(session.xy, dtype=np.float64)
    columns: dict[str, Any] = {
        "id": session.dataset.ids.astype(str),
        "label": pd.array([None if v is None else str(v) for v in labels], dtype="string"),
        "predicted": state.predicted.astype(str),
    }
    for j, name in enumerate(state.classes):
        columns[f"p_{name}"] = state.proba[:, j].astype(np.float64)
    columns["uncertainty"] = np.asarray(state.uncertainty, dtype=np.float64)
    columns["x"], columns["y"] = xy[:, 0], xy[:, 1]
    columns["cluster"] = session.clusters().assignment.astype(np.int64)  # by clusters.method
    score = np.full(n, np.nan)
    rank = np.full(n, -1, dtype=np.int64)
    reason = np.full(n, None, dtype=object)
    n_unlabelled = int(np.sum(labels == None))
    if n_unlabelled:
        try:
            result = session.next_batch(n=n_unlabelled)
        except EmptyPoolError:
            result = None
        if result is not None and len(result.ids):
            rows = session.positions(result.ids)
            score[rows] = np.asarray(result.scores, dtype=np.float64)
            rank[rows] = np.arange(1, len(rows) + 1)
            reason[rows] = list(result.reasons)
    columns["query_score"] = score
    columns["query_rank"] = pd.array(np.where(rank > 0, rank, 0), dtype="Int64")
    columns["query_reason"] = pd.array(list(reason), dtype="string")
    frame = pd.DataFrame(columns)
    frame.loc[rank <= 0, "query_rank"] = pd.NA
    return frame


def _write_outputs(
    out: Path, session, state, predictions, metrics: dict, label_source: str, seconds: float
) -> dict[str, Path]:
    from core.models.io import save_model

    save_model(state.model, out)
    target = out / "predictions.parquet"
    if target.is_dir():  # the folder of parts of an earlier run with --scheduler
        import shutil

        shutil.rmtree(target)
    _write_predictions(predictions, target, state)
    write_suspects(out / "suspects.csv", session.suspects())
    _atomic_text(
        out / "metrics.json", json.dumps(jsonable(metrics), indent=2, sort_keys=True) + "\n"
    )
    facts = ReportFacts.of_session(session, state, metrics, label_source, seconds)
    queued = predictions.dropna(subset=["query_rank"]).sort_values("query_rank").head(10)
    _atomic_text(out / "report.md", render_report(facts, queued, metrics))
    files = {name: out / name for name in OUTPUT_FILES}
    for name, obj in ((ENCODER_FILE, session.encoder_transform()), (MAP_FILE, session.projector_())):
        if obj is not None:
            write_bytes(out / name, obj.to_bytes())
            files[name] = out / name
        else:
            (out / name).unlink(missing_ok=True)
    return files


def _write_predictions(frame, target: Path, state) -> None:
    """predictions.parquet, with the prevalence estimates in its metadata
    (``tailwise.prevalence``: the same JSON as in metrics.json)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    extra = {b"tailwise.prevalence": json.dumps(jsonable(state.prevalence)).encode("utf-8")}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    pq.write_table(table, target)


def write_suspects(path: Path, suspects: list[dict[str, Any]]) -> Path:
    """suspects.csv: ``id, label, suggested, score, reason``, most suspicious first."""
    import pandas as pd

    from core.quality.suspects import SUSPECT_COLUMNS

    frame = pd.DataFrame([{k: row[k] for k in SUSPECT_COLUMNS} for row in suspects],
                         columns=list(SUSPECT_COLUMNS))
    _atomic_text(path, frame.to_csv(index=False))
    return path


@dataclass(frozen=True)
class ReportFacts:
    """What the report says about the run, however it ran (one process or a cluster)."""

    project: ProjectConfig
    n_items: int
    data_name: str
    n_labels: int
    label_counts: dict[str, int]
    test_counts: dict[str, int]
    label_source: str
    seconds: float
    where: str = ""  # e.g. "pool scored on a Dask LocalCluster, 2 workers"

    @classmethod
    def of_session(cls, session, state, metrics: dict, label_source: str,
                   seconds: float) -> ReportFacts:
        n_test = metrics.get("n_test_labels", 0)
        test_counts = session.store.label_counts(split="test") if n_test else {}
        return cls(session.project, len(session.dataset), session.dataset.name, state.n_labels,
                   state.label_counts, test_counts, label_source, seconds)


def render_report(facts: ReportFacts, queued, metrics: dict) -> str:
    """A short Markdown summary: data, labels, headline metrics, what to label next
    (``queued``: the top-ranked rows of the predictions)."""
    project = facts.project
    cv = metrics.get("cross_validated") or {}
    truth = metrics.get("ground_truth")
    test = metrics.get("test_split")
    n_test = metrics.get("n_test_labels", 0)
    lines = [
        f"# Retrain report: {project.name}",
        "",
        f"- data: {facts.n_items:,} items ({facts.data_name})",
        f"- labels: {facts.n_labels:,} for training"
        + (f" and {n_test:,} in the test split" if n_test else "")
        + f", from {facts.label_source}",
        f"- model: {project.model.kind}, encoder: {project.encoder.kind}, seed {project.seed}",
        *([f"- learner: {metrics['model_choice']['reason']}"] if metrics.get("model_choice") else []),
        f"- time: {facts.seconds:.1f} s" + (f" ({facts.where})" if facts.where else ""),
        "",
        f"**Headline: {metrics['headline']['text']}.**",
        "",
        "## Labels per class",
        "",
        "| class | training labels |" + (" test labels |" if n_test else ""),
        "| --- | ---: |" + (" ---: |" if n_test else ""),
    ]
    test_counts = facts.test_counts
    for name in sorted(set(facts.label_counts) | set(test_counts)):
        cells = [name, f"{facts.label_counts.get(name, 0):,}"]
        if n_test:
            cells.append(f"{test_counts.get(name, 0):,}")
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "## Metrics", ""]
    if truth:
        lines += _metric_lines(
            f"ground truth ({truth.get('n_evaluated', 0):,} unlabelled items)", truth
        )
    if test:
        lines += _metric_lines(f"test split ({test['n_evaluated']:,} expert-labelled items)", test)
        lines += _recall_interval_lines(test)
    lines += _metric_lines("cross-validated on expert labels", cv)
    lines += _trust_lines(metrics)
    if len(queued):
        lines += [
            "",
            "## Label next",
            "",
            "| rank | id | predicted | score | reason |",
            "| --- | --- | --- | --- | --- |",
        ]
        for row in queued.itertuples(index=False):
            cells = [
                row.query_rank,
                row.id,
                row.predicted,
                f"{row.query_score:.3g}",
                row.query_reason,
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _trust_lines(metrics: dict) -> list[str]:
    """Prevalence, calibration, agreement, suspects and stopping guidance, for people."""
    lines = ["## Trust", ""]
    details = metrics.get("prevalence_details") or {}
    for name, text in (details.get("text") or {}).items():
        lines.append(f"- {_cell(text)}")
    calibration = metrics.get("calibration") or {}
    if calibration:
        cal = metrics.get("calibration_details") or {}
        error = float(cal.get("label_error") or 0.0)
        read = f", labels read as wrong {100 * error:.0f} % of the time" if error > 0 else ""
        lines += ["", f"Calibration ({_cell(cal.get('method', ''))}{read}; expected calibration "
                  f"error on {_cell(cal.get('source', ''))}, class-balanced):", "",
                  "| class | ECE before | ECE after |", "| --- | ---: | ---: |"]
        for name, v in calibration.items():
            lines.append(f"| {_cell(name)} | {v['ece_before']:.3f} | {v['ece_after']:.3f} |")
    agreement = metrics.get("agreement")
    lines.append("")
    if agreement:
        kappa, alpha = agreement["kappa"], agreement["alpha"]
        lines.append(f"- agreement on {agreement['items']} items labelled twice: "
                     f"{agreement['kappa_method']} kappa {_number(kappa)}, Krippendorff's alpha "
                     f"{_number(alpha)}; {agreement.get('open_conflicts', 0)} open conflicts")
    else:
        lines.append("- agreement: no item has labels of two annotators")
    lines.append(f"- suspect labels: {metrics.get('n_suspects', 0)} (suspects.csv)")
    if metrics.get("stopping"):
        lines.append(f"- stopping: {_cell(metrics['stopping']['text'])}")
    return lines + [""]


def _number(stat: dict) -> str:
    value, low, high = stat.get("value"), stat.get("low"), stat.get("high")
    if value is None:
        return "undefined"
    interval = f" (95 % interval {low:.2f}–{high:.2f})" if low is not None and high is not None else ""
    return f"{value:.2f}{interval}"


def _cell(value: Any) -> str:
    """Text for a Markdown table cell: pipes escaped, on one line."""
    import pandas as pd

    text = "" if value is None or value is pd.NA else str(value)
    return " ".join(text.replace("|", "\\|").split())


def _recall_interval_lines(m: dict) -> list[str]:
    """A table of per-class recall with its Wilson interval (test split)."""
    share = int(round(100 * m.get("confidence", 0.95)))
    lines = [f"| class | test items | recall | {share} % interval |", "| --- | ---: | ---: | --- |"]
    for name, values in m.get("per_class", {}).items():
        if not values.get("support"):
            continue
        low, high = values["recall_ci"]
        lines.append(f"| {_cell(name)} | {values['support']} | {values['recall']:.2f} | "
                     f"{low:.2f}–{high:.2f} |")
    return lines + [""]


def _metric_lines(title: str, m: dict) -> list[str]:
    if not m or m.get("evaluable") is False:
        why = m.get("reason", "not enough labels") if m else "not computed"
        return [f"**{title}**: not evaluable ({why})", ""]
    lines = [f"**{title}**"]
    for key in ("balanced_accuracy", "macro_f1", "tail_recall"):
        if isinstance(m.get(key), (int, float)):
            lines.append(f"- {key.replace('_', ' ')}: {m[key]:.3f}")
    if m.get("tail_note"):
        lines.append(f"- tail recall: not measured ({m['tail_note']})")
    if m.get("folds"):
        lines.append(f"- folds: {m['folds']}")
    if m.get("not_evaluable"):
        lines.append(f"- not evaluable (one label only): {', '.join(m['not_evaluable'])}")
    return lines + [""]


def _atomic_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write a file atomically (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _close(store: Any) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        close()
