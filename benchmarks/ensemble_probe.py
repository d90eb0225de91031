"""Probe (issue 9): would an ensemble of the candidate learners beat the best single one?

Along the labelling order the product line (``model: auto``, ``strategy: auto``) took on a
long-tailed pool, every candidate learner is refitted from scratch at each round (as
``label_efficiency.replay`` does), and so are two ensembles that average the candidates'
probabilities (all four; the three that are not gradient boosting). Reported: the area under the
balanced-accuracy curve of each, and of the product's own curve, per pool (mean ± sd over seeds).
This measures the learners on the items ``auto`` chose, not an active loop driven by the ensemble
(its picks would differ): a screen for whether an ensemble is worth building into ``auto``.

Run: ``python benchmarks/ensemble_probe.py --pools digits-LT100,penbased-LT100 --seeds 10,11,12``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import label_efficiency as le  # noqa: E402
from benchmarks._common import limit_threads  # noqa: E402
from core.metrics import evaluate, learning_curve_auc  # noqa: E402

ENSEMBLES = {
    "mean of all four": le.LEARNERS,
    "mean of logistic, random forest, mlp": ("logistic", "random_forest", "mlp"),
}


def _proba(name: str, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, classes: list[str],
           seed: int) -> np.ndarray:
    from core.models import build_model

    est = build_model(le.model_config(name), seed=seed).fit(x, y)
    out = np.zeros((len(x_test), len(classes)))
    index = {c: j for j, c in enumerate(classes)}
    out[:, [index[str(c)] for c in est.classes_]] = est.predict_proba(x_test)
    return out


def probe(key: str, seed: int) -> dict[str, list[float]]:
    """Balanced accuracy per round of every learner and ensemble along the product's order."""
    ds, ir = key.rsplit("-LT", 1)
    x_pool, y_pool, x_test, y_test = le.make_split(le._SOURCES[ds], float(ir), seed)
    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, y_test])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    res = le.simulate(x, y, ids=ids, strategy="auto", budget=le._SOURCES[ds].budget, batch=10,
                      seed=seed, cold_start=10, model=le.model_config("auto"), embedding=x,
                      test_rows=np.arange(len(x_pool), len(x)))
    order = np.array([int(i[1:]) for i in res.labelled_ids])
    labels = [r["labels"] for r in res.curve]
    out = {"labels": labels, "product (auto · auto)": [r["balanced_accuracy"] for r in res.curve]}
    classes = sorted(set(y_test.tolist()) | set(y_pool.tolist()))
    for m in labels:
        rows = order[:m]
        yl = y_pool[rows].astype(str)
        found = sorted(set(yl.tolist()))
        probs = {}
        for name in le.LEARNERS:
            if len(found) >= 2:
                probs[name] = _proba(name, x_pool[rows], yl, x_test, classes, seed)
            else:
                probs[name] = np.tile(np.asarray([c == found[0] for c in classes], float),
                                      (len(x_test), 1))
        columns = {**{n: probs[n] for n in le.LEARNERS},
                   **{e: np.mean([probs[n] for n in members], axis=0)
                      for e, members in ENSEMBLES.items()}}
        for name, p in columns.items():
            pred = np.asarray(classes, dtype=object)[p.argmax(axis=1)]
            out.setdefault(name, []).append(evaluate(y_test, pred, classes)["balanced_accuracy"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", default="digits-LT100,penbased-LT100")
    ap.add_argument("--seeds", default="10,11,12")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--letter-budget", type=int, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "ensemble_probe")
    args = ap.parse_args(argv)
    limit_threads(1)
    loaders = le.source_loaders(args.budget, args.letter_budget)
    args.out.mkdir(parents=True, exist_ok=True)
    pools = [p for p in args.pools.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for pool in pools:
        ds = pool.rsplit("-LT", 1)[0]
        if ds not in le._SOURCES:
            le._SOURCES[ds] = loaders[ds]()
        aucs: dict[str, list[float]] = {}
        for seed in seeds:
            path = args.out / f"{pool}_s{seed}.json"
            if path.exists():
                curves = json.loads(path.read_text())
            else:
                t0 = time.time()
                curves = probe(pool, seed)
                path.write_text(json.dumps(curves))
                print(f"{pool} seed {seed}: {time.time() - t0:.0f} s", flush=True)
            for name, ba in curves.items():
                if name != "labels":
                    aucs.setdefault(name, []).append(learning_curve_auc(curves["labels"], ba))
        best_single = max(le.LEARNERS, key=lambda n: np.mean(aucs[n]))
        print(f"\n{pool} (seeds {args.seeds}; best single learner on this order: {best_single})")
        for name, values in aucs.items():
            gap = np.mean(np.array(values) - np.array(aucs[best_single]))
            print(f"  {name:40s} AUC {np.mean(values):.3f} ± {np.std(values):.3f}   "
                  f"vs best single {gap:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
