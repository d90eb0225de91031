"""Reviewing labels in the label store: suspects still open, confirmations, second opinions for
agreement, conflicts and their resolution by an admin. Every decision is a label event, so the
history keeps all of it and nothing is ever lost.

* ``confirm`` records the item's current label again with origin ``confirm``: the item stops
  being suspect (until someone relabels it).
* ``resolve`` records the label an admin settles a disagreement on, origin ``resolution``; the
  conflict is closed until someone gives a new, different label.
* Confirmations and resolutions are decisions about others' labels, not independent ratings:
  agreement statistics leave them out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from core.quality.agreement import agreement_summary
from core.quality.suspects import CONFIRM_ORIGIN, suspect_reason

RESOLUTION_ORIGIN = "resolution"
NOT_RATINGS = (CONFIRM_ORIGIN, RESOLUTION_ORIGIN)
SECOND_OPINION_REASON = ("second opinion: another expert labelled this item; label it as you "
                         "see it (agreement check)")

__all__ = ["NOT_RATINGS", "RESOLUTION_ORIGIN", "SECOND_OPINION_REASON", "agreement_of",
           "confirm", "open_conflicts", "open_suspects", "resolve", "second_opinions",
           "stances"]


def stances(store, item_ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """Item -> {annotator: label}: each annotator's own latest label in effect (retractions,
    confirmations and resolutions are not ratings)."""
    out: dict[str, dict[str, str]] = {}
    for item, who, label, _, _ in store.stance_events(item_ids, exclude_origins=NOT_RATINGS):
        if label is None:
            out.get(item, {}).pop(who, None)
        else:
            out.setdefault(item, {})[who] = label
    return {item: by for item, by in out.items() if by}


def agreement_of(store, classes: list[str] | None = None, seed: int = 0) -> dict[str, Any] | None:
    """:func:`core.quality.agreement.agreement_summary` of the store's stances, plus the number
    of open conflicts; None when no item has labels of two annotators."""
    summary = agreement_summary(stances(store), classes, seed=seed)
    if summary is not None:
        summary["open_conflicts"] = len(open_conflicts(store))
    return summary


def open_conflicts(store) -> list[dict[str, Any]]:
    """Items whose annotators disagree and that no admin resolved since the last rating:
    ``[{"item", "labels": {annotator: label}, "current": label or None}]``, oldest first."""
    last_rating: dict[str, int] = {}
    by_item: dict[str, dict[str, str]] = {}
    for item, who, label, event_id, _ in store.stance_events(exclude_origins=NOT_RATINGS):
        if label is None:
            by_item.get(item, {}).pop(who, None)
        else:
            by_item.setdefault(item, {})[who] = label
        last_rating[item] = max(last_rating.get(item, 0), event_id)
    disputed = [i for i, by in by_item.items() if len(set(by.values())) > 1]
    if not disputed:
        return []
    resolved: dict[str, int] = {}
    for item, _, _, event_id, origin in store.stance_events(disputed):
        if origin == RESOLUTION_ORIGIN:
            resolved[item] = max(resolved.get(item, 0), event_id)
    latest = store.latest_events(disputed)
    out = []
    for item in sorted(disputed, key=lambda i: last_rating[i]):
        if resolved.get(item, 0) > last_rating[item]:
            continue
        current = latest.get(item)
        out.append({"item": item, "labels": dict(sorted(by_item[item].items())),
                    "current": None if current is None else current.label})
    return out


def resolve(store, item_id: str, label: str, annotator: str, *,
            model_version: int | None = None) -> int:
    """Settle a disagreement on ``item_id`` with ``label`` (an event of origin ``resolution``
    naming the annotators it settles); returns the event id."""
    by = stances(store, [item_id]).get(item_id, {})
    shown = ", ".join(f"{who}: {lab}" for who, lab in sorted(by.items())) or "no other labels"
    return store.record(item_id, label, annotator, origin=RESOLUTION_ORIGIN,
                        model_version=model_version, note=f"resolves {shown}"[:1000])


def confirm(store, item_ids: Iterable[str], annotator: str, *,
            model_version: int | None = None) -> list[int]:
    """Confirm the current labels of ``item_ids`` (one action): they stop being suspect.
    Items without a label are refused (nothing to confirm)."""
    current = store.current()
    ids = [str(i) for i in item_ids]
    missing = [i for i in ids if i not in current]
    if missing:
        from core.errors import LabelStoreError

        raise LabelStoreError(f"cannot confirm unlabelled item(s) {missing[:5]}: label them first")
    return store.record_labels({i: current[i] for i in ids}, annotator, origin=CONFIRM_ORIGIN,
                               model_version=model_version, note="label confirmed in review")


def open_suspects(store, suspects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The round's suspects that still stand: the item still carries the suspected label and was
    not confirmed since; each with ``annotator`` (who gave the label) and ``reason``."""
    if not suspects:
        return []
    ids = [s["id"] for s in suspects]
    current = store.current(split="train")
    latest = store.latest_events(ids)
    given_by: dict[tuple[str, str], str] = {}  # (item, label) -> who gave it last
    for item, who, label, _, _ in store.stance_events(ids, exclude_origins=NOT_RATINGS):
        if label is not None:
            given_by[(item, label)] = who
    out = []
    for row in suspects:
        event = latest.get(row["id"])
        if current.get(row["id"]) != row["label"] or event is None:
            continue  # relabelled or retracted since the round
        if event.origin == CONFIRM_ORIGIN:
            continue
        who = given_by.get((row["id"], row["label"])) or event.annotator
        out.append({**row, "annotator": who, "reason": suspect_reason(row, who)})
    return out


def second_opinions(store, annotator: str, count: int, rng: np.random.Generator, *,
                    exclude: set[str] | frozenset[str] = frozenset(),
                    known: set[str] | None = None) -> list[str]:
    """Up to ``count`` training items labelled by exactly one annotator who is not
    ``annotator`` (never send an item back to the one who labelled it), drawn at random; items
    in ``exclude`` (queued for someone else) and, when given, outside ``known`` are skipped."""
    if count <= 0 or not annotator:
        return []
    train = store.current(split="train")
    candidates = sorted(
        item for item, by in stances(store).items()
        if len(by) == 1 and annotator not in by and item in train and item not in exclude
        and (known is None or item in known))
    if not candidates:
        return []
    pick = rng.choice(len(candidates), size=min(count, len(candidates)), replace=False)
    return [candidates[i] for i in sorted(pick.tolist())]
