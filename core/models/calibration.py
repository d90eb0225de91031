"""Temperature scaling shared by every learner: fit one temperature on held-out predictions.

``fit_temperature`` minimises the class-balanced negative log-likelihood of held-out logits (each
class weighs the same, matching the balanced decisions the imbalance-aware learners aim for);
``temper`` applies a temperature to probabilities of learners that have no logits (trees).
"""

from __future__ import annotations

import numpy as np

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 20.0
PROBA_FLOOR = 1e-4  # trees give exact zeros; log(0) would make any temperature infinitely wrong


def fit_temperature(logits: np.ndarray, codes: np.ndarray) -> float:
    """The temperature minimising the class-balanced held-out negative log-likelihood.

    Bounded to [MIN_TEMPERATURE, MAX_TEMPERATURE]: a small, often perfectly separated held-out set
    would otherwise drive it towards zero (over-confident probabilities).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    rows = np.arange(len(codes))
    counts = np.bincount(codes)
    weight = 1.0 / counts[codes]
    weight /= weight.sum()

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float(np.sum(weight * (np.log(np.exp(s).sum(axis=1)) - s[rows, codes])))

    bounds = (np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE))
    res = minimize_scalar(nll, bounds=bounds, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x)) if np.isfinite(res.fun) else 1.0


def log_proba(proba: np.ndarray) -> np.ndarray:
    """Logs of probabilities floored at ``PROBA_FLOOR`` (usable as logits)."""
    return np.log(np.maximum(np.asarray(proba, dtype=np.float64), PROBA_FLOOR))


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: probabilities re-scaled by a temperature (rows sum to one)."""
    from core.models.base import softmax

    if temperature == 1.0:
        return np.asarray(proba, dtype=np.float64)
    return softmax(log_proba(proba) / temperature)
