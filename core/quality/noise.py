"""A fallible oracle for simulations: a share of its answers flipped to another class.

``tailwise simulate --noise RATE`` replays labelling with an expert who errs on that share of
items. Which items get a wrong answer, and which wrong class, is decided once per simulation from
the seed, so a run is reproducible and the flipped items are known (the label-quality benchmark
measures how many of them the suspect list finds).

``uniform``
    a wrong answer is a uniformly drawn other class (the issue's definition of ``--noise``).
``class``
    class-dependent: every class has one class it is confused with (a seeded random pairing),
    and a wrong answer is always that class, as when two classes look alike to the expert.
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError

NOISE_MODES = ("uniform", "class")

__all__ = ["NOISE_MODES", "check_noise", "noisy_answers"]


def check_noise(rate: float, mode: str = "uniform") -> None:
    """Refuse a rate outside ``[0, 1)`` or an unknown mode, with a clear message."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= float(rate) < 1.0:
        raise ConfigError(f"--noise: the share of flipped oracle answers must be in [0, 1), "
                          f"got {rate!r}")
    if mode not in NOISE_MODES:
        raise ConfigError(f"--noise-mode: unknown mode {mode!r}; choose one of: "
                          + ", ".join(NOISE_MODES))


def noisy_answers(truth: np.ndarray, rate: float, rng: np.random.Generator, *,
                  mode: str = "uniform",
                  classes: list[str] | tuple[str, ...] | None = None) -> np.ndarray:
    """What the oracle answers for every item of ``truth``: the true class, except for a
    ``rate`` share of items (drawn at random, rounded to whole items) that get another class."""
    check_noise(rate, mode)
    truth = np.asarray(truth, dtype=object).astype(str)
    classes = sorted(set(truth.tolist())) if classes is None else [str(c) for c in classes]
    answers = truth.astype(object).copy()
    n_flip = int(round(float(rate) * len(truth)))
    if n_flip == 0 or len(classes) < 2:
        return answers
    flipped = rng.choice(len(truth), size=n_flip, replace=False)
    index = {c: j for j, c in enumerate(classes)}
    k = len(classes)
    if mode == "uniform":
        # an offset of 1..k-1 classes: a uniformly drawn class other than the true one
        offset = rng.integers(1, k, size=n_flip)
        codes = np.array([index[v] for v in truth[flipped]], dtype=np.int64)
        answers[flipped] = np.asarray(classes, dtype=object)[(codes + offset) % k]
    else:
        order = rng.permutation(k)  # class order[i] is confused with order[i + 1]
        partner = {classes[order[i]]: classes[order[(i + 1) % k]] for i in range(k)}
        answers[flipped] = [partner[v] for v in truth[flipped]]
    return answers
