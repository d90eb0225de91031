"""The query contract: what a strategy may look at (:class:`QueryContext`), what it returns
(:class:`QueryResult`) and the base class every strategy derives from (:class:`QueryStrategy`).

Rules every strategy follows (checked by one contract test over the registry):

* it returns ``min(n, number of unlabelled items)`` **distinct, unlabelled** ids: asking for more
  than remain returns all that remain; an empty pool raises :class:`~core.errors.EmptyPoolError`;
* each id comes with a score (larger = asked about first) and a short human-readable reason;
* the same context (including the ``rng`` seed) gives the same answer.

Fewer than two labelled classes (or no model yet, see :meth:`QueryContext.without_model`) is
**handled, not an error**, for every strategy built by :func:`core.query.get_strategy`: the
registry wraps strategies that need a model's probabilities so that they hand over to the
``discovery`` strategy (whose job is to find the classes nobody has labelled yet) and say so in
the reasons. A bare strategy asked to run without what it needs raises
:class:`~core.errors.ModelError`.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from core.errors import ConfigError, DataError, EmptyPoolError, ModelError

ROW_SUM_TOLERANCE = 1e-3

__all__ = [
    "Picks",
    "QueryContext",
    "QueryResult",
    "QueryStrategy",
    "missing",
    "pct",
    "top_k",
]


@dataclass(frozen=True, eq=False)
class QueryContext:
    """Everything a strategy may look at, read-only. Rows of every array follow pool order.

    Validated on construction: shapes must agree, ``proba`` must be finite with rows summing to 1
    (within 1e-3), and every labelled row must carry a label.
    """

    proba: np.ndarray  # (n_pool, k) calibrated probabilities; k may be 0 before any model exists
    classes: tuple[str, ...]  # column names of proba
    embedding: np.ndarray  # (n_pool, d)
    pool_ids: np.ndarray  # (n_pool,) every item id
    labelled_mask: np.ndarray  # (n_pool,) bool
    labels: np.ndarray  # (n_pool,) object: class name or None
    rng: np.random.Generator
    rare_classes: tuple[str, ...] = ()
    target_class: str | None = None
    requester: str = ""  # who asks (a dashboard session); learning strategies credit per requester
    # (n_pool,) bool or None: unlabelled items queued for someone else, not offered again while
    # other items remain (they still count as unlabelled pool items for coverage and clustering)
    reserved: np.ndarray | None = None
    # Open suspect labels of the last round, most suspicious first (dicts with id, label,
    # suggested, score, reason): what the ``suspects`` review strategy lists.
    suspects: tuple = ()
    # The project's cluster method (``clusters.method``): what the cluster-based strategies
    # (discovery, typiclust) cluster with; ``kmeans`` keeps their own label-scaled k-means.
    cluster_method: str = "kmeans"
    # Seed of the pool's own k-means clustering (``discovery``), or None to draw it from ``rng``.
    # With a seed, the requests over one embedding and label state share one clustering
    # (:mod:`core.query.pool_clusters`): the dashboard's tabs.
    cluster_seed: int | None = None

    def __post_init__(self) -> None:
        proba = np.asarray(self.proba)
        n = len(self.pool_ids)
        if proba.ndim != 2 or proba.shape[0] != n:
            raise DataError(
                f"QueryContext.proba must have shape (n_pool={n}, k), got {proba.shape}"
            )
        if proba.shape[1] != len(self.classes):
            raise DataError(
                f"QueryContext.proba has {proba.shape[1]} columns but {len(self.classes)} class "
                "names were given; pass the model's classes_ as classes"
            )
        emb = np.asarray(self.embedding)
        if emb.ndim != 2 or emb.shape[0] != n:
            raise DataError(
                f"QueryContext.embedding must have shape (n_pool={n}, d), got {emb.shape}"
            )
        for name in ("labelled_mask", "labels"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (n,):
                raise DataError(f"QueryContext.{name} must have shape ({n},), got {arr.shape}")
        object.__setattr__(self, "labelled_mask", np.asarray(self.labelled_mask, dtype=bool))
        if self.reserved is not None:
            reserved = np.asarray(self.reserved, dtype=bool)
            if reserved.shape != (n,):
                raise DataError(f"QueryContext.reserved must have shape ({n},), got {reserved.shape}")
            object.__setattr__(self, "reserved", reserved)
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "rare_classes", tuple(str(c) for c in self.rare_classes))
        # Answers that depend on the pool fields only (class counts), shared with the copies
        # ``for_request`` makes: strategies ask for them many times per query.
        object.__setattr__(self, "_memo", {})
        if proba.shape[1]:
            _check_proba(proba, self.pool_ids)
        if not np.all(np.isfinite(emb)):
            row = int(np.flatnonzero(~np.isfinite(emb).all(axis=1))[0])
            raise DataError(
                f"QueryContext.embedding has NaN or infinite values (first at item "
                f"{self.pool_ids[row]!r}); re-encode the data or check its features"
            )
        if self.cluster_seed is not None and (isinstance(self.cluster_seed, bool) or
                                              not isinstance(self.cluster_seed, (int, np.integer))):
            raise DataError(f"QueryContext.cluster_seed must be an integer or None, got "
                            f"{self.cluster_seed!r}")
        from core.clusters.registry import CLUSTER_METHOD_NAMES

        if self.cluster_method not in CLUSTER_METHOD_NAMES:
            raise DataError(f"QueryContext.cluster_method: unknown cluster method "
                            f"{self.cluster_method!r}; use one of {', '.join(CLUSTER_METHOD_NAMES)}")
        lab = np.asarray(self.labels, dtype=object)[self.labelled_mask]
        if np.equal(lab, None).any():  # elementwise on the object array, no Python loop
            raise DataError("QueryContext.labels: a row marked labelled has label None")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def without_model(
        cls,
        embedding: np.ndarray,
        pool_ids: np.ndarray,
        labelled_mask: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator,
        **kwargs: Any,
    ) -> QueryContext:
        """A context for the time before any model exists (zero probability columns)."""
        n = len(pool_ids)
        return cls(
            proba=np.zeros((n, 0)),
            classes=(),
            embedding=embedding,
            pool_ids=pool_ids,
            labelled_mask=labelled_mask,
            labels=labels,
            rng=rng,
            **kwargs,
        )

    # Fields that describe one request rather than the pool: ``for_request`` may change them.
    REQUEST_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"rng", "target_class", "requester", "reserved", "suspects"})

    def for_request(self, **changes: Any) -> QueryContext:
        """This context with per-request fields changed (``REQUEST_FIELDS``), without checking
        the pool-sized arrays again: several requests over one model and one label state share
        one validated context (``dataclasses.replace`` would validate the whole pool anew)."""
        unknown = sorted(set(changes) - self.REQUEST_FIELDS)
        if unknown:
            raise ConfigError(f"QueryContext.for_request: {unknown} are not per-request fields; "
                              f"use one of {sorted(self.REQUEST_FIELDS)} (or build a new context)")
        new = copy.copy(self)
        for name, value in changes.items():
            if name == "reserved" and value is not None:
                value = np.asarray(value, dtype=bool)
                if value.shape != (self.n_pool,):
                    raise DataError(f"QueryContext.reserved must have shape ({self.n_pool},), "
                                    f"got {value.shape}")
            object.__setattr__(new, name, value)
        return new

    # ------------------------------------------------------------------ views
    @property
    def n_pool(self) -> int:
        return len(self.pool_ids)

    @property
    def has_model(self) -> bool:
        return self.proba.shape[1] > 0

    @property
    def labelled_positions(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_mask)

    @property
    def unlabelled_positions(self) -> np.ndarray:
        return np.flatnonzero(~self.labelled_mask)

    @property
    def open_positions(self) -> np.ndarray:
        """Unlabelled positions a strategy may pick: the unreserved ones, or every unlabelled
        one when someone else has reserved them all."""
        if self.reserved is None:
            return self.unlabelled_positions
        open_ = np.flatnonzero(~self.labelled_mask & ~self.reserved)
        return open_ if open_.size else self.unlabelled_positions

    def class_counts(self) -> dict[str, int]:
        """Labelled items per class name (only classes with at least one label). Counted once
        per context (a context is read-only); each call returns a new dict."""
        counts = self._memo.get("class_counts")
        if counts is None:
            _, codes, names = self.labelled_classes()
            numbers = np.bincount(codes, minlength=len(names))
            counts = self._memo["class_counts"] = {a: int(b) for a, b in zip(names, numbers)}
        return dict(counts)

    def labelled_classes(self) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """``(labelled positions, class of each as an index into names, names)`` with the class
        names sorted; worked out once per context and shared with its ``for_request`` copies
        (the arrays are read-only)."""
        memo = self._memo.get("labelled_classes")
        if memo is None:
            positions = self.labelled_positions
            names, codes = np.unique(np.asarray(self.labels, dtype=object)[positions].astype(str),
                                     return_inverse=True)
            codes = codes.reshape(-1)
            positions.setflags(write=False)
            codes.setflags(write=False)
            memo = self._memo["labelled_classes"] = (positions, codes,
                                                     tuple(str(a) for a in names))
        return memo

    def source_rows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(embedding, rows)``: the whole pool's embedding this context's rows come from and the
        rows of ``positions`` in it (this context's own for a context that is no subset)."""
        source = self._memo.get("source_rows")
        if source is None:
            return self.embedding, np.asarray(positions, dtype=np.int64)
        return source[0], source[1][positions]

    def subset(self, positions: np.ndarray, keep_counts: bool = False) -> QueryContext:
        """The same context restricted to ``positions`` (used by the sub-pool wrapper). A subset
        holding every labelled item keeps the class counts; so does one made with
        ``keep_counts``, whose labelled rows are a sample standing for all of them (the sub-pool
        wrapper's above ``max_labelled`` labels): strategies then still balance by the true
        counts."""
        sub = QueryContext(
            proba=self.proba[positions],
            classes=self.classes,
            embedding=self.embedding[positions],
            pool_ids=self.pool_ids[positions],
            labelled_mask=self.labelled_mask[positions],
            labels=np.asarray(self.labels, dtype=object)[positions],
            rng=self.rng,
            rare_classes=self.rare_classes,
            target_class=self.target_class,
            requester=self.requester,
            reserved=None if self.reserved is None else self.reserved[positions],
            cluster_method=self.cluster_method,
            cluster_seed=self.cluster_seed,
        )
        source, rows = self.source_rows(np.asarray(positions))
        sub._memo["source_rows"] = (source, rows)
        every_label = (np.count_nonzero(sub.labelled_mask) == np.count_nonzero(self.labelled_mask)
                       and len(np.unique(positions)) == len(positions))  # every labelled row, once
        if keep_counts or every_label:
            self.class_counts()  # counted once for this context and every subset of it
            sub._memo["class_counts"] = self._memo["class_counts"]
        return sub


def _check_proba(proba: np.ndarray, pool_ids: np.ndarray) -> None:
    finite = np.isfinite(proba).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ModelError(
            f"QueryContext.proba has NaN or infinite values ({int((~finite).sum())} rows, first "
            f"at item {pool_ids[row]!r}); the model produced invalid probabilities - check the "
            "features for NaN and retrain"
        )
    if (proba < -ROW_SUM_TOLERANCE).any():
        raise ModelError("QueryContext.proba has negative values; pass probabilities, not logits")
    sums = proba.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ModelError(
            f"QueryContext.proba rows must sum to 1; row of item {pool_ids[row]!r} sums to "
            f"{sums[row]:.4g} ({int(bad.sum())} such rows). Pass calibrated probabilities "
            "(apply softmax to logits)"
        )


@dataclass(frozen=True)
class QueryResult:
    """The items to ask about next, best first, with a score and a reason each."""

    ids: np.ndarray
    scores: np.ndarray
    reasons: list[str]
    strategy: str = ""  # which strategy (or bandit arm) chose them
    arms: list[str] = field(default_factory=list)  # per item, for composite strategies
    positions: np.ndarray | None = None  # rows of the ids in the context's pool order

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.scores) == len(self.reasons)):
            raise ValueError("QueryResult: ids, scores and reasons must have the same length")

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Picks:
    """What a strategy's ``_select`` returns: pool positions, scores and reasons, best first."""

    positions: np.ndarray
    scores: np.ndarray
    reasons: list[str]
    arms: list[str] | None = None

    def __post_init__(self) -> None:
        self.positions = np.asarray(self.positions, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)


class QueryStrategy(ABC):
    """Base class: validates the request, handles the empty pool and the no-model case.

    Subclasses implement :meth:`_select` on the unlabelled ``candidates`` (pool positions) and set
    ``needs_model`` when they read ``ctx.proba``. Like scikit-learn estimators, ``__init__`` only
    stores its arguments.
    """

    name: ClassVar[str] = "base"
    needs_model: ClassVar[bool] = True

    def query(self, ctx: QueryContext, n: int) -> QueryResult:
        """Return up to ``n`` distinct unlabelled ids (all that remain if fewer), best first."""
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ConfigError(
                f"{self.name}: the batch size n must be a positive integer, got {n!r}"
            )
        candidates = ctx.open_positions
        if candidates.size == 0:
            raise EmptyPoolError(
                f"{self.name}: every one of the {ctx.n_pool} items is already labelled; "
                "add data or retract labels to continue"
            )
        n = int(min(n, candidates.size))
        if not self.can_run(ctx):
            raise ModelError(
                f"{self.name}: needs a trained model and labels of two classes ({missing(ctx)}); "
                "strategies built by core.query.get_strategy explore with 'discovery' until then"
            )
        return self._finish(ctx, self._select(ctx, candidates, n), n)

    def can_run(self, ctx: QueryContext) -> bool:
        """Whether this strategy has what it needs in ``ctx`` (a usable model, by default)."""
        return not self.needs_model or _model_usable(ctx)

    @abstractmethod
    def _select(self, ctx: QueryContext, candidates: np.ndarray, n: int) -> Picks:
        """Choose exactly ``n`` distinct positions from ``candidates``."""

    def _finish(self, ctx: QueryContext, picks: Picks, n: int) -> QueryResult:
        pos = picks.positions
        if len(pos) != n or len(np.unique(pos)) != n or ctx.labelled_mask[pos].any():
            raise RuntimeError(f"{self.name}: internal error, selection broke the query contract")
        return QueryResult(
            ids=np.asarray(ctx.pool_ids, dtype=object)[pos],
            scores=picks.scores,
            reasons=list(picks.reasons),
            strategy=self.name,
            arms=list(picks.arms) if picks.arms is not None else [self.name] * n,
            positions=pos,
        )

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (scikit-learn style)."""
        import inspect

        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def _model_usable(ctx: QueryContext) -> bool:
    return ctx.proba.shape[1] >= 2 and len(ctx.class_counts()) >= 2


def missing(ctx: QueryContext) -> str:
    """Why a model-based strategy cannot run on ``ctx``, in a few words."""
    if not ctx.has_model:
        return "no model yet"
    return f"only {len(ctx.class_counts())} class labelled"


def top_k(scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``n`` largest scores, best first, ties broken at random by ``rng``."""
    scores = np.asarray(scores, dtype=np.float64)
    m = scores.size
    n = min(n, m)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    jitter = rng.random(m)
    if m > 4 * n:
        threshold = np.partition(scores, m - n)[m - n]
        keep = np.flatnonzero(scores >= threshold)
    else:
        keep = np.arange(m)
    order = np.lexsort((jitter[keep], -scores[keep]))[:n]
    return keep[order]


def pct(p: float) -> str:
    """A probability as a short percentage: 0.512 -> '51%'."""
    return f"{100 * float(p):.0f}%"
