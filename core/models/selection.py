"""Choosing the learner from the labels collected so far (``model.kind: auto``).

Every candidate is cross-validated on (a stratified subset of at most ``max_rows``) labels and
scored by its **out-of-fold balanced accuracy** — the mean recall over classes, so a rare class
counts as much as a common one. Ties are broken by the class-balanced log-loss of the out-of-fold
probabilities. Classes with a single label train in every fold and are never tested (nothing can
predict a class it has not seen). Below ``min_labels`` labels, or with fewer than two classes of
two labels, cross-validation says nothing: the current learner (or the first candidate) is kept.

The choice is *sticky*: a challenger replaces the current learner only when it is better by
``switch_margin`` **and** by one standard error of the paired difference, so the learner does not
flip between rounds on noise. The comparison is the expensive part (folds x candidates fits), so
it runs again only once the labels grew by ``recheck_growth`` since the last one (a geometric
schedule: a few dozen comparisons over thousands of labels); in between the chosen learner is
kept, with the temperature fitted on its out-of-fold probabilities at the last comparison.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from core.project import AutoConfig

BuildLearner = Callable[[str, int], Any]  # (learner name, seed) -> unfitted model
SERIAL_LEARNERS = frozenset({"mlp", "cluster_knn"})  # fitted one at a time (torch's global random state)

__all__ = [
    "EarlierOOF",
    "ModelChoice",
    "Selection",
    "balanced_accuracy_of",
    "balanced_subset",
    "fold_assignment",
    "out_of_fold_predictions",
    "select_learner",
    "stable_priority",
]


@dataclass(frozen=True)
class ModelChoice:
    """Which learner was chosen, every candidate's score and why (``model_choice`` in JSON)."""

    chosen: str
    candidates: dict[str, float | None]  # out-of-fold balanced accuracy (None: not measured)
    reason: str
    compared_at: int = 0  # label count of the last comparison (0: never compared)
    classes: tuple[str, ...] = ()  # classes present at the last comparison
    compared: bool = False  # whether this round ran the comparison
    temperature: float = 1.0  # calibration of the chosen learner, fitted at the last comparison

    def to_dict(self) -> dict[str, Any]:
        """The interface form: ``{chosen, candidates: {name: score}, reason}`` plus context."""
        return {
            "chosen": self.chosen,
            "candidates": {k: (None if v is None else round(float(v), 4))
                           for k, v in self.candidates.items()},
            "reason": self.reason,
            "compared_at": self.compared_at,
            "classes": list(self.classes),
            "compared": self.compared,
            "temperature": round(float(self.temperature), 6),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelChoice:
        return cls(
            chosen=str(data["chosen"]),
            candidates={str(k): (None if v is None else float(v))
                        for k, v in dict(data.get("candidates", {})).items()},
            reason=str(data.get("reason", "")),
            compared_at=int(data.get("compared_at", 0)),
            classes=tuple(str(c) for c in data.get("classes", ())),
            compared=bool(data.get("compared", False)),
            temperature=float(data.get("temperature", 1.0)),
        )


@dataclass
class Selection:
    """The outcome of :func:`select_learner`: the choice plus the chosen learner's out-of-fold
    probabilities on the compared rows (for calibration, cross-validated metrics, suspects)."""

    choice: ModelChoice
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # into X
    oof_proba: np.ndarray | None = None  # (len(rows), k) in ``classes`` order; NaN = not tested
    classes: tuple[str, ...] = ()


def positions_in(sorted_rows: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(where, found)``: the index of each of ``at`` in ``sorted_rows`` and whether it is there
    (``-1`` in ``at`` is never found)."""
    where = np.minimum(np.searchsorted(sorted_rows, at), max(len(sorted_rows) - 1, 0))
    if not len(sorted_rows):
        return where, np.zeros(len(at), dtype=bool)
    return where, (np.asarray(at) >= 0) & (sorted_rows[where] == at)


@dataclass(frozen=True)
class EarlierOOF:
    """Out-of-fold probabilities of the chosen learner from an earlier round, for ``auto`` to
    reuse while the labels grew by less than ``oof_growth``: ``rows`` index this round's labelled
    ``X`` (items still labelled), ``proba`` their rows in ``classes`` order, ``labels`` the label
    count they were computed at."""

    learner: str
    classes: tuple[str, ...]
    rows: np.ndarray
    proba: np.ndarray
    labels: int

    @classmethod
    def lent(cls, rows: np.ndarray, model: Any, now: np.ndarray) -> EarlierOOF | None:
        """What a fitted ``auto`` ``model`` (trained on pool ``rows``) lends to a round on pool
        ``now`` (both sorted), or None when it has no out-of-fold predictions."""
        oof = getattr(model, "oof_proba_", None)
        choice = getattr(model, "choice_", None)
        if oof is None or choice is None:
            return None
        where, ok = positions_in(now, np.asarray(rows)[model.oof_rows_])
        return cls(choice.chosen, tuple(str(c) for c in model.classes_), where[ok], oof[ok],
                   int(model.oof_at_))

    def subset(self, keep: np.ndarray) -> EarlierOOF:
        """The same predictions with ``rows`` into ``X[keep]`` (rows outside ``keep`` dropped)."""
        where = np.searchsorted(keep, self.rows)
        ok = where < len(keep)
        ok[ok] = keep[where[ok]] == self.rows[ok]
        return replace(self, rows=where[ok], proba=self.proba[ok])


def fold_assignment(codes: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each item, stratified by class; ``-1`` for items of single-label classes
    (they train in every fold). A class with fewer items than folds spreads over some folds."""
    out = np.full(len(codes), -1, dtype=np.int64)
    offset = 0
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        if len(members) < 2:
            continue
        members = rng.permutation(members)
        out[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # continue the round-robin so small classes fill different folds
    return out


def balanced_accuracy_of(codes: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``codes``."""
    classes = np.unique(codes)
    return float(np.mean([np.mean(predicted[codes == c] == c) for c in classes]))


def _paired_se(codes: np.ndarray, right_a: np.ndarray, right_b: np.ndarray) -> float:
    """Standard error of the difference of two balanced accuracies on the same items."""
    classes = np.unique(codes)
    var = 0.0
    for c in classes:
        d = (right_a[codes == c].astype(float) - right_b[codes == c].astype(float))
        if len(d) > 1:
            var += d.var(ddof=1) / len(d)
    return float(np.sqrt(var) / len(classes))


def _balanced_log_loss(codes: np.ndarray, proba: np.ndarray) -> float:
    p = np.maximum(proba[np.arange(len(codes)), codes], 1e-6)
    return float(np.mean([-np.log(p[codes == c]).mean() for c in np.unique(codes)]))


MAX_FIT_LABELS = 20_000  # above this, head classes are subsampled for the fit (class-balanced)


def balanced_subset(y: np.ndarray, seed: int, limit: int = MAX_FIT_LABELS,
                    keys: np.ndarray | None = None) -> np.ndarray:
    """Sorted positions of at most ``limit`` labels to fit on: every label of the classes below a
    common cap, ``cap`` of each larger (head) class. Rare classes keep all their labels; with
    plentiful labels the fit stays bounded whatever the label count. ``keys`` (one integer per
    label, e.g. its pool row) makes a head class keep its ``cap`` labels of lowest seeded hash,
    so the subsample barely moves from one round to the next as labels are added; without them
    the head classes are sampled at random (seeded)."""
    n = len(y)
    if n <= limit:
        return np.arange(n)
    names, inverse, counts = np.unique(np.asarray(y).astype(str), return_inverse=True,
                                       return_counts=True)
    # The largest cap with sum(min(count, cap)) <= limit ("water filling").
    ordered = np.sort(counts)
    below = np.concatenate([[0], np.cumsum(ordered)[:-1]])
    caps = (limit - below) // np.maximum(len(ordered) - np.arange(len(ordered)), 1)
    fits = caps >= ordered
    cap = int(caps[np.argmin(fits)] if not fits.all() else ordered[-1])
    rng = np.random.default_rng(seed)
    priority = None if keys is None else stable_priority(np.asarray(keys), seed)
    keep = []
    for c in range(len(names)):
        members = np.flatnonzero(inverse == c)
        if len(members) <= cap:
            keep.append(members)
        elif priority is None:
            keep.append(rng.choice(members, cap, replace=False))
        else:
            keep.append(members[np.argsort(priority[members], kind="stable")[:cap]])
    return np.sort(np.concatenate(keep))


def stable_priority(keys: np.ndarray, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 of each integer key (splitmix64): the same key and seed give
    the same value in every round."""
    golden = np.uint64(((seed + 1) * 0x9E3779B97F4A7C15) % 2**64)
    z = np.asarray(keys).astype(np.uint64) + golden
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _fit_fold(build: Callable[[], Any], X: np.ndarray, y: np.ndarray, fold: np.ndarray, f: int,
              classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """Train on every fold but ``f``; ``(test mask, probabilities in classes order)``."""
    test = fold == f
    train = ~test
    if not test.any() or len(np.unique(y[train])) < 2:
        return None
    with warnings.catch_warnings():  # tiny classes in a fold are expected here
        warnings.simplefilter("ignore", UserWarning)
        model = build().fit(X[train], y[train])
    index = {c: j for j, c in enumerate(classes)}
    part = np.zeros((int(test.sum()), len(classes)))
    part[:, [index[str(c)] for c in model.classes_]] = model.predict_proba(X[test])
    return test, part


def _out_of_fold_all(builders: dict[str, Callable[[], Any]], X: np.ndarray, y: np.ndarray,
                     fold: np.ndarray, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities ``(n, k)`` of every builder (NaN rows: never tested).

    The fold fits run on up to two threads (scikit-learn and torch release the GIL); the torch
    learner's folds run one after another, as torch's random state is global.
    """
    from concurrent.futures import ThreadPoolExecutor

    folds = range(int(fold.max()) + 1)
    serial = [name for name in builders if name in SERIAL_LEARNERS]
    jobs = [[(name, f) for name in serial for f in folds]]
    jobs += [[(name, f)] for name in builders if name not in SERIAL_LEARNERS for f in folds]

    def run(chain):
        return [(name, _fit_fold(builders[name], X, y, fold, f, classes)) for name, f in chain]

    out = {name: np.full((len(y), len(classes)), np.nan) for name in builders}
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tailwise-cv") as pool:
        for results in pool.map(run, [chain for chain in jobs if chain]):
            for name, result in results:
                if result is not None:
                    test, part = result
                    out[name][test] = part
    return out


def out_of_fold_predictions(
    build: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    kind: str = "",
    folds: int = 4,
    max_rows: int = 1_500,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(rows, proba, classes)``: out-of-fold probabilities of the model ``build()`` makes, on a
    stratified subset of at most ``max_rows`` labelled rows (rows of single-label classes are
    never tested, so they are not among ``rows``). ``kind`` names the learner (its folds are
    fitted one at a time when it is in ``SERIAL_LEARNERS``)."""
    y = np.asarray(y, dtype=object).astype(str)
    classes, codes = np.unique(y, return_inverse=True)
    classes_t = tuple(classes.tolist())
    rows, fold = _plan(codes, folds, max_rows, seed)
    proba = _out_of_fold_all({kind: build}, X[rows], y[rows], fold, classes_t)[kind]
    ok = (fold >= 0) & np.isfinite(proba).all(axis=1)
    return rows[ok], proba[ok], classes_t


def _plan(codes: np.ndarray, folds: int, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows to cross-validate on (a stratified subset) and the fold of each (-1: train only)."""
    rows = balanced_subset(codes, seed, limit=max_rows)
    k = min(folds, int(np.bincount(codes).max()))
    return rows, fold_assignment(codes[rows], k, np.random.default_rng([seed, len(codes)]))


def next_comparison(previous: ModelChoice | None, config: AutoConfig) -> int:
    """The label count at which the learners are compared again."""
    if previous is None or not previous.compared_at:
        return config.min_labels
    return max(config.min_labels,
               int(np.ceil(previous.compared_at * (1.0 + config.recheck_growth))))


def select_learner(
    X: np.ndarray,
    y: np.ndarray,
    config: AutoConfig,
    build: BuildLearner,
    *,
    seed: int = 0,
    previous: ModelChoice | None = None,
) -> Selection:
    """Choose among ``config.candidates`` for labelled ``X, y`` (class names); see module doc."""
    y = np.asarray(y, dtype=object).astype(str)
    classes, codes = np.unique(y, return_inverse=True)
    classes_t = tuple(classes.tolist())
    names = list(config.candidates)
    counts = np.bincount(codes)
    incumbent = previous.chosen if previous is not None and previous.chosen in names else None
    scores_of = {n: (previous.candidates.get(n) if previous is not None else None) for n in names}

    if len(y) < config.min_labels or int((counts >= 2).sum()) < 2 or len(names) == 1:
        chosen = incumbent or names[0]
        why = ("the only candidate" if len(names) == 1
               else f"{len(y)} labels are too few to compare learners by cross-validation "
               f"(needs {config.min_labels}, and two classes with two labels each)")
        choice = ModelChoice(chosen, scores_of, f"{chosen}: {why}", classes=classes_t)
        return Selection(choice, classes=classes_t)

    due = next_comparison(previous if incumbent else None, config)
    if incumbent is not None and len(y) < due:
        choice = replace(previous, reason=(
            f"{incumbent}: chosen at {previous.compared_at} labels ({_table(previous.candidates)}); "
            f"the learners are compared again at {due} labels"), compared=False)
        return Selection(choice, classes=classes_t)

    rows, fold = _plan(codes, config.folds, config.max_rows, seed)
    Xs, ys, cs = X[rows], y[rows], codes[rows]
    oof = _out_of_fold_all({n: (lambda n=n: build(n, seed)) for n in names}, Xs, ys, fold, classes_t)
    ok = fold >= 0
    for proba in oof.values():
        ok &= np.isfinite(proba).all(axis=1)
    right = {n: proba[ok].argmax(axis=1) == cs[ok] for n, proba in oof.items()}
    for n in names:
        scores_of[n] = balanced_accuracy_of(cs[ok], oof[n][ok].argmax(axis=1))
    losses = {n: _balanced_log_loss(cs[ok], oof[n][ok]) for n in names}
    ranked = sorted(names, key=lambda n: (-round(scores_of[n], 6), losses[n], names.index(n)))
    best = chosen = ranked[0]
    where = f"{fold.max() + 1}-fold out-of-fold balanced accuracy on {int(ok.sum())} labels"
    reason = f"{best}: best {where} ({_table(scores_of, ranked)})"
    if incumbent is not None and best != incumbent:
        gain = scores_of[best] - scores_of[incumbent]
        need = max(config.switch_margin, _paired_se(cs[ok], right[best], right[incumbent]))
        if gain < need:
            chosen = incumbent
            reason = (f"{incumbent}: kept; {best} is ahead by {gain:+.3f}, less than the "
                      f"{need:.3f} needed to switch ({where}: {_table(scores_of, ranked)})")
        else:
            reason = (f"{best}: replaces {incumbent}, ahead by {gain:+.3f} (at least the "
                      f"{need:.3f} needed; {where}: {_table(scores_of, ranked)})")
    choice = ModelChoice(chosen, scores_of, reason, compared_at=len(y), classes=classes_t,
                         compared=True)
    return Selection(choice, rows=rows[ok], oof_proba=oof[chosen][ok], classes=classes_t)


def _table(scores: dict[str, float | None], order: list[str] | None = None) -> str:
    order = order or sorted(scores, key=lambda n: -(scores[n] or 0.0))
    return ", ".join(f"{n} {scores[n]:.3f}" for n in order if scores[n] is not None)
