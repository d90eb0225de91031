"""Label-efficiency benchmark: how many expert labels each query strategy needs on long-tailed pools.

Protocol: a balanced test split is set aside, the rest of each data set is made long-tailed
(imbalance ratio 10 and 100, exponential profile, class order shuffled per seed), a random cold
start of 10 labels is drawn, and every strategy labels batches of 10 until the budget is spent.
Every strategy trains the SAME learner each round (``core.models`` logistic regression with
balanced class weights, on fixed embeddings: standardised features, PCA-50 for images).
Baselines run through their own libraries: entropy and margin sampling through modAL's
``entropy_sampling`` / ``margin_sampling`` on the learner's probabilities; the committee (LR + RF +
kNN vote entropy) and random through Tailwise's registry.

Writes a section of docs/benchmarks.md plus plots under docs/img/ (or only under --out with
--quick). Run: ``python benchmarks/label_efficiency.py`` (full) or ``--quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads BLAS: the machine is shared

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._common import DOC, limit_threads, load_keel, write_section
from core.metrics import labels_to_reach, learning_curve_auc
from core.query import QueryContext, QueryResult, get_strategy
from core.simulate import simulate

# scikit-learn warns when a class has one label or labels are few: expected in active learning.
warnings.filterwarnings("ignore", message="The number of unique classes")
warnings.filterwarnings("ignore", message="The least populated class")

SECTION = "Label efficiency"


# ---------------------------------------------------------------------------- data
@dataclass
class Source:
    """A balanced labelled set: embedding, labels and how to split it."""

    name: str
    x: np.ndarray
    y: np.ndarray
    test_per_class: int
    n_max: int
    budget: int
    x_test: np.ndarray | None = None  # a separate test set (Fashion-MNIST's t10k)
    y_test: np.ndarray | None = None


def _standardise(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    ref = x if ref is None else ref
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    return ((x - mu) / np.where(sd > 1e-8, sd, 1.0)).astype(np.float32)


def load_digits_source(budget: int) -> Source:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Source(
        "digits",
        _standardise(d.data.astype(np.float32)),
        d.target.astype(str).astype(object),
        test_per_class=24,
        n_max=150,
        budget=budget,
    )


def load_fashion_source(budget: int, n_train: int = 12_000) -> Source:
    from sklearn.decomposition import PCA

    from core.data import load_fashion_mnist

    _, images, labels, _ = load_fashion_mnist(split="train")
    _, t_images, t_labels, _ = load_fashion_mnist(split="test")
    rng = np.random.default_rng(12345)
    keep = rng.choice(len(labels), n_train, replace=False)
    x = images[keep].reshape(n_train, -1).astype(np.float32) / 255.0
    pca = PCA(n_components=50, random_state=0).fit(x)
    test_keep = rng.choice(len(t_labels), 2_000, replace=False)
    xt = t_images[test_keep].reshape(len(test_keep), -1).astype(np.float32) / 255.0
    z, zt = pca.transform(x), pca.transform(xt)
    return Source(
        "fashion-mnist",
        _standardise(z),
        labels[keep].astype(object),
        test_per_class=0,
        n_max=1000,
        budget=budget,
        x_test=_standardise(zt, z),
        y_test=t_labels[test_keep].astype(object),
    )


def load_keel_source(name: str, budget: int, test_per_class: int, n_max: int) -> Source:
    x, y = load_keel(name)
    return Source(
        name, _standardise(x), y, test_per_class=test_per_class, n_max=n_max, budget=budget
    )


def source_loaders(budget: int, letter_budget: int) -> dict[str, Callable[[], Source]]:
    """The benchmark's data sets by name, each loaded when called (letter has its own budget)."""
    return {
        "digits": lambda: load_digits_source(budget),
        "fashion-mnist": lambda: load_fashion_source(budget),
        "penbased": lambda: load_keel_source("penbased", budget, 100, 800),
        "letter": lambda: load_keel_source("letter", letter_budget, 50, 600),
    }


def make_split(
    src: Source, ir: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_pool, y_pool, x_test, y_test): balanced test, long-tailed pool, class order from seed."""
    from core.data import long_tail_indices

    rng = np.random.default_rng([seed, int(ir)])
    if src.x_test is not None:
        xt, yt = src.x_test, src.y_test
        test_rows = np.concatenate(
            [rng.permutation(np.flatnonzero(yt == c))[:100] for c in np.unique(yt)]
        )
        x_test, y_test = xt[test_rows], yt[test_rows]
        rest = np.arange(len(src.y))
    else:
        test_rows, rest = [], []
        for c in np.unique(src.y):
            members = rng.permutation(np.flatnonzero(src.y == c))
            test_rows.append(members[: src.test_per_class])
            rest.append(members[src.test_per_class :])
        test_rows, rest = np.concatenate(test_rows), np.sort(np.concatenate(rest))
        x_test, y_test = src.x[test_rows], src.y[test_rows]
    keep = rest[long_tail_indices(src.y[rest], ir, rng, n_max=src.n_max)]
    return src.x[keep], src.y[keep], x_test, y_test


# ---------------------------------------------------------------------------- baselines
class ModALUncertainty:
    """modAL's ``entropy_sampling`` / ``margin_sampling`` on the learner's pool probabilities."""

    def __init__(self, kind: str) -> None:
        from modAL.uncertainty import entropy_sampling, margin_sampling

        self.name = f"{kind} (modAL)"
        self._fn = {"entropy": entropy_sampling, "margin": margin_sampling}[kind]
        self._fallback = get_strategy("random")

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        if ctx.proba.shape[1] < 2:  # no model yet: modAL has nothing to rank by
            return self._fallback.query(ctx, n)
        rows = ctx.unlabelled_positions
        proba = ctx.proba[rows]

        class _Proba:  # the fitted learner's probabilities for the rows modAL asks about
            @staticmethod
            def predict_proba(X, **_):
                return proba[np.asarray(X, dtype=np.int64).ravel()]

        idx, _ = self._fn(_Proba(), np.arange(len(rows)).reshape(-1, 1), n_instances=n)
        pos = rows[np.asarray(idx, dtype=np.int64)]
        return QueryResult(
            ids=ctx.pool_ids[pos],
            scores=np.zeros(len(pos)),
            reasons=["modAL"] * len(pos),
            strategy=self.name,
            positions=pos,
        )


def strategy_factory(name: str) -> Callable[[], object]:
    """What ``simulate`` runs for a strategy name; ``auto[discovery_clusters=linkage]`` passes
    parameters to ``get_strategy`` (to measure a variant beside the default; ``true`` / ``false``
    are booleans: ``auto[discovery_compactness=true]``)."""
    if name in ("entropy (modAL)", "margin (modAL)"):
        return lambda: ModALUncertainty(name.split()[0])
    if name.endswith("]") and "[" in name:
        base, params = parse_spec(name)
        params = {k: {"true": True, "false": False}.get(v.lower(), v) for k, v in params.items()}
        return lambda: get_strategy(base, **params)
    return lambda: name


def parse_spec(name: str) -> tuple[str, dict[str, str]]:
    """``"auto[a=1;b=x]"`` -> ``("auto", {"a": "1", "b": "x"})``; a plain name has no options."""
    if not (name.endswith("]") and "[" in name):
        return name, {}
    base, _, rest = name[:-1].partition("[")
    return base, dict(kv.split("=", 1) for kv in rest.split(";") if kv)


LEARNERS = ("logistic", "random_forest", "gradient_boosting", "mlp")
# Strategies whose picks never look at the learner's probabilities: one labelling order per seed
# serves every learner (replayed), which is what the loop would have done with that learner.
LEARNER_FREE = frozenset({"random", "committee"})


def model_config(name: str):
    """The default settings of learner ``name``; ``auto[spreading_labels=100]`` sets options of
    ``model: auto`` (``key=value`` pairs separated by ``;``)."""
    from core.project import default_model_config

    base, params = parse_spec(name)
    config = default_model_config(base)
    if params:
        config = type(config).model_validate({**config.model_dump(), **params})
    mlp = config.mlp if base == "auto" else config
    if mlp.kind == "mlp":
        mlp.device = "cpu"
    return config


def full_pool_score(x_pool, y_pool, x_test, y_test, learner: str) -> float:
    from core.metrics import evaluate
    from core.models import build_model

    est = build_model(model_config(learner), seed=0).fit(x_pool, y_pool.astype(str))
    return evaluate(y_test, est.predict(x_test), sorted(set(y_test.tolist())))["balanced_accuracy"]


# ---------------------------------------------------------------------------- one run
def _curve(res) -> dict:
    curve = res.curve
    return {
        "labels": [r["labels"] for r in curve],
        "ba": [r["balanced_accuracy"] for r in curve],
        "tail": [r["tail_recall"] for r in curve],
        "found": [r["classes_found"] for r in curve],
        "select": [r["seconds_select"] for r in curve[:-1]],
        "train": [r["seconds_train"] for r in curve[1:]],
        "learner": [r["learner"] for r in curve],
        "n_classes": res.summary["n_classes"],
    }


def replay(x_pool, y_pool, x_test, y_test, order: list[int], labels: list[int], learner: str,
           seed: int) -> dict:
    """The learning curve of ``learner`` along a fixed labelling order (``order`` = pool rows)."""
    from core.metrics import evaluate
    from core.models import build_model

    classes = sorted(set(y_test.tolist()) | set(y_pool.tolist()))
    pool_counts = {c: int((y_pool == c).sum()) for c in classes}
    tail = [c for c, _ in sorted(pool_counts.items(), key=lambda kv: (kv[1], kv[0]))][
        : max(1, int(np.ceil(len(classes) / 3)))]
    ba, tails, found, train = [], [], [], []
    for m in labels:
        rows = np.asarray(order[:m])
        y = y_pool[rows].astype(str)
        t0 = time.perf_counter()
        if len(set(y.tolist())) >= 2:
            est = build_model(model_config(learner), seed=seed).fit(x_pool[rows], y)
            pred = est.predict(x_test)
        else:
            pred = np.full(len(y_test), y[0], dtype=object)
        train.append(time.perf_counter() - t0)
        e = evaluate(y_test, pred, classes, tail_classes=tail)
        ba.append(e["balanced_accuracy"])
        tails.append(e["tail_recall"])
        found.append(len(set(y.tolist())))
    return {"labels": list(labels), "ba": ba, "tail": tails, "found": found, "select": [0.0],
            "train": train[1:], "learner": [learner] * len(labels), "n_classes": len(classes)}


def run_task(task: tuple) -> list[tuple[str, dict]]:
    """One (pool, seed, strategy) run; learner-free strategies are replayed for every learner."""
    key, ir, seed, strategy, learners = task
    src = _SOURCES[key.rsplit("-LT", 1)[0]]
    x_pool, y_pool, x_test, y_test = make_split(src, ir, seed)
    x = np.concatenate([x_pool, x_test])
    y = np.concatenate([y_pool, y_test])
    ids = np.array([f"r{i}" for i in range(len(x))], dtype=object)
    out = []
    first, *rest = learners
    res = simulate(
        x, y, ids=ids, strategy=strategy_factory(strategy)(), budget=src.budget, batch=10,
        seed=seed, cold_start=10, model=model_config(first), embedding=x,
        test_rows=np.arange(len(x_pool), len(x)),
    )
    out.append((first, _curve(res)))
    order = [int(i[1:]) for i in res.labelled_ids]
    for learner in rest:
        out.append((learner, replay(x_pool, y_pool, x_test, y_test, order,
                                    [r["labels"] for r in res.curve], learner, seed)))
    return [(f"{learner} · {strategy}", curve) for learner, curve in out]


_SOURCES: dict[str, Source] = {}
_CACHE: dict[str, Path] = {}


def _cache_file(task: tuple) -> Path:
    key, _, seed, strategy, learners = task
    budget = _SOURCES[key.rsplit("-LT", 1)[0]].budget
    slug = "".join(ch if ch.isalnum() else "_" for ch in strategy)
    models = "".join(ch if ch.isalnum() or ch == "+" else "_" for ch in "+".join(learners))
    return _CACHE["dir"] / f"{key}_s{seed}_b{budget}_{slug}_{models}.json"


def _full_pool_cached(key: str, seed: int, learner: str) -> float:
    """``full_pool_score`` of one pool, seed and learner, kept under ``--out/runs``."""
    path = _CACHE["dir"] / f"full_{key}_s{seed}_{learner}.json"
    if path.exists():
        return float(json.loads(path.read_text()))
    ds, ir = key.rsplit("-LT", 1)
    score = full_pool_score(*make_split(_SOURCES[ds], float(ir), seed), learner)
    path.write_text(json.dumps(score))
    return score


def run_cached(task: tuple) -> list[tuple[str, dict]]:
    """``run_task`` with its curves kept under ``--out/runs``: an interrupted run resumes."""
    path = _cache_file(task)
    if path.exists():
        return [(name, curve) for name, curve in json.loads(path.read_text())]
    out = run_task(task)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=float))
    tmp.replace(path)
    return out


def summarise(runs: list[dict], reference: list[float]) -> dict:
    auc = [learning_curve_auc(r["labels"], r["ba"]) for r in runs]
    reach = [labels_to_reach(r["labels"], r["ba"], 0.9 * f) for r, f in zip(runs, reference)]
    found = [labels_to_reach(r["labels"], r["found"], r["n_classes"]) for r in runs]
    per_round = [np.asarray(r["select"][: len(r["train"])]) + np.asarray(r["train"]) for r in runs]
    learners = [lab for r in runs for lab in r["learner"][1:]]
    return {
        "auc": float(np.mean(auc)),
        "auc_sd": float(np.std(auc)),
        "auc_runs": auc,
        "to90": reach,
        "to_all": found,
        "tail": float(np.mean([r["tail"][-1] for r in runs])),
        "final_ba": float(np.mean([r["ba"][-1] for r in runs])),
        "round_s": float(np.mean([np.mean(t) for t in per_round if len(t)])) if per_round else 0.0,
        "n_classes": runs[0]["n_classes"],
        "learners": {name: learners.count(name) / max(len(learners), 1) for name in set(learners)},
    }


def _mean_finite(values: list[float], cap: float) -> str:
    """Mean labels with runs that never reached the target counted at the budget, marked '>'."""
    arr = np.asarray(values, dtype=float)
    miss = int(np.isinf(arr).sum())
    mean = float(np.mean(np.where(np.isinf(arr), cap, arr)))
    return f"{mean:.0f}" + (f" ({miss} miss)" if miss else "")


# ---------------------------------------------------------------------------- scale
def synthetic_long_tail(n_pool: int, rng: np.random.Generator, d: int = 32,
                        k: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, class codes, class names)``: ``k`` Gaussian classes in ``d`` dimensions, class
    shares proportional to ``0.75 ** c``."""
    centres = rng.normal(0, 3, (k, d)).astype(np.float32)
    weights = 0.75 ** np.arange(k)
    y = rng.choice(k, n_pool, p=weights / weights.sum())
    x = centres[y] + rng.normal(0, 1, (n_pool, d)).astype(np.float32)
    return x, y, np.array([f"c{c}" for c in range(k)], dtype=object)


def loop_time(n_pool: int, seed: int = 0, d: int = 32, k: int = 10, start: int = 100,
              rounds: int = 12) -> dict:
    """One labelling round with the product defaults on a synthetic pool, timed part by part.

    Each round: ``model: auto`` fits on the labels (choosing its learner on its schedule),
    predicts the pool, ``auto`` picks 10 items and the oracle labels them. Returns median and
    max seconds per round after the first, and the mean cost of the learner choice itself.
    """
    from core.models import build_model
    from core.models.selection import EarlierOOF
    from core.project import AutoConfig

    rng = np.random.default_rng(seed)
    x, y, names = synthetic_long_tail(n_pool, rng, d=d, k=k)
    ids = np.array([f"i{i}" for i in range(n_pool)], dtype=object)
    lab = np.zeros(n_pool, bool)
    first = np.concatenate([rng.choice(np.flatnonzero(y == c), 2, replace=False) for c in range(k)])
    lab[first] = True
    if start > len(first):
        lab[rng.choice(np.flatnonzero(~lab), start - len(first), replace=False)] = True
    strategy = get_strategy("auto")
    config = AutoConfig()
    config.mlp.device = "cpu"
    choice, earlier, per_round, cpu, choosing, learners = None, None, [], [], [], []
    for r in range(rounds):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = np.flatnonzero(lab)
        few = len(rows) < config.spreading_labels  # the product spreads the labels then
        # as simulate and the sessions do: reuse the last round's out-of-fold predictions
        lent = EarlierOOF.lent(*earlier, rows) if earlier else None
        model = build_model(config, seed=seed, previous=choice, earlier_oof=lent).fit(
            x[rows], names[y[rows]], **({"X_unlabelled": x[~lab]} if few else {}))
        choice, earlier = model.choice_, (rows, model)
        proba = model.predict_proba(x)
        ctx = QueryContext(proba, tuple(model.classes_), x, ids, lab.copy(),
                           np.where(lab, names[y], None).astype(object), np.random.default_rng(r))
        res = strategy.query(ctx, 10)
        per_round.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        choosing.append(model.selection_seconds_)
        learners.append(choice.chosen)
        lab[res.positions] = True
    return {"median": float(np.median(per_round[1:])), "max": float(np.max(per_round[1:])),
            "cpu_median": float(np.median(cpu[1:])), "cpu_max": float(np.max(cpu[1:])),
            "choose_mean": float(np.mean(choosing[1:])), "choose_max": float(np.max(choosing[1:])),
            "learners": sorted(set(learners)), "labels": [start, int(lab.sum())]}


# ---------------------------------------------------------------------------- report
PRODUCT = "auto · auto"


def plot(results: dict, key: str, best_pair: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learner = best_pair.split(" · ")[0]
    shown = [PRODUCT, best_pair, f"{learner} · random", "random_forest · margin (modAL)"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for name in dict.fromkeys(shown):
        runs = results[key].get(name)
        if not runs:
            continue
        x = np.asarray(runs[0]["labels"])
        ba = np.mean([r["ba"] for r in runs], axis=0)
        found = np.mean([r["found"] for r in runs], axis=0)
        lw = 2.2 if name == PRODUCT else 1.2
        label = f"{name} (product default)" if name == PRODUCT else name
        ax1.plot(x, ba, label=label, lw=lw)
        ax2.plot(x, found, label=label, lw=lw)
    ax1.set(xlabel="labels", ylabel="balanced accuracy (test)", title=title)
    ax2.set(xlabel="labels", ylabel="classes found", title="discovery")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.savefig(path, dpi=90)
    plt.close(fig)


BASELINES = ("random", "entropy (modAL)", "margin (modAL)", "committee")


def _mean_at_budget(values: list[float], budget: int) -> float:
    arr = np.asarray(values, dtype=float)
    return float(np.mean(np.where(np.isinf(arr), budget, arr)))


def mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def baseline_pairs(d: dict) -> dict:
    return {k: v for k, v in d.items() if k.split(" · ")[0] in LEARNERS
            and k.split(" · ")[1] in BASELINES}


def target_lines(raw: dict, loops: dict, args: argparse.Namespace) -> list[str]:
    """The issue's targets for the product defaults, each marked met or missed."""
    out = ["", ("Targets for the product defaults (`model: auto`, `strategy: auto`; mean over "
           "seeds; runs that never get there count as the budget):"), ""]
    for key, d in raw.items():
        if PRODUCT not in d:
            continue
        budget = args.letter_budget if key.startswith("letter") else args.budget
        a = d[PRODUCT]
        pairs = baseline_pairs(d)
        if not pairs:  # product line only (--strategies ''): the targets it can judge alone
            notes = []
            if key.endswith("LT100"):
                within = float(np.mean([v <= 10 * a["n_classes"] for v in a["to_all"]]))
                notes.append(f"every class within 10C in {100 * within:.0f} % of seeds: "
                             f"{mark(within >= 0.8)}")
            if key.startswith("letter-LT100"):
                share = float(np.mean([v <= 300 for v in a["to_all"]]))
                notes.append(f"all 26 letters within 300 labels in {100 * share:.0f} % of seeds: "
                             f"{mark(share >= 0.6)}")
            out.append(f"- {key}: AUC {a['auc']:.3f}" + "".join(f"; {n}" for n in notes)
                       + " (no baseline pairs in this run: compare with *Label efficiency*).")
            continue
        best = max(pairs, key=lambda k: pairs[k]["auc"])
        learner = best.split(" · ")[0]
        rnd = d.get(f"{learner} · random")
        notes = [(f"AUC {a['auc']:.3f} vs best pair {best} {pairs[best]['auc']:.3f} + 0.02: "
                 f"{mark(a['auc'] >= pairs[best]['auc'] + 0.02)}")]
        if rnd:
            notes.append(f"vs {learner} · random {rnd['auc']:.3f} - 0.01: "
                         f"{mark(a['auc'] >= rnd['auc'] - 0.01)}")
        if key.endswith("LT100"):
            to90 = _mean_at_budget(a["to90"], budget)
            randoms = {k: _mean_at_budget(v["to90"], budget) for k, v in pairs.items()
                       if k.endswith("· random")}
            rnd_key = min(randoms, key=randoms.get)
            pair_to90 = {k: _mean_at_budget(v["to90"], budget) for k, v in pairs.items()}
            best90 = min(pair_to90, key=pair_to90.get)
            within = float(np.mean([v <= 10 * a["n_classes"] for v in a["to_all"]]))
            notes += [
                (f"labels to 90 % {to90:.0f} vs 0.3 x best random ({rnd_key}) "
                f"{0.3 * randoms[rnd_key]:.0f}: {mark(to90 <= 0.3 * randoms[rnd_key])}"),
                (f"vs 0.8 x best pair ({best90}) {0.8 * pair_to90[best90]:.0f}: "
                f"{mark(to90 <= 0.8 * pair_to90[best90])}"),
                f"every class within 10C in {100 * within:.0f} % of seeds: {mark(within >= 0.8)}",
            ]
            if key.startswith("letter"):
                share = float(np.mean([v <= 300 for v in a["to_all"]]))
                notes.append(f"all 26 letters within 300 labels in {100 * share:.0f} % of seeds: "
                             f"{mark(share >= 0.6)}")
        out.append(f"- {key}: " + "; ".join(notes) + ".")
    for n, t in loops.items():
        out.append(f"- selection + training per round at {n:,} items: median {t['median']:.2f} s "
                   f"wall, {t['cpu_median']:.2f} s CPU (max {t['max']:.2f} s wall, "
                   f"{t['cpu_max']:.2f} s CPU; limit 1 s, judged on CPU seconds because the machine "
                   f"was shared: {mark(t['cpu_median'] <= 1.0)}); choosing the "
                   f"learner added {t['choose_mean']:.2f} s per retrain on average, "
                   f"{t['choose_max']:.2f} s at most (limit 1 s): {mark(t['choose_mean'] <= 1.0)}.")
        if "few" in t:
            f = t["few"]
            out.append(f"- per round at {n:,} items while labels are few (20-90 labels): median {f['median']:.2f} s wall, {f['cpu_median']:.2f} s "
                       f"CPU (max {f['cpu_max']:.2f} s CPU): {mark(f['cpu_median'] <= 1.0)}.")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="digits only, 2 seeds, budget 100")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ..."
    )
    ap.add_argument("--datasets", default="digits,fashion-mnist,penbased,letter")
    ap.add_argument("--irs", default="10,100")
    ap.add_argument("--learners", default=",".join(LEARNERS))
    ap.add_argument("--strategies", default=",".join(BASELINES),
                    help="baseline strategies, run with every learner")
    ap.add_argument("--product", default="auto",
                    help="strategies run with model: auto (the first is the product default)")
    ap.add_argument("--product-models", default="auto",
                    help="models the --product strategies run with, e.g. "
                         "'auto,auto[spreading_labels=100]' (options of model: auto in brackets, "
                         "';'-separated); the rows are '<model> · <strategy>'")
    ap.add_argument("--budget", type=int, default=300, help="labels (letter: --letter-budget)")
    ap.add_argument("--letter-budget", type=int, default=1000)
    ap.add_argument("--dependent-learners", default="",
                    help="learners paired with entropy/margin (default: --learners); the "
                         "learner-free strategies are always replayed for every learner")
    ap.add_argument("--section", default=SECTION, help="the docs section to (re)write")
    ap.add_argument("--pools", default="",
                    help="only these pools, in this order (e.g. letter-LT100,digits-LT10)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--loop", default="100000", help="pool sizes for the per-round timing")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "label_efficiency")
    ap.add_argument(
        "--docs",
        type=Path,
        default=None,
        help="benchmarks markdown to update (default docs/benchmarks.md unless --quick)",
    )
    args = ap.parse_args(argv)
    limit_threads(1)
    if args.quick:
        args.seeds, args.datasets, args.budget, args.loop = 2, "digits", 100, ""
    docs = args.docs if args.docs is not None else (None if args.quick else DOC)
    img_dir = (docs.parent / "img") if docs is not None else args.out
    img_dir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    learners = [v.strip() for v in args.learners.split(",") if v.strip()]
    dependent = [v.strip() for v in (args.dependent_learners or args.learners).split(",")
                 if v.strip()]
    baselines = [v.strip() for v in args.strategies.split(",") if v.strip()]
    product = [v.strip() for v in args.product.split(",") if v.strip()]
    product_models = [v.strip() for v in args.product_models.split(",") if v.strip()]
    irs = [float(v) for v in args.irs.split(",")]
    loaders = source_loaders(args.budget, args.letter_budget)
    t_start = time.time()
    datasets = [v for v in args.datasets.split(",") if v]
    for ds in datasets:
        _SOURCES[ds] = loaders[ds]()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    tasks = []
    for ds in datasets:
        for ir in irs:
            key = f"{ds}-LT{ir:g}"
            for seed in seeds:
                for strat in product:
                    tasks += [(key, ir, seed, strat, [m]) for m in product_models]
                for strat in baselines:
                    if strat in LEARNER_FREE:
                        tasks.append((key, ir, seed, strat, learners))
                    else:
                        tasks += [(key, ir, seed, strat, [lrn]) for lrn in dependent]
    # Pool by pool (so an interrupted run leaves whole tables), longest tasks first within one.
    keys = [f"{ds}-LT{ir:g}" for ds in datasets for ir in irs]
    if args.pools:
        keys = [k.strip() for k in args.pools.split(",") if k.strip() in keys]
        tasks = [t for t in tasks if t[0] in keys]
    rank = {key: i for i, key in enumerate(keys)}
    tasks.sort(key=lambda t: (rank[t[0]], -((t[3] == "committee") * 3 + len(t[4]))))
    _CACHE["dir"] = args.out / "runs"
    _CACHE["dir"].mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict]]] = {}
    import multiprocessing as mp

    reused = sum(_cache_file(t).exists() for t in tasks)
    with mp.get_context("fork").Pool(max(1, args.jobs)) as pool:
        for done, (task, curves) in enumerate(
                zip(tasks, pool.imap(run_cached, tasks)), start=1):
            for name, curve in curves:
                results.setdefault(task[0], {}).setdefault(name, []).append((task[2], curve))
            print(f"[{done}/{len(tasks)}] {task[0]} seed {task[2]} {task[3]} "
                  f"({time.time() - t_start:.0f} s)", flush=True)
    results = {k: {n: [c for _, c in sorted(v, key=lambda sc: sc[0])] for n, v in d.items()}
               for k, d in results.items()}
    full: dict[str, dict[str, list[float]]] = {}
    for key in results:
        ds, ir = key.rsplit("-LT", 1)
        full[key] = {lrn: [_full_pool_cached(key, s, lrn) for s in seeds] for lrn in learners}
    reference = {k: list(np.max([v for v in f.values()], axis=0)) for k, f in full.items()}
    loops = {}
    for n in [int(v) for v in args.loop.split(",") if v]:
        loops[n] = loop_time(n)
        print(f"loop at {n} items: {loops[n]}", flush=True)
        # the first rounds (20 to 90 labels; label spreading when auto.spreading_labels is set)
        loops[n]["few"] = loop_time(n, start=20, rounds=8)
        print(f"loop at {n} items from 20 labels: {loops[n]['few']}", flush=True)
    elapsed = time.time() - t_start

    order = [f"{lrn} · {s}" for s in baselines for lrn in learners]
    order += [f"{m} · {s}" for s in product for m in product_models]
    raw = {k: {n: summarise(d[n], reference[k]) for n in order if n in d} for k, d in results.items()}
    (args.out / "results.json").write_text(json.dumps(
        {"summary": raw, "full_pool_ba": full, "loops": loops, "curves": results},
        indent=1, default=float))
    lines = [
        (
            f"Protocol: balanced test split; long-tailed pool (IR {', '.join(f'{v:g}' for v in irs)}; "
            f"class order shuffled per seed); random cold start of 10; batch 10; budget {args.budget} "
            f"(letter {args.letter_budget}); {args.seeds} seeds; fixed embeddings (standardised "
            "features, PCA-50 for Fashion-MNIST pixels). Every learner (`logistic`, `random_forest`, "
            "`gradient_boosting`, `mlp`, default settings) is paired with every baseline strategy "
            "(random; entropy and margin through modAL; committee); random and committee never "
            "look at the learner, so one labelling order per seed is replayed for each learner. "
            f"`{PRODUCT}` is the product default: `model: auto` (the learner chosen every round by "
            "out-of-fold balanced accuracy) with `strategy: auto`. *to 90 %* = labels until "
            "balanced accuracy reaches 90 % of the best learner trained on the whole pool (mean; "
            "a run that never gets there counts as the budget and is listed as a miss); *all "
            "classes* = labels until every class has a label (same rule); *found ≤10C* = share of "
            "seeds that found every class within 10 × (number of classes) labels; *s/round* = "
            "training (with the learner choice) + selection, on one thread; *learner* = what "
            "`auto` chose, share of rounds."
        ),
        "",
        "| pool | learner · strategy | AUC BA | to 90 % | all classes | found ≤10C | final tail recall | final BA | s/round | learner |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    plotted: list[str] = []
    for key, d in raw.items():
        budget = args.letter_budget if key.startswith("letter") else args.budget
        pairs = baseline_pairs(d)
        best = max(pairs, key=lambda k: pairs[k]["auc"]) if pairs else None
        for name, m in d.items():
            within = np.mean([v <= 10 * m["n_classes"] for v in m["to_all"]])
            chosen = ", ".join(f"{n.replace('_', ' ')} {100 * v:.0f} %" for n, v in
                               sorted(m["learners"].items(), key=lambda kv: -kv[1])) \
                if name.startswith("auto") else ""
            shown = f"**{name}**" if name in (PRODUCT, best) else name
            lines.append(
                f"| {key} | {shown} | {m['auc']:.3f} ± {m['auc_sd']:.3f} | "
                f"{_mean_finite(m['to90'], budget)} | {_mean_finite(m['to_all'], budget)} | "
                f"{100 * within:.0f} % | {m['tail']:.3f} | {m['final_ba']:.3f} | "
                f"{m['round_s']:.2f} | {chosen} |"
            )
        if best:
            plot(results, key, best, img_dir / f"label_efficiency_{key}.png", key)
            plotted.append(key)
    lines += [
        "",
        "Full-pool balanced accuracy (the 90 % reference is the best learner's), mean over seeds: "
        + "; ".join(f"{k}: " + ", ".join(f"{lrn} {np.mean(v):.3f}" for lrn, v in f.items())
                    for k, f in full.items()) + ".",
    ]
    if len(product_models) > 1 or len(product) > 1:  # variants of the product: seed by seed
        lines += ["", "AUC seed by seed (seeds " + ", ".join(map(str, seeds)) + "): " + "; ".join(
            f"{k} `{n}` " + " / ".join(f"{v:.3f}" for v in m["auc_runs"])
            for k, d in raw.items() for n, m in d.items() if n.split(" · ")[0] not in LEARNERS)
            + "."]
    if loops:
        lines += ["", "Per-round time with the product defaults on a synthetic long-tailed pool "
                  "(32-d, 10 classes, labels growing from 100 by 10 a round over 12 rounds; fit + "
                  "predict the pool + select): " + "; ".join(
                      f"{n:,} items: median {t['median']:.2f} s, max {t['max']:.2f} s, learner "
                      f"choice {t['choose_mean']:.2f} s mean ({', '.join(t['learners'])})"
                      for n, t in loops.items()) + "; while labels are few (from 20 labels by "
                  "10 a round over 8 rounds): " +
                  "; ".join(f"{n:,} items: median {t['few']['median']:.2f} s, max "
                            f"{t['few']['max']:.2f} s" for n, t in loops.items() if "few" in t)
                  + "."]
    lines += ["", ("Each run's curves are kept under `--out/runs` and reused when the command is run "
               "again, so *took* above counts only what this invocation computed; runs reused "
               f"from earlier invocations: {reused} of {len(tasks)}.")]
    lines += target_lines(raw, loops, args)
    lines += [""] + [f"![{k}](img/label_efficiency_{k}.png)" for k in plotted]
    body = "\n".join(lines)
    print(body)
    if docs is not None:
        command = "python benchmarks/label_efficiency.py " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        write_section(docs, args.section, body, command=command, elapsed_s=elapsed)
        print(f"updated {docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
