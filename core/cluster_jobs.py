"""Pieces shared by ``tailwise score`` and ``tailwise retrain --scheduler``: the pool's parts, the
labels, a scoring pass with its distributed top-k, and the files it leaves.

A scoring pass runs :func:`core.scoring.score_part` over every part (one ``part-NNNNN.parquet``
each in ``OUT/predictions.parquet/``), merges the parts' top-k candidates on the driver, then
writes ``query_rank``/``query_reason`` into the few part files that hold a top-k item
(:func:`rank_part`, also on the cluster) and ``OUT/candidates.parquet``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data.parquet_parts import ParquetPart, TableSpec, parquet_files, plan_parts
from core.errors import ConfigError
from core.executors import Executor, Progress
from core.project import ProjectConfig
from core.scoring import PART_FILE, ScoringPayload, merge_confusion, merge_top, score_part

PREDICTIONS = "predictions.parquet"
CANDIDATES = "candidates.parquet"


@dataclass(frozen=True)
class Pool:
    """A Parquet pool cut into parts, and how each part is parsed."""

    files: list[Path]
    parts: list[ParquetPart]
    spec: TableSpec

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.parts)


def open_pool(project: ProjectConfig, *, allow_outside: bool = False,
              part_rows: int | None = None) -> Pool:
    """The project's pool as parts; only Parquet data with a tabular encoder can be split."""
    from core.data.tables import table_spec

    if project.data.kind != "parquet":
        raise ConfigError(f"data.kind: {project.data.kind!r} cannot be split into partitions; scoring "
                          "part by part (and on a Dask cluster) reads a Parquet file, folder or glob "
                          "(data: {kind: parquet, path: FOLDER})")
    check_encoder(project)
    path = project.resolve(project.data.path, allow_outside=allow_outside, field="data.path")
    files = parquet_files(path, project.data.path)
    kw = {} if part_rows is None else {"part_rows": part_rows}
    return Pool(files, plan_parts(files, **kw),
                table_spec(path, project.data, getattr(project, "features", None)))


def check_encoder(project: ProjectConfig) -> None:
    """Partitions are embedded with the saved tabular transform: other encoders need the pool."""
    enc = project.encoder
    base = enc.base if enc.kind == "model" else enc.kind
    if base != "tabular":
        raise ConfigError(f"encoder.kind: {enc.kind!r}{' over ' + base if enc.kind == 'model' else ''} "
                          "needs the whole pool in one process; scoring part by part (and on a Dask "
                          "cluster) supports the tabular encoder (encoder: {kind: tabular} or "
                          "{kind: model, base: tabular})")


@dataclass(frozen=True)
class PoolLabels:
    """The labels a job uses: training split, test split, and where they came from."""

    train: dict[str, str]
    test: dict[str, str]
    source: str
    classes: tuple = ()  # the label store's class schema (ClassConfig), when read from a store

    def apply_classes(self, project: ProjectConfig) -> ProjectConfig:
        """``project`` with the store's classes (rare flags, colours, descriptions edited in the
        dashboard) and then the file's others: the file only seeds a store, never overrides it."""
        if not self.classes:
            return project
        known = {c.name for c in self.classes}
        extra = [c for c in project.classes if c.name not in known]
        return project.model_copy(update={"classes": [*self.classes, *extra]})


def project_labels(project: ProjectConfig, *, allow_outside: bool = False,
                   required: bool = True) -> PoolLabels:
    """The project file's labels when it carries them, else the local label store's, with its
    class schema (none when ``required`` is false and there is no store)."""
    import tempfile

    from core.errors import ModelError
    from core.exchange import read_project_labels
    from core.labels import LabelStore

    def read(store) -> dict[str, dict[str, str]]:
        return {"train": store.current(split="train"), "test": store.current(split="test")}

    if project.labels is not None:
        records = read_project_labels(project, allow_outside=allow_outside)
        with tempfile.TemporaryDirectory(prefix="tailwise-labels-") as scratch:
            with LabelStore(Path(scratch) / "labels.sqlite") as store:
                store.set_classes(project.classes)
                store.import_events([r.model_dump() for r in records])
                got = read(store)
        return PoolLabels(got["train"], got["test"], "project file")
    path = project.resolve(project.label_store, allow_outside=allow_outside, field="label_store")
    if not path.exists():
        if required:
            raise ModelError(f"label_store: {str(path)!r} does not exist and the project file carries "
                             "no labels; label some items first (or export the project with its labels)")
        return PoolLabels({}, {}, "no labels")
    with LabelStore(path) as store:
        got = read(store)
        classes = tuple(store.classes())
    return PoolLabels(got["train"], got["test"], str(path), classes)


@dataclass(frozen=True)
class PassResult:
    """A finished scoring pass."""

    rows: int
    parts: int
    seconds: float
    top: Any  # pandas DataFrame: id, query_score, query_rank, predicted, query_reason, row
    confusion: dict[tuple[str, str], int]
    workers: int
    worker_pids: list[int]


def scoring_pass(executor: Executor, pool: Pool, payload: ScoringPayload, out: Path,
                 progress: Progress | None = None, candidates: bool = True) -> PassResult:
    """Score every part into ``out/predictions.parquet/``, then rank the merged top-k (also
    written to ``out/candidates.parquet`` when ``candidates``)."""
    import dataclasses

    folder = out / PREDICTIONS
    if folder.is_file():
        folder.unlink()  # a single-file output of an earlier run without --scheduler
    _clear_parts(folder)
    payload = dataclasses.replace(payload, out_dir=str(folder))
    start = time.perf_counter()
    results = executor.map(score_part, [p.to_dict() for p in pool.parts], payload, progress,
                           what="scoring parts")
    top = merge_top(results, payload.top_k)
    ranks: dict[int, dict[str, tuple[int, str]]] = {}
    first_rows = np.array([p.first_row for p in pool.parts])
    for row in top.itertuples(index=False):
        part = int(np.searchsorted(first_rows, row.row, side="right") - 1)
        ranks.setdefault(part, {})[row.id] = (int(row.query_rank), str(row.query_reason))
    items = [(str(folder / PART_FILE.format(index=i)), r) for i, r in sorted(ranks.items())]
    executor.map(rank_part, items, None, progress, what="ranking the top candidates")
    if candidates:
        top.drop(columns=["row"]).to_parquet(out / CANDIDATES, index=False)
    return PassResult(
        rows=sum(r["rows"] for r in results), parts=len(results),
        seconds=time.perf_counter() - start, top=top, confusion=merge_confusion(results),
        workers=getattr(executor, "n_workers", 1),
        worker_pids=sorted({r["worker_pid"] for r in results}))


def rank_part(item: tuple[str, dict[str, tuple[int, str]]], payload: None = None) -> int:
    """Write ``query_rank``/``query_reason`` of the top-k items a part file holds."""
    import pandas as pd

    from core.scoring import write_part

    path, ranks = Path(item[0]), item[1]
    frame = pd.read_parquet(path)
    hit = frame["id"].isin(list(ranks)).to_numpy()
    rank = frame["query_rank"].astype("Int64").to_numpy(dtype=object, na_value=None)
    reason = frame["query_reason"].astype("string").to_numpy(dtype=object, na_value=None)
    for i in np.flatnonzero(hit):
        rank[i], reason[i] = ranks[frame["id"].iat[i]]
    frame["query_rank"] = pd.array(rank, dtype="Int64")
    frame["query_reason"] = pd.array(reason, dtype="string")
    index = int(path.stem.split("-")[-1])
    write_part(frame, path.parent, index)
    return int(hit.sum())


def _clear_parts(folder: Path) -> None:
    """Remove the part files of an earlier run (a smaller pool would leave stale parts)."""
    if folder.is_dir():
        for f in folder.glob("part-*.parquet"):
            f.unlink()


def confusion_metrics(confusion: dict[tuple[str, str], int], classes=None,
                      tails: list[str] | None = None) -> dict | None:
    """Ground-truth metrics of the unlabelled items from the parts' merged ``(true, predicted)``
    counts, or None when the data has no label column."""
    from core.metrics import evaluate_confusion

    if not confusion:
        return None
    names = sorted(set(classes or ()) | {t for t, _ in confusion} | {p for _, p in confusion})
    index = {c: i for i, c in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    for (t, p), c in confusion.items():
        matrix[index[t], index[p]] += c
    metrics = evaluate_confusion(matrix, names, tail_classes=tails)
    metrics.update(source="ground_truth", n_evaluated=int(matrix.sum()))
    return metrics
