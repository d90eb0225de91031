"""Strategies that wrap other strategies.

* :class:`KNNSubPool` keeps expensive strategies fast on large pools (after SEALS, Coleman et al.
  2022, and AnchorAL, Lesci & Vlachos 2024): the wrapped strategy only sees the labelled items, the
  nearest neighbours of labelled items and a random sample of the pool.
* :class:`ColdStart` hands the query to a cold-start strategy (TypiClust in the registry) while
  fewer than ``min_labels`` items are labelled.
* :class:`NoModelFallback` hands the query to an exploring strategy (``discovery`` in the
  registry) while the wrapped one cannot run: no model yet, or a single labelled class.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from core.errors import ConfigError
from core.query.base import QueryContext, QueryResult, QueryStrategy, missing

__all__ = ["MAX_LABELLED", "ColdStart", "KNNSubPool", "NoModelFallback", "balanced_quota"]

# Labelled items a sub-pooled strategy sees at most (a class-balanced sample above): the
# label-efficiency benchmarks all stay below it, and a query stays well under a second above.
MAX_LABELLED = 2_000
RECENT_PICKS = 5_000  # picks remembered, so the labels given to them reach the wrapped strategy
SAMPLE_SEED = 0


def balanced_quota(counts: np.ndarray, size: int) -> np.ndarray:
    """How many items of each class to take so that ``min(size, counts.sum())`` are taken, as
    evenly over the classes as their counts allow (a class smaller than its share gives all)."""
    counts = np.asarray(counts, dtype=np.int64)
    quota = np.zeros_like(counts)
    left = int(min(size, counts.sum()))
    order = np.argsort(counts, kind="stable")
    for i, c in enumerate(order.tolist()):
        quota[c] = min(int(counts[c]), left // (len(order) - i))
        left -= int(quota[c])
    return quota


class _Wrapper:
    """Shared plumbing: a name, the wrapped strategy, and state pass-through."""

    def __init__(self, strategy: QueryStrategy) -> None:
        self.strategy = strategy

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def inner(self) -> Any:
        """The innermost strategy (past every wrapper)."""
        inner = self.strategy
        while isinstance(inner, _Wrapper):
            inner = inner.strategy
        return inner

    def state_dict(self) -> dict | None:
        """JSON-serialisable state of the innermost strategy, if it keeps any."""
        fn = getattr(self.inner, "state_dict", None)
        return fn() if fn else None

    def load_state_dict(self, state: dict) -> None:
        fn = getattr(self.inner, "load_state_dict", None)
        if fn:
            fn(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.strategy!r})"


class KNNSubPool(_Wrapper):
    """Restrict a strategy to the neighbours of labelled items plus a random sample.

    Below ``max_pool`` unlabelled items the wrapper does nothing. Above it, the candidates are
    ``n_random`` random unlabelled items plus the ``n_neighbors`` nearest unlabelled items of each
    labelled item. Neighbour lists are computed once per labelled item (exactly in bounded blocks,
    or through an index of the pool built once per embedding on large pools, see
    :mod:`core.query.neighbours`) and cached, so each round only pays for the items labelled since
    the last one; at most ``max_new_seeds`` new labelled items are indexed per call.

    Above ``max_labelled`` labels (e.g. after a box of 10^5 items was labelled at once) the
    wrapped strategy sees a class-balanced random sample of ``max_labelled`` labelled items
    (nearly the same from one round to the next)
    instead of all of them (every item of a class with fewer labels than its share), plus the
    labelled items among this wrapper's recent picks (so ``auto`` still rewards its arms for
    them), and only the sample's neighbours join the candidates; the class counts stay those of
    every label. A query's cost is thus bounded whatever the number of labels; at or below
    ``max_labelled`` labels nothing changes.
    """

    def __init__(
        self,
        strategy: QueryStrategy,
        max_pool: int = 20_000,
        n_random: int = 10_000,
        n_neighbors: int = 20,
        max_new_seeds: int = 256,
        max_labelled: int = MAX_LABELLED,
    ) -> None:
        super().__init__(strategy)
        self.max_pool = max_pool
        self.n_random = n_random
        self.n_neighbors = n_neighbors
        self.max_new_seeds = max_new_seeds
        self.max_labelled = max_labelled
        if isinstance(max_labelled, bool) or not isinstance(max_labelled, (int, np.integer)) \
                or max_labelled < 1:
            raise ConfigError(f"sub-pool: 'max_labelled' must be a positive integer, got "
                              f"{max_labelled!r}")
        self._key: tuple | None = None
        self._neighbours: dict[int, np.ndarray] = {}
        self._recent: deque[int] = deque(maxlen=RECENT_PICKS)  # pool positions picked lately
        self._keys: np.ndarray | None = None  # a random key per pool row (the labelled sample)

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """Query the wrapped strategy on a sub-pool when the pool is large (and on a sample of
        the labelled items when there are more than ``max_labelled``)."""
        self._refresh_cache(ctx)
        unlabelled = ctx.open_positions
        labelled = self.labelled_sample(ctx)
        if len(unlabelled) <= self.max_pool:
            if labelled is None:
                return self._remember(self.strategy.query(ctx, n))
            keep = np.union1d(labelled, ctx.unlabelled_positions)
        else:
            candidates = self.candidates(ctx, labelled)
            keep = np.union1d(ctx.labelled_positions if labelled is None else labelled, candidates)
        result = self.strategy.query(ctx.subset(keep, keep_counts=labelled is not None), n)
        return self._remember(replace(result, positions=keep[result.positions]))

    def _remember(self, result: QueryResult) -> QueryResult:
        self._recent.extend(np.asarray(result.positions).tolist())
        return result

    def labelled_sample(self, ctx: QueryContext) -> np.ndarray | None:
        """The labelled positions the wrapped strategy sees, sorted, or None for all of them
        (at most ``max_labelled`` labels): a class-balanced random sample of ``max_labelled``,
        plus the labelled items among the recent picks. The sample is drawn by a random key
        fixed per pool row, so consecutive rounds see nearly the same labelled items (their
        neighbours stay cached) and it draws nothing from ``ctx.rng``."""
        positions, codes, names = ctx.labelled_classes()
        if len(positions) <= self.max_labelled:
            return None
        quota = balanced_quota(np.bincount(codes, minlength=len(names)), self.max_labelled)
        if self._keys is None or len(self._keys) != ctx.n_pool:
            self._keys = np.random.default_rng(SAMPLE_SEED).random(ctx.n_pool)
        parts = []
        for c, q in enumerate(quota.tolist()):
            rows = positions[codes == c]
            if q < len(rows):  # the q rows of smallest key: the sample changes little per round
                rows = rows[np.argpartition(self._keys[rows], q - 1)[:q]]
            parts.append(rows)
        recent = np.fromiter(self._recent, dtype=np.int64, count=len(self._recent))
        recent = recent[(recent >= 0) & (recent < ctx.n_pool)]
        parts.append(recent[ctx.labelled_mask[recent]])
        return np.unique(np.concatenate(parts))

    def candidates(self, ctx: QueryContext, labelled: np.ndarray | None = None) -> np.ndarray:
        """Unlabelled (and unreserved) positions the wrapped strategy will see: a random sample
        and the neighbours of the ``labelled`` positions (default: every labelled item)."""
        self._refresh_cache(ctx)
        unlabelled = ctx.open_positions
        sample = ctx.rng.choice(unlabelled, size=min(self.n_random, len(unlabelled)), replace=False)
        lab = ctx.labelled_positions if labelled is None else labelled
        known = [p for p in lab.tolist() if p not in self._neighbours]
        if known:
            seeds = np.asarray(
                known
                if len(known) <= self.max_new_seeds
                else ctx.rng.choice(known, self.max_new_seeds, replace=False)
            )
            self._index(ctx, seeds)
        near = [self._neighbours[p] for p in lab.tolist() if p in self._neighbours]
        parts = [sample] + near
        pos = np.unique(np.concatenate(parts)) if parts else sample
        pos = pos[~ctx.labelled_mask[pos]]
        return pos if ctx.reserved is None else pos[~ctx.reserved[pos]]

    def _refresh_cache(self, ctx: QueryContext) -> None:
        emb = ctx.embedding
        key = (
            ctx.n_pool,
            emb.shape[1],
            str(ctx.pool_ids[0]),
            str(ctx.pool_ids[-1]),
            float(np.asarray(emb[0], dtype=np.float64).sum()),
        )
        if key != self._key:
            self._key = key
            self._neighbours = {}
            self._recent.clear()
            self._keys = None

    def _index(self, ctx: QueryContext, seeds: np.ndarray) -> None:
        from core.query.neighbours import pool_neighbours

        found = pool_neighbours(ctx.embedding, seeds, self.n_neighbors + 1)
        for s, row in zip(seeds.tolist(), found):
            self._neighbours[int(s)] = row[(row != s) & (row >= 0)]


class ColdStart(_Wrapper):
    """Use ``cold`` (the registry gives TypiClust) while fewer than ``min_labels`` items are
    labelled."""

    def __init__(self, strategy: QueryStrategy, cold: QueryStrategy, min_labels: int = 10) -> None:
        super().__init__(strategy)
        self.min_labels = min_labels
        self.cold = cold

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """Cold-start strategy below ``min_labels`` labels, the wrapped strategy from then on."""
        if int(ctx.labelled_mask.sum()) < self.min_labels:
            result = self.cold.query(ctx, n)
            reasons = [
                f"{r} (cold start: fewer than {self.min_labels} labels)" for r in result.reasons
            ]
            return replace(
                result, reasons=reasons, strategy=self.name, arms=[self.cold.name] * len(result.ids)
            )
        return self.strategy.query(ctx, n)


class NoModelFallback(_Wrapper):
    """Ask ``fallback`` (the registry gives ``discovery``) while ``strategy`` cannot run.

    A strategy that ranks by the model's probabilities has nothing to rank by before the first
    model, or while a single class is labelled; the exploring fallback looks for the classes
    nobody has labelled yet, and every reason says why it stood in.
    """

    def __init__(self, strategy: QueryStrategy, fallback: QueryStrategy) -> None:
        super().__init__(strategy)
        self.fallback = fallback

    def can_run(self, ctx: QueryContext) -> bool:
        return True

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """The wrapped strategy when it can run, else the fallback with explained reasons."""
        if self.strategy.can_run(ctx):
            return self.strategy.query(ctx, n)
        result = self.fallback.query(ctx, n)
        why = missing(ctx)
        return replace(
            result,
            reasons=[f"{r} ({why}: exploring first)" for r in result.reasons],
            strategy=self.name,
            arms=[self.fallback.name] * len(result.ids),
        )
