"""Experiment (issue 14, item 3): statistics pooling in the ``linkage`` head.

``linkage`` runs on ``[z, mean of z over the item's kNN, std of z over them]`` (the neighbourhood's
pooled statistics; the cardinality is the fixed k) instead of the embedding alone. Both variants cluster the same pools with the same 50 expert labels (those
``strategy: auto`` with the logistic learner asks for, as in ``benchmarks/clusters.py``) and are
scored by tail cluster recall, balanced NMI and ARI. Writes the section "Cluster methods:
statistics pooling in the linkage head" of docs/benchmarks.md.

    python benchmarks/linkage_pooling.py [--pools digits,penbased,letter,fashion-mnist] [--seeds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import clusters as B
from benchmarks._common import (
    limit_threads,
    machine_summary,
    markdown_table,
    script_command,
    write_section,
)
from core.clusters import cluster_items
from core.clusters.graph import knn_graph, reduced

SECTION = "Cluster methods: statistics pooling in the linkage head"
LABELS = 50


def pooled(x: np.ndarray, seed: int, k: int = 10) -> np.ndarray:
    """``[z, mean of z over each item's kNN, std of z over them]`` (``z``: the reduced embedding
    ``linkage`` works in)."""
    z = reduced(np.asarray(x, np.float32), seed)
    nbr, _ = knn_graph(z, k, seed)
    neighbours = z[np.where(nbr >= 0, nbr, np.arange(len(z))[:, None])]
    return np.concatenate([z, neighbours.mean(axis=1), neighbours.std(axis=1)], axis=1)


def run(task: tuple) -> dict:
    pool_name, seed = task
    import torch

    torch.set_num_threads(1)
    x_pool, y_pool, res = B._simulate(B.POOL_LOADERS[pool_name](), 100.0, seed, LABELS)
    order = [int(i[1:]) for i in res.labelled_ids]
    labels = np.full(len(y_pool), None, dtype=object)
    labels[order[:LABELS]] = y_pool[order[:LABELS]]
    row = {"pool": pool_name, "seed": seed}
    for name, x in (("plain", x_pool), ("pooled", pooled(x_pool, seed))):
        t0 = time.perf_counter()
        result = cluster_items(x, "linkage", labels, seed=seed)
        row[name] = B.score(result.assignment, y_pool, time.perf_counter() - t0)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", default="digits,penbased,letter,fashion-mnist")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--docs", type=Path, default=B.DOC)
    args = ap.parse_args(argv)
    limit_threads(1)
    t_start = time.time()
    tasks = [(p, s) for p in args.pools.split(",") if p for s in range(args.seeds)]
    with mp.get_context("fork").Pool(max(1, args.jobs)) as pool:
        rows = pool.map(run, tasks)
    table, deltas = [], []
    for name in dict.fromkeys(r["pool"] for r in rows):
        mine = [r for r in rows if r["pool"] == name]
        cells = [f"{name}-LT100"]
        for field in ("tail_recall", "nmi", "ari"):
            plain = float(np.mean([r["plain"][field] for r in mine]))
            pooled = float(np.mean([r["pooled"][field] for r in mine]))
            cells += [plain, pooled]
            if field == "tail_recall":
                deltas.append(pooled - plain)
        table.append(cells)
    header = ["pool", "tail plain", "tail pooled", "bNMI plain", "bNMI pooled", "bARI plain", "bARI pooled"]
    mean_delta = float(np.mean(deltas))
    body = "\n".join([
        (f"Protocol: IR 100 pools, {args.seeds} seeds, {LABELS} expert labels chosen by `strategy: auto` "
         "(logistic learner); `linkage` on the embedding (*plain*) and on the embedding with its "
         "kNN neighbourhood's mean and standard deviation appended (*pooled*). Mean over seeds."), "",
        markdown_table(header, table), "",
        (f"Tail cluster recall, pooled minus plain, mean over pools: {mean_delta:+.3f} "
         f"(per pool: {', '.join(f'{d:+.3f}' for d in deltas)}). Kept only if it helps on every "
         f"pool and by more than 0.02 on average: "
         f"{'kept' if min(deltas) >= 0 and mean_delta > 0.02 else 'rejected'}.")])
    print(body)
    if args.docs:
        write_section(args.docs, SECTION, body, command=script_command(__file__, argv), elapsed_s=time.time() - t_start,
                      machine=machine_summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
