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

The interval combines what is uncertain: the calibration (refitted on bootstrap resamples of the
out-of-fold predictions it was fitted on, applied to a sample of the pool) and the count itself
given its probabilities (a sum of Bernoulli variables: normal with variance sum p (1 - p)).
``docs/benchmarks.md`` ("Label quality") measures how often the true count falls inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

LEVEL = 0.90
BOOTSTRAP = 100
POOL_SAMPLE = 20_000
CHUNK = 65_536  # pool rows corrected at a time
METHODS = ("labelled", "em")

__all__ = ["METHODS", "correct", "em_prior", "estimate_prevalence", "prevalence_text"]


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
    resample: Callable[[np.random.Generator], Callable[[np.ndarray], np.ndarray]] | None = None,
    raw_pool: Callable[[np.ndarray], np.ndarray] | None = None,
    method: str = "labelled",
    level: float = LEVEL,
    boot: int = BOOTSTRAP,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``{class: {"estimate", "low", "high"}}``: expected counts of each class among the
    unlabelled items whose calibrated balanced posteriors are ``q_pool``, with a ``level``
    interval.

    ``prior`` is the labelled class mix (columns = ``classes``). ``resample(rng)`` returns a
    calibrator refitted on a bootstrap resample (a function raw probabilities -> balanced
    posteriors) and ``raw_pool(rows)`` the learner's own probabilities of those rows of the
    items (asked once, for a sample of at most ``POOL_SAMPLE``); without them only the count's
    own randomness makes the interval.
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
        estimate = sum((correct(q_pool[i:i + CHUNK], prior, method).sum(axis=0)
                        for i in range(0, n, CHUNK)), np.zeros(k))
    sample = rng.choice(n, POOL_SAMPLE, replace=False) if n > POOL_SAMPLE else np.arange(n)
    scale = n / len(sample)
    draws = np.empty((boot, k))
    p_sample = p[sample] if p is not None else correct(q_pool[sample], prior, method)
    base_mean = p_sample.sum(axis=0) * scale
    raw = None if resample is None or raw_pool is None else np.asarray(raw_pool(sample))
    for b in range(boot):
        if raw is not None:
            pb = correct(resample(rng)(raw), prior, method)
        else:
            pb = p_sample
        mean = estimate + (pb.sum(axis=0) * scale - base_mean)
        var = (pb * (1.0 - pb)).sum(axis=0) * scale
        draws[b] = mean + rng.normal(size=k) * np.sqrt(var)
    tail = (1.0 - level) / 2.0
    low = np.clip(np.quantile(draws, tail, axis=0), 0.0, n)
    high = np.clip(np.quantile(draws, 1.0 - tail, axis=0), 0.0, n)
    return {c: {"estimate": float(estimate[j]), "low": float(min(low[j], estimate[j])),
                "high": float(max(high[j], estimate[j]))} for j, c in enumerate(classes)}


def prevalence_text(name: str, values: dict[str, float], level: float = LEVEL) -> str:
    """"≈ 41 more 'merger' in the pool, 90 % interval 28–57"."""
    return (f"≈ {values['estimate']:,.0f} more '{name}' in the pool, "
            f"{100 * level:.0f} % interval {values['low']:,.0f}–{values['high']:,.0f}")


def prevalence_report(estimates: dict[str, dict[str, float]], *, method: str, n_pool: int,
                      level: float = LEVEL) -> dict[str, Any]:
    """What the estimates rest on, for metrics.json (``prevalence_details``)."""
    return {"method": method, "level": level, "unlabelled_items": int(n_pool),
            "text": {c: prevalence_text(c, v, level) for c, v in estimates.items()}}


def calibration_resampler(oof_raw: np.ndarray, codes: np.ndarray, method: str
                          ) -> Callable[[np.random.Generator], Callable[[np.ndarray], np.ndarray]]:
    """``resample(rng)`` for :func:`estimate_prevalence`: a calibrator of ``method`` refitted on a
    class-stratified bootstrap resample of out-of-fold predictions ``oof_raw`` with true
    ``codes``. A project whose learner needed no calibration still has its probabilities
    estimated from these labels: its resamples use one temperature."""
    from core.models.calibration import fit_calibrator, log_proba

    oof_raw = np.asarray(oof_raw, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    groups = [np.flatnonzero(codes == c) for c in np.unique(codes)]
    fit_method = method if method != "none" else "temperature"

    logs: list = [None, None]  # the last raw probabilities asked for and their logs

    def log_of(raw: np.ndarray) -> np.ndarray:  # the pool sample's logs, once for every resample
        if logs[0] is not raw:
            logs[:] = [raw, log_proba(raw)]
        return logs[1]

    def resample(rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        pick = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        calibrator = fit_calibrator(fit_method, oof_raw[pick], codes[pick])
        return lambda raw: calibrator.apply(raw, logs=log_of(raw))

    return resample
