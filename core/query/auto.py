"""``auto``: a Thompson-sampling bandit over query strategies (after TAILOR, Zhang et al.,
NeurIPS 2023).

Each arm is a strategy. Every batch is split among the arms by drawing, for each slot, a sample from
each arm's Beta posterior and giving the slot to the best draw. When the expert has labelled the
items of the previous batch (visible in ``ctx.labels``), each arm is rewarded for the items it
chose: 1 for a class nobody had labelled before, ``sqrt(n_min / n_c)`` for a known class with
``n_c`` labels (``n_min`` = fewest labels of any known class), so labels of minority classes pay
more than labels of the majority. Old evidence is discounted (``discount`` per round) because the
best arm changes as labelling goes on: exploration pays early, boundary refinement later.

Several dashboard sessions can share one bandit: each batch's picks are kept *per requester*
(``QueryContext.requester``), so a session asking for a new batch never discards another
session's picks, and each label rewards the arm that picked its item. The bandit state is plain
JSON (:meth:`Auto.state_dict` / :meth:`Auto.load_state_dict`), so a session can persist it beside
the label store. The arms are strategy objects built by the registry (``core.query.registry``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.query.base import Picks, QueryContext, QueryResult, QueryStrategy

DEFAULT_ARMS = ("discovery", "class_balanced_margin", "galaxy", "margin")
STATE_VERSION = 2
PENDING_ROUNDS = 50  # a pick nobody labelled for this many rounds no longer earns a reward

__all__ = ["DEFAULT_ARMS", "Auto", "label_reward"]


def label_reward(label: str, counts_before: dict[str, int], known_scale: float = 1.0) -> float:
    """Reward of one new label given the class counts before its batch (in [0, 1]).

    A class nobody had labelled earns 1; a known class ``known_scale * sqrt(n_min / n_c)``.
    """
    n_c = counts_before.get(label, 0)
    if n_c == 0:
        return 1.0
    n_min = min(c for c in counts_before.values() if c > 0)
    return known_scale * math.sqrt(n_min / n_c)


class Auto(QueryStrategy):
    """The default strategy: a discounted Thompson-sampling bandit over ``arms``.

    ``arms`` maps arm names to strategies (``get_strategy("auto", arms=[...names])`` builds
    them). ``discount`` pulls every arm's posterior back toward ``prior`` once per round;
    ``surprise`` (0-1) mixes "the model predicted this item wrongly" into known-class rewards;
    ``known_scale`` scales known-class rewards (a new class always earns 1).
    """

    name = "auto"
    needs_model = False  # the arms fall back to discovery by themselves

    def __init__(
        self,
        arms: Mapping[str, Any],
        discount: float = 0.8,
        prior: tuple[float, float] = (1.0, 1.0),
        surprise: float = 0.0,
        known_scale: float = 1.0,
    ) -> None:
        self.arms = dict(arms)
        self.discount = discount
        self.prior = tuple(prior)
        self.surprise = surprise
        self.known_scale = known_scale
        if not 0.0 <= surprise <= 1.0:
            raise ConfigError(f"auto: 'surprise' must be in [0, 1], got {surprise}")
        if not self.arms:
            raise ConfigError("auto: 'arms' must name at least one strategy")
        if "auto" in self.arms:
            raise ConfigError("auto: 'arms' cannot contain 'auto' itself")
        if not 0.0 < discount <= 1.0:
            raise ConfigError(f"auto: 'discount' must be in (0, 1], got {discount}")
        self.alpha = {a: float(self.prior[0]) for a in self.arms}
        self.beta = {a: float(self.prior[1]) for a in self.arms}
        # requester -> picks not yet rewarded: (item id, pool position hint, arm, predicted, round)
        self.pending: dict[str, list[tuple[str, int, str, str, int]]] = {}
        self.rounds = 0
        self.log: list[dict[str, Any]] = []  # per round: requester and arm -> (n items, mean reward)

    @property
    def arm_names(self) -> tuple[str, ...]:
        return tuple(self.arms)

    # ------------------------------------------------------------------ bandit
    def update(self, ctx: QueryContext) -> dict[str, list[float]]:
        """Reward the arms for the labels the experts gave to earlier picks.

        Every requester's pending picks that are now labelled earn their arm a reward; the
        requester of ``ctx`` drops its picks left unlabelled (it moved on to a new batch); other
        requesters' unlabelled picks stay pending until they are labelled or grow old.
        """
        rewards: dict[str, list[float]] = {a: [] for a in self.arms}
        if not any(self.pending.values()):
            self.pending = {}
            return rewards
        found: list[tuple[int, str, str, str]] = []  # (position, arm, predicted, requester)
        index = None
        still: dict[str, list[tuple[str, int, str, str, int]]] = {}
        for requester, picks in self.pending.items():
            for pick in picks:
                item_id, hint, arm, predicted, asked = pick
                pos = hint if 0 <= hint < ctx.n_pool and str(ctx.pool_ids[hint]) == item_id else None
                if pos is None:
                    if index is None:
                        index = {str(v): i for i, v in enumerate(ctx.pool_ids.tolist())}
                    pos = index.get(item_id)
                if pos is not None and ctx.labelled_mask[pos] and arm in rewards:
                    found.append((pos, arm, predicted, requester))
                elif requester != ctx.requester and self.rounds - asked < PENDING_ROUNDS:
                    still.setdefault(requester, []).append(pick)
        self.pending = still
        if not found:
            return rewards
        counts = ctx.class_counts()
        labels = np.asarray(ctx.labels, dtype=object)
        for pos, *_ in found:  # class counts before these picks were labelled
            counts[str(labels[pos])] -= 1
        counts = {c: v for c, v in counts.items() if v > 0}
        for a in self.arms:  # discount toward the prior once per round
            self.alpha[a] = self.prior[0] + self.discount * (self.alpha[a] - self.prior[0])
            self.beta[a] = self.prior[1] + self.discount * (self.beta[a] - self.prior[1])
        by_requester: dict[str, dict[str, list[float]]] = {}
        for pos, arm, predicted, requester in found:
            r = label_reward(str(labels[pos]), counts, self.known_scale)
            if self.surprise and r < 1.0:  # mix in "the model got it wrong"
                r = (1 - self.surprise) * r + self.surprise * float(predicted != str(labels[pos]))
            rewards[arm].append(r)
            by_requester.setdefault(requester, {}).setdefault(arm, []).append(r)
            self.alpha[arm] += r
            self.beta[arm] += 1.0 - r
        for requester, arms in sorted(by_requester.items()):
            self.log.append({
                "round": self.rounds,
                "requester": requester,
                "arms": {a: [len(v), float(np.mean(v))] for a, v in arms.items()},
            })
        return rewards

    def allocate(self, n: int, rng: np.random.Generator) -> dict[str, int]:
        """Split ``n`` slots among the arms by Thompson sampling."""
        names = self.arm_names
        quota = {a: 0 for a in names}
        a_vec = np.array([self.alpha[a] for a in names])
        b_vec = np.array([self.beta[a] for a in names])
        for _ in range(n):
            quota[names[int(np.argmax(rng.beta(a_vec, b_vec)))]] += 1
        return quota

    # ------------------------------------------------------------------ query
    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """Update from the labels given since, then fill the batch arm by arm."""
        self.update(ctx)
        result = super().query(ctx, n)
        predicted = (
            np.asarray(ctx.classes, dtype=object)[ctx.proba[result.positions].argmax(axis=1)]
            if ctx.proba.shape[1]
            else np.full(len(result.ids), "", dtype=object)
        )
        self.pending[ctx.requester] = [
            (str(i), int(p), a, str(c), self.rounds)
            for i, p, a, c in zip(result.ids.tolist(), result.positions, result.arms, predicted)
        ]
        self.rounds += 1
        return result

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        quota = self.allocate(n, ctx.rng)
        chosen: list[int] = []
        scores, reasons, arms = [], [], []
        for arm in sorted(self.arm_names, key=lambda a: -quota[a]):
            q = quota[arm]
            if q == 0:
                continue
            ask = min(q + len(chosen), len(candidates))
            res = self.arms[arm].query(ctx, ask)
            taken = 0
            for p, s, r in zip(res.positions.tolist(), res.scores, res.reasons):
                if taken == q:
                    break
                if p in chosen:
                    continue
                chosen.append(int(p))
                scores.append(float(s))
                reasons.append(f"[{arm}] {r}")
                arms.append(arm)
                taken += 1
        if len(chosen) < n:  # arms overlapped on a tiny pool: fill at random
            rest = np.setdiff1d(candidates, chosen)
            for p in ctx.rng.permutation(rest)[: n - len(chosen)]:
                chosen.append(int(p))
                scores.append(0.0)
                reasons.append("[random] filling the batch")
                arms.append("random")
        return Picks(np.asarray(chosen), np.asarray(scores), reasons, arms=arms)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The bandit state as plain JSON-serialisable data."""
        return {
            "version": STATE_VERSION,
            "arms": list(self.arm_names),
            "alpha": dict(self.alpha),
            "beta": dict(self.beta),
            "pending": {r: [list(p) for p in picks] for r, picks in self.pending.items()},
            "rounds": self.rounds,
            "log": self.log[-200:],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; arms not in ``state`` keep their prior.

        Version 1 states (one list of pending picks) are read as the picks of requester ``""``.
        """
        version = state.get("version") if isinstance(state, dict) else None
        if version not in (1, STATE_VERSION):
            raise ConfigError(f"auto: unsupported bandit state (expected version {STATE_VERSION})")
        for a in self.arms:
            self.alpha[a] = float(state.get("alpha", {}).get(a, self.prior[0]))
            self.beta[a] = float(state.get("beta", {}).get(a, self.prior[1]))
        self.rounds = int(state.get("rounds", 0))
        pending = state.get("pending", {})
        if version == 1:
            pending = {"": pending}
        self.pending = {
            str(r): [(str(p[0]), int(p[1]), str(p[2]), str(p[3]) if len(p) > 3 else "",
                      int(p[4]) if len(p) > 4 else self.rounds) for p in picks]
            for r, picks in dict(pending).items()
        }
        self.log = [entry for entry in state.get("log", []) if isinstance(entry, dict)]
