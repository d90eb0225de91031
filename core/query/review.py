"""``suspects``: the review queue. Not a pool strategy: it returns *labelled* items whose labels
the model doubts (:mod:`core.quality.suspects`), most suspicious first, each with its reason
("labelled 7 by ann; model gives 3 at 0.94 out of fold"). The session hands it the round's open
suspects in ``QueryContext.suspects``; confirmed or relabelled items have already left them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.errors import ConfigError
from core.query.base import Picks, QueryContext, QueryResult, QueryStrategy

__all__ = ["Suspects"]


class Suspects(QueryStrategy):
    """Labelled items to review, most suspicious first (empty when nothing is suspect)."""

    name: ClassVar[str] = "suspects"
    needs_model: ClassVar[bool] = False
    reviews_labels: ClassVar[bool] = True  # returns labelled items, unlike pool strategies

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """The first ``n`` open suspects of ``ctx.suspects`` that are in the pool."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"{self.name}: the batch size n must be a positive integer, got {n!r}")
        index = {str(item): row for row, item in enumerate(np.asarray(ctx.pool_ids).tolist())}
        chosen = [s for s in ctx.suspects if str(s["id"]) in index][: int(n)]
        pos = np.array([index[str(s["id"])] for s in chosen], dtype=np.int64)
        return QueryResult(
            ids=np.asarray([str(s["id"]) for s in chosen], dtype=object),
            scores=np.array([float(s["score"]) for s in chosen], dtype=np.float64),
            reasons=[str(s.get("reason") or "suspect label") for s in chosen],
            strategy=self.name, arms=[self.name] * len(chosen), positions=pos)

    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:  # pragma: no cover
        raise NotImplementedError("suspects overrides query()")
