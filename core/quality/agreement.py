"""Agreement between experts who labelled the same items: Cohen's kappa (two raters), Fleiss'
kappa (more raters, the same number on every item) and Krippendorff's alpha (any raters, some
missing), overall and per class (one class against the rest), each with a bootstrap confidence
interval over items.

The numbers come from well-kept libraries (scikit-learn's ``cohen_kappa_score``, statsmodels'
``fleiss_kappa``, the ``krippendorff`` package); this module only shapes the label store's
stances into their inputs and resamples items for the intervals. A *stance* is an annotator's
own latest label on an item (:meth:`core.labels.LabelStore.conflicts`); confirmations and
conflict resolutions are decisions about others' labels, not independent ratings, and are left
out by the caller.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP = 200

__all__ = ["agreement_summary", "cohen_kappa", "fleiss_kappa", "krippendorff_alpha",
           "overlapping"]

Stances = Mapping[str, Mapping[str, str]]  # item -> {annotator: label}


def overlapping(stances: Stances) -> dict[str, dict[str, str]]:
    """The items that at least two annotators labelled."""
    return {item: dict(by) for item, by in stances.items() if len(by) >= 2}


def cohen_kappa(a: list[str] | np.ndarray, b: list[str] | np.ndarray) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None when undefined: no items,
    or both raters always gave one and the same class)."""
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(a, dtype=object).astype(str), np.asarray(b, dtype=object).astype(str)
    if len(a) == 0 or len(set(a.tolist()) | set(b.tolist())) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score(a, b))
    return value if np.isfinite(value) else None


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa of an ``(items, categories)`` table of rating counts, every row summing to
    the same number of raters (None when undefined)."""
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    table = np.asarray(table, dtype=np.float64)
    if table.shape[0] == 0 or table.shape[1] < 2 or len(np.unique(table.sum(axis=1))) != 1:
        return None
    if np.count_nonzero(table.sum(axis=0)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(_fleiss(table, method="fleiss"))
    return value if np.isfinite(value) else None


def krippendorff_alpha(data: np.ndarray) -> float | None:
    """Krippendorff's alpha (nominal) of a ``(raters, items)`` array of category codes, NaN where
    a rater did not label an item (None when undefined)."""
    import krippendorff

    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] == 0:
        return None
    values = data[np.isfinite(data)]
    if len(np.unique(values)) < 2 or (np.isfinite(data).sum(axis=0) >= 2).sum() == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return value if np.isfinite(value) else None


# ---------------------------------------------------------------------------- shaping
def _matrix(items: list[str], stances: Stances, raters: list[str],
            code: Mapping[str, int]) -> np.ndarray:
    """``(raters, items)`` codes, NaN where missing."""
    out = np.full((len(raters), len(items)), np.nan)
    where = {r: i for i, r in enumerate(raters)}
    for j, item in enumerate(items):
        for who, label in stances[item].items():
            out[where[who], j] = code[label]
    return out


def _statistics(matrix: np.ndarray, n_codes: int) -> dict[str, float | None]:
    """Kappa (Cohen's for two raters, else Fleiss') and alpha of a ``(raters, items)`` matrix."""
    alpha = krippendorff_alpha(matrix)
    present = np.isfinite(matrix)
    if matrix.shape[0] == 2:
        both = present.all(axis=0)
        kappa = cohen_kappa(matrix[0, both].astype(int).astype(str),
                            matrix[1, both].astype(int).astype(str)) if both.any() else None
    else:
        table = np.zeros((matrix.shape[1], n_codes))
        for j in range(matrix.shape[1]):
            codes = matrix[present[:, j], j].astype(int)
            np.add.at(table[j], codes, 1.0)
        kappa = fleiss_kappa(table)
    return {"kappa": kappa, "alpha": alpha}


def _interval(values: list[float | None], level: float) -> tuple[float | None, float | None]:
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(finite) < 10:
        return None, None
    tail = (1.0 - level) / 2.0
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))


def _with_interval(matrix: np.ndarray, n_codes: int, rng: np.random.Generator, level: float,
                   boot: int) -> dict[str, Any]:
    point = _statistics(matrix, n_codes)
    samples: dict[str, list] = {"kappa": [], "alpha": []}
    n = matrix.shape[1]
    for _ in range(boot if n >= 2 else 0):
        pick = rng.integers(0, n, n)
        stats = _statistics(matrix[:, pick], n_codes)
        for key in samples:
            samples[key].append(stats[key])
    out: dict[str, Any] = {}
    for key in ("kappa", "alpha"):
        low, high = _interval(samples[key], level)
        out[key] = {"value": point[key], "low": low, "high": high}
    return out


def agreement_summary(stances: Stances, classes: list[str] | tuple[str, ...] | None = None, *,
                      seed: int = 0, level: float = CONFIDENCE,
                      boot: int = BOOTSTRAP) -> dict[str, Any] | None:
    """Agreement on the items labelled by at least two annotators, or None when there are none.

    ``{"items", "annotators", "kappa_method", "kappa": {value, low, high}, "alpha": {...},
    "confidence", "disagreements", "per_class": {class: {"items", "kappa": {...}, "alpha":
    {...}}}}`` — per class, each stance is read as "this class or not"; a class nobody chose on
    an overlapping item is left out. Intervals are bootstrap percentiles over items (None when
    too few resamples are defined).
    """
    shared = overlapping(stances)
    if not shared:
        return None
    items = sorted(shared)
    raters = sorted({who for by in shared.values() for who in by})
    labels = sorted({lab for by in shared.values() for lab in by.values()})
    order = [c for c in (classes or []) if c in labels] + [c for c in labels if c not in (classes or [])]
    code = {c: i for i, c in enumerate(order)}
    matrix = _matrix(items, shared, raters, code)
    rng = np.random.default_rng(seed)
    overall = _with_interval(matrix, len(order), rng, level, boot)
    per_class: dict[str, Any] = {}
    for name in order:
        binary = np.where(np.isfinite(matrix), (matrix == code[name]).astype(np.float64), np.nan)
        stats = _with_interval(binary, 2, rng, level, boot)
        chosen = int(np.any(binary == 1.0, axis=0).sum())
        per_class[name] = {"items": chosen, **stats}
    disagree = sum(1 for by in shared.values() if len(set(by.values())) > 1)
    return {
        "items": len(items),
        "annotators": raters,
        "kappa_method": "cohen" if len(raters) == 2 else "fleiss",
        "kappa": overall["kappa"],
        "alpha": overall["alpha"],
        "confidence": level,
        "disagreements": disagree,
        "per_class": per_class,
    }
