"""Scale benchmark, part "query": the next batch of 10 at many labels, engine level.

What issue 11 asks of ``core/query``: a bounded cost whatever the number of labels (the next batch
at 10^6 items within 1 s on 2 cores), measured without a server or a browser.

Data: the synthetic 32-d catalogue (``benchmarks/_scale_data.py``, 10 long-tailed classes),
standardised as the tabular encoder does. Labels from the ground truth: 12 seed labels per class,
then a box (the items whose first two features fall in a rectangle, as a box drawn on the map and
bulk-labelled: three quarters of the labels) plus random items. The model is a class-balanced
logistic regression fitted on at most 20,000 of the labelled items (a stand-in for the retrained
model: a query only reads its probabilities). Project defaults (``auto`` with its arms, the kNN
sub-pool). One batch is asked at the 120 seed labels first, as a session has done by the time a
box is labelled (imports, the pool's neighbour index); then, on the model of the many labels,
three batches in a row as three dashboard tabs ask after a retrain, each with the items queued
for the earlier tabs reserved. With ``--session`` the same labels also go through a ``Session``
on a Parquet pool of the catalogue (bulk labels per class, the project's own retrain, then
``next_batch`` for three requesters). One run per figure; BLAS and OpenMP on one thread.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_QUERY_S = 1.0  # issue 11: next batch at 10^6 items <= 1 s, whatever the label count
TABS = 3
SECTION = "Scale: the next batch at many labels (10^5 and 10^6 items)"
CASES = ((100_000, 40_000), (1_000_000, 400_000))


def labelled_catalogue(n: int, n_labels: int, seed: int = 0):
    """``(ids, x standardised, truth, labelled mask)``: seed labels, a box, then random items."""
    from benchmarks._scale_data import catalogue

    ids, x, truth = catalogue(n, seed=seed)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    rng = np.random.default_rng(seed + 1)
    lab = np.zeros(n, bool)
    for c in np.unique(truth):
        lab[np.flatnonzero(truth == c)[:12]] = True
    box_share = 0.75 * n_labels  # the box: three quarters of the labels, one contiguous region
    q = np.sqrt(box_share / n)
    lo0, lo1 = np.quantile(x[:, 0], 0.2), np.quantile(x[:, 1], 0.2)
    hi0 = np.quantile(x[:, 0], min(1.0, 0.2 + q))
    hi1 = np.quantile(x[:, 1], min(1.0, 0.2 + q))
    box = (x[:, 0] >= lo0) & (x[:, 0] <= hi0) & (x[:, 1] >= lo1) & (x[:, 1] <= hi1)
    in_box = np.flatnonzero(box & ~lab)
    lab[in_box[: max(0, int(box_share) - int(lab.sum()))]] = True
    rest = np.flatnonzero(~lab)
    lab[rng.choice(rest, max(0, n_labels - int(lab.sum())), replace=False)] = True
    return ids, x, truth, lab


def trained_proba(x: np.ndarray, truth: np.ndarray, lab: np.ndarray, seed: int = 0):
    """``(proba float32, classes)`` of a class-balanced logistic regression on the labels."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(lab)
    if len(rows) > 20_000:
        rows = np.sort(rng.choice(rows, 20_000, replace=False))
    model = LogisticRegression(class_weight="balanced", max_iter=300).fit(x[rows], truth[rows])
    proba = np.empty((len(x), len(model.classes_)), np.float32)
    for start in range(0, len(x), 200_000):
        proba[start:start + 200_000] = model.predict_proba(x[start:start + 200_000])
    proba /= proba.sum(axis=1, keepdims=True)
    return proba, tuple(str(c) for c in model.classes_)


def query_at_labels(n: int, n_labels: int, tabs: int = TABS, seed: int = 0) -> dict:
    """Seconds for ``tabs`` successive ``auto`` batches of 10 on ``n`` items of which
    ``n_labels`` are labelled, after one batch asked at the 120 seed labels (as a session has
    by then: imports done, the pool's neighbour index built), and the arms' share of them."""
    from core.query import QueryContext, get_strategy

    ids, x, truth, lab = labelled_catalogue(n, n_labels, seed)
    seeds = np.zeros(n, bool)
    for c in np.unique(truth):
        seeds[np.flatnonzero(truth == c)[:12]] = True
    strategy = get_strategy("auto")
    out: dict = {"n": n, "labels": int(lab.sum())}
    proba, classes = trained_proba(x, truth, seeds, seed)
    t0 = time.perf_counter()
    strategy.query(QueryContext(proba, classes, x, ids, seeds, np.where(seeds, truth, None),
                                np.random.default_rng([seed, int(seeds.sum())])), 10)
    out["seed_query_s"] = time.perf_counter() - t0
    proba, classes = trained_proba(x, truth, lab, seed)
    labels = np.where(lab, truth, None).astype(object)
    t0 = time.perf_counter()  # built once per model and label state, shared by the tabs
    ctx = QueryContext(proba, classes, x, ids, lab, labels,
                       np.random.default_rng([seed, int(lab.sum())]))
    out["context_s"] = time.perf_counter() - t0
    reserved = np.zeros(n, bool)
    times, arms = [], []
    for tab in range(tabs):
        t0 = time.perf_counter()
        res = strategy.query(ctx.for_request(
            rng=np.random.default_rng([seed, int(lab.sum())]), requester=f"tab-{tab}",
            reserved=reserved.copy() if reserved.any() else None), 10)
        times.append(time.perf_counter() - t0)
        reserved[res.positions] = True
        arms += list(res.arms)
    out.update(tab_s=times, arms={a: arms.count(a) for a in sorted(set(arms))})
    return out


def session_query_at_labels(n: int, n_labels: int, tabs: int = TABS, seed: int = 0) -> dict:
    """The same through a :class:`~core.session.Session` on a Parquet pool of the catalogue:
    the project's own retrain (``model: auto``) on the labels, then ``tabs`` requesters' next
    batches; the first also builds the session's shared query context (timed apart)."""
    import tempfile

    from benchmarks._scale_data import write_pool
    from core.session import Session

    _, _, _, lab = labelled_catalogue(n, n_labels, seed)
    out: dict = {"n": n}
    with tempfile.TemporaryDirectory(prefix="tailwise-bench-query-") as tmp:
        session = Session.open(write_pool(Path(tmp), n, map_method="pca", seed=seed))
        session.prepare()
        truth, ids = session.dataset.ground_truth, session.dataset.ids
        for c in np.unique(truth):
            session.label(ids[np.flatnonzero(truth == c)[:12]].tolist(), str(c), "seed")
        session.retrain()
        t0 = time.perf_counter()
        session.next_batch(10, requester="tab-0")
        out["seed_query_s"] = time.perf_counter() - t0
        for c in np.unique(truth):  # the box and the random items, one bulk action per class
            session.label(ids[np.flatnonzero(lab & (truth == c))].tolist(), str(c), "box")
        t0 = time.perf_counter()
        session.retrain()
        out["retrain_s"] = time.perf_counter() - t0
        out["labels"] = len(session.current_labels())
        t0 = time.perf_counter()
        session.query_context()
        out["context_s"] = time.perf_counter() - t0
        times, arms = [], []
        for tab in range(tabs):
            t0 = time.perf_counter()
            res = session.next_batch(10, requester=f"tab-{tab}")
            times.append(time.perf_counter() - t0)
            arms += list(res.arms)
        session.store.close()
    out.update(tab_s=times, arms={a: arms.count(a) for a in sorted(set(arms))})
    return out


def run(cases=CASES, session: bool = False) -> dict:
    """``{"strategy": {case: figures}}`` from ``query_at_labels`` for each ``(items, labels)``
    case, and with ``session`` also ``"session"`` from ``session_query_at_labels``; each with
    the load average before and after."""
    from benchmarks._common import load_average

    kinds = {"strategy": query_at_labels}
    if session:
        kinds["session"] = session_query_at_labels
    results: dict = {}
    for kind, measure in kinds.items():
        for n, n_labels in cases:
            before = load_average()
            row = results.setdefault(kind, {})[f"{n}/{n_labels}"] = measure(n, n_labels)
            row.update(load_before=before, load_after=load_average())
            print(f"{kind} {n:,} items, {n_labels:,} labels: {row}", flush=True)
    return results


def report(results: dict) -> str:
    """Markdown tables of ``run``'s results and the target line of each 10^6 case."""
    titles = {"strategy": "**`auto` on a stand-in model** (the strategy alone):",
              "session": "**Through a `Session`** (the project's own retrain, then `next_batch` "
                         "per requester; the session's shared query context timed apart):"}
    return "\n\n".join(f"{titles[kind]}\n\n{_table(rows).strip()}"
                         for kind, rows in results.items())


def _table(results: dict) -> str:
    from benchmarks._common import markdown_table

    keys = list(results)
    s = lambda v: f"{v:.2f} s"  # noqa: E731
    rows = [
        ["labels (12 per class, a box, random items)",
         *[f"{results[k]['labels']:,}" for k in keys]],
        ["first batch at the 120 seed labels (imports, the pool's neighbour index)",
         *[s(results[k]["seed_query_s"]) for k in keys]],
        *([["retrain on the many labels (the session's own model)",
            *[s(results[k]["retrain_s"]) for k in keys]]]
          if all("retrain_s" in results[k] for k in keys) else []),
        ["query context at many labels (once per model and label state)",
         *[s(results[k]["context_s"]) for k in keys]],
        *[[f"next batch of 10, tab {t + 1}", *[s(results[k]["tab_s"][t]) for k in keys]]
          for t in range(TABS)],
        ["**next batch of 10, median of the tabs**",
         *[f"**{s(float(np.median(results[k]['tab_s'])))}**" for k in keys]],
        ["arms of the batches", *[", ".join(f"{a} {c}" for a, c in results[k]["arms"].items())
                                  for k in keys]],
        ["load average before / after",
         *[f"{results[k]['load_before']} / {results[k]['load_after']}" for k in keys]],
    ]
    lines = [markdown_table(["measurement"] + [f"{int(k.split('/')[0]):,} items" for k in keys],
                            rows), ""]
    for k in keys:
        n = int(k.split("/")[0])
        if n >= 1_000_000:
            t = float(np.max(results[k]["tab_s"]))
            lines.append(f"- Target: next batch <= {TARGET_QUERY_S:g} s at {n:,} items with "
                         f"{results[k]['labels']:,} labels, every tab: slowest {t:.2f} s, "
                         f"{'met' if t <= TARGET_QUERY_S else '**missed**'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from benchmarks._common import (
        DOC,
        limit_threads,
        machine_summary,
        script_command,
        write_section,
    )

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=None, metavar="ITEMS/LABELS",
                    help="pool size and label count of each case (default 100000/40000 "
                         "1000000/400000)")
    ap.add_argument("--session", action="store_true",
                    help="through a Session: the project's own retrain and next_batch (slower: "
                         "a retrain on the many labels) instead of a strategy on a stand-in model")
    ap.add_argument("--docs", action="store_true",
                    help=f"write the {SECTION!r} section of docs/benchmarks.md")
    args = ap.parse_args(argv)
    limit_threads(1)
    cases = CASES
    if args.cases:
        try:
            cases = tuple(tuple(int(v) for v in c.split("/")) for c in args.cases)
        except ValueError:
            ap.error("--cases takes ITEMS/LABELS pairs, e.g. 100000/40000")
        if any(len(c) != 2 or not 0 < c[1] < c[0] for c in cases):
            ap.error("--cases: each case is ITEMS/LABELS with 0 < LABELS < ITEMS")
    machine = machine_summary()
    t0 = time.perf_counter()
    body = report(run(cases, session=args.session))
    print(body, flush=True)
    if args.docs:
        doc = __doc__.strip().split("\n\n", 1)[1]
        write_section(DOC, SECTION, doc + "\n\n" + body, command=script_command(__file__, argv),
                      elapsed_s=time.perf_counter() - t0, machine=machine,
                      keep=("Reading",))
        print(f"wrote the {SECTION!r} section of {DOC}", flush=True)


if __name__ == "__main__":
    main()
