"""Embedding benchmark: does the quintuplet embedding keep rare classes locally separable?

On the long-tailed pools of ``label_efficiency.py`` (IR 10 and 100, several seeds), labels are
drawn as the default strategy would (``strategy: auto``, with the cheap ``logistic`` learner
deciding what to ask; 10 random cold-start labels, batches of 10), and with the first 20, 50
and 100 of them three embeddings of the whole pool are compared:

* ``quintuplet`` — the penultimate layer of the MLP head trained with ``embedding_loss:
  quintuplet`` (what ``cluster_knn`` uses and the ``model`` encoder's map shows);
* ``penultimate`` — the penultimate layer of the default, logit-adjusted MLP head;
* ``encoder`` — the fixed embedding both are trained on (standardised features, PCA-50 for
  Fashion-MNIST); it does not depend on the labels.

Per embedding: kNN (k = 10) balanced accuracy and tail-third recall, leave-one-out on the pool's
ground truth, and the rare-class purity of the 2-D map (the product's UMAP map of that embedding):
the share of each tail-class item's 15 nearest map neighbours of its own class (maps only where
``--map-labels`` / ``--map-irs`` say: UMAP dominates the cost on a shared machine). Also the test
balanced accuracy of ``mlp`` and ``cluster_knn`` as classifiers, and of ``cluster_knn`` with
statistics pooling (each cluster scored by a Gaussian with its own mean and variance instead of
its centroid alone). Run: ``python benchmarks/embedding.py`` (``--quick`` for a smoke run).
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

from benchmarks._common import DOC, limit_threads, markdown_table, write_section  # noqa: E402
from benchmarks.label_efficiency import (  # noqa: E402
    load_digits_source,
    load_fashion_source,
    load_keel_source,
    make_split,
    synthetic_long_tail,
)

warnings.filterwarnings("ignore", message="The number of unique classes")
warnings.filterwarnings("ignore", message="The least populated class")

SECTION = "Embedding: quintuplet margins"
EMBEDDINGS = ("quintuplet", "penultimate", "encoder")
K_NEIGHBOURS, MAP_NEIGHBOURS = 10, 15


# ---------------------------------------------------------------------------- measures
def tail_classes(y: np.ndarray) -> list[str]:
    """The rarest third of the pool's classes (by pool count, ties by name)."""
    classes, counts = np.unique(y.astype(str), return_counts=True)
    order = sorted(zip(counts, classes))
    return [c for _, c in order[: max(1, int(np.ceil(len(classes) / 3)))]]


def knn_loo(emb: np.ndarray, y: np.ndarray, tail: list[str], k: int = K_NEIGHBOURS) -> dict:
    """Leave-one-out k-NN vote (ties to the nearer neighbour): balanced accuracy, tail recall."""
    from sklearn.neighbors import NearestNeighbors

    classes, codes = np.unique(y.astype(str), return_inverse=True)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(emb).kneighbors(emb, return_distance=False)
    neighbours = np.array([row[row != i][:k] for i, row in enumerate(idx)])
    votes = np.zeros((len(y), len(classes)))
    weight = 1.0 + 1e-3 * np.arange(k, 0, -1)  # a tie goes to the class of the nearer items
    np.add.at(votes, (np.repeat(np.arange(len(y)), k), codes[neighbours].ravel()),
              np.tile(weight, len(y)))
    pred = votes.argmax(axis=1)
    recall = {c: float(np.mean(pred[codes == i] == i)) for i, c in enumerate(classes)}
    return {"ba": float(np.mean(list(recall.values()))),
            "tail": float(np.mean([recall[c] for c in tail]))}


def map_purity(xy: np.ndarray, y: np.ndarray, tail: list[str], k: int = MAP_NEIGHBOURS) -> float:
    """Mean over tail-class items of the share of their ``k`` nearest map neighbours of their
    own class."""
    from sklearn.neighbors import NearestNeighbors

    y = y.astype(str)
    rare = np.flatnonzero(np.isin(y, tail))
    idx = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy[rare], return_distance=False)
    shares = [np.mean(y[row[row != i][:k]] == y[i]) for i, row in zip(rare, idx)]
    return float(np.mean(shares))


def gaussian_pooled_scores(model, X: np.ndarray) -> np.ndarray:
    """``cluster_knn`` with statistics pooling: each cluster a Gaussian with its own mean and
    (isotropic) variance; a class scores its best cluster's log-likelihood."""
    emb = model.embed(X).astype(np.float64)
    c = model.centroids_.astype(np.float64)
    d2 = np.maximum((emb ** 2).sum(1)[:, None] - 2 * emb @ c.T + (c ** 2).sum(1), 0.0)
    dim = emb.shape[1]
    var = np.maximum(model.cluster_spread_.astype(np.float64) / dim, 1e-4)
    var = np.where(model.cluster_size_ > 1, var, np.median(var[model.cluster_size_ > 1])
                   if (model.cluster_size_ > 1).any() else 1e-2)
    loglik = -d2 / (2 * var) - 0.5 * dim * np.log(var)
    out = np.full((len(X), len(model.classes_)), -np.inf)
    for k in range(len(model.classes_)):
        mine = model.cluster_class_ == k
        out[:, k] = loglik[:, mine].max(axis=1)
    return out


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = y_true.astype(str), np.asarray(y_pred).astype(str)
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


# ---------------------------------------------------------------------------- one task
_SOURCES: dict = {}


def draw_labels(x_pool, y_pool, x_test, y_test, budget: int, seed: int) -> list[int]:
    """Pool rows in the order ``strategy: auto`` (with the logistic learner) labels them."""
    from core.project import LogisticConfig
    from core.simulate import simulate

    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, y_test])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    res = simulate(x, y, ids=ids, strategy="auto", budget=budget, batch=10, seed=seed,
                   cold_start=10, model=LogisticConfig(), embedding=x,
                   test_rows=np.arange(len(x_pool), len(x)))
    return [int(i[1:]) for i in res.labelled_ids]


def run_task(task: tuple) -> dict:
    """One (pool, seed): every label count, every embedding."""
    from core.models import build_model
    from core.project import ClusterKNNConfig, MapConfig, MLPConfig
    from core.projection import project_2d

    key, ir, seed, label_counts, map_labels, class_margin = task
    src = _SOURCES[key.rsplit("-LT", 1)[0]]
    x_pool, y_pool, x_test, y_test = make_split(src, ir, seed)
    y_pool, y_test = y_pool.astype(str), y_test.astype(str)
    tail = tail_classes(y_pool)
    order = draw_labels(x_pool, y_pool, x_test, y_test, max(label_counts), seed)
    map_config = MapConfig()
    out = {"pool": key, "seed": seed, "n_pool": len(y_pool), "tail": tail, "by_labels": {}}

    def measure(emb: np.ndarray, with_map: bool) -> dict:
        m = knn_loo(emb, y_pool, tail)
        if with_map:
            m["purity"] = map_purity(project_2d(emb, map_config, seed=seed), y_pool, tail)
        return m

    out["encoder"] = measure(x_pool, bool(map_labels))
    for m in label_counts:
        rows = np.asarray(order[:m])
        y = y_pool[rows]
        if len(set(y.tolist())) < 2:
            continue
        t0 = time.process_time()
        quintuplet = MLPConfig(embedding_loss="quintuplet", device="cpu")
        if class_margin is not None:
            quintuplet.class_margin = class_margin
        knn = build_model(ClusterKNNConfig(mlp=quintuplet), seed=seed)
        knn.fit(x_pool[rows], y, X_unlabelled=x_pool)
        t_knn = time.process_time() - t0
        t0 = time.process_time()
        mlp = build_model(MLPConfig(device="cpu"), seed=seed).fit(x_pool[rows], y,
                                                                   X_unlabelled=x_pool)
        t_mlp = time.process_time() - t0
        pooled = knn.classes_[gaussian_pooled_scores(knn, x_test).argmax(axis=1)]
        out["by_labels"][str(m)] = {
            "classes_labelled": len(set(y.tolist())),
            "quintuplet": measure(knn.embed(x_pool), m in map_labels),
            "penultimate": measure(mlp.embed(x_pool), m in map_labels),
            "test_ba": {"mlp": balanced_accuracy(y_test, mlp.predict(x_test)),
                        "cluster_knn": balanced_accuracy(y_test, knn.predict(x_test)),
                        "cluster_knn + pooling": balanced_accuracy(y_test, pooled)},
            "fit_cpu_s": {"mlp": t_mlp, "cluster_knn": t_knn},
        }
    return out


def cache_path(task: tuple, cache: Path) -> Path:
    key, _, seed, label_counts, map_labels, class_margin = task
    maps = "-".join(map(str, map_labels)) or "none"
    margin = "" if class_margin is None else f"_cm{class_margin:g}"
    return cache / f"{key}_s{seed}_{'-'.join(map(str, label_counts))}_map{maps}{margin}.json"


def run_cached(task: tuple, cache: Path) -> dict:
    path = cache_path(task, cache)
    if path.exists():
        return json.loads(path.read_text())
    result = run_task(task)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def _init_worker(sources: dict) -> None:
    limit_threads(1)
    _SOURCES.update(sources)


# ---------------------------------------------------------------------------- report
def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def report(results: list[dict], label_counts: list[int]) -> tuple[str, dict]:
    """The markdown tables and the target verdicts."""
    pools = list(dict.fromkeys(r["pool"] for r in results))
    header = ["pool", "labels", "seeds"]
    for e in EMBEDDINGS:
        header += [f"{e} kNN BA", f"{e} kNN tail", f"{e} map purity"]
    header.append("Δ tail (quint − penult)")
    rows, deltas = [], {}
    clf_rows = []
    for pool in pools:
        runs = [r for r in results if r["pool"] == pool]
        for m in label_counts:
            cells = [r["by_labels"][str(m)] for r in runs if str(m) in r["by_labels"]]
            if not cells:
                continue
            row = [pool, m, len(cells)]
            for e in EMBEDDINGS:
                src = [r["encoder"] for r in runs if str(m) in r["by_labels"]] if e == "encoder" \
                    else [c[e] for c in cells]
                row += [_mean([s["ba"] for s in src]), _mean([s["tail"] for s in src])]
                purity = [s["purity"] for s in src if "purity" in s]
                row.append(_mean(purity) if len(purity) == len(src) else "–")
            delta = [c["quintuplet"]["tail"] - c["penultimate"]["tail"] for c in cells]
            deltas[(pool, m)] = delta
            row.append(f"{np.mean(delta):+.3f} ± {np.std(delta) / np.sqrt(len(delta)):.3f}")
            rows.append(row)
            ba = {k: _mean([c["test_ba"][k] for c in cells]) for k in cells[0]["test_ba"]}
            fit = {k: _mean([c["fit_cpu_s"][k] for c in cells]) for k in cells[0]["fit_cpu_s"]}
            clf_rows.append([pool, m, *ba.values(), fit["mlp"], fit["cluster_knn"]])
    clf_header = ["pool", "labels", "mlp test BA", "cluster_knn test BA",
                  "cluster_knn + pooling test BA", "mlp fit CPU s", "cluster_knn fit CPU s"]
    ir100 = [d for (pool, _), v in deltas.items() if pool.endswith("LT100") for d in v]
    cells100 = {k: float(np.mean(v)) for k, v in deltas.items() if k[0].endswith("LT100")}
    verdict = {
        "ir100_mean_delta": _mean(ir100),
        "ir100_cells_met": sum(v >= 0.05 for v in cells100.values()),
        "ir100_cells": len(cells100),
        "pooling_minus_plain": _mean([r[4] - r[3] for r in clf_rows]),
        "knn_minus_mlp": _mean([r[3] - r[2] for r in clf_rows]),
    }
    text = "\n\n".join([
        "kNN on the pool (k = 10, leave-one-out, ground truth) and rare-class map purity "
        "(mean over tail-third items of the share of their 15 nearest 2-D neighbours of their "
        "own class); mean over seeds, Δ with its standard error:",
        markdown_table(header, rows),
        "The same labels as classifiers (balanced test split of the pool's data set), and "
        "statistics pooling tried in `cluster_knn` (each cluster a Gaussian with its own mean and "
        "variance):",
        markdown_table(clf_header, clf_rows),
    ])
    return text, verdict


def auto_selection_cost(n_pool: int = 100_000, rounds: int = 12, seed: int = 0, d: int = 32,
                        k: int = 10, start: int = 100) -> dict:
    """CPU seconds ``model: auto`` spends choosing (``selection_seconds_``, process time) per
    retrain, with the default candidates and with ``cluster_knn`` added, along the same labelling
    run as ``label_efficiency.loop_time`` (synthetic long-tailed pool, 10 labels per round)."""
    from core.models import build_model
    from core.project import AutoConfig

    rng = np.random.default_rng(seed)
    x, y, names = synthetic_long_tail(n_pool, rng, d=d, k=k)
    first = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(k)])
    rest = rng.permutation(np.setdiff1d(np.arange(n_pool), first))
    order = np.concatenate([first, rest])
    out = {}
    for label, extra in (("default", []), ("with cluster_knn", ["cluster_knn"])):
        config = AutoConfig()
        config.candidates = [*config.candidates, *extra]
        config.mlp.device = config.cluster_knn.mlp.device = "cpu"
        choice, cpu, compared = None, [], 0
        for r in range(rounds):
            rows = order[: start + 10 * r]
            c0 = time.process_time()
            model = build_model(config, seed=seed, previous=choice)
            model.fit(x[rows], names[y[rows]])
            cpu.append(time.process_time() - c0)
            choice = model.choice_
            compared += int(choice.compared)
        out[label] = {"fit_cpu_mean": float(np.mean(cpu)), "comparisons": compared,
                      "chosen": choice.chosen}
    return out


def auto_efficiency(task: tuple) -> dict:
    """One ``strategy: auto`` labelling run with ``model: auto``, default candidates or with
    ``cluster_knn`` added (the protocol of ``label_efficiency.py``): the test curve."""
    from core.metrics import learning_curve_auc
    from core.project import AutoConfig
    from core.simulate import simulate

    key, ir, seed, budget, extra = task
    src = _SOURCES[key.rsplit("-LT", 1)[0]]
    x_pool, y_pool, x_test, y_test = make_split(src, ir, seed)
    x, y = np.concatenate([x_pool, x_test]), np.concatenate([y_pool, y_test])
    config = AutoConfig()
    config.candidates = [*config.candidates, *extra]
    config.mlp.device = config.cluster_knn.mlp.device = "cpu"
    res = simulate(x, y, ids=np.array([f"r{i}" for i in range(len(x))], dtype=object),
                   strategy="auto", budget=budget, batch=10, seed=seed, cold_start=10,
                   model=config, embedding=x, test_rows=np.arange(len(x_pool), len(x)))
    curve = res.curve
    labels, ba = [r["labels"] for r in curve], [r["balanced_accuracy"] for r in curve]
    return {"auc": learning_curve_auc(labels, ba), "final_ba": ba[-1],
            "tail": curve[-1]["tail_recall"], "learners": [r["learner"] for r in curve]}


def auto_efficiency_report(pools: list[str], seeds: int, budget: int, jobs: int) -> str:
    """Label efficiency of ``model: auto`` with and without ``cluster_knn`` as a candidate."""
    tasks = [(pool, float(pool.rsplit("-LT", 1)[1]), seed, budget, extra)
             for pool in pools for seed in range(seeds) for extra in ([], ["cluster_knn"])]
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs, _init_worker, (dict(_SOURCES),)) as pool:
            results = pool.map(auto_efficiency, tasks)
    else:
        results = [auto_efficiency(t) for t in tasks]
    rows = []
    for pool in pools:
        by = {name: [r for t, r in zip(tasks, results) if t[0] == pool and bool(t[4]) == with_knn]
              for name, with_knn in (("default", False), ("with cluster_knn", True))}
        for name, runs in by.items():
            chosen = [lrn for r in runs for lrn in r["learners"][1:]]
            rows.append([pool, name, len(runs), _mean([r["auc"] for r in runs]),
                         _mean([r["final_ba"] for r in runs]), _mean([r["tail"] for r in runs]),
                         f"{chosen.count('cluster_knn') / max(len(chosen), 1):.0%}"])
    return markdown_table(["pool", "auto.candidates", "seeds", f"AUC (BA, {budget} labels)",
                           "final BA", "final tail recall", "rounds on cluster_knn"], rows)


def _command(argv: list[str] | None) -> str:
    return " ".join(["python benchmarks/embedding.py",
                     *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="digits only, 2 seeds, no map")
    ap.add_argument("--datasets", default="digits,penbased,letter,fashion-mnist")
    ap.add_argument("--irs", default="10,100")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--labels", default="20,50,100")
    ap.add_argument("--map-labels", default="50",
                    help="label counts whose embeddings also get a 2-D map (UMAP; '' for none)")
    ap.add_argument("--map-irs", default="100", help="imbalance ratios whose pools get maps")
    ap.add_argument("--section", default=SECTION, help="the docs section to (re)write")
    ap.add_argument("--from-cache", action="store_true",
                    help="report only the runs already kept under --out/runs (an unfinished run)")
    ap.add_argument("--class-margin", type=float, default=None,
                    help="the quintuplet class_margin (default: MLPConfig's)")
    ap.add_argument("--auto-efficiency", default="",
                    help="only compare model: auto's label efficiency with and without "
                         "cluster_knn on these pools (e.g. digits-LT100,penbased-LT100)")
    ap.add_argument("--budget", type=int, default=150, help="labels of --auto-efficiency runs")
    ap.add_argument("--auto-cost", action="store_true",
                    help="only measure what cluster_knn adds to model: auto's retrain (CPU s)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "embedding")
    ap.add_argument("--docs", type=Path, default=None,
                    help="markdown to update (default docs/benchmarks.md unless --quick)")
    args = ap.parse_args(argv)
    limit_threads(1)
    if args.quick:
        args.datasets, args.seeds, args.map_labels = "digits", 2, ""
    docs = args.docs if args.docs is not None else (None if args.quick else DOC)
    if args.auto_cost:
        t_start = time.time()
        cost = auto_selection_cost()
        extra = cost["with cluster_knn"]["fit_cpu_mean"] - cost["default"]["fit_cpu_mean"]
        text = markdown_table(
            ["auto.candidates", "CPU s per retrain (fit incl. choosing)", "comparisons",
             "chosen at the end"],
            [[k, v["fit_cpu_mean"], v["comparisons"], v["chosen"]] for k, v in cost.items()])
        text += (f"\n\n`cluster_knn` as a candidate adds {extra:.2f} CPU s per retrain on average "
                 f"(limit 1 s): **{'met' if extra <= 1.0 else 'missed'}**.")
        print(text)
        if docs is not None:
            command = _command(argv)
            write_section(docs, SECTION + " — cost in model: auto", text, command=command,
                          elapsed_s=time.time() - t_start)
        return 0
    label_counts = [int(v) for v in args.labels.split(",")]
    budget = max(label_counts + [args.budget if args.auto_efficiency else 0])
    loaders = {
        "digits": lambda: load_digits_source(budget),
        "fashion-mnist": lambda: load_fashion_source(budget),
        "penbased": lambda: load_keel_source("penbased", budget, 100, 800),
        "letter": lambda: load_keel_source("letter", budget, 50, 600),
    }
    datasets = [d for d in args.datasets.split(",") if d]
    if args.auto_efficiency:
        pools = [p for p in args.auto_efficiency.split(",") if p]
        datasets = list(dict.fromkeys(p.rsplit("-LT", 1)[0] for p in pools))
    sources = {d: loaders[d]() for d in datasets}
    _SOURCES.update(sources)
    if args.auto_efficiency:
        t_start = time.time()
        text = auto_efficiency_report(pools, args.seeds, args.budget, args.jobs)
        print(text)
        if docs is not None:
            write_section(docs, SECTION + " — cluster_knn in model: auto", text,
                          command=_command(argv), elapsed_s=time.time() - t_start)
        return 0
    map_labels = [int(v) for v in args.map_labels.split(",") if v]
    map_irs = {float(v) for v in args.map_irs.split(",") if v}
    tasks = [(f"{d}-LT{float(ir):g}", float(ir), seed, label_counts,
              map_labels if float(ir) in map_irs else [], args.class_margin)
             for d in datasets for ir in args.irs.split(",") for seed in range(args.seeds)]
    cache = args.out / "runs"
    cache.mkdir(parents=True, exist_ok=True)
    if args.from_cache:
        tasks = [t for t in tasks if cache_path(t, cache).exists()]
    t_start = time.time()
    if args.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(args.jobs, _init_worker, (sources,)) as pool:
            results = pool.starmap(run_cached, [(t, cache) for t in tasks])
    else:
        results = [run_cached(t, cache) for t in tasks]
    text, verdict = report(results, label_counts)
    met = verdict["ir100_mean_delta"] >= 0.05
    text += (
        f"\n\nTarget (tail kNN recall of the quintuplet embedding ≥ penultimate layer + 0.05 at "
        f"IR 100): mean Δ over every IR-100 pool, label count and seed "
        f"{verdict['ir100_mean_delta']:+.3f} — **{'met' if met else 'missed'}**; "
        f"{verdict['ir100_cells_met']} of {verdict['ir100_cells']} (pool, labels) cells reach "
        f"+0.05. `cluster_knn` minus `mlp` test balanced accuracy, mean over cells: "
        f"{verdict['knn_minus_mlp']:+.3f}; statistics pooling minus plain centroids: "
        f"{verdict['pooling_minus_plain']:+.3f}.")
    (args.out / "summary.json").write_text(json.dumps({"verdict": verdict, "runs": results},
                                                      indent=1))
    print(text)
    if docs is not None:
        write_section(docs, args.section, text, command=_command(argv),
                      elapsed_s=None if args.from_cache else time.time() - t_start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
