"""Stopping guidance: what more labels would still buy, estimated at every round.

Two signals, never a silent stop: how many of the pool's predictions changed since the last
round (a model that still moves is still learning), and how many items of the rare classes the
pool is expected to hold still unlabelled (:mod:`core.quality.prevalence`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STABLE_SHARE = 0.01  # predictions changing for fewer than 1 % of the pool: stable
FEW_RARE = 1.0  # fewer than one rare item expected in the pool: little left to find

__all__ = ["change_since", "prediction_change", "round_guidance", "stopping_guidance"]


def prediction_change(previous: np.ndarray | None, current: np.ndarray) -> float | None:
    """Share of items whose predicted class changed since the previous round (None at the
    first round, or when the pool changed size)."""
    if previous is None or len(previous) != len(current) or not len(current):
        return None
    return float(np.mean(np.asarray(previous, dtype=object) != np.asarray(current, dtype=object)))


def change_since(previous: dict[str, str], ids: np.ndarray, predicted: np.ndarray) -> float | None:
    """Share of the items in both runs whose predicted class changed, from an earlier run's
    ``{id: predicted}`` (``tailwise retrain`` reads it from the last ``predictions.parquet``);
    None when no item is shared."""
    now = dict(zip(np.asarray(ids).astype(str).tolist(), np.asarray(predicted).astype(str).tolist()))
    shared = [i for i in now if i in previous]
    if not shared:
        return None
    return float(np.mean([now[i] != previous[i] for i in shared]))


def stopping_guidance(change: float | None, previous_change: float | None,
                      prevalence: dict[str, dict[str, float]] | None,
                      rare_classes: list[str], no_label: tuple[str, ...] | list[str] = ()
                      ) -> dict[str, Any]:
    """``{"prediction_change", "rare_in_pool": {estimate, low, high} | None, "rare_unseen",
    "advice", "text"}``.

    ``advice`` is ``"continue"`` while predictions move, rare items are expected in the pool or
    a rare class has no label yet (``rare_unseen``: absent from ``prevalence`` or named in
    ``no_label``, the schema's classes the prevalence counts without a label; the model has never
    seen them), ``"diminishing"`` when every signal says little is left; the text says why
    either way.
    """
    no_label = set(no_label)
    unseen = [c for c in rare_classes
              if prevalence is not None and (c not in prevalence or c in no_label)]
    rare = [c for c in rare_classes if prevalence and c in prevalence and c not in unseen]
    rare_in_pool = None
    if rare:
        rare_in_pool = {key: float(sum(prevalence[c][key] for c in rare))
                        for key in ("estimate", "low", "high")}
    parts = []
    moving = change is None or change >= STABLE_SHARE or (
        previous_change is not None and previous_change >= STABLE_SHARE)
    if change is None:
        parts.append("first model: no change between rounds to measure yet")
    else:
        parts.append(f"predictions changed for {100 * change:.1f} % of the pool since the last "
                     "round" + (" (stable)" if not moving else ""))
    hunting = bool(unseen) or (rare_in_pool is not None and rare_in_pool["estimate"] >= FEW_RARE)
    if rare_in_pool is not None:
        parts.append(f"≈ {rare_in_pool['estimate']:,.0f} items of the rare classes "
                     f"({', '.join(rare)}) still unlabelled in the pool "
                     f"(90 % interval {rare_in_pool['low']:,.0f}–{rare_in_pool['high']:,.0f})")
    if unseen:
        counted = [c for c in unseen if c in prevalence]
        parts.append(f"no label yet for {', '.join(unseen)}: " + (
            "the pool may hold " + ", ".join(
                f"{prevalence[c]['low']:,.0f}–{prevalence[c]['high']:,.0f} {c}" for c in counted)
            + " (90 % interval; a class no label has shown is counted only from the labels that "
            "were not it)" if counted else "how many the pool holds is unknown"))
    advice = "continue" if moving or hunting else "diminishing"
    verdict = ("more labels should still help" if advice == "continue"
               else "more labels are likely to buy little; check the rare classes before stopping")
    return {"prediction_change": change, "rare_in_pool": rare_in_pool, "rare_unseen": unseen,
            "advice": advice, "text": "; ".join(parts) + f": {verdict}."}


def round_guidance(round_no: int, n_labels: int, proba: np.ndarray, classes: tuple[str, ...],
                   unlabelled: np.ndarray, labels: np.ndarray, previous: dict[str, Any] | None,
                   rare_classes: list[str], *, seed: int = 0) -> dict[str, Any]:
    """The guidance of one round of a replayed labelling loop (``tailwise simulate``):
    :func:`stopping_guidance` from the pool probabilities ``proba`` (columns ``classes``; none
    before a model exists), the ``unlabelled`` mask, the labels given so far and the previous
    round's guidance (its ``_predicted`` holds that round's predictions, for the change).

    The counts in the pool are :func:`core.quality.prevalence.estimate_prevalence` of the
    unlabelled items under the labelled class mix (no calibration resampling: cheap enough for
    every round)."""
    from core.quality.prevalence import estimate_prevalence

    predicted = None
    prevalence = None
    if len(classes):
        proba = np.asarray(proba, dtype=np.float64)
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        index = {c: j for j, c in enumerate(classes)}
        counts = np.bincount([index[v] for v in np.asarray(labels).astype(str) if v in index],
                             minlength=len(classes))
        prior = counts / max(counts.sum(), 1)
        prevalence = estimate_prevalence(proba[np.asarray(unlabelled, dtype=bool)], classes,
                                         prior, seed=seed)
    before = None if previous is None else previous.get("_predicted")
    change = prediction_change(before, predicted) if predicted is not None else None
    earlier = None if previous is None else previous.get("prediction_change")
    guidance = stopping_guidance(change, earlier, prevalence, rare_classes)
    return {"round": int(round_no), "labels": int(n_labels), **guidance, "_predicted": predicted}
