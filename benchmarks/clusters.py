"""Cluster-method benchmark: do the predicted clusters keep rare classes apart?

Protocol (the pools of ``label_efficiency.py``: digits, Fashion-MNIST, penbased and letter made
long-tailed at IR 10 and 100, class order shuffled per seed): the expert labels are those the
default strategy (``auto``, with the ``logistic`` learner so that a run takes seconds) asks for
after a random cold start of 10, taken at 20, 50 and 100 labels. Each cluster method then clusters
the whole pool (``kmeans`` at its default k, ``hdbscan``, ``linkage``, and ``kmeans`` at the k
``linkage`` found) and is scored against the ground truth:

* tail cluster recall: per class, the share of its items that sit in clusters where it is the
  majority, averaged over the third of the classes with the fewest items;
* balanced NMI / ARI: NMI and ARI of the contingency table with every class weighted equally
  (each item counts ``n / (C n_c)``), so the head does not decide them;
* the number of clusters.

Discovery: ``tailwise simulate``'s loop with ``auto`` (logistic learner) whose cluster-based arms
(discovery, the TypiClust cold start) cluster with each method; classes found within 10 x C labels.
Time: each method on synthetic long-tailed 32-d pools of 10^5 and 10^6 items with 100 labels, in
a fresh process with two threads.

Run: ``python benchmarks/clusters.py`` (full; writes the "Cluster methods" section of
docs/benchmarks.md) or ``--quick`` (digits and penbased, 2 seeds, no 10^6, no docs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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

from benchmarks._common import (
    DOC,
    limit_threads,
    machine_summary,
    markdown_table,
    script_command,
    write_section,
)
from benchmarks.label_efficiency import (
    load_digits_source,
    load_fashion_source,
    load_keel_source,
    make_split,
    model_config,
)
from core.clusters import CLUSTER_METHOD_NAMES, cluster_items

warnings.filterwarnings("ignore", message="The number of unique classes")
warnings.filterwarnings("ignore", message="The least populated class")

SECTION = "Cluster methods"
POOL_LOADERS = {  # the label-efficiency data sets, as this benchmark loads them
    "digits": lambda: load_digits_source(100),
    "fashion-mnist": lambda: load_fashion_source(100),
    "penbased": lambda: load_keel_source("penbased", 100, 100, 800),
    "letter": lambda: load_keel_source("letter", 100, 50, 600),
}
BUDGETS = (20, 50, 100)
ROWS = ("kmeans", "hdbscan", "linkage", "kmeans@k")  # kmeans@k: k-means with linkage's k
VARIANTS = {  # rows that are a method with other settings (``--rows``)
    "linkage-gcn": ("linkage", {"linkage_head": "gcn"}),
}


# ---------------------------------------------------------------------------- scores
def tail_classes(y: np.ndarray) -> list:
    """The third of the classes (rounded up) with the fewest items."""
    names, counts = np.unique(y, return_counts=True)
    order = sorted(zip(counts.tolist(), names.tolist()))
    return [c for _, c in order[: max(1, int(np.ceil(len(names) / 3)))]]


def cluster_recall(assignment: np.ndarray, y: np.ndarray) -> dict:
    """Per class: share of its items in clusters where it is the majority (by item count)."""
    classes, codes = np.unique(y, return_inverse=True)
    table = np.zeros((assignment.max() + 1, len(classes)), np.int64)
    np.add.at(table, (assignment, codes), 1)
    majority = table.argmax(axis=1)
    return {c: float(table[majority == j, j].sum() / table[:, j].sum())
            for j, c in enumerate(classes)}


def balanced_nmi_ari(assignment: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """NMI (arithmetic normalisation) and ARI of the class-balanced contingency table."""
    classes, codes = np.unique(y, return_inverse=True)
    n, c = len(y), len(classes)
    counts = np.bincount(codes)
    w = n / (c * counts[codes])
    table = np.zeros((c, assignment.max() + 1))
    np.add.at(table, (codes, assignment), w)
    p = table / n
    pr, pc = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pr, pc)[nz])).sum())
    hr = -float((pr[pr > 0] * np.log(pr[pr > 0])).sum())
    hc = -float((pc[pc > 0] * np.log(pc[pc > 0])).sum())
    nmi = mi / (0.5 * (hr + hc)) if hr + hc > 0 else 1.0

    def comb(v):
        return float((v * (v - 1) / 2).sum())

    index, rows, cols, total = comb(table), comb(table.sum(axis=1)), comb(table.sum(axis=0)), n * (n - 1) / 2
    expected = rows * cols / total
    top = 0.5 * (rows + cols)
    ari = (index - expected) / (top - expected) if top != expected else 1.0
    return float(nmi), float(ari)


def score(assignment: np.ndarray, y: np.ndarray, seconds: float) -> dict:
    recall = cluster_recall(assignment, y)
    tail = tail_classes(y)
    nmi, ari = balanced_nmi_ari(assignment, y)
    return {"tail_recall": float(np.mean([recall[c] for c in tail])),
            "mean_recall": float(np.mean(list(recall.values()))),
            "nmi": nmi, "ari": ari, "k": int(assignment.max()) + 1, "seconds": seconds}


# ---------------------------------------------------------------------------- one pool, one seed
_SOURCES: dict = {}


def _simulate(src, ir: float, seed: int, budget: int, cluster_method: str = "kmeans"):
    from core.simulate import simulate

    x_pool, y_pool, x_test, y_test = make_split(src, ir, seed)
    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, y_test])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    res = simulate(x, y, ids=ids, strategy="auto", budget=budget, batch=10, seed=seed,
                   cold_start=10, model=model_config("logistic"), embedding=x,
                   test_rows=np.arange(len(x_pool), len(x)), cluster_method=cluster_method)
    return x_pool, y_pool, res


def cluster_task(task: tuple, rows: tuple = ROWS, budgets: tuple = BUDGETS) -> dict:
    """Scores of every row (method, variant or ``kmeans@k``) at every budget on one pool and seed."""
    ds, ir, seed = task
    x_pool, y_pool, res = _simulate(_SOURCES[ds], ir, seed, max(budgets))
    order = [int(i[1:]) for i in res.labelled_ids]
    out = {}
    for b in budgets:
        labels = np.full(len(y_pool), None, dtype=object)
        labels[order[:b]] = y_pool[order[:b]]
        row = {}
        for name in rows:
            method, params = VARIANTS.get(name, (name, {}))
            if name == "kmeans@k":
                method, params = "kmeans", {"n_clusters": row["linkage"]["k"]}
            t0 = time.perf_counter()
            result = cluster_items(x_pool, method, labels, seed=seed, **params)
            row[name] = score(result.assignment, y_pool, time.perf_counter() - t0)
            row[name]["note"] = result.note
        out[str(b)] = row
    return {"task": list(task), "n_pool": len(y_pool), "n_classes": len(set(y_pool.tolist())),
            "scores": out}


def discovery_task(task: tuple) -> dict:
    """Classes found within 10 x C labels when auto's cluster-based arms use ``method``."""
    ds, ir, seed, method = task
    src = _SOURCES[ds]
    n_classes = len(set(src.y.tolist()))
    t0 = time.perf_counter()
    _, y_pool, res = _simulate(src, ir, seed, 10 * n_classes, cluster_method=method)
    return {"task": list(task), "found": int(res.curve[-1]["classes_found"]),
            "n_classes": len(set(y_pool.tolist())), "labels": int(res.curve[-1]["labels"]),
            "seconds": time.perf_counter() - t0}


def _cached(kind: str, task: tuple, out: Path) -> dict:
    path = out / "runs" / (kind + "_" + "_".join(str(t) for t in task) + ".json")
    if path.exists():
        return json.loads(path.read_text())
    result = cluster_task(task, _ROWS, _BUDGETS) if kind == "clusters" else discovery_task(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


def _run(item: tuple) -> dict:
    kind, task, out = item
    return _cached(kind, task, out)


_ROWS, _BUDGETS = ROWS, BUDGETS  # what cluster tasks compute (``--rows``, ``--budgets``)


# ---------------------------------------------------------------------------- time
TIMING_SCRIPT = r"""
import json, sys, time
sys.path.insert(0, {root!r})
import numpy as np, torch, faiss
torch.set_num_threads(2); faiss.omp_set_num_threads(2)
from core.clusters import cluster_items
n, d, k = {n}, 32, 20
rng = np.random.default_rng(0)
centres = rng.normal(0, 4, (k, d)).astype(np.float32)
share = 100.0 ** (-np.arange(k) / (k - 1))
y = rng.choice(k, n, p=share / share.sum())
x = centres[y] + rng.normal(0, 1, (n, d)).astype(np.float32)
labels = np.full(n, None, dtype=object)
for c in range(k):  # 5 labels per class (fewer where a class is smaller)
    rows = np.flatnonzero(y == c)[:5]
    labels[rows] = f"c{{c}}"
cluster_items(x[:2000], "linkage", labels[:2000], seed=0)  # imports and torch warm-up
out = {{}}
for name, method, params in {methods!r}:
    t0, c0 = time.perf_counter(), time.process_time()
    result = cluster_items(x, method, labels, seed=0, **params)
    out[name] = [time.perf_counter() - t0, time.process_time() - c0,
                   int(result.assignment.max()) + 1]
print(json.dumps(out))
"""


def time_methods(n: int, rows: tuple = tuple(CLUSTER_METHOD_NAMES)) -> dict:
    """Seconds and clusters of each method (or variant) on ``n`` synthetic items, in a
    two-thread process."""
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    methods = [(r, *VARIANTS.get(r, (r, {}))) for r in rows if r in CLUSTER_METHOD_NAMES or r in VARIANTS]
    code = TIMING_SCRIPT.format(root=str(ROOT), n=n, methods=methods)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True, timeout=1800)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- report
def mean_of(results: list[dict], key: str, budget: int, row: str, field: str) -> float:
    vals = [r["scores"][str(budget)][row][field] for r in results
            if r["task"][0] + f"-LT{r['task'][1]:g}" == key and row in r["scores"].get(str(budget), {})]
    return float(np.mean(vals)) if vals else float("nan")


def variant_lines(results: list[dict], keys: list[str], variant: str, budget: int = 50) -> list[str]:
    """Mean ± sd over seeds at ``budget`` labels of ``kmeans``, the method and its ``variant``, and
    the variant minus the method paired by seed, with a verdict: it helps if its tail recall gain
    exceeds twice its standard error on average over the pools and no pool loses beyond that."""
    base = VARIANTS[variant][0]
    shown = [r for r in ("kmeans", base, variant) if r in _ROWS]
    header = ["pool", "seeds"] + [f"{r} {f}" for r in shown
                                  for f in ("tail", "bNMI", "bARI", "k")] + ["Δ tail", "Δ bNMI"]
    table, gains, errors = [], [], []
    for key in keys:
        mine = [r["scores"][str(budget)] for r in results
                if r["task"][0] + f"-LT{r['task'][1]:g}" == key and str(budget) in r["scores"]]
        if not mine:
            continue
        cells = [key, len(mine)]
        for row in shown:
            for f in ("tail_recall", "nmi", "ari", "k"):
                v = np.array([m[row][f] for m in mine], float)
                cells.append(f"{v.mean():.0f}" if f == "k" else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")
        for f in ("tail_recall", "nmi"):
            d = np.array([m[variant][f] - m[base][f] for m in mine])
            se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            cells.append(f"{d.mean():+.3f} ± {se:.3f}")
            if f == "tail_recall":
                gains.append(d.mean())
                errors.append(se)
        table.append(cells)
    gain, err = float(np.mean(gains)), float(np.sqrt(np.sum(np.square(errors))) / len(errors))
    helps = gain > 2 * err and all(g > -2 * e for g, e in zip(gains, errors))
    by_cell = []
    for b in _BUDGETS:
        for ir in dict.fromkeys(r["task"][1] for r in results):
            d = [r["scores"][str(b)][variant]["tail_recall"] - r["scores"][str(b)][base]["tail_recall"]
                 for r in results if r["task"][1] == ir]
            by_cell.append(f"IR {ir:g} / {b} labels {np.mean(d):+.3f} ± "
                           f"{np.std(d, ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float('nan'):.3f}")
    return [f"`{variant}` against `{base}` at {budget} labels, mean ± sd over seeds (Δ: "
            f"{variant} − {base} paired by seed, mean ± standard error):", "",
            markdown_table(header, table), "",
            f"Tail cluster recall, {variant} − {base}, mean over pools: {gain:+.3f} ± {err:.3f} "
            f"(standard error): {'helps beyond seed noise' if helps else 'no gain beyond seed noise'}. "
            f"Over every pool and seed of an IR, by label count: {'; '.join(by_cell)}."]


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def time_lines(timings: dict) -> list[str]:
    """One line per timed pool size, each method's time against the issue's limit."""
    limits = {100_000: 5.0, 1_000_000: 60.0}
    lines = []
    for n, t in timings.items():
        t = dict(t)
        load = t.pop("load", float("nan"))
        parts = [f"{m} {w:.1f} s wall / {c:.1f} s CPU ({k} clusters)" for m, (w, c, k) in t.items()]
        verdict = "; ".join(f"{m}: {mark(c <= limits[int(n)])}" for m, (_, c, _) in t.items())
        lines.append(f"- time at {int(n):,} items (synthetic 32-d, 20 classes, IR 100, 5 labels "
                     f"per class, 2 threads; limit {limits[int(n)]:.0f} s, judged on CPU seconds "
                     f"of both threads together, an upper bound of the wall time on two idle "
                     f"cores, because the machine was shared; load average {load:.0f} at the end): "
                     f"{', '.join(parts)} — {verdict}.")
    return lines


def report(cluster_results: list[dict], discovery: list[dict], timings: dict, args) -> str:
    keys = list(dict.fromkeys(f"{r['task'][0]}-LT{r['task'][1]:g}" for r in cluster_results))
    lines = [
        f"Protocol: the pools of the label-efficiency benchmark ({', '.join(keys)}); "
        f"{args.seeds} seeds; the expert labels are those `strategy: auto` (with the logistic "
        "learner, to keep a run to seconds) asks for after a random cold start of 10, at "
        f"{', '.join(map(str, _BUDGETS))} labels. *tail recall*: per class, the share of its items in clusters where it "
        "is the majority, averaged over the third of the classes with the fewest items; "
        + "".join(f"`{v}` is `{m}` with {', '.join(f'{k}: {p}' for k, p in ps.items())}; "
                  for v, (m, ps) in VARIANTS.items() if v in _ROWS) +
        "*bNMI*/*bARI*: NMI and ARI with every class weighted equally; *k*: clusters. "
        + ("`kmeans@k` is k-means with the number of clusters `linkage` found (same k). "
           if "kmeans@k" in _ROWS else "") + "Mean over seeds.", ""]
    header = ["pool", "labels"] + [f"{row} {f}" for row in _ROWS for f in ("tail", "bNMI", "bARI", "k")]
    rows = []
    for key in keys:
        for b in _BUDGETS:
            cells = [key, b]
            for row in _ROWS:
                cells += [mean_of(cluster_results, key, b, row, "tail_recall"),
                          mean_of(cluster_results, key, b, row, "nmi"),
                          mean_of(cluster_results, key, b, row, "ari"),
                          f"{mean_of(cluster_results, key, b, row, 'k'):.0f}"]
            rows.append(cells)
    lines.append(markdown_table(header, rows))
    for variant in (r for r in _ROWS if r in VARIANTS):
        lines += ["", *variant_lines(cluster_results, keys, variant)]
    lines += ["", "Targets:", ""]
    linkage_rows = [r for r in _ROWS if r == "linkage" or VARIANTS.get(r, ("",))[0] == "linkage"]
    for key in keys:
        if not key.endswith("LT100"):
            continue
        km = mean_of(cluster_results, key, 50, "kmeans", "tail_recall")
        for lrow in linkage_rows:
            lk = mean_of(cluster_results, key, 50, lrow, "tail_recall")
            hd = mean_of(cluster_results, key, 50, "hdbscan", "tail_recall")
            lines.append(f"- {key}, 50 labels: {lrow} tail cluster recall {lk:.3f} vs kmeans "
                         f"{km:.3f} + 0.15 = {km + 0.15:.3f}: {mark(lk >= km + 0.15)}"
                         + (f" (hdbscan {hd:.3f})." if "hdbscan" in _ROWS else "."))
    ir100 = [k for k in keys if k.endswith("LT100")]
    km_all = np.mean([mean_of(cluster_results, k, 50, "kmeans", "tail_recall") for k in ir100])
    for lrow in linkage_rows:
        lk_all = np.mean([mean_of(cluster_results, k, 50, lrow, "tail_recall") for k in ir100])
        lines.append(f"- all IR 100 pools, 50 labels: {lrow} {lk_all:.3f} vs kmeans {km_all:.3f} "
                     f"+ 0.15 = {km_all + 0.15:.3f}: {mark(lk_all >= km_all + 0.15)}.")
    lines += time_lines(timings)
    if discovery:
        lines += ["", "Discovery: classes found within 10 x C labels by `auto` (logistic learner) "
                  "when its cluster-based arms (discovery; the TypiClust cold start) use each "
                  "method; mean over seeds (classes in the pool):", ""]
        dkeys = list(dict.fromkeys(f"{r['task'][0]}-LT{r['task'][1]:g}" for r in discovery))
        methods = list(dict.fromkeys(r["task"][3] for r in discovery))
        drows = []
        for key in dkeys:
            cells = [key]
            for m in methods:
                runs = [r for r in discovery if f"{r['task'][0]}-LT{r['task'][1]:g}" == key
                        and r["task"][3] == m]
                cells.append(f"{np.mean([r['found'] for r in runs]):.1f} / {runs[0]['n_classes']}"
                             f" ({np.mean([r['seconds'] for r in runs]):.0f} s)")
            drows.append(cells)
        lines.append(markdown_table(["pool"] + methods, drows))
    return "\n".join(lines)


def timed(args) -> dict:
    """Times of ``--sizes`` (kept under ``--out``: a later run without sizes reports them again)."""
    saved = args.out / "timings.json"
    timings = json.loads(saved.read_text()) if saved.exists() else {}
    for n in [int(v) for v in args.sizes.split(",") if v]:
        timings[str(n)] = time_methods(n, _ROWS) | {"load": os.getloadavg()[0]}
        print(f"time at {n}: {timings[str(n)]}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(timings, indent=1))
    return timings


def outline_lines(sizes: list[int], clusters: int = 250) -> list[str]:
    """Time of the map's cluster outlines (``core.clusters.cluster_outlines``) at each size."""
    from core.clusters import cluster_outlines

    rng = np.random.default_rng(0)
    lines = []
    for n in sizes:
        xy, assignment = rng.normal(size=(n, 2)), rng.integers(0, clusters, n)
        t0 = time.perf_counter()
        drawn = len(cluster_outlines(xy, assignment))
        lines.append(f"- map outlines ('Outline clusters') of {clusters} clusters at {n:,} items: "
                     f"{time.perf_counter() - t0:.2f} s for the {drawn} largest (once per tab per "
                     "new clustering or map).")
    return lines


def time_only(args, docs, argv, t_start: float) -> int:
    machine = machine_summary()
    sizes = [int(v) for v in args.sizes.split(",") if v]
    body = "\n".join(["Synthetic pools timed in a process of their own with two threads.", "",
                      *time_lines(timed(args)), *outline_lines(sizes)])
    print(body)
    if docs is not None:
        write_section(docs, args.section + ": time", body, command=script_command(__file__, argv),
                      elapsed_s=time.time() - t_start, machine=machine)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="digits and penbased, 2 seeds, 10^5 only")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", default="digits,fashion-mnist,penbased,letter")
    ap.add_argument("--irs", default="10,100")
    ap.add_argument("--discovery-irs", default="100", help="IRs of the discovery runs ('' for none)")
    ap.add_argument("--discovery-seeds", type=int, default=5)
    ap.add_argument("--sizes", default="100000,1000000",
                    help="pool sizes timed ('' for none: the times kept under --out are reported)")
    ap.add_argument("--times-only", action="store_true",
                    help="only time the methods (--sizes) and write the 'Cluster methods: time' "
                         "section (run it at high priority on a shared machine)")
    ap.add_argument("--rows", default=",".join(ROWS),
                    help="methods, variants (" + ", ".join(VARIANTS) + ") and kmeans@k to score "
                         "and time (use another --out when changing them: runs are cached)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)), help="expert label counts")
    ap.add_argument("--section", default=SECTION, help="docs/benchmarks.md section to write")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "clusters")
    ap.add_argument("--docs", type=Path, default=None)
    args = ap.parse_args(argv)
    limit_threads(1)
    global _ROWS, _BUDGETS
    _ROWS = tuple(r for r in args.rows.split(",") if r)
    _BUDGETS = tuple(int(b) for b in args.budgets.split(",") if b)
    if args.quick:
        args.seeds, args.datasets, args.sizes, args.discovery_seeds = 2, "digits,penbased", "100000", 2
    docs = args.docs if args.docs is not None else (None if args.quick else DOC)
    t_start = time.time()
    if args.times_only:
        return time_only(args, docs, argv, t_start)
    datasets = [d for d in args.datasets.split(",") if d]
    for ds in datasets:
        _SOURCES[ds] = POOL_LOADERS[ds]()
    irs = [float(v) for v in args.irs.split(",") if v]
    d_irs = [float(v) for v in args.discovery_irs.split(",") if v]
    items = [("clusters", (ds, ir, s), args.out) for ds in datasets for ir in irs
             for s in range(args.seeds)]
    items += [("discovery", (ds, ir, s, m), args.out) for ds in datasets for ir in d_irs
              for s in range(args.discovery_seeds) for m in CLUSTER_METHOD_NAMES]
    import multiprocessing as mp

    cluster_results, discovery = [], []
    with mp.get_context("fork").Pool(max(1, args.jobs)) as pool:
        for done, (item, result) in enumerate(zip(items, pool.imap(_run, items)), start=1):
            (cluster_results if item[0] == "clusters" else discovery).append(result)
            print(f"[{done}/{len(items)}] {item[0]} {item[1]} ({time.time() - t_start:.0f} s)",
                  flush=True)
    machine = machine_summary()
    timings = timed(args)
    body = report(cluster_results, discovery, timings, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"clusters": cluster_results, "discovery": discovery, "timings": timings}, indent=1))
    print(body)
    if docs is not None:
        write_section(docs, args.section, body, command=script_command(__file__, argv), elapsed_s=time.time() - t_start,
                      machine=machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
