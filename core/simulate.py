"""Replay the labelling loop with an oracle that reads the ground truth.

``simulate`` holds out a stratified test split, labels a random cold start, then alternates
*train -> evaluate on the test split -> query a batch -> the oracle labels it* until the label
budget is spent. One row per round goes into the learning curve; ``write_outputs`` saves
``curve.csv``, ``summary.json`` and ``curve.png``.

The embedding is the dataset's features, standardised (and reduced to 50 PCA components when wider
than 64 columns), unless an ``embedding`` is passed. The model is built fresh every round by
``core.models.build_model`` from the given config.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, DataError
from core.metrics import evaluate, labels_to_reach, learning_curve_auc
from core.models.selection import EarlierOOF

Progress = Callable[[int, int, str], None]
CURVE_COLUMNS = (
    "round",
    "labels",
    "balanced_accuracy",
    "macro_f1",
    "tail_recall",
    "classes_found",
    "seconds_train",
    "seconds_select",
    "learner",
)

__all__ = [
    "CURVE_COLUMNS",
    "SimulationResult",
    "default_embedding",
    "simulate",
    "stratified_split",
    "write_outputs",
]


@dataclass
class SimulationResult:
    """The learning curve (one dict per round, columns ``CURVE_COLUMNS``) and a summary."""

    curve: list[dict[str, Any]]
    summary: dict[str, Any]
    labelled_ids: list[str] = field(default_factory=list)  # in the order they were labelled
    # the oracle's answer for each of labelled_ids (differs from the truth where noise flipped it)
    labels_given: list[str] = field(default_factory=list)

    def curve_frame(self):
        """The curve as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.curve, columns=list(CURVE_COLUMNS))


def stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(pool_rows, test_rows)``: ``round(test_fraction * n_c)`` test items per class, keeping
    at least one item of every class in the pool."""
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    y = np.asarray(y, dtype=object).astype(str)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        k = min(round(test_fraction * len(members)), len(members) - 1)
        test.append(members[:k])
    test_rows = np.sort(np.concatenate(test)) if test else np.zeros(0, int)
    pool_rows = np.setdiff1d(np.arange(len(y)), test_rows)
    return pool_rows, test_rows


def default_embedding(
    features: np.ndarray, seed: int = 0, max_dim: int = 64, n_components: int = 50
) -> np.ndarray:
    """Standardised features, PCA-reduced to ``n_components`` when wider than ``max_dim``."""
    x = np.asarray(features, dtype=np.float32)
    x = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 1e-8, x.std(axis=0), 1.0)
    if x.shape[1] > max_dim:
        from sklearn.decomposition import PCA

        x = PCA(n_components=n_components, random_state=seed).fit_transform(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _build_model(model_config, seed: int, previous=None, earlier_oof=None):
    if callable(model_config) and not hasattr(model_config, "kind"):
        return model_config(seed)
    from core.models import build_model

    return build_model(model_config, seed=seed, previous=previous, earlier_oof=earlier_oof)


def simulate(
    features: np.ndarray,
    ground_truth: np.ndarray,
    ids: np.ndarray | None = None,
    *,
    strategy: Any = "auto",
    budget: int = 200,
    batch: int = 10,
    seed: int = 0,
    cold_start: int = 10,
    test_fraction: float = 0.3,
    model: Any = None,
    embedding: np.ndarray | None = None,
    rare_classes: tuple[str, ...] = (),
    target_class: str | None = None,
    strategy_params: dict[str, Any] | None = None,
    test_rows: np.ndarray | None = None,
    progress: Progress | None = None,
    noise: float = 0.0,
    noise_mode: str = "uniform",
    cluster_method: str = "kmeans",
) -> SimulationResult:
    """Replay active labelling on ``features`` with the ``ground_truth`` oracle.

    ``budget`` counts every label including the ``cold_start`` random ones. ``model`` is a model
    config (``AutoConfig``/``MLPConfig``/``LogisticConfig``/...; default ``AutoConfig()``, which
    chooses the learner every round and keeps its choice stable) or a callable
    ``seed -> estimator``. ``strategy`` is a registered name or any object with
    ``query(ctx, n) -> QueryResult``. ``test_rows`` overrides the stratified split.
    ``cluster_method`` (the project's ``clusters.method``) is what the cluster-based strategies
    cluster with.

    ``noise`` (0 <= noise < 1) makes the oracle fallible: that share of the pool's answers is
    flipped to another class (``noise_mode`` ``uniform`` or ``class``,
    :mod:`core.quality.noise`), drawn from its own seeded stream so the rest of the run is
    unchanged; the test split stays true.
    """
    from core.quality.noise import check_noise, noisy_answers
    from core.quality.stopping import round_guidance
    from core.query import QueryContext, get_strategy

    check_noise(noise, noise_mode)

    y = np.asarray(ground_truth, dtype=object)
    n = len(y)
    if features is None or len(features) != n:
        raise DataError("features and ground_truth must have the same number of rows")
    missing = np.array(
        [v is None or (isinstance(v, float) and np.isnan(v)) or str(v) == "" for v in y]
    )
    if missing.any():
        raise DataError(
            f"the ground-truth column is empty for {int(missing.sum())} items "
            f"(first at row {int(np.flatnonzero(missing)[0])}); simulation needs a label "
            "for every item"
        )
    y = y.astype(str).astype(object)
    present = sorted(set(y.tolist()))
    if len(present) < 2:
        shown = f"only the class {present[0]!r}" if present else "no class at all"
        raise DataError(
            f"the ground-truth column holds {shown}; a simulation needs at least two classes "
            "(with one, every model is trivially right and the balanced accuracy meaningless)"
        )
    ids = np.asarray(ids if ids is not None else [str(i) for i in range(n)], dtype=object)
    for name, value in (("budget", budget), ("batch", batch)):
        if int(value) < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if cold_start < 0:
        raise ConfigError(f"cold_start must be >= 0, got {cold_start}")
    if model is None:
        from core.project import AutoConfig

        model = AutoConfig()
    rng = np.random.default_rng(seed)
    if test_rows is None:
        pool_rows, test_rows = stratified_split(y, test_fraction, rng)
    else:
        test_rows = np.asarray(test_rows, dtype=np.int64)
        pool_rows = np.setdiff1d(np.arange(n), test_rows)
    if len(pool_rows) < 2:
        raise DataError(f"only {len(pool_rows)} items left for the pool; lower test_fraction")
    if len(test_rows) == 0:
        raise ConfigError("no item is held out for evaluation (test_fraction 0 or an empty list "
                          "of test ids): every round is measured on the held-out items; use a "
                          "test_fraction above 0 (the default is 0.3)")
    requested = int(budget)
    budget = int(min(budget, len(pool_rows)))
    budget_note = (
        f"budget {requested} is more than the {len(pool_rows)} items in the pool "
        f"({n} items minus {len(test_rows)} held out for evaluation): stopping at {budget} labels"
        if budget < requested else None
    )
    if budget_note and progress is not None:
        progress(0, budget, budget_note)
    emb_all = (
        default_embedding(features, seed)
        if embedding is None
        else np.asarray(embedding, np.float32)
    )
    emb, emb_test = emb_all[pool_rows], emb_all[test_rows]
    y_pool, y_test = y[pool_rows], y[test_rows]
    classes = sorted(set(y.tolist()))
    if target_class is not None and target_class not in classes:
        raise ConfigError(f"target_class {target_class!r} is not a class of the ground truth; "
                          f"its classes are {', '.join(map(repr, classes))}")
    answers = noisy_answers(y_pool, noise, np.random.default_rng([seed, 7919]), mode=noise_mode,
                            classes=classes)
    pool_counts = {c: int((y_pool == c).sum()) for c in classes}
    tail = [c for c, _ in sorted(pool_counts.items(), key=lambda kv: (kv[1], kv[0]))][
        : max(1, int(np.ceil(len(classes) / 3)))
    ]
    if isinstance(strategy, str):
        params = dict(strategy_params or {})
        if strategy == "auto":
            params.setdefault("cold_start", cold_start)
        query = get_strategy(strategy, **params)
    else:  # any object with query(ctx, n) -> QueryResult, e.g. a benchmark baseline
        query = strategy
    strategy_name = strategy if isinstance(strategy, str) else getattr(strategy, "name", "custom")

    labelled = np.zeros(len(pool_rows), bool)
    order: list[int] = []
    first = rng.choice(len(pool_rows), size=min(cold_start, budget), replace=False)
    labelled[first] = True
    order.extend(first.tolist())
    curve: list[dict[str, Any]] = []
    last_eval: dict[str, Any] = {}
    choice = None  # the auto learner's last choice, carried so it stays stable
    earlier = None  # (labelled rows, model) of the last round: auto reuses its out-of-fold rows
    # the classes the stopping guidance counts: the rare ones named, else the pool's tail
    watched = [c for c in rare_classes if c in pool_counts] or tail
    guidance: list[dict[str, Any]] = []
    total_t0 = time.perf_counter()
    round_no = 0
    while True:
        t0 = time.perf_counter()
        lab_rows = np.flatnonzero(labelled)
        lab_classes = sorted(set(answers[lab_rows].tolist()))
        if len(lab_classes) >= 2:
            lent = EarlierOOF.lent(*earlier, lab_rows) if earlier else None
            est = _build_model(model, seed, previous=choice, earlier_oof=lent)
            # model: auto may spread the few labels over the unlabelled pool (label spreading)
            spreading = getattr(getattr(est, "config", None), "spreading_labels", 0) or 0
            unlabelled_kw = ({"X_unlabelled": emb[~labelled]}
                             if getattr(est, "kind", "") == "auto" and len(lab_rows) < spreading
                             else {})
            est.fit(emb[lab_rows], answers[lab_rows].astype(str), **unlabelled_kw)
            choice = getattr(est, "choice_", choice)
            earlier = (lab_rows, est)
            proba = np.asarray(est.predict_proba(emb), dtype=np.float64)
            model_classes = tuple(str(c) for c in est.classes_)
            test_pred = np.asarray(model_classes, dtype=object)[
                np.asarray(est.predict_proba(emb_test)).argmax(axis=1)
            ]
        else:
            proba = np.zeros((len(pool_rows), 0))
            model_classes = ()
            only = lab_classes[0] if lab_classes else classes[0]
            test_pred = np.full(len(test_rows), only, dtype=object)
        seconds_train = time.perf_counter() - t0
        guidance.append(round_guidance(
            round_no, int(labelled.sum()), proba, model_classes, ~labelled,
            answers[labelled], guidance[-1] if guidance else None, watched, seed=seed))
        # what the estimate is after: the rare items truly left (the simulation knows them)
        guidance[-1]["rare_unfound"] = int(np.isin(y_pool[~labelled], watched).sum())
        last_eval = (
            evaluate(y_test, test_pred, classes, tail_classes=tail) if len(test_rows) else {}
        )
        n_labels = int(labelled.sum())
        row = {
            "round": round_no,
            "labels": n_labels,
            "balanced_accuracy": last_eval.get("balanced_accuracy", float("nan")),
            "macro_f1": last_eval.get("macro_f1", float("nan")),
            "tail_recall": last_eval.get("tail_recall", float("nan")),
            "classes_found": len(lab_classes),
            "seconds_train": round(seconds_train, 4),
            "seconds_select": 0.0,
            "learner": choice.chosen if choice is not None else getattr(model, "kind", "custom"),
        }
        curve.append(row)
        if progress is not None:
            progress(
                n_labels,
                budget,
                f"round {round_no}: {n_labels} labels, balanced accuracy "
                f"{row['balanced_accuracy']:.3f}, {len(lab_classes)} classes",
            )
        if n_labels >= budget or labelled.all():
            break
        labels_arr = np.where(labelled, answers, None).astype(object)
        ctx_kw = {
            "embedding": emb,
            "pool_ids": ids[pool_rows],
            "labelled_mask": labelled.copy(),
            "labels": labels_arr,
            "rng": np.random.default_rng([seed, round_no]),
            "rare_classes": tuple(rare_classes),
            "target_class": target_class,
            "cluster_method": cluster_method,
            "cluster_seed": int(seed),  # as a session: the pool clustering of the round
        }
        ctx = (
            QueryContext(proba=proba, classes=model_classes, **ctx_kw)
            if model_classes
            else QueryContext.without_model(**ctx_kw)
        )
        t1 = time.perf_counter()
        result = query.query(ctx, min(batch, budget - n_labels))
        row["seconds_select"] = round(time.perf_counter() - t1, 4)
        picked = (
            result.positions
            if result.positions is not None
            else _rows_of(ids[pool_rows], result.ids)
        )
        if labelled[picked].any():
            raise RuntimeError(f"strategy {strategy_name!r} returned an already labelled item")
        labelled[picked] = True  # the oracle answers (the ground truth unless noise flipped it)
        order.extend(int(p) for p in picked)
        round_no += 1

    labels_x = [r["labels"] for r in curve]
    ba = [r["balanced_accuracy"] for r in curve]
    found = [r["classes_found"] for r in curve]
    all_found = labels_to_reach(labels_x, found, len(classes))
    summary = {
        "strategy": strategy_name,
        "seed": seed,
        "budget": budget,
        "budget_requested": requested,
        "budget_note": budget_note,
        "batch": batch,
        "cold_start": cold_start,
        "model": getattr(model, "kind", "custom"),
        "model_choice": choice.to_dict() if choice is not None else None,
        "noise": float(noise),
        "noise_mode": noise_mode,
        "n_flipped": int(np.sum(answers[order] != y_pool[order])),
        "n_pool": len(pool_rows),
        "n_test": len(test_rows),
        "n_classes": len(classes),
        "pool_counts": pool_counts,
        "tail_classes": tail,
        "final": {
            k: last_eval.get(k)
            for k in ("balanced_accuracy", "macro_f1", "tail_recall", "accuracy")
        },
        "final_per_class_recall": {
            c: v["recall"] for c, v in last_eval.get("per_class", {}).items()
        },
        "auc_balanced_accuracy": learning_curve_auc(labels_x, ba) if len(ba) > 1 else ba[0],
        "classes_found": found[-1],
        "labels_to_all_classes": None if np.isinf(all_found) else int(all_found),
        "stopping_classes": watched,
        "stopping": [{k: v for k, v in g.items() if not k.startswith("_")} for g in guidance],
        "seconds_total": round(time.perf_counter() - total_t0, 3),
        "seconds_select_mean": float(np.mean([r["seconds_select"] for r in curve[:-1]]))
        if len(curve) > 1
        else 0.0,
    }
    state = getattr(query, "state_dict", None)
    if callable(state) and state() is not None:
        summary["strategy_state"] = state()
    return SimulationResult(
        curve=curve, summary=summary, labelled_ids=[str(v) for v in ids[pool_rows][order]],
        labels_given=[str(v) for v in answers[order]],
    )


def _rows_of(pool_ids: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    index = {str(v): i for i, v in enumerate(pool_ids.tolist())}
    return np.fromiter((index[str(v)] for v in chosen), dtype=np.int64, count=len(chosen))


def write_outputs(
    result: SimulationResult, out_dir: str | Path, title: str = ""
) -> dict[str, Path]:
    """Write ``curve.csv``, ``summary.json`` and ``curve.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"curve": out / "curve.csv", "summary": out / "summary.json", "plot": out / "curve.png"}
    result.curve_frame().to_csv(paths["curve"], index=False)
    paths["summary"].write_text(
        json.dumps(result.summary, indent=2, default=_json_default) + "\n", encoding="utf-8"
    )
    plot_curve(result, paths["plot"], title=title)
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot_curve(result: SimulationResult, path: str | Path, title: str = "") -> Path:
    """Balanced accuracy, macro-F1 and tail recall against labels (left), classes found (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = result.curve_frame()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for col in ("balanced_accuracy", "macro_f1", "tail_recall"):
        ax1.plot(frame["labels"], frame[col], marker=".", label=col.replace("_", " "))
    ax1.set(
        xlabel="labels", ylabel="score", ylim=(0, 1.02), title=title or result.summary["strategy"]
    )
    ax1.legend(loc="lower right")
    ax1.grid(alpha=0.3)
    ax2.step(frame["labels"], frame["classes_found"], where="post")
    ax2.axhline(result.summary["n_classes"], color="grey", ls="--", lw=1)
    ax2.set(xlabel="labels", ylabel="classes found", title="discovery")
    ax2.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
