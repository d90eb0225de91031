"""Label-quality benchmark: suspect labels, calibration of the rare classes and prevalence intervals.

Protocol (issue #13): the long-tailed pools of the label-efficiency benchmark at IR 100 (same
balanced test split, same long-tail draw per seed), ``tailwise simulate`` with the product
defaults (``model: auto``, ``strategy: auto``, batch 20) and an oracle that flips 10 % of its
answers (``--noise 0.1``, uniform and class-dependent). From each run's labelling order the
model is refitted at 100 and 300 labels on (a) the oracle's noisy answers and (b) the true
labels of the same items, and at 300 labels on (c) the noisy answers after an expert reviewed
the top-k suspects (k = number of flipped labels; the reviewer gives the true class).

What each fit leaves (learner probabilities of the pool and the test split, out-of-fold
probabilities of the labels) is kept under ``--out/runs`` as ``.npz`` arrays; the trust report
is then computed from them by the product's own code (:func:`core.quality.round.assess_round`),
so a change of the calibration or prevalence code is re-measured without refitting.

Run: ``python benchmarks/label_quality.py`` (full: digits, fashion-mnist, penbased, letter;
5 seeds), ``--pools digits-LT100 --seeds 2`` for a quick look, ``--docs ''`` to leave the docs.
A previous prevalence estimate on the same runs: ``--cached-only --docs '' --prevalence-from
COMMIT --out OTHER`` (``OTHER/runs`` a link to the runs) writes ``OTHER/prevalence_rows.json``,
which ``--previous`` then reports beside the current estimate. ``--schema found`` and
``--label-error none`` tell the prevalence only the classes labelled so far and take the labels as
right (what it did before declared classes and the label-error correction); ``--calibration-labels
right`` calibrates with the labels taken as right (before the calibration read them through the
estimated label error). A change of the
suspect ranking refits each cached run's review (``--cached-only`` too); ``--previous-suspects``
(the ``results.json`` written before the change, on the same runs) puts the previous ranking's
figures beside the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads BLAS: the machine is shared

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import DOC, limit_threads, machine_summary, markdown_table, write_section
from benchmarks.label_efficiency import (
    load_digits_source,
    load_fashion_source,
    load_keel_source,
    make_split,
)

warnings.filterwarnings("ignore", message="The number of unique classes")
warnings.filterwarnings("ignore", message="The least populated class")

SECTION = "Label quality"
# hand-written subsections a rewrite of the section carries over (unless it writes them itself)
HAND_WRITTEN = ("Scope", "What the figures say", "Cost of the out-of-fold predictions",
                "Prevalence: previous estimate vs this one")
IR = 100.0
NOISE = 0.1
MODES = ("uniform", "class")
CHECKPOINTS = (100, 300)
BATCH = 20
FITS = ("clean", "noisy")  # + "reviewed" at the last checkpoint
# what the prevalence is told (main's --schema / --label-error): the pool's classes as the
# declared schema, and the annotators' error rate (None: labels taken as right)
PREVALENCE = {"schema": True, "label_error": "suspects"}
# the calibration reads the labels through the estimated label error (the product's); False: as
# before that change, labels taken as right (--calibration-labels right)
CALIBRATION = {"label_error": True}


# ---------------------------------------------------------------------------- data
_SOURCES: dict = {}


def source(name: str):
    if name not in _SOURCES:
        budget = max(CHECKPOINTS)
        _SOURCES[name] = {
            "digits": lambda: load_digits_source(budget),
            "fashion-mnist": lambda: load_fashion_source(budget),
            "penbased": lambda: load_keel_source("penbased", budget, 100, 800),
            "letter": lambda: load_keel_source("letter", budget, 50, 600),
        }[name]()
    return _SOURCES[name]


def split(pool: str, seed: int):
    """``(x_pool, y_pool, x_test, y_test)`` of a pool key such as ``digits-LT100``."""
    name, ir = pool.rsplit("-LT", 1)
    return make_split(source(name), float(ir), seed)


def tail_classes(y_pool: np.ndarray) -> list[str]:
    """The rarest third of the classes in the pool (the simulation's tail classes)."""
    classes = sorted(set(y_pool.astype(str).tolist()))
    counts = {c: int((y_pool == c).sum()) for c in classes}
    ordered = [c for c, _ in sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))]
    return ordered[: max(1, int(np.ceil(len(classes) / 3)))]


# ---------------------------------------------------------------------------- one run
def _model_config(learner: str | None = None):
    from core.project import AutoConfig

    config = AutoConfig()
    config.mlp.device = "cpu"
    if learner is not None:
        config.candidates = [learner]
    return config


def fit_arrays(x_pool, x_test, rows: np.ndarray, labels: np.ndarray, seed: int,
               learner: str | None = None) -> dict:
    """Fit ``model: auto`` on pool ``rows`` with ``labels`` (only ``learner`` as candidate when
    given); keep what the trust report needs."""
    from core.models import build_model

    t0 = time.perf_counter()
    model = build_model(_model_config(learner), seed=seed).fit(x_pool[rows], labels.astype(str))
    seconds = time.perf_counter() - t0
    oof_rows = np.asarray(model.oof_rows_ if model.oof_proba_ is not None else [], np.int64)
    k = len(model.classes_)
    return {
        "classes": np.asarray(model.classes_, dtype=str),
        "rows": np.asarray(rows, np.int64),
        "labels": labels.astype(str),
        "pool_raw": model.predict_proba_raw(x_pool).astype(np.float32),
        "test_raw": model.predict_proba_raw(x_test).astype(np.float32),
        "oof_rows": oof_rows,
        "oof_raw": (np.asarray(model.oof_proba_, np.float64) if len(oof_rows)
                    else np.zeros((0, k))),
        "learner": np.asarray(model.chosen),
        "fit_seconds": np.asarray(seconds),
    }


def run_one(pool: str, seed: int, mode: str, out: Path) -> Path:
    """Simulate one noisy run and save the fits at every checkpoint (cached)."""
    from core.simulate import simulate

    path = out / f"{pool}_s{seed}_{mode}.npz"
    if path.exists():
        refresh_review(path, pool, seed)
        return path
    x_pool, y_pool, x_test, y_test = split(pool, seed)
    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, y_test])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    t0 = time.perf_counter()
    res = simulate(x, y, ids=ids, strategy="auto", budget=max(CHECKPOINTS), batch=BATCH,
                   seed=seed, cold_start=10, model=_model_config(), embedding=x,
                   test_rows=np.arange(len(x_pool), len(x)), noise=NOISE, noise_mode=mode)
    sim_seconds = time.perf_counter() - t0
    order = np.array([int(i[1:]) for i in res.labelled_ids], dtype=np.int64)
    given = np.asarray(res.labels_given, dtype=object)
    arrays: dict[str, np.ndarray] = {
        "order": order, "given": given.astype(str), "y_pool": y_pool.astype(str),
        "y_test": y_test.astype(str), "sim_seconds": np.asarray(sim_seconds),
    }
    for m in CHECKPOINTS:
        rows = order[:m]
        # the true labels are fitted with the learner the noisy labels chose, so the two differ
        # by the labels only
        for key, value in fit_arrays(x_pool, x_test, rows, given[:m], seed).items():
            arrays[f"noisy{m}_{key}"] = value
        learner = str(arrays[f"noisy{m}_learner"])
        for key, value in fit_arrays(x_pool, x_test, rows, y_pool[rows], seed, learner).items():
            arrays[f"clean{m}_{key}"] = value
    arrays.update(review(arrays, x_pool, x_test, y_pool, seed))
    _save(path, arrays)
    return path


def reviewed_items(arrays) -> np.ndarray:
    """Positions (into the last noisy fit's labels) of the top-k suspects the product lists now
    (k = flipped labels): what the expert reviews."""
    from core.quality.suspects import find_suspects

    p = f"noisy{max(CHECKPOINTS)}_"
    labels = arrays[p + "labels"].astype(object)
    flipped = int(np.sum(labels != arrays["y_pool"].astype(object)[arrays[p + "rows"]]))
    oof_rows = arrays[p + "oof_rows"]
    suspects = find_suspects(np.arange(len(labels)).astype(str)[oof_rows], labels[oof_rows],
                             arrays[p + "oof_raw"], tuple(arrays[p + "classes"].tolist()))
    return np.asarray([int(s["id"]) for s in suspects[:flipped]], np.int64)


def review(arrays, x_pool, x_test, y_pool, seed: int) -> dict[str, np.ndarray]:
    """The expert reviews the top-k suspects of the last noisy fit and gives the true class; the
    model is refitted (same learner) on the reviewed labels."""
    m = max(CHECKPOINTS)
    p = f"noisy{m}_"
    rows, labels = arrays[p + "rows"], arrays[p + "labels"].astype(object)
    top = reviewed_items(arrays)
    reviewed = labels.copy()
    reviewed[top] = y_pool[rows[top]]
    out = {f"reviewed{m}_{key}": value for key, value in fit_arrays(
        x_pool, x_test, rows, reviewed, seed, str(arrays[p + "learner"])).items()}
    out["reviewed_items"] = top
    return out


def refresh_review(path: Path, pool: str, seed: int) -> bool:
    """Refit the review of a cached run whose top-k suspects differ from what the product lists
    now (a change of the suspect ranking); True when it did."""
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    top = reviewed_items(arrays)
    if np.array_equal(np.sort(top), np.sort(arrays["reviewed_items"])):
        return False
    x_pool, y_pool, x_test, _ = split(pool, seed)
    arrays.update(review(arrays, x_pool, x_test, y_pool, seed))
    _save(path, arrays)
    return True


def _save(path: Path, arrays: dict) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _run_task(task: tuple) -> str:
    pool, seed, mode, out = task
    limit_threads(1)
    return str(run_one(pool, seed, mode, Path(out)))


# ---------------------------------------------------------------------------- the trust report
class _CachedModel:
    """What :func:`assess_round` asks of a model, rebuilt from a fit's saved arrays: the
    "embedding" is the learner's raw probabilities, so ``predict_proba_raw`` returns its input."""

    def __init__(self, oof_raw: np.ndarray, codes: np.ndarray, classes: tuple[str, ...],
                 seed: int) -> None:
        from core.models.auto import MIN_ROWS_FOR_TEMPERATURE, out_of_fold_calibration
        from core.models.calibration import Calibrator, choose_calibrator

        if len(codes) >= MIN_ROWS_FOR_TEMPERATURE:
            choice = (out_of_fold_calibration(oof_raw, codes, classes, seed=seed)
                      if CALIBRATION["label_error"]
                      else choose_calibrator(oof_raw, codes, seed=seed))
            self.calibrator_, self.oof_calibrated_ = choice.calibrator, choice.held_out
        else:
            self.calibrator_, self.oof_calibrated_ = Calibrator(), oof_raw

    @staticmethod
    def predict_proba_raw(raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64)


def assess(arrays, prefix: str, seed: int) -> dict:
    """The product's trust report of one saved fit, plus what the benchmark scores it against."""
    from core.metrics import evaluate
    from core.models.calibration import (
        Calibrator,
        balanced_log_loss,
        choose_calibrator,
        fit_calibrator,
        fit_temperature,
        log_proba,
    )
    from core.quality.reliability import class_reliability
    from core.quality.round import assess_round

    g = lambda key: arrays[prefix + key]  # noqa: E731
    classes = tuple(str(c) for c in g("classes"))
    index = {c: j for j, c in enumerate(classes)}
    rows, labels = g("rows"), g("labels").astype(str)
    oof_rows, oof_raw = g("oof_rows"), g("oof_raw")
    codes = np.array([index[v] for v in labels[oof_rows]], dtype=np.int64)
    model = _CachedModel(oof_raw, codes, classes, seed)
    pool_raw, test_raw = g("pool_raw").astype(np.float64), g("test_raw").astype(np.float64)
    raw = np.concatenate([pool_raw, test_raw])
    proba = model.calibrator_.apply(raw)
    n_pool = len(pool_raw)
    y_pool, y_test = arrays["y_pool"].astype(str), arrays["y_test"].astype(str)
    unlabelled = np.setdiff1d(np.arange(n_pool), rows)
    declared = tuple(sorted(set(y_pool.tolist()))) if PREVALENCE["schema"] else ()
    label_error = PREVALENCE["label_error"]
    if label_error == "known":  # the user gives the rate the oracle flips at
        label_error = NOISE if prefix.startswith(("noisy", "reviewed")) else None
    t0 = time.perf_counter()
    quality = assess_round(kind="auto", model=model, classes=classes, ids=np.arange(len(raw)),
                           embedding=raw, proba=proba, rows=rows, y=labels,
                           oof=(oof_rows, oof_raw), ground_truth=None,
                           test=(np.arange(n_pool, len(raw)), y_test), unlabelled=unlabelled,
                           seed=seed, declared=declared, label_error=label_error)
    seconds = time.perf_counter() - t0
    floors, family_best, taken_right = {}, {}, {}
    test_codes = np.array([index.get(v, -1) for v in y_test], dtype=np.int64)
    known = test_codes >= 0
    held = (test_raw[known], test_codes[known])
    # the calibration before this change (labels taken as right), and the best the calibration
    # family could do: each method fitted on the very test items it is scored on
    previous = (choose_calibrator(oof_raw, codes, seed=seed).calibrator if len(codes) >= 10
                else Calibrator())
    in_sample = ([fit_calibrator(m, *held) for m in ("temperature", "vector")]
                 if len(np.unique(held[1])) >= 2 else [])
    for name in tail_classes(y_pool):
        if name in index and np.any(test_codes == index[name]):
            j = index[name]
            floors[name] = ece_floor(proba[n_pool:][known], test_codes[known], j,
                                     np.random.default_rng([seed, j]))
            family_best[name] = min([class_reliability(c.apply(held[0]), held[1], j)["ece"]
                                     for c in in_sample], default=np.nan)
            taken_right[name] = class_reliability(previous.apply(held[0]), held[1], j)["ece"]
    # one temperature fitted out of fold (labels taken as right / read through the label error)
    # against the one the test split asks for: how far the out-of-fold labels mislead the fit
    temperatures = ({"right": fit_temperature(log_proba(oof_raw), codes),
                     "aware": fit_temperature(log_proba(oof_raw), codes,
                                              model.calibrator_.label_error),
                     "test": fit_temperature(log_proba(held[0]), held[1])}
                    if len(codes) >= 10 and len(np.unique(held[1])) >= 2 else None)
    log_loss = {"before": balanced_log_loss(held[0], held[1]),
                "previous": balanced_log_loss(previous.apply(held[0]), held[1]),
                "after": balanced_log_loss(proba[n_pool:][known], held[1])}
    predicted = np.asarray(classes, dtype=object)[proba[n_pool:].argmax(axis=1)]
    ba = evaluate(y_test, predicted, sorted(set(y_test.tolist())))["balanced_accuracy"]
    truth = {c: int(np.sum(y_pool[unlabelled] == c)) for c in sorted(set(y_pool.tolist()))}
    return {"quality": quality, "ba": float(ba), "truth_pool": truth, "ece_floor": floors,
            "ece_family_best": family_best, "ece_taken_right": taken_right,
            "log_loss": log_loss, "label_error": model.calibrator_.label_error,
            "temperatures": temperatures,
            "classes": classes,
            "method":
            model.calibrator_.method, "seconds": seconds, "learner": str(g("learner"))}


def ece_floor(proba: np.ndarray, codes: np.ndarray, k: int, rng: np.random.Generator,
              draws: int = 200) -> float:
    """The ECE of class ``k`` that perfectly calibrated probabilities ``proba`` would show on a
    test set of this size and class mix (outcomes drawn from the probabilities themselves, the
    product's binning and class-balanced weights): the noise floor of one measured ECE."""
    from core.models.calibration import balanced_weights
    from core.quality.reliability import DEFAULT_BINS

    weight = balanced_weights(codes, proba.shape[1])
    p = proba[:, k]
    which = np.minimum((p * DEFAULT_BINS).astype(np.int64), DEFAULT_BINS - 1)
    w_bin = np.bincount(which, weights=weight, minlength=DEFAULT_BINS)
    p_bin = np.bincount(which, weights=weight * p, minlength=DEFAULT_BINS)
    total = 0.0
    for _ in range(draws):
        hit = (rng.random(len(p)) < p).astype(np.float64)
        h_bin = np.bincount(which, weights=weight * hit, minlength=DEFAULT_BINS)
        total += float(np.sum(np.abs(p_bin - h_bin)))
    return total / draws


def score_run(path: Path, seed: int) -> dict:
    """Every figure of one cached run."""
    arrays = np.load(path, allow_pickle=False)
    y_pool = arrays["y_pool"].astype(str)
    tails = tail_classes(y_pool)
    m = max(CHECKPOINTS)
    out: dict = {"tails": tails, "checkpoints": {}}
    for c in CHECKPOINTS:
        out["checkpoints"][c] = {name: assess(arrays, f"{name}{c}_", seed) for name in FITS}
    reviewed = assess(arrays, f"reviewed{m}_", seed)
    noisy = out["checkpoints"][m]["noisy"]
    rows = arrays[f"noisy{m}_rows"]
    labels = arrays[f"noisy{m}_labels"].astype(str)
    flipped = set(np.flatnonzero(labels != y_pool[rows]).tolist())
    where = {int(r): i for i, r in enumerate(rows)}  # suspects' ids are pool rows
    ranked = [where[int(s["id"])] for s in noisy["quality"].suspects]
    k = len(flipped)
    hits_k = len(set(ranked[:k]) & flipped)
    hits_all = len(set(ranked) & flipped)
    out["suspects"] = {"flipped": k, "listed": len(ranked), "hits_at_k": hits_k,
                       "hits_listed": hits_all,
                       "tested": int(len(arrays[f"noisy{m}_oof_rows"]))}
    out["ba"] = {"clean": out["checkpoints"][m]["clean"]["ba"], "noisy": noisy["ba"],
                 "reviewed": reviewed["ba"]}
    out["fit_seconds"] = float(arrays[f"noisy{m}_fit_seconds"])
    return out


# ---------------------------------------------------------------------------- summaries
def _ratio_ci(num: np.ndarray, den: np.ndarray, rng: np.random.Generator, boot: int = 2000):
    """``sum(num) / sum(den)`` with a bootstrap 90 % interval over cases."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    point = num.sum() / max(den.sum(), 1e-12)
    draws = []
    for _ in range(boot):
        pick = rng.integers(0, len(num), len(num))
        if den[pick].sum() > 0:
            draws.append(num[pick].sum() / den[pick].sum())
    lo, hi = np.quantile(draws, [0.05, 0.95]) if draws else (np.nan, np.nan)
    return float(point), float(lo), float(hi)


def calibration_rows(scored: dict, fit: str) -> list[dict]:
    """One row per (pool, seed, mode, checkpoint, rare class) with a held-out ECE."""
    out = []
    for (pool, seed, mode), s in scored.items():
        for c, cp in s["checkpoints"].items():
            cal = cp[fit]["quality"].calibration or {}
            for name in s["tails"]:
                v = (cal.get("per_class") or {}).get(name)
                if v is not None:
                    out.append({"pool": pool, "seed": seed, "mode": mode, "labels": c,
                                "class": name, "before": v["ece_before"], "after": v["ece_after"],
                                "floor": cp[fit]["ece_floor"].get(name, np.nan),
                                "family_best": cp[fit]["ece_family_best"].get(name, np.nan),
                                "taken_right": cp[fit]["ece_taken_right"].get(name, np.nan),
                                "n": v["n"], "method": cp[fit]["method"]})
    return out


def prevalence_rows(scored: dict, fit: str) -> list[dict]:
    """One row per (pool, seed, mode, checkpoint, class): estimate, interval and truth."""
    out = []
    for (pool, seed, mode), s in scored.items():
        for c, cp in s["checkpoints"].items():
            prev = cp[fit]["quality"].prevalence or {}
            for name, true in cp[fit]["truth_pool"].items():
                v = prev.get(name, {"estimate": 0.0, "low": 0.0, "high": 0.0})
                out.append({"pool": pool, "seed": seed, "mode": mode, "labels": c, "class": name,
                            "rare": name in s["tails"], "seen": name in cp[fit]["classes"],
                            "truth": true, **v,
                            "inside": v["low"] - 1e-9 <= true <= v["high"] + 1e-9})
    return out


def relative_width(rows: list[dict]) -> float:
    """Summed interval widths over summed true counts (a mean of ratios would be ruled by the
    classes with one or two items left)."""
    return float(sum(v["high"] - v["low"] for v in rows) / max(sum(v["truth"] for v in rows), 1))


def all_prevalence_rows(scored: dict) -> list[dict]:
    """:func:`prevalence_rows` of every fit, JSON-ready (``--out/prevalence_rows.json``)."""
    return [{**{k: (bool(v) if k in ("inside", "rare", "seen") else v)
                for k, v in row.items()},
             "fit": fit} for fit in FITS for row in prevalence_rows(scored, fit)]


def _case(row: dict) -> tuple:
    return (row["pool"], int(row["seed"]), row["mode"], int(row["labels"]), row["class"],
            row["fit"])


def previous_comparison(scored: dict, previous: list[dict], source: str) -> list[str]:
    """The same runs scored by a previous prevalence estimate (its ``prevalence_rows.json``)
    beside the current one: coverage, abs. error, width and width / count, previous → now."""
    now = {_case(r): r for r in all_prevalence_rows(scored)}
    before = {_case(r): r for r in previous}
    rows = []
    for fit in FITS:
        for c in CHECKPOINTS:
            common = [key for key in now if key[5] == fit and key[3] == c and key in before]
            if not common:
                continue
            a, b = [before[key] for key in common], [now[key] for key in common]
            rows.append([
                fit, c, len(common),
                f"{100 * np.mean([v['inside'] for v in a]):.0f} % → "
                f"{100 * np.mean([v['inside'] for v in b]):.0f} %",
                f"{np.mean([abs(v['estimate'] - v['truth']) for v in a]):.1f} → "
                f"{np.mean([abs(v['estimate'] - v['truth']) for v in b]):.1f}",
                f"{np.mean([v['high'] - v['low'] for v in a]):.1f} → "
                f"{np.mean([v['high'] - v['low'] for v in b]):.1f}",
                f"{relative_width(a):.2f} → {relative_width(b):.2f}"])
    return ["### Prevalence: previous estimate vs this one (same runs)", "",
            f"The same cached fits scored by the previous estimate (`{source}`) and by the "
            "current one; every (pool, seed, noise, class) case both scored.", "",
            markdown_table(["labels given", "labels", "cases", "coverage", "abs. error",
                            "width", "width / count"], rows)]


def by_checkpoint(scored: dict, rows_of) -> list[tuple[str, int, list[dict]]]:
    """``(labels given, checkpoint, rows)`` for every fit and checkpoint with rows."""
    out = []
    for fit in FITS:
        rows = rows_of(scored, fit)
        for c in CHECKPOINTS:
            r = [v for v in rows if v["labels"] == c]
            if r:
                out.append((fit, c, r))
    return out


def oof_cost(sizes: list[int], seed: int = 0, labels: int = 1_000) -> dict[int, dict]:
    """Seconds of one retrain with ``model: auto`` at ``labels`` labels on a synthetic pool, and
    of the out-of-fold part alone (the chosen learner cross-validated), plus the trust report."""
    from core.models import build_model
    from core.models.learners import LEARNERS
    from core.models.selection import out_of_fold_predictions

    out = {}
    for n in sizes:
        rng = np.random.default_rng(seed)
        k, d = 10, 32
        centres = rng.normal(0, 3, (k, d)).astype(np.float32)
        w = 0.6 ** np.arange(k)
        y = rng.choice(k, n, p=w / w.sum())
        x = centres[y] + rng.normal(0, 1, (n, d)).astype(np.float32)
        names = np.array([f"c{c}" for c in range(k)], dtype=object)[y]
        rows = np.sort(rng.choice(n, labels, replace=False))
        config = _model_config()
        t0 = time.process_time()  # CPU seconds: the machine is shared, wall time says little
        model = build_model(config, seed=seed).fit(x[rows], names[rows].astype(str))
        fit = time.process_time() - t0
        chosen = model.chosen
        t0 = time.process_time()
        out_of_fold_predictions(
            lambda: LEARNERS[chosen](config=config.learner_config(chosen), seed=seed),
            x[rows], names[rows], kind=chosen, folds=config.folds, max_rows=config.max_rows,
            seed=seed)
        oof = time.process_time() - t0
        from core.quality.round import assess_round

        proba = model.predict_proba(x)
        unlabelled = np.setdiff1d(np.arange(n), rows)
        t0 = time.process_time()
        assess_round(kind="auto", model=model, classes=tuple(model.classes_),
                     ids=np.arange(n).astype(str), embedding=x, proba=proba, rows=rows,
                     y=names[rows].astype(str), oof=(model.oof_rows_, model.oof_proba_),
                     ground_truth=None, test=None, unlabelled=unlabelled, seed=seed)
        report = time.process_time() - t0
        out[n] = {"fit": fit, "oof": oof, "report": report, "learner": chosen}
    return out


def previous_suspects(previous: dict | None, scored: dict, mode: str) -> tuple[str, str, str]:
    """``("0.52 → ", "57 → ", "; before: ...")`` prefixes for the suspect targets from a previous
    ranking's ``results.json`` on the same runs, or empty strings when there is none (or it
    lacks one of these runs)."""
    keys = [f"{p}|{s}|{m}" for (p, s, m) in scored if m == mode]
    if not previous or not keys or any(k not in previous for k in keys):
        return "", "", ""
    runs = [previous[k] for k in keys]
    prec = (sum(r["suspects"]["hits_at_k"] for r in runs)
            / max(1, sum(r["suspects"]["flipped"] for r in runs)))
    gain = sum(r["ba"]["reviewed"] - r["ba"]["noisy"] for r in runs)
    loss = sum(r["ba"]["clean"] - r["ba"]["noisy"] for r in runs)
    return (f"{prec:.2f} → ", f"{100 * gain / loss:.0f} → " if loss else "",
            f"; before → after: the previous ranking on the same {len(keys)} runs")


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(scored: dict, costs: dict, args) -> str:
    rng = np.random.default_rng(0)
    lines = [
        f"Protocol: the label-efficiency pools at IR {IR:g} ({args.runs_note}), "
        "`tailwise simulate` with `model: auto`, `strategy: auto`, batch "
        f"{BATCH}, budget {max(CHECKPOINTS)}, oracle noise {NOISE:g} (uniform: a uniformly drawn "
        "other class; class: each class has one look-alike class it is always confused with). "
        "The model is refitted along each run's labelling order at "
        f"{' and '.join(map(str, CHECKPOINTS))} labels on the noisy answers and on the true labels "
        "of the same items; the trust report (suspects, calibration, prevalence) is the product's "
        "own (`core.quality.round.assess_round`) on those fits. Rare classes = the rarest third "
        "of each pool's classes.",
        "",
        "### Suspect labels (at 300 labels)",
        "",
        "k = number of flipped labels among the 300; the expert reviews the top-k suspects and "
        "gives the true class; *recovered* = (BA reviewed − BA noisy) / (BA clean − BA noisy), "
        "summed over runs (a per-run ratio is unstable where noise cost almost nothing); 90 % "
        "bootstrap interval over runs.",
        "",
    ]
    rows_table = []
    targets = []
    for mode in MODES:
        runs = [s for (p, _, m), s in scored.items() if m == mode]
        if not runs:
            continue
        k = np.array([s["suspects"]["flipped"] for s in runs], float)
        hk = np.array([s["suspects"]["hits_at_k"] for s in runs], float)
        listed = np.array([s["suspects"]["listed"] for s in runs], float)
        hl = np.array([s["suspects"]["hits_listed"] for s in runs], float)
        clean = np.array([s["ba"]["clean"] for s in runs])
        noisy = np.array([s["ba"]["noisy"] for s in runs])
        rev = np.array([s["ba"]["reviewed"] for s in runs])
        prec = _ratio_ci(hk, k, rng)
        rec_list = _ratio_ci(hl, k, rng)
        prec_list = _ratio_ci(hl, listed, rng)
        recovered = _ratio_ci(rev - noisy, clean - noisy, rng)
        rows_table.append([mode, len(runs), f"{k.mean():.1f}",
                           f"{prec[0]:.2f} ({prec[1]:.2f}–{prec[2]:.2f})",
                           f"{listed.mean():.1f}", f"{prec_list[0]:.2f}", f"{rec_list[0]:.2f}",
                           f"{clean.mean():.3f}", f"{noisy.mean():.3f}", f"{rev.mean():.3f}",
                           f"{100 * recovered[0]:.0f} % ({100 * recovered[1]:.0f}–"
                           f"{100 * recovered[2]:.0f} %)"])
        before = previous_suspects(args.previous_suspects_runs, scored, mode)
        targets.append(f"- suspects, {mode} noise: precision = recall at k {before[0]}"
                       f"{prec[0]:.2f} (target ≥ 0.6: {mark(prec[0] >= 0.6)}); balanced-accuracy "
                       f"loss recovered {before[1]}{100 * recovered[0]:.0f} % (target ≥ 50 %: "
                       f"{mark(recovered[0] >= 0.5)}){before[2]}.")
    lines.append(markdown_table(
        ["noise", "runs", "flipped k", "precision = recall at k", "listed", "precision (list)",
         "recall (list)", "BA clean", "BA noisy", "BA reviewed", "recovered"], rows_table))
    lines += ["", "Per pool (both noise modes), precision at k and BA clean / noisy / reviewed: "
              + "; ".join(
                  f"{pool}: {np.sum([s['suspects']['hits_at_k'] for s in g]) / max(1, np.sum([s['suspects']['flipped'] for s in g])):.2f}, "
                  f"{np.mean([s['ba']['clean'] for s in g]):.3f} / "
                  f"{np.mean([s['ba']['noisy'] for s in g]):.3f} / "
                  f"{np.mean([s['ba']['reviewed'] for s in g]):.3f}"
                  for pool in args.pool_list
                  if (g := [s for (p, _, _), s in scored.items() if p == pool])) + "."]

    lines += ["", "### Calibration of the rare classes", "",
              "ECE (10 equal-width bins, one class against the rest) on the balanced test split "
              "(held out: never labelled, never used to fit or choose the calibration), before "
              "and after the calibration `model: auto` chose by cross-validated class-balanced "
              "log loss on the out-of-fold predictions (the simplest of none / temperature / "
              "vector scaling within one standard error of the best). *after / before* = mean ECE after over "
              "mean ECE before across (pool, seed, noise, rare class), with a 90 % bootstrap "
              "interval over those cases; a rare class has only "
              f"{args.test_note} held-out items, so each single ECE is noisy: *ECE floor* is the "
              "mean "
              "ECE that perfectly calibrated probabilities (the calibrated ones, outcomes drawn "
              "from them) would show on the same test items — below it no calibration can be "
              "measured. The labels are read through the annotators' error rate confident "
              "learning estimates (*label error*: its mean); *taken as right* is the same choice "
              "with the labels taken as right (the calibration before that change). *Family "
              "best* is the lower ECE of one temperature and of vector scaling fitted on the test "
              "items themselves, the very ones it is scored on: what this family of calibrators "
              "could reach with unlimited, right labels, and an optimistic one (fitted in "
              "sample). *Log loss*: class-balanced, of all test items, before → taken as right → "
              "after (a proper scoring rule: lower is better). *T off by*: median factor between "
              "one temperature fitted on the out-of-fold labels and the one the test split asks "
              "for, labels taken as right → read through the label error.", ""]
    cal_table = []
    for fit, c, r in by_checkpoint(scored, calibration_rows):
        before = np.array([v["before"] for v in r])
        after = np.array([v["after"] for v in r])
        ratio = _ratio_ci(after, before, rng)
        methods = {m: sum(v["method"] == m for v in r) / len(r) for m in
                   sorted({v["method"] for v in r})}
        floor = np.nanmean([v["floor"] for v in r])
        right = np.array([v["taken_right"] for v in r])
        best = np.array([v["family_best"] for v in r])
        fits = [s["checkpoints"][c][fit] for s in scored.values()]
        ll = {k: np.mean([f["log_loss"][k] for f in fits]) for k in ("before", "previous", "after")}
        temps = [f["temperatures"] for f in fits if f["temperatures"]]
        off = {k: np.median([abs(np.log(t[k] / t["test"])) for t in temps])
               for k in ("right", "aware")}
        cal_table.append([fit, c, len(r), f"{before.mean():.3f}", f"{right.mean():.3f}",
                          f"{after.mean():.3f}",
                          f"{ratio[0]:.2f} ({ratio[1]:.2f}–{ratio[2]:.2f})",
                          f"{np.nanmean(best):.3f} ({np.nanmean(best) / before.mean():.2f})",
                          f"{floor:.3f} ({floor / before.mean():.2f})",
                          f"{np.mean([f['label_error'] for f in fits]):.3f}",
                          f"{ll['before']:.3f} → {ll['previous']:.3f} → {ll['after']:.3f}",
                          f"{np.exp(off['right']):.2f} → {np.exp(off['aware']):.2f}",
                          ", ".join(f"{m} {100 * s:.0f} %" for m, s in methods.items())])
        if fit == "noisy":
            targets.append(f"- rare-class ECE after / before, noisy labels, {c} labels: "
                           f"{right.mean() / before.mean():.2f} → {ratio[0]:.2f} (target ≤ 0.5: "
                           f"{mark(ratio[0] <= 0.5)}; family best fitted on the test items "
                           f"themselves {np.nanmean(best) / before.mean():.2f}); before → after: "
                           "labels taken as right → read through the estimated label error.")
    lines.append(markdown_table(["labels given", "labels", "cases", "ECE before",
                                 "ECE after, taken as right", "ECE after", "after / before",
                                 "family best (/ before)", "ECE floor (/ before)", "label error",
                                 "log loss", "T off by", "calibration chosen"], cal_table))
    per_pool = []
    for fit, c, r in by_checkpoint(scored, calibration_rows):
        for pool in args.pool_list:
            g = [v for v in r if v["pool"] == pool]
            if g:
                before = np.mean([v["before"] for v in g])
                after = np.mean([v["after"] for v in g])
                per_pool.append([pool, fit, c, len(g), f"{before:.3f}",
                                 f"{np.mean([v['taken_right'] for v in g]):.3f}",
                                 f"{after:.3f}", f"{after / max(before, 1e-12):.2f}",
                                 f"{np.nanmean([v['family_best'] for v in g]):.3f}",
                                 f"{np.nanmean([v['floor'] for v in g]):.3f}"])
    lines += ["", "Per pool:", "", markdown_table(
        ["pool", "labels given", "labels", "cases", "ECE before", "ECE after, taken as right",
         "ECE after", "after / before", "family best", "ECE floor"], per_pool)]

    lines += ["", "### Prevalence of every class in the unlabelled pool", "",
              "The product's estimate (`core.quality.prevalence.adjusted_prevalence`): the "
              "unlabelled pool is split into cells by predicted class and confidence band; each "
              "cell's class mix is a Dirichlet posterior (the prediction as prior mean, its "
              "strength with a posterior of its own per cell, capped at the labels that checked "
              "the cell and integrated over; one phantom label for unseen confusions) "
              "updated by the labelled items whose out-of-fold prediction falls in the cell, each "
              "label weighed as a true-class distribution under the annotators' error rate ("
              f"{args.label_error_note}). The pool's classes are "
              f"{args.schema_note}. Coverage = share of (pool, class, seed, noise) cases whose "
              "true count of unlabelled items lies inside the reported 90 % interval; "
              "*coverage (classes seen)* leaves out the classes the model had no label of, with "
              "the cases left in brackets; *abs. error* = mean |estimate − truth|; *width* = mean "
              "interval width; *width / count* = summed widths over summed true counts.", ""]
    prev_table = []
    for fit, c, r in by_checkpoint(scored, prevalence_rows):
        inside = np.mean([v["inside"] for v in r])
        rare = [v for v in r if v["rare"]]
        seen = [v for v in r if v.get("seen", True)]
        prev_table.append([
            fit, c, len(r), f"{100 * inside:.0f} %",
            f"{100 * np.mean([v['inside'] for v in rare]):.0f} %" if rare else "",
            f"{100 * np.mean([v['inside'] for v in seen]):.0f} % ({len(seen)})" if seen else "",
            f"{np.mean([abs(v['estimate'] - v['truth']) for v in r]):.1f}",
            f"{np.mean([v['high'] - v['low'] for v in r]):.1f}", f"{relative_width(r):.2f}",
            f"{np.mean([v['truth'] for v in r]):.1f}"])
        if fit == "noisy" or fit == "clean":
            targets.append(f"- prevalence coverage, {fit} labels, {c} labels: "
                           f"{100 * inside:.1f} % (target ≥ 85 %: {mark(inside >= 0.85)}).")
    lines.append(markdown_table(["labels given", "labels", "cases", "coverage",
                                 "coverage (rare)", "coverage (classes seen)", "abs. error",
                                 "width", "width / count",
                                 "mean true count"], prev_table))
    per_pool = []
    for fit, c, r in by_checkpoint(scored, prevalence_rows):
        for pool in args.pool_list:
            g = [v for v in r if v["pool"] == pool]
            if g:
                per_pool.append([pool, fit, c, len(g),
                                 f"{100 * np.mean([v['inside'] for v in g]):.0f} %",
                                 f"{np.mean([abs(v['estimate'] - v['truth']) for v in g]):.1f}",
                                 f"{np.mean([v['high'] - v['low'] for v in g]):.1f}",
                                 f"{relative_width(g):.2f}",
                                 f"{np.mean([v['truth'] for v in g]):.1f}"])
    lines += ["", "Per pool:", "", markdown_table(
        ["pool", "labels given", "labels", "cases", "coverage", "abs. error", "width",
         "width / count", "mean true count"], per_pool)]
    if args.previous_rows:
        lines += ["", *previous_comparison(scored, args.previous_rows, args.previous)]

    if costs:
        lines += ["", "### Cost of the out-of-fold predictions", "",
                  "One retrain of `model: auto` at 1,000 labels on a synthetic 32-d, 10-class "
                  "long-tailed pool, one thread: the whole fit (learner choice when due, fit, "
                  "out-of-fold predictions, calibration choice), the out-of-fold part alone (the "
                  "chosen learner cross-validated on at most `model.max_rows` labels: its cost "
                  "does not grow with the pool) and the trust report (suspects, calibration, "
                  "prevalence with its bootstrap over a pool sample of at most 20,000).", ""]
        lines.append(markdown_table(
            ["pool items", "learner", "fit (CPU s)", "out-of-fold (CPU s)", "trust report (CPU s)"],
            [[f"{n:,}", c["learner"], f"{c['fit']:.2f}", f"{c['oof']:.2f}", f"{c['report']:.2f}"]
             for n, c in costs.items()]))
    lines += ["", "### Targets", ""] + targets
    return "\n".join(lines)


def use_prevalence_of(commit: str) -> None:
    """Score the prevalence with ``core/quality/prevalence.py`` as it was at ``commit`` (read by
    ``git show``), so a previous estimate is measured on the same cached runs: its
    ``adjusted_prevalence`` where out-of-fold labels exist and, before the checked estimate
    covered every round, its ``estimate_prevalence`` where none did."""
    import subprocess
    import types

    import core.quality.round as round_module

    source = subprocess.run(["git", "show", f"{commit}:core/quality/prevalence.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    old = types.ModuleType(f"prevalence_{commit}")
    exec(compile(source, f"{commit}:core/quality/prevalence.py", "exec"), old.__dict__)

    import inspect

    known = set(inspect.signature(old.adjusted_prevalence).parameters)

    def adjusted(q_pool, classes, prior, q_held, codes, **kw):
        kw = {k: v for k, v in kw.items() if k in known}  # what the old estimate could be told
        if len(codes):
            return old.adjusted_prevalence(q_pool, classes, prior, q_held, codes, **kw)
        return old.estimate_prevalence(q_pool, classes, prior, seed=kw.get("seed", 0)), {
            "checked_by": 0}

    round_module.adjusted_prevalence = adjusted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pools", default="digits-LT100,fashion-mnist-LT100,penbased-LT100,letter-LT100")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cost", default="10000,100000", help="pool sizes for the retrain cost")
    ap.add_argument("--cached-only", action="store_true",
                    help="report only the runs already under --out/runs (fits no new run; refits a "
                         "review whose top-k suspects the ranking now lists otherwise)")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "label_quality")
    ap.add_argument("--docs", default=str(DOC), help="markdown to update ('' = none)")
    ap.add_argument("--previous", default="",
                    help="prevalence_rows.json of a previous estimate on the same runs: "
                         "reported beside the current one")
    ap.add_argument("--previous-suspects", default="",
                    help="results.json of a previous suspect ranking on the same runs: its "
                         "figures are reported beside the targets")
    ap.add_argument("--prevalence-from", default="", metavar="COMMIT",
                    help="score the prevalence with core/quality/prevalence.py of COMMIT (its "
                         "rows then serve as --previous of a later run)")
    ap.add_argument("--schema", choices=("declared", "found"), default="declared",
                    help="declared: the pool's classes are the project's schema, so a class no "
                         "label has shown yet is counted too; found: only classes labelled")
    ap.add_argument("--label-error", default="suspects",
                    help="annotator error rate the prevalence corrects for: suspects (the "
                         "product's: confident learning's share of flagged labels), none, known "
                         "(the oracle's "
                         f"{NOISE:g} on noisy fits) or a number")
    ap.add_argument("--calibration-labels", choices=("noisy", "right"), default="noisy",
                    help="noisy: the calibration reads the labels through the label error "
                         "confident learning estimates (the product's); right: takes them as "
                         "right (before that change; its prevalence rows then serve as --previous)")
    args = ap.parse_args(argv)
    limit_threads(1)
    CALIBRATION["label_error"] = args.calibration_labels == "noisy"
    PREVALENCE["schema"] = args.schema == "declared"
    args.schema_note = (
        "the project's declared schema (a project lists its classes; a class no label has shown "
        "yet is counted from 0 up)" if PREVALENCE["schema"] else
        "only those labelled so far (a class no label has shown is absent: estimate 0, a miss)")
    named = {"none": None, "suspects": "suspects", "known": "known"}
    try:
        PREVALENCE["label_error"] = (named[args.label_error] if args.label_error in named
                                     else float(args.label_error))
    except ValueError:
        ap.error(f"--label-error {args.label_error!r}: use none, suspects, known or a rate")
    args.label_error_note = {
        "suspects": "the product's default: the share of the cross-validated labels confident "
                    "learning flags as suspect",
        None: "none: labels taken as right",
        "known": f"given: the oracle's {NOISE:g} on the noisy fits, none on the clean ones",
    }.get(PREVALENCE["label_error"], f"given: {PREVALENCE['label_error']}")
    if args.prevalence_from:
        use_prevalence_of(args.prevalence_from)
    args.pool_list = [p.strip() for p in args.pools.split(",") if p.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs = args.out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    load = machine_summary()
    tasks = [(p, s, m, str(runs)) for p in args.pool_list for s in range(args.seeds)
             for m in modes]
    if args.cached_only:
        tasks = [t for t in tasks if (runs / f"{t[0]}_s{t[1]}_{t[2]}.npz").exists()]
        args.pool_list = [p for p in args.pool_list if any(t[0] == p for t in tasks)]
    for p in args.pool_list:  # load each source once before forking
        source(p.rsplit("-LT", 1)[0])
    import multiprocessing as mp

    with mp.get_context("fork").Pool(max(1, args.jobs)) as workers:
        for done, (task, _) in enumerate(zip(tasks, workers.imap(_run_task, tasks)), start=1):
            print(f"[{done}/{len(tasks)}] {task[0]} seed {task[1]} {task[2]} "
                  f"({time.time() - t_start:.0f} s)", flush=True)
    args.runs_note = ", ".join(
        f"{p}: {sum(t[0] == p for t in tasks)} runs ("
        + ", ".join(f"{m} seeds {sorted(t[1] for t in tasks if t[0] == p and t[2] == m)}"
                    for m in modes if any(t[0] == p and t[2] == m for t in tasks)) + ")"
        for p in args.pool_list)
    scored = {}
    for p, s, m, _ in tasks:
        scored[(p, s, m)] = score_run(runs / f"{p}_s{s}_{m}.npz", s)
    sizes = [int(v) for v in args.cost.split(",") if v.strip()]
    cost_file = args.out / "cost.json"
    costs = {int(k): v for k, v in json.loads(cost_file.read_text()).items()} \
        if cost_file.exists() else {}
    if not args.cached_only:
        costs.update(oof_cost([n for n in sizes if n not in costs]))
        cost_file.write_text(json.dumps(costs, indent=1))
    costs = {n: costs[n] for n in sizes if n in costs}
    tests = {p: len(split(p, 0)[3]) // len(set(split(p, 0)[3].tolist())) for p in args.pool_list}
    args.test_note = ", ".join(f"{n} ({p})" for p, n in tests.items())
    args.previous_rows = (json.loads(Path(args.previous).read_text(encoding="utf-8"))
                          if args.previous else None)
    args.previous_suspects_runs = (json.loads(Path(args.previous_suspects).read_text(
        encoding="utf-8")) if args.previous_suspects else None)
    (args.out / "prevalence_rows.json").write_text(json.dumps(all_prevalence_rows(scored)))
    body = report(scored, costs, args)
    body += ("\n\nEach run's fits are kept under `--out/runs` and reused; the trust report is "
             f"recomputed from them every time. Load when the command started: {load}.")
    elapsed = time.time() - t_start
    print(body)
    summary = {f"{p}|{s}|{m}": {"suspects": v["suspects"], "ba": v["ba"], "tails": v["tails"]}
               for (p, s, m), v in scored.items()}
    (args.out / "results.json").write_text(json.dumps(summary, indent=1))
    if args.docs:
        command = "python benchmarks/label_quality.py " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        write_section(Path(args.docs), SECTION, body, command=command, elapsed_s=elapsed,
                      keep=HAND_WRITTEN)
        print(f"updated {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
