"""``tailwise score``: score a Parquet pool with a saved model, in this process or on Dask.

Reads ``model.safetensors`` + ``model.json`` from the model folder (``tailwise retrain --out``),
and when present ``encoder.safetensors`` (the fitted tabular encoder; otherwise it is fitted on
this pool in a first pass) and ``map.safetensors`` (then ``x``/``y`` columns are written). No
training. Writes into the output folder:

``predictions.parquet/part-NNNNN.parquet``
    per part: id, label, predicted, ``p_<class>``, uncertainty, [x, y], query_score, and for the
    merged top-k query_rank and query_reason (``pandas.read_parquet`` reads the folder as one table);
``candidates.parquet``
    the merged top-k query candidates, best first (a distributed top-k: each part sends its own);
``summary.json``
    items, parts, seconds, items per second, where it ran, ground-truth metrics when the data has
    a label column.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.cluster_jobs import (
    CANDIDATES,
    PREDICTIONS,
    confusion_metrics,
    open_pool,
    project_labels,
    scoring_pass,
)
from core.errors import ConfigError, ModelError
from core.executors import Progress, open_executor, parse_scheduler
from core.project import load_project

SUMMARY = "summary.json"
SCORE_FILES = (PREDICTIONS, CANDIDATES, SUMMARY)


@dataclass(frozen=True)
class ScoreResult:
    out_dir: Path
    n_items: int
    n_parts: int
    seconds: float
    items_per_second: float
    where: str
    summary: dict[str, Any]


def score_project(project_path: str | Path, model_dir: str | Path, out_dir: str | Path, *,
                  scheduler: str | None = None, allow_outside: bool = False,
                  progress: Progress | None = None, part_rows: int | None = None,
                  top_k: int | None = None) -> ScoreResult:
    """Score every item of the project's pool with the model saved in ``model_dir``."""
    from core.embed.model_layer import base_config
    from core.embed.tabular import TabularTransform
    from core.headless import ENCODER_FILE, MAP_FILE, write_bytes
    from core.jsonable import jsonable
    from core.models.io import META_FILE, WEIGHTS_FILE, model_from_bytes
    from core.scoring import TOP_K, ScoringPayload

    start = time.perf_counter()
    report = progress or (lambda done, total, msg: None)
    if scheduler is not None:
        parse_scheduler(scheduler)  # a bad address is named before any work
    project = load_project(project_path, allow_outside=allow_outside)
    model_dir, out = Path(model_dir), Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} is a file; choose a folder for the outputs")
    for name in (META_FILE, WEIGHTS_FILE):
        if not (model_dir / name).is_file():
            raise ModelError(f"--model: {model_dir / name} not found; point --model at the --out folder "
                             "of tailwise retrain")
    meta_text = (model_dir / META_FILE).read_text(encoding="utf-8")
    weights = (model_dir / WEIGHTS_FILE).read_bytes()
    model = model_from_bytes(meta_text, weights, str(model_dir))  # refuse a bad model early
    pool = open_pool(project, allow_outside=allow_outside, part_rows=part_rows)
    pool_labels = project_labels(project, allow_outside=allow_outside, required=False)
    project = pool_labels.apply_classes(project)  # the store's rare flags, as in the dashboard
    labels = {**pool_labels.train, **pool_labels.test}
    projector = (model_dir / MAP_FILE).read_bytes() if (model_dir / MAP_FILE).is_file() else None
    with open_executor(scheduler) as executor:
        if (model_dir / ENCODER_FILE).is_file():
            encoder = TabularTransform.from_bytes((model_dir / ENCODER_FILE).read_bytes())
        else:
            report(0, 1, f"no {ENCODER_FILE} in {model_dir}: fitting the tabular encoder on this pool")
            encoder = _fit_encoder(executor, pool, base_config(project.encoder), project.seed, progress)
        if encoder.dim != model.n_features_in_:
            raise ModelError(f"--model: the model takes {model.n_features_in_} features but the "
                             f"encoder gives {encoder.dim}; score with the project the model was "
                             "trained on")
        payload = ScoringPayload(
            model_meta=meta_text, model_weights=weights, encoder=encoder.to_bytes(),
            projector=projector, map_from_model=project.encoder.kind == "model",
            spec=pool.spec.to_dict(), labels=labels, strategy=project.query.strategy,
            target_class=project.query.target_class, rare_classes=tuple(project.rare_classes),
            top_k=top_k or TOP_K)
        out.mkdir(parents=True, exist_ok=True)
        report(0, 1, f"scoring {pool.n_rows:,} items in {len(pool.parts)} parts on "
                     f"{executor.description}")
        result = scoring_pass(executor, pool, payload, out, progress)
        where = executor.description
    summary = {
        "project": project.name, "model": str(model_dir), "classes": [str(c) for c in model.classes_],
        "items": result.rows, "parts": result.parts, "workers": result.workers, "where": where,
        "scheduler": scheduler, "scoring_seconds": result.seconds,
        "items_per_second": result.rows / max(result.seconds, 1e-9),
        "seconds": time.perf_counter() - start, "labels_from": pool_labels.source, "labelled": len(labels),
        "top_k": len(result.top), "ground_truth": confusion_metrics(result.confusion),
    }
    write_bytes(out / SUMMARY, (json.dumps(jsonable(summary), indent=2, sort_keys=True) + "\n").encode())
    report(1, 1, f"scored {result.rows:,} items in {result.seconds:.1f} s; outputs in {out}")
    return ScoreResult(out, result.rows, result.parts, summary["seconds"], summary["items_per_second"],
                       where, summary)


def _fit_encoder(executor, pool, config, seed: int, progress):
    from core.embed.tabular import TabularTransform
    from core.survey import SurveyPayload, merge_survey, survey_part

    payload = SurveyPayload(spec=pool.spec.to_dict(),
                            pca_pool_size=pool.n_rows if config.pca_components else 0)
    survey = merge_survey(executor.map(survey_part, [p.to_dict() for p in pool.parts], payload,
                                       progress, what="surveying parts"),
                          len(pool.spec.feature_names))
    transform = TabularTransform.from_stats(survey.stats)
    if config.pca_components is not None:
        transform = transform.with_pca(survey.pca, config.pca_components, seed)
    return transform
