"""Scale benchmark, part "loop": the labelling loop of the engine, side by side with an
AstronomicAL-style loop, at 10^5 and 10^6 items.

Data: the synthetic 32-d catalogue (10 long-tailed classes) as a Parquet pool, project defaults
(tabular encoder, the default model and ``auto`` strategy) but a PCA map (the map is not part of
the loop). 120 expert labels (12 per class) are given and trained on first; then each round
answers the batch of 10 the engine asked for (labels from the ground truth, one label call per
item as an expert clicks), retrains, and asks for the next batch: median of 3 rounds. ``model:
auto`` cross-validates its learner again (out-of-fold predictions for calibration, suspects and
prevalence) once the labels grew by ``oof_growth`` (25 %) since the last time: here in the third
round (150 labels), shown apart with the mean of the rounds; the other rounds fit the learner once.

The AstronomicAL-style loop is its recipe: a 1,000-tree random forest refitted from scratch on
every new label, predicting the whole pool, and one uncertainty (entropy) query. One such
iteration is timed (n_jobs = 2, the machine's cores); a batch of 10 labels costs 10 of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

TARGET_LOOP = {100_000: 0.5, 1_000_000: 2.0}
ROUNDS = 3


def engine_loop(n: int, folder: Path) -> dict:
    from benchmarks._scale_data import write_pool
    from core.session import Session

    project = write_pool(folder, n, map_method="pca")
    session = Session.open(project)
    session.prepare()
    truth = session.dataset.ground_truth
    for k in range(10):
        rows = np.flatnonzero(truth == f"c{k}")[:12]
        session.label(session.dataset.ids[rows].tolist(), f"c{k}", "seed")
    t0 = time.perf_counter()
    session.retrain()
    out = {"first_retrain_s": time.perf_counter() - t0}
    batch = session.next_batch(10)
    rounds = []
    for _ in range(ROUNDS):
        timings = {}
        t0 = time.perf_counter()
        for item in batch.ids.tolist():
            session.label([item], str(truth[session.dataset._index[item]]), "expert")
        timings["label"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        state = session.retrain()
        timings["retrain"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        batch = session.next_batch(10)
        timings["next_batch"] = time.perf_counter() - t2
        timings["loop"] = time.perf_counter() - t0
        timings["train"] = state.train_seconds
        timings["refresh"] = state.oof_at == state.n_labels  # out-of-fold predictions computed
        rounds.append(timings)
    for key in rounds[0]:
        if key != "refresh":
            out[key + "_s"] = float(np.median([r[key] for r in rounds]))
    out["loop_mean_s"] = float(np.mean([r["loop"] for r in rounds]))
    refreshed = [r["loop"] for r in rounds if r["refresh"]]
    out["loop_refresh_s"] = max(refreshed) if refreshed else None
    out["model"] = session.project.model.kind
    out["strategy"] = session.project.query.strategy
    out["labels"] = len(session.current_labels())
    out["rss_mb"] = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status")
                         if line.startswith("VmHWM:"))
    x = session.base_embedding_()
    labelled = session.dataset.positions(list(session.current_labels()))
    y = np.array([session.current_labels()[i] for i in session.dataset.ids[labelled]], dtype=object)
    session.store.close()
    out.update(astronomical_iteration(x, labelled, y))
    return out


def astronomical_iteration(x: np.ndarray, labelled: np.ndarray, y: np.ndarray) -> dict:
    """One AstronomicAL-style iteration: RF(1000) from scratch, predict the pool, one query."""
    from sklearn.ensemble import RandomForestClassifier

    from core.query.measures import entropy

    t0 = time.perf_counter()
    forest = RandomForestClassifier(n_estimators=1000, n_jobs=2, random_state=0).fit(x[labelled], y)
    fit = time.perf_counter() - t0
    proba = np.empty((len(x), len(forest.classes_)), dtype=np.float32)
    t1 = time.perf_counter()
    for start in range(0, len(x), 100_000):
        proba[start:start + 100_000] = forest.predict_proba(x[start:start + 100_000])
    predict = time.perf_counter() - t1
    t2 = time.perf_counter()
    score = entropy(proba)
    score[labelled] = -np.inf
    int(np.argmax(score))
    query = time.perf_counter() - t2
    return {"rf_fit_s": fit, "rf_predict_s": predict, "rf_query_s": query,
            "rf_iteration_s": time.perf_counter() - t0}


def run(sizes=(100_000, 1_000_000)) -> dict:
    from benchmarks._common import per_size

    return per_size(sizes, engine_loop, "loop")


def report(results: dict) -> str:
    from benchmarks._common import markdown_table

    sizes = sorted(results)
    s = lambda v: f"{v:.2f} s"  # noqa: E731
    body = [
        ["engine: first retrain on the 120 seed labels", *[s(results[n]["first_retrain_s"]) for n in sizes]],
        ["engine: 10 labels committed (one call each)", *[s(results[n]["label_s"]) for n in sizes]],
        ["engine: retrain (fit + predict the pool in float32 chunks + metrics)", *[s(results[n]["retrain_s"]) for n in sizes]],
        ["· of which fitting", *[s(results[n]["train_s"]) for n in sizes]],
        ["engine: next batch of 10 (strategy on the rescored pool)", *[s(results[n]["next_batch_s"]) for n in sizes]],
        ["**engine loop: label 10 -> retrain -> rescored pool -> next batch**", *[f"**{s(results[n]['loop_s'])}**" for n in sizes]],
        ["· the round that cross-validates the learner again (labels grew by oof_growth)",
         *[("-" if results[n].get("loop_refresh_s") is None else s(results[n]["loop_refresh_s"]))
           for n in sizes]],
        ["· mean of the 3 rounds", *[s(results[n]["loop_mean_s"]) for n in sizes]],
        ["AstronomicAL-style: RF(1000) refit", *[s(results[n]["rf_fit_s"]) for n in sizes]],
        ["AstronomicAL-style: predict the pool", *[s(results[n]["rf_predict_s"]) for n in sizes]],
        ["AstronomicAL-style: one uncertainty query", *[s(results[n]["rf_query_s"]) for n in sizes]],
        ["**AstronomicAL-style: one label (iteration)**", *[f"**{s(results[n]['rf_iteration_s'])}**" for n in sizes]],
        ["AstronomicAL-style: 10 labels (10 iterations)", *[s(10 * results[n]["rf_iteration_s"]) for n in sizes]],
        ["model / strategy", *[f"{results[n]['model']} / {results[n]['strategy']}" for n in sizes]],
        ["peak memory of the benchmark process so far (VmHWM)", *[f"{results[n]['rss_mb']:.0f} MB" for n in sizes]],
        ["load average after", *[results[n]["load"] for n in sizes]],
    ]
    lines = [markdown_table(["measurement (median of 3 rounds)"] + [f"{n:,} items" for n in sizes], body), ""]
    for n in sizes:
        if n in TARGET_LOOP:
            t = results[n]["loop_s"]
            lines.append(f"- Target: engine loop <= {TARGET_LOOP[n]:g} s at {n:,} items on 2 cores: "
                         f"{t:.2f} s, {'met' if t <= TARGET_LOOP[n] else '**missed**'} "
                         f"(AstronomicAL-style, 10 labels: {10 * results[n]['rf_iteration_s']:.1f} s)")
    return "\n".join(lines)
