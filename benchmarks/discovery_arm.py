"""Discovery-arm benchmark: how soon `auto` finds every class when its discovery arm clusters with
each cluster method (issues 9 and 14).

Protocol: the IR-100 pools of ``label_efficiency.py`` (same splits, random cold start of 10,
batch 10, budget 200, letter 300), ``strategy: auto`` with the logistic learner (a run takes
seconds, not minutes, so several variants fit on a shared machine), the project's cluster method
set to each method (``discovery_clusters: project``: the arm follows it). Per run: labels until
every class had one, classes found within 10 x C labels, the area under the balanced-accuracy
curve. Runs are kept under ``--out`` and reused. Run:
``python benchmarks/discovery_arm.py --pools letter,fashion-mnist,penbased --seeds 100,101,102,103,104``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import label_efficiency as le  # noqa: E402
from benchmarks._common import limit_threads, markdown_table, write_section  # noqa: E402
from core.clusters import CLUSTER_METHOD_NAMES  # noqa: E402
from core.metrics import learning_curve_auc  # noqa: E402
from core.simulate import simulate  # noqa: E402

SECTION = "Discovery arm: auto with each cluster method"
SOURCES = {
    "digits": lambda: le.load_digits_source(200),
    "fashion-mnist": lambda: le.load_fashion_source(200),
    "penbased": lambda: le.load_keel_source("penbased", 200, 100, 800),
    "letter": lambda: le.load_keel_source("letter", 300, 50, 600),
}


def run(ds: str, seed: int, method: str, out: Path) -> dict:
    """One `auto` run (logistic learner) on ``ds``-LT100 with the discovery arm on ``method``."""
    path = out / f"{ds}_{seed}_{method}.json"
    if path.exists():
        return json.loads(path.read_text())
    src = SOURCES[ds]()
    x_pool, y_pool, x_test, _ = le.make_split(src, 100, seed)
    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, _])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    t0 = time.perf_counter()
    res = simulate(x, y, ids=ids, strategy="auto", strategy_params={"discovery_clusters": "project"},
                   budget=src.budget, batch=10, seed=seed, cold_start=10,
                   model=le.model_config("logistic"), embedding=x,
                   test_rows=np.arange(len(x_pool), len(x)), cluster_method=method)
    labels = [r["labels"] for r in res.curve]
    found = [r["classes_found"] for r in res.curve]
    n_classes = len(set(y_pool.tolist()))
    result = {
        "ds": ds, "seed": seed, "method": method, "n_classes": n_classes, "budget": src.budget,
        "all_at": next((m for m, f in zip(labels, found) if f == n_classes), None),
        "found_10c": max(f for m, f in zip(labels, found) if m <= 10 * n_classes),
        "auc": learning_curve_auc(labels, [r["balanced_accuracy"] for r in res.curve]),
        "seconds": time.perf_counter() - t0,
    }
    path.write_text(json.dumps(result))
    return result


def report(results: list[dict]) -> str:
    rows = []
    for ds in dict.fromkeys(r["ds"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results):
            runs = [r for r in results if r["ds"] == ds and r["method"] == method]
            if not runs:
                continue
            c, budget = runs[0]["n_classes"], runs[0]["budget"]
            to_all = [r["all_at"] if r["all_at"] is not None else budget for r in runs]
            miss = sum(r["all_at"] is None for r in runs)
            rows.append([
                f"{ds}-LT100", method, len(runs),
                f"{np.mean([r['found_10c'] for r in runs]):.1f} / {c}",
                f"{100 * np.mean([v <= 10 * c for v in to_all]):.0f} %",
                f"{np.mean(to_all):.0f}" + (f" ({miss} miss)" if miss else ""),
                f"{np.mean([r['auc'] for r in runs]):.3f} ± {np.std([r['auc'] for r in runs]):.3f}",
                f"{np.mean([r['seconds'] for r in runs]):.0f}",
            ])
    protocol = (
        "Protocol: the IR-100 pools of *Label efficiency* (same splits; random cold start of 10; "
        "batch 10; budget 200, letter 300); `strategy: auto` with the logistic learner and its "
        "`discovery` arm clustering with each method (the other arms unchanged). *found ≤10C*: "
        "classes with a label after 10 x C labels, mean over seeds; *all ≤10C*: share of seeds "
        "with every class by then; *labels to all classes*: mean, a seed that never got there "
        "counted at the budget; *AUC BA*: area under the balanced-accuracy curve, mean ± sd; "
        "*s/run*: wall time of one run on the shared machine.")
    return protocol + "\n\n" + markdown_table(
        ["pool", "discovery clusters", "seeds", "found ≤10C", "all ≤10C", "labels to all classes",
         "AUC BA", "s/run (wall)"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pools", default="letter,fashion-mnist,penbased")
    ap.add_argument("--seeds", default="100,101,102,103,104")
    ap.add_argument("--methods", default=",".join(CLUSTER_METHOD_NAMES))
    ap.add_argument("--out", type=Path, default=Path("/tmp/tailwise-discovery-arm"))
    ap.add_argument("--docs", type=Path, default=None, help="benchmarks markdown to update")
    args = ap.parse_args(argv)
    limit_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results = []
    for ds in args.pools.split(","):
        for method in args.methods.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                results.append(run(ds, seed, method, args.out))
                print(json.dumps(results[-1]), flush=True)
    body = report(results)
    print(body)
    if args.docs is not None:
        command = "python benchmarks/discovery_arm.py " + " ".join(
            shlex.quote(a) for a in (argv or sys.argv[1:]))
        write_section(args.docs, SECTION, body, command=command.strip(),
                      elapsed_s=time.time() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
