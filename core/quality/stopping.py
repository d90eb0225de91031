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

__all__ = ["prediction_change", "stopping_guidance"]


def prediction_change(previous: np.ndarray | None, current: np.ndarray) -> float | None:
    """Share of items whose predicted class changed since the previous round (None at the
    first round, or when the pool changed size)."""
    if previous is None or len(previous) != len(current) or not len(current):
        return None
    return float(np.mean(np.asarray(previous, dtype=object) != np.asarray(current, dtype=object)))


def stopping_guidance(change: float | None, previous_change: float | None,
                      prevalence: dict[str, dict[str, float]] | None,
                      rare_classes: list[str]) -> dict[str, Any]:
    """``{"prediction_change", "rare_in_pool": {estimate, low, high} | None, "advice", "text"}``.

    ``advice`` is ``"continue"`` while predictions move or rare items are expected in the pool,
    ``"diminishing"`` when both signals say little is left; the text says why either way.
    """
    rare = [c for c in rare_classes if prevalence and c in prevalence]
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
    hunting = rare_in_pool is not None and rare_in_pool["estimate"] >= FEW_RARE
    if rare_in_pool is not None:
        parts.append(f"≈ {rare_in_pool['estimate']:,.0f} items of the rare classes "
                     f"({', '.join(rare)}) still unlabelled in the pool "
                     f"(90 % interval {rare_in_pool['low']:,.0f}–{rare_in_pool['high']:,.0f})")
    advice = "continue" if moving or hunting else "diminishing"
    verdict = ("more labels should still help" if advice == "continue"
               else "more labels are likely to buy little; check the rare classes before stopping")
    return {"prediction_change": change, "rare_in_pool": rare_in_pool, "advice": advice,
            "text": "; ".join(parts) + f": {verdict}."}
