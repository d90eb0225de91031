"""Temperature scaling shared by every learner: fit one temperature on held-out predictions.

``fit_temperature`` minimises the class-balanced negative log-likelihood of held-out logits (each
class weighs the same, matching the balanced decisions the imbalance-aware learners aim for);
``temper`` applies a temperature to probabilities of learners that have no logits (trees).
:func:`choose_calibrator` picks among no calibration, one temperature and class-wise (vector)
scaling by the cross-validated class-balanced log loss of out-of-fold predictions, the simplest
within one standard error of the best.

Every fit and score takes a ``label_error``: the share of the labels an annotator got wrong
(flipped to a uniformly drawn other class). The labels are then read through that noise, the
likelihood of label ``y`` being ``(1 - e) p_y + e (1 - p_y) / (k - 1)``, so the calibrated
probabilities estimate the *true* class, not the annotators' answers: fitted to noisy labels as
if they were right, a calibrator learns the annotators' slips as model over-confidence and
flattens every probability (a rare class's above all). ``label_error=0`` is the plain likelihood.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.5, 20.0
PROBA_FLOOR = 1e-4  # trees give exact zeros; log(0) would make any temperature infinitely wrong


def fit_temperature(logits: np.ndarray, codes: np.ndarray, label_error: float = 0.0) -> float:
    """The temperature minimising the class-balanced held-out negative log-likelihood (of labels
    wrong at rate ``label_error``, see the module text).

    Bounded to [MIN_TEMPERATURE, MAX_TEMPERATURE]: a small, often perfectly separated held-out set
    would otherwise drive it towards zero (over-confident probabilities).
    """
    from scipy.optimize import minimize_scalar

    from core.models.base import softmax

    z = np.asarray(logits, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    weight = balanced_weights(codes, z.shape[1])
    rows = np.arange(len(codes))

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        if label_error > 0:
            p_label = observed_label_proba(softmax(s), codes, label_error)
            return float(-np.sum(weight * np.log(np.maximum(p_label, 1e-300))))
        s = s - s.max(axis=1, keepdims=True)  # exact log-softmax: no underflow when separated
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


# ---------------------------------------------------------------------------- class-wise scaling
CALIBRATION_METHODS = ("none", "temperature", "vector")
VECTOR_L2 = 1e-2  # pull towards identity (w = 1, b = 0): few labels of a rare class stay sane
CALIBRATION_FOLDS = 3
MIN_ROWS_FOR_CHOICE = 10


@dataclass(frozen=True)
class Calibrator:
    """A post-hoc map of a learner's probabilities: ``softmax(scale * log p + bias)``.

    ``none`` leaves them as they are, ``temperature`` divides every log-probability by one
    temperature, ``vector`` gives each class its own scale and bias (class-wise temperature and
    prior correction), which is what helps rare classes whose probabilities are off in a way of
    their own. Fitted by the class-balanced negative log-likelihood, so the probabilities stay
    the balanced posteriors the imbalance-aware learners decide by.
    """

    method: str = "none"
    temperature: float = 1.0
    scale: tuple[float, ...] = ()
    bias: tuple[float, ...] = ()
    scores: dict[str, float] = field(default_factory=dict)  # method -> cross-validated log loss
    label_error: float = 0.0  # share of wrong labels the fit read the labels through

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64 rows summing to one)."""
        from core.models.base import softmax

        if self.method == "none" or (self.method == "temperature" and self.temperature == 1.0):
            return np.asarray(proba, dtype=np.float64)
        z = log_proba(proba)
        if self.method == "temperature":
            return softmax(z / self.temperature)
        if z.shape[1] != len(self.scale):
            raise ValueError(f"calibrator fitted on {len(self.scale)} classes, got {z.shape[1]}")
        return softmax(z * np.asarray(self.scale) + np.asarray(self.bias))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "temperature": float(self.temperature),
                "scale": [float(v) for v in self.scale], "bias": [float(v) for v in self.bias],
                "scores": {k: float(v) for k, v in self.scores.items()},
                "label_error": float(self.label_error)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibrator:
        if not data:
            return cls()
        method = str(data.get("method", "none"))
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}")
        return cls(method, float(data.get("temperature", 1.0)),
                   tuple(float(v) for v in data.get("scale", ())),
                   tuple(float(v) for v in data.get("bias", ())),
                   {str(k): float(v) for k, v in dict(data.get("scores", {})).items()},
                   float(data.get("label_error", 0.0)))


def balanced_weights(codes: np.ndarray, k: int | None = None) -> np.ndarray:
    """Weights that give every class present the same total (summing to one)."""
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=k or 0)
    weight = 1.0 / counts[codes]
    return weight / weight.sum()


def observed_label_proba(proba: np.ndarray, codes: np.ndarray,
                         label_error: float = 0.0) -> np.ndarray:
    """Per row, the probability of the given label ``codes`` when the true class follows ``proba``
    and an annotator flips a label at rate ``label_error`` to a uniformly drawn other class."""
    proba = np.asarray(proba, dtype=np.float64)
    p = proba[np.arange(len(codes)), codes]
    k = proba.shape[1]
    if label_error <= 0 or k < 2:
        return p
    return (1.0 - label_error) * p + label_error * (1.0 - p) / (k - 1)


def check_label_error(label_error: float) -> float:
    """``label_error`` as a float in [0, 0.5); a clear error otherwise."""
    value = float(label_error)
    if not 0.0 <= value < 0.5:
        raise ValueError(f"label_error must be a share of wrong labels in [0, 0.5), got {value}")
    return value


def balanced_log_loss(proba: np.ndarray, codes: np.ndarray, label_error: float = 0.0) -> float:
    """Class-balanced negative log-likelihood (each class present weighs the same) of labels
    wrong at rate ``label_error`` (0: taken as right)."""
    p = np.maximum(observed_label_proba(proba, codes, label_error), PROBA_FLOOR)
    return float(np.sum(balanced_weights(codes, np.asarray(proba).shape[1]) * -np.log(p)))


def fit_vector_scaling(proba: np.ndarray, codes: np.ndarray, l2: float = VECTOR_L2,
                       label_error: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(scale, bias)`` per class minimising the class-balanced NLL of
    ``softmax(scale * log p + bias)`` (labels wrong at rate ``label_error``), with an L2 pull
    towards the identity."""
    from scipy.optimize import minimize

    from core.models.base import softmax

    z = log_proba(proba)
    n, k = z.shape
    codes = np.asarray(codes, dtype=np.int64)
    weight = balanced_weights(codes, k)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), codes] = 1.0
    keep = 1.0 - label_error - label_error / (k - 1)  # d P(label) / d p_label under the noise

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:k], theta[k:]
        s = z * w + b
        p = softmax(s)
        q = np.maximum(observed_label_proba(p, codes, label_error), 1e-300)
        nll = -np.sum(weight * np.log(q))
        # d(-log q)/ds = (keep * p_label / q) * (p - onehot); keep = 1, q = p_label without noise
        g = (p - onehot) * (weight * keep * p[np.arange(n), codes] / q)[:, None]
        grad = np.concatenate([(g * z).sum(axis=0) + 2 * l2 * (w - 1.0), g.sum(axis=0) + 2 * l2 * b])
        return float(nll + l2 * (np.sum((w - 1.0) ** 2) + np.sum(b ** 2))), grad

    start = np.concatenate([np.ones(k), np.zeros(k)])
    bounds = [(1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE)] * k + [(-10.0, 10.0)] * k
    res = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 200})
    theta = res.x if np.all(np.isfinite(res.x)) else start
    return theta[:k], theta[k:]


def fit_calibrator(method: str, proba: np.ndarray, codes: np.ndarray,
                   label_error: float = 0.0) -> Calibrator:
    """A calibrator of ``method`` fitted on held-out probabilities ``proba`` with given labels
    ``codes`` (wrong at rate ``label_error``)."""
    if method == "none":
        return Calibrator()
    if method == "temperature":
        return Calibrator("temperature",
                          temperature=fit_temperature(log_proba(proba), codes, label_error))
    if method == "vector":
        scale, bias = fit_vector_scaling(proba, codes, label_error=label_error)
        return Calibrator("vector", scale=tuple(scale.tolist()), bias=tuple(bias.tolist()))
    raise ValueError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS}")


@dataclass
class CalibrationChoice:
    """The chosen calibrator and the out-of-fold predictions it was judged on."""

    calibrator: Calibrator
    held_out: np.ndarray  # (n, k) the chosen method's cross-fitted calibrated probabilities


def choose_calibrator(proba: np.ndarray, codes: np.ndarray, *, seed: int = 0,
                      methods: tuple[str, ...] = CALIBRATION_METHODS,
                      label_error: float = 0.0) -> CalibrationChoice:
    """The simplest calibration method whose cross-validated class-balanced log loss (a proper
    scoring rule) on out-of-fold probabilities ``proba`` of labelled items with ``codes`` is
    within noise of the lowest (:func:`simplest_within_noise`), refitted on all of them.
    ``held_out`` holds each row's probabilities from a calibrator fitted on the other folds
    (what measures the calibration honestly). ``label_error``: the share of wrong labels every
    fit and score reads the labels through (see the module text)."""
    proba = np.asarray(proba, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    label_error = check_label_error(label_error)
    if len(codes) < MIN_ROWS_FOR_CHOICE or len(np.unique(codes)) < 2:
        return CalibrationChoice(Calibrator(), proba.copy())
    from core.models.selection import fold_assignment

    fold = fold_assignment(codes, CALIBRATION_FOLDS, np.random.default_rng([seed, len(codes)]))
    held: dict[str, np.ndarray] = {m: proba.copy() for m in methods}
    for f in range(int(fold.max()) + 1):
        test, train = fold == f, (fold != f)
        if not test.any() or len(np.unique(codes[train])) < 2:
            continue
        for m in methods:
            if m != "none":
                held[m][test] = fit_calibrator(m, proba[train], codes[train],
                                               label_error).apply(proba[test])
    scores = {m: balanced_log_loss(held[m], codes, label_error) for m in methods}
    best = simplest_within_noise(held, codes, methods, scores, label_error)
    chosen = fit_calibrator(best, proba, codes, label_error)
    return CalibrationChoice(replace(chosen, scores=scores, label_error=label_error), held[best])


def simplest_within_noise(held: dict[str, np.ndarray], codes: np.ndarray,
                          methods: tuple[str, ...], scores: dict[str, float],
                          label_error: float = 0.0) -> str:
    """The simplest method (first in ``methods``) whose cross-validated class-balanced log loss
    is within one standard error of the lowest one (the one-standard-error rule: a few labels of a
    rare class make a richer calibration look better by chance)."""
    weight = balanced_weights(codes, next(iter(held.values())).shape[1])

    def losses(m: str) -> np.ndarray:
        return -np.log(np.maximum(observed_label_proba(held[m], codes, label_error), PROBA_FLOOR))

    best = min(methods, key=lambda m: (round(scores[m], 6), methods.index(m)))
    base = losses(best)
    for m in methods:
        d = losses(m) - base
        mean = float(np.sum(weight * d))
        se = float(np.sqrt(np.sum(weight ** 2 * (d - mean) ** 2)))
        if mean <= se:
            return m
    return best
