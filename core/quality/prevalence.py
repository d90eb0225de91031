"""How many items of each class does the unlabelled pool hold? Counts with a 90 % interval.

The served probabilities are calibrated *balanced* posteriors (every class weighs the same,
:mod:`core.models.calibration`), and the labelled items are no random sample of the pool: active
learning picks them for their features, rare classes first. Two corrections turn the balanced
posteriors ``q`` into posteriors for the pool before their sum (probabilistic classify-and-count):

``labelled`` (the default)
    the labels were chosen by their *features* only, so ``p(class | x)`` is the same among the
    labelled items and in the pool; the balanced posterior is ``p(class | x) / prior`` of the
    labelled classes (normalised), and multiplying back by that labelled prior gives ``p``.
``em``
    the labelled and the pool differ in their class mix only (prior shift): the pool's prior is
    re-estimated by EM (Saerens, Latinne & Decaestecker 2002), starting from the labelled one.

The counts are *checked by the labels* (:func:`adjusted_prevalence`, a Bayesian adjusted
classify-and-count, the held-out labels being the out-of-fold predictions of the labelled items):
the pool is split into cells by predicted class and confidence band, and the class mix of every
cell is a Dirichlet posterior: the prediction itself as prior mean, with a strength (how many
labels the prediction is worth) that has its own posterior per cell, never above the number of
labels that checked the cell (so a prior never outweighs its checks) and integrated over rather
than plugged in, plus one phantom label spread over all classes (a confusion no label has shown
yet stays possible), updated by the labelled items whose out-of-fold prediction falls in that
cell. Active learning picks items for their uncertainty, so comparing labelled and pool items of
the same confidence band is the correction for the non-random labelled sample; the interval
carries the uncertainty of every cell's misclassification rates (few labels: wide) and of the
count itself (multinomial draws). With no held-out labels at all the estimate is the model's own
sum and the interval what unchecked cells can hold: wide. (:func:`estimate_prevalence`'s interval, the
count's own randomness given the probabilities, takes them as right and is far too narrow; the
replayed loop's stopping guidance uses its estimate only.)
``docs/benchmarks.md`` ("Label quality") measures how often the true count falls inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LEVEL = 0.90
BOOTSTRAP = 100
POOL_SAMPLE = 20_000
CHUNK = 65_536  # pool rows corrected at a time
METHODS = ("labelled", "em")

__all__ = ["METHODS", "adjusted_prevalence", "correct", "em_prior", "estimate_prevalence",
           "prevalence_text"]


def correct(q: np.ndarray, prior: np.ndarray, method: str = "labelled") -> np.ndarray:
    """Pool posteriors from balanced posteriors ``q`` and the labelled class ``prior``."""
    q = np.asarray(q, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    p = q * prior
    p /= np.maximum(p @ np.ones(p.shape[1]), 1e-300)[:, None]  # row sums (a matrix product: fast)
    if method == "labelled":
        return p
    if method == "em":
        return em_prior(p, prior)[1]
    raise ValueError(f"unknown prevalence method {method!r}; use one of {METHODS}")


def em_prior(p: np.ndarray, prior: np.ndarray, *, tol: float = 1e-6,
             max_iter: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """``(pool prior, adjusted posteriors)``: EM re-estimation of the class prior of the items
    with posteriors ``p`` (fitted under ``prior``)."""
    p = np.asarray(p, dtype=np.float64)
    base = np.maximum(np.asarray(prior, dtype=np.float64), 1e-12)
    current = base.copy()
    adjusted = p
    for _ in range(max_iter):
        adjusted = p * (current / base)
        adjusted /= np.maximum(adjusted.sum(axis=1, keepdims=True), 1e-300)
        new = adjusted.mean(axis=0)
        if np.max(np.abs(new - current)) < tol:
            current = new
            break
        current = new
    return current, adjusted


def estimate_prevalence(
    q_pool: np.ndarray,
    classes: tuple[str, ...] | list[str],
    prior: np.ndarray,
    *,
    method: str = "labelled",
    level: float = LEVEL,
    boot: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{class: {"estimate", "low", "high"}}``: expected counts of each class among the
    unlabelled items whose calibrated balanced posteriors are ``q_pool``, with a ``level``
    interval from the count's own randomness only (the probabilities taken as right).

    ``prior`` is the labelled class mix (columns = ``classes``). Where held-out labels exist,
    :func:`adjusted_prevalence` also carries the uncertainty of the probabilities themselves.
    """
    q_pool = np.asarray(q_pool)
    n = len(q_pool)
    k = len(classes)
    if n == 0:
        return {c: {"estimate": 0.0, "low": 0.0, "high": 0.0} for c in classes}
    rng = np.random.default_rng(seed)
    if method == "em":  # the pool's prior is re-estimated from every row at once
        p = correct(q_pool, prior, method)
        estimate = p.sum(axis=0)
    else:  # row by row: summed in chunks, no pool-sized float64 temporaries
        p = None
        estimate = _corrected_sum(q_pool, prior, method)
    sample = rng.choice(n, POOL_SAMPLE, replace=False) if n > POOL_SAMPLE else np.arange(n)
    p_sample = p[sample] if p is not None else correct(q_pool[sample], prior, method)
    var = (p_sample * (1.0 - p_sample)).sum(axis=0) * (n / len(sample))
    draws = estimate + rng.normal(size=(boot, k)) * np.sqrt(var)
    tail = (1.0 - level) / 2.0
    low = np.clip(np.quantile(draws, tail, axis=0), 0.0, n)
    high = np.clip(np.quantile(draws, 1.0 - tail, axis=0), 0.0, n)
    return {c: {"estimate": float(estimate[j]), "low": float(min(low[j], estimate[j])),
                "high": float(max(high[j], estimate[j]))} for j, c in enumerate(classes)}


def _corrected_sum(q_pool: np.ndarray, prior: np.ndarray, method: str) -> np.ndarray:
    """``correct(q_pool, prior, method).sum(axis=0)`` chunk by chunk; for ``labelled`` as two
    matrix-vector products per chunk: ``sum_i q_i prior / (q_i . prior) = (w @ q) * prior``."""
    k = q_pool.shape[1]
    if method != "labelled":
        return sum((correct(q_pool[i:i + CHUNK], prior, method).sum(axis=0)
                    for i in range(0, len(q_pool), CHUNK)), np.zeros(k))
    prior = np.asarray(prior, dtype=np.float64)
    total = np.zeros(k)
    for i in range(0, len(q_pool), CHUNK):
        q = np.asarray(q_pool[i:i + CHUNK], dtype=np.float64)
        total += (1.0 / np.maximum(q @ prior, 1e-300)) @ q
    return total * prior


def prevalence_text(name: str, values: dict[str, float], level: float = LEVEL) -> str:
    """"≈ 41 more 'merger' in the pool, 90 % interval 28–57"."""
    return (f"≈ {values['estimate']:,.0f} more '{name}' in the pool, "
            f"{100 * level:.0f} % interval {values['low']:,.0f}–{values['high']:,.0f}")


def prevalence_report(estimates: dict[str, dict[str, float]], *, method: str, n_pool: int,
                      level: float = LEVEL, **extra: Any) -> dict[str, Any]:
    """What the estimates rest on, for metrics.json (``prevalence_details``)."""
    return {"method": method, "level": level, "unlabelled_items": int(n_pool), **extra,
            "text": {c: prevalence_text(c, v, level) for c, v in estimates.items()}}


# ---------------------------------------------------------------------------- checked by the labels
CONFIDENCE_EDGES = (0.6, 0.9)  # a cell: predicted class x confidence band (max posterior)
STRENGTHS = np.geomspace(0.3, 3000.0, 41)  # prior strengths (in labels) the posterior spans
OTHER_CLASSES = 1e-3  # prior share of each class but the predicted one in a cell
UNSEEN = 1.0  # one phantom label per cell, spread over all classes: unseen confusions can be
DRAWS = 400


def confidence_cells(p: np.ndarray, edges: tuple[float, ...] = CONFIDENCE_EDGES) -> np.ndarray:
    """The cell of every row of posteriors ``p``: ``predicted class * (bands) + band``."""
    band = np.searchsorted(np.asarray(edges), p.max(axis=1), side="right")
    return p.argmax(axis=1) * (len(edges) + 1) + band


def _log_evidence(counts: np.ndarray, mean: np.ndarray, strength: float) -> float:
    """Log-likelihood of the cells' label ``counts`` under Dirichlet-multinomials with the cells'
    prior ``mean`` and ``strength`` (the multinomial coefficients cancel between strengths)."""
    from scipy.special import gammaln

    a = strength * mean
    return float(np.sum(gammaln(strength) - gammaln(strength + counts.sum(axis=1)))
                 + np.sum(gammaln(a + counts) - gammaln(a)))


def strength_posterior(counts: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(strengths, posterior weights)``: how many labels the predictions of one cell are worth
    as a prior, given its held-out label ``counts`` (one row, or several cells sharing one
    strength) and its predicted class mix ``mean``.

    A log-uniform prior over :data:`STRENGTHS`, capped at the number of labels that checked the
    predictions (a prior never weighs more than the data it was checked by: two labels that
    agree with the model cannot tell a strength of 2 from 3,000), times the Dirichlet-multinomial
    evidence of the counts. The strength is then integrated over, not plugged in at its most
    likely value (a plug-in empirical Bayes strength takes the evidence of a few labels as
    certain)."""
    counts = np.atleast_2d(counts)
    mean = np.atleast_2d(mean)
    grid = STRENGTHS[STRENGTHS <= max(float(counts.sum()), 1.0)]
    used = counts.sum(axis=1) > 0
    if not used.any():
        return grid, np.full(len(grid), 1.0 / len(grid))
    log = np.array([_log_evidence(counts[used], mean[used], m) for m in grid])
    weight = np.exp(log - log.max())
    return grid, weight / weight.sum()


def soft_labels(p_held: np.ndarray, codes: np.ndarray, label_error: float) -> np.ndarray:
    """Each label as a distribution over the *true* class: ``P(true = t | label, held-out
    posterior) ∝ P(label | t) p_t`` under annotators who give a wrong label with probability
    ``label_error``, drawn uniformly from the other classes. With ``label_error`` 0 the labels
    are one-hot: taken as true."""
    p_held = np.asarray(p_held, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    n, k = p_held.shape
    one_hot = np.zeros((n, k))
    one_hot[np.arange(n), codes] = 1.0
    if label_error <= 0.0 or k < 2 or not n:
        return one_hot
    likelihood = np.where(one_hot > 0, 1.0 - label_error, label_error / (k - 1))
    weight = likelihood * np.maximum(p_held, 1e-12)
    return weight / weight.sum(axis=1, keepdims=True)


def pool_cells(q_pool: np.ndarray, prior: np.ndarray, method: str = "labelled",
               n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(items per cell, summed pool posteriors)`` of the pool items with balanced posteriors
    ``q_pool`` (:func:`correct` under ``prior``, then :func:`confidence_cells`), ``n_classes``
    (default: the columns) classes wide. ``labelled`` corrects row by row, so the pool is
    walked in chunks with no pool-sized float64 copy; ``em`` needs every row at once."""
    k = q_pool.shape[1]
    width = k if n_classes is None else n_classes
    n_cells = width * (len(CONFIDENCE_EDGES) + 1)
    step = CHUNK if method == "labelled" else max(len(q_pool), 1)
    n_pool, total = np.zeros(n_cells, dtype=np.int64), np.zeros(width)
    for i in range(0, len(q_pool), step):
        p = correct(np.asarray(q_pool[i:i + step], dtype=np.float64), prior, method)
        n_pool += np.bincount(confidence_cells(p), minlength=n_cells)
        total[:k] += p.sum(axis=0)
    return n_pool, total


def adjusted_counts(n_pool: np.ndarray, p_held: np.ndarray, codes: np.ndarray, *,
                    level: float = LEVEL, draws: int = DRAWS, seed: int = 0,
                    label_error: float = 0.0, unseen: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(estimate, low, high, strength)`` per class: the counts among pool items, ``n_pool``
    of them in each cell (:func:`pool_cells`), checked by labelled items with held-out
    posteriors ``p_held`` and labels ``codes`` (given with error rate ``label_error``:
    :func:`soft_labels`).

    Every cell's class mix is ``Dirichlet(strength * predicted class + UNSEEN / k + label
    counts)`` with the cell's own strength drawn from its :func:`strength_posterior` (a cell
    checked by few labels: weak priors are as likely as strong ones, and its interval widens;
    one strength shared by all cells let the cells where the model is right vouch for those
    where it is wrong). Each draw takes a strength and a mix per cell and a multinomial count
    of the cell's pool items; the interval is the ``level`` range of the summed counts
    (integers: a count is whole), the estimate their mean. ``strength``: the mean prior
    strength, weighted by the cells' pool items. The last ``unseen`` columns are classes no
    label has shown yet (no posterior predicts them): the phantom label is spread over the
    other ``k - unseen`` classes, and each unseen one gets the same share on top, so its count
    comes from that share and the cells' prior only: an interval from 0 up to what the labels
    checking each cell leave room for (and the seen classes' counts are as without them)."""
    p_held = np.asarray(p_held, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    k = p_held.shape[1]
    bands = len(CONFIDENCE_EDGES) + 1
    n_cells = k * bands
    counts = np.zeros((n_cells, k))
    np.add.at(counts, confidence_cells(p_held), soft_labels(p_held, codes, label_error))
    mean = np.full((n_cells, k), OTHER_CLASSES)
    mean[np.arange(n_cells), np.arange(n_cells) // bands] = 1.0
    mean /= mean.sum(axis=1, keepdims=True)
    phantom = UNSEEN / max(k - unseen, 1)
    rng = np.random.default_rng(seed)
    estimate, total, strength = np.zeros(k), np.zeros((draws, k)), 0.0
    for cell in np.flatnonzero(n_pool):
        grid, weight = strength_posterior(counts[cell], mean[cell])
        strength += n_pool[cell] * float(grid @ weight)
        alpha = grid[:, None] * mean[cell] + counts[cell] + phantom  # one row per strength
        estimate += n_pool[cell] * (weight @ (alpha / alpha.sum(axis=1, keepdims=True)))
        mix = rng.standard_gamma(alpha[rng.choice(len(grid), size=draws, p=weight)])
        mix /= mix.sum(axis=1, keepdims=True)
        total += rng.multinomial(n_pool[cell], mix)
    tail = (1.0 - level) / 2.0
    low = np.quantile(total, tail, axis=0, method="lower")
    high = np.quantile(total, 1.0 - tail, axis=0, method="higher")
    return estimate, low, high, strength / max(int(n_pool.sum()), 1)


def adjusted_prevalence(q_pool: np.ndarray, classes: tuple[str, ...] | list[str],
                        prior: np.ndarray, q_held: np.ndarray, codes: np.ndarray, *,
                        method: str = "labelled", level: float = LEVEL, draws: int = DRAWS,
                        seed: int = 0, declared: tuple[str, ...] | list[str] = (),
                        label_error: float = 0.0
                        ) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """``({class: {"estimate", "low", "high"}}, details)``: :func:`adjusted_counts` of the pool
    items with calibrated balanced posteriors ``q_pool``, checked by the labelled items with
    held-out (out-of-fold, calibrated) balanced posteriors ``q_held`` and label ``codes``.
    Both are turned into pool posteriors under the labelled class mix ``prior`` first.

    ``declared``: the classes of the label schema; those the model has not seen (no label yet)
    are counted too, as columns no prediction names: their interval runs from 0 to what the
    labels that checked each cell leave room for (a class that 300 labels never showed is rare,
    not absent). ``label_error``: the share of labels the annotators get wrong (from their
    agreement, or given), below 1 - 1/k; each label then weighs as a true-class distribution
    (:func:`soft_labels`), so a flipped label of a common class is not counted as the model
    missing a rare one.

    With no held-out labels at all (``q_held`` and ``codes`` empty: too few labels for
    out-of-fold predictions) nothing checks the model: the estimate is the sum of its pool
    posteriors and the interval what cells checked by no label can hold (a prior worth at most
    one label), which is wide, as it should be."""
    q_pool = np.asarray(q_pool)
    codes = np.asarray(codes, dtype=np.int64).reshape(-1)
    unseen = [c for c in dict.fromkeys(declared) if c not in set(classes)]
    names = [*classes, *unseen]
    if len(q_pool) == 0:
        return ({c: {"estimate": 0.0, "low": 0.0, "high": 0.0} for c in names},
                {"checked_by": 0})
    if len(codes) != len(q_held):
        raise ValueError(f"{len(q_held)} held-out rows but {len(codes)} labels")
    if not 0.0 <= label_error < 1.0 - 1.0 / max(len(names), 2):
        raise ValueError(f"label_error {label_error} must lie in [0, 1 - 1/classes): with more "
                         "wrong labels than right ones a label says nothing")
    n_pool, pool_sum = pool_cells(q_pool, prior, method, len(names))
    p_held = _widen(correct(np.asarray(q_held, dtype=np.float64), prior, "labelled")  # labelled mix
                    if len(codes) else np.zeros((0, len(classes))), len(unseen))
    estimate, low, high, strength = adjusted_counts(n_pool, p_held, codes, level=level,
                                                    draws=draws, seed=seed,
                                                    label_error=label_error,
                                                    unseen=len(unseen))
    if not len(codes):
        estimate = pool_sum
    values = {c: {"estimate": float(estimate[j]), "low": float(min(low[j], estimate[j])),
                  "high": float(max(high[j], estimate[j]))} for j, c in enumerate(names)}
    details = {"checked_by": int(len(codes)), "prior_strength": strength,
               "confidence_bands": list(CONFIDENCE_EDGES)}
    if unseen:
        details["unseen_classes"] = unseen
    if label_error:
        details["label_error"] = float(label_error)
    return values, details


def _widen(p: np.ndarray, extra: int) -> np.ndarray:
    """``p`` with ``extra`` zero columns (classes no label has shown yet)."""
    return np.hstack([p, np.zeros((len(p), extra))]) if extra else p
