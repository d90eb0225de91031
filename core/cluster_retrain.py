"""``tailwise retrain --scheduler``: train on the driver, embed and score the pool on a cluster.

Labels are few, the pool is not: a first pass over the Parquet parts (:mod:`core.survey`) brings
back the column statistics of the tabular encoder, the labelled rows, the rows PCA is fitted on
and an id-hash sample for the map. The driver fits the encoder, trains the model exactly as a
single-process retrain does (same rows, same order, same seed), fits the map on the sample
(UMAP + a parametric projector that every worker applies) and cross-validates on the labels;
a second pass scores every part (:func:`core.cluster_jobs.scoring_pass`). The files are those of
a single-process retrain; ``predictions.parquet`` is a folder of parts with the same columns and
the same ``predicted`` values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.cluster_jobs import confusion_metrics, open_pool, project_labels, scoring_pass
from core.errors import ConfigError
from core.executors import Progress, open_executor, parse_scheduler
from core.project import ProjectConfig


def retrain_on_cluster(project: ProjectConfig, out: Path, scheduler: str, *,
                       allow_outside: bool = False, progress: Progress | None = None,
                       start: float | None = None):
    """Run the retrain job with the pool on a Dask cluster; returns a ``RetrainResult``."""
    from core.embed.model_layer import base_config
    from core.embed.tabular import TabularTransform
    from core.headless import (
        ENCODER_FILE,
        MAP_FILE,
        OUTPUT_FILES,
        ReportFacts,
        RetrainResult,
        _atomic_text,
        render_report,
        write_bytes,
        write_suspects,
    )
    from core.metrics import headline
    from core.jsonable import jsonable
    from core.models.io import model_to_bytes, save_model
    from core.pipeline import (
        check_trainable,
        fit_labelled,
        oof_metrics,
        out_of_fold,
        tail_classes,
        test_metrics_of,
    )
    from core.scoring import ScoringPayload
    from core.survey import SurveyPayload, merge_survey, survey_part

    start = time.perf_counter() if start is None else start
    report = progress or (lambda done, total, msg: None)
    parse_scheduler(scheduler)  # a bad address is named before any work
    if getattr(project.model, "pseudo_label", False):
        raise ConfigError("model.pseudo_label needs the whole pool in one process; turn it off to "
                          "retrain with --scheduler")
    pool = open_pool(project, allow_outside=allow_outside)
    labels = project_labels(project, allow_outside=allow_outside)
    project = labels.apply_classes(project)  # the store's rare flags, as in the dashboard
    shown = {**labels.train, **labels.test}  # the label column shows both splits
    base = base_config(project.encoder)
    n_total = pool.n_rows
    with open_executor(scheduler) as executor:
        report(0, 1, f"surveying {n_total:,} items in {len(pool.parts)} parts on {executor.description}")
        survey_payload = SurveyPayload(
            spec=pool.spec.to_dict(), labelled_ids=frozenset(shown),
            pca_pool_size=n_total if base.pca_components else 0,
            sample_fraction=min(1.0, project.map.sample_size / max(n_total, 1)))
        survey = merge_survey(executor.map(survey_part, [p.to_dict() for p in pool.parts],
                                           survey_payload, progress, what="surveying parts"),
                              len(pool.spec.feature_names))
        transform = TabularTransform.from_stats(survey.stats)
        if base.pca_components is not None:
            transform = transform.with_pca(survey.pca, base.pca_components, project.seed)

        ids_l, feats_l, _ = survey.labelled  # pool order, as training_rows gives them
        train = np.array([i in labels.train for i in ids_l.tolist()], dtype=bool)
        y = np.array([labels.train[i] for i in ids_l[train].tolist()], dtype=object)
        check_trainable(y)
        x_l = transform.apply(feats_l)
        what = "choosing the learner and training" if project.model.kind == "auto" else f"training {project.model.kind}"
        report(0, 1, f"{what} on {len(y):,} labels")
        model = fit_labelled(project, x_l[train], y)
        tails = tail_classes(project, y)
        report(0, 1, "cross-validating on the expert labels")
        oof_rows, oof_proba = out_of_fold(project, model, x_l[train], y)
        cv = oof_metrics(y, (oof_rows, oof_proba, tuple(str(c) for c in model.classes_)), tails)
        trust = cluster_trust(project, model, ids_l[train], y, (oof_rows, oof_proba))
        test = None
        if (~train).any():  # the expert-curated test split: measured, never trained on
            truth = np.array([labels.test[i] for i in ids_l[~train].tolist()], dtype=object)
            test = test_metrics_of(project, truth, model.predict(x_l[~train]), y)

        report(0, 1, "fitting the map on a sample")
        projector, map_rows = _fit_projector(project, model, transform, survey, progress)
        meta_text, weights = model_to_bytes(model)
        payload = ScoringPayload(
            model_meta=meta_text, model_weights=weights, encoder=transform.to_bytes(),
            projector=projector.to_bytes(), map_from_model=project.encoder.kind == "model",
            spec=pool.spec.to_dict(), labels=shown, strategy=project.query.strategy,
            target_class=project.query.target_class,
            rare_classes=tuple(project.rare_classes))
        out.mkdir(parents=True, exist_ok=True)
        result = scoring_pass(executor, pool, payload, out, progress, candidates=False)
        where = f"pool scored on {executor.description}"

    classes = tuple(str(c) for c in model.classes_)
    names, counts = np.unique(y.astype(str), return_counts=True)
    label_counts = dict(zip(names.tolist(), counts.tolist()))
    truth = confusion_metrics(result.confusion, set(y.astype(str).tolist()), tails)
    metrics: dict[str, Any] = {
        "project": project.name, "seed": project.seed, "model_version": 1,
        "model": project.model.kind, "n_items": n_total, "n_labels": len(y),
        "label_counts": label_counts, "classes": list(classes),
        "n_test_labels": 0 if test is None else int(test["n_evaluated"]),
        "cross_validated": cv, "test_split": test, "ground_truth": truth,
        "headline": headline(truth, test, cv),
        "model_choice": model.choice_.to_dict() if hasattr(model, "choice_") else None,
        "cluster": {"scheduler": scheduler, "workers": result.workers, "parts": result.parts,
                    "scoring_seconds": result.seconds,
                    "items_per_second": result.rows / max(result.seconds, 1e-9),
                    "map_fitted_on": int(map_rows)},
        **trust["metrics"],
    }
    write_suspects(out / "suspects.csv", trust["suspects"])
    save_model(model, out)
    write_bytes(out / ENCODER_FILE, transform.to_bytes())
    write_bytes(out / MAP_FILE, projector.to_bytes())
    _atomic_text(out / "metrics.json", json.dumps(jsonable(metrics), indent=2, sort_keys=True) + "\n")
    seconds = time.perf_counter() - start
    test_counts = dict(zip(*np.unique(np.array(list(labels.test.values()), dtype=str),
                                      return_counts=True))) if labels.test else {}
    facts = ReportFacts(project, n_total, Path(project.data.path or "pool").stem, len(y), label_counts,
                        {str(k): int(v) for k, v in test_counts.items()}, labels.source, seconds, where)
    queued = result.top.head(10)
    _atomic_text(out / "report.md", render_report(facts, queued, metrics))
    files = {name: out / name for name in (*OUTPUT_FILES, ENCODER_FILE, MAP_FILE)}
    report(1, 1, f"wrote {len(files)} files to {out}")
    return RetrainResult(out_dir=out, files=files, n_items=n_total, n_labels=len(y), classes=classes,
                         metrics=metrics, label_source=labels.source, seconds=seconds)


def cluster_trust(project: ProjectConfig, model, ids: np.ndarray, y: np.ndarray,
                  oof: tuple) -> dict[str, Any]:
    """Suspects and calibration from the labels' out-of-fold predictions. The pool is scored on
    the workers, part by part, so no prevalence here, and labels come without a label store, so
    no agreement (both null; ``tailwise retrain`` without ``--scheduler`` computes them)."""
    from core.quality.reliability import ece_by_class
    from core.quality.round import calibration_method, cv_calibration
    from core.quality.suspects import find_suspects, suspect_reason

    classes = tuple(str(c) for c in model.classes_)
    rows, raw = oof
    suspects = []
    if rows is not None and raw is not None and len(rows):
        suspects = [{**r, "reason": suspect_reason(r)}
                    for r in find_suspects(ids[rows], y[rows], raw, classes)]
    calibration = cv_calibration(model, calibration_method(model, project.model.kind), classes,
                                 y.astype(str), oof)
    return {"suspects": suspects, "metrics": {
        "prevalence": None,
        "prevalence_details": {"note": "not computed with --scheduler"},
        "calibration": ece_by_class(calibration),
        "calibration_details": calibration, "agreement": None, "stopping": None,
        "n_suspects": len(suspects)}}


def _fit_projector(project: ProjectConfig, model, transform, survey, progress):
    """The map's projector, fitted on the id-hash sample plus every labelled row."""
    from core.projection import fit_map

    ids_s, feats_s, rows_s = survey.sample
    _, feats_l, rows_l = survey.labelled
    rows = np.concatenate([rows_s, rows_l])
    feats = np.concatenate([feats_s, feats_l])
    rows, first = np.unique(rows, return_index=True)
    emb = transform.apply(feats[first])
    if project.encoder.kind == "model":
        emb = np.asarray(model.embed(emb), dtype=np.float32)
    must = np.flatnonzero(np.isin(rows, rows_l))
    _, projector = fit_map(emb, project.map, seed=project.seed, must_include=must, progress=progress,
                           parametric=True)
    return projector, len(rows)
