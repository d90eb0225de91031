"""Strategy names users write (``core.project.STRATEGIES``) mapped to strategy classes.

``get_strategy(name, **params)`` composes a ready-to-use strategy: strategies that need a model
are wrapped in :class:`~core.query.wrappers.NoModelFallback` (``discovery`` until a model
exists), ``auto`` gets its arms built here and a :class:`~core.query.wrappers.ColdStart`
(TypiClust below ``cold_start`` labels), and expensive strategies come wrapped in
:class:`~core.query.wrappers.KNNSubPool` so they stay fast on pools of 10^5-10^6 items. The
strategies themselves never reach back into this module.
"""

from __future__ import annotations

import inspect
from typing import Any

from core.clusters.registry import CLUSTER_METHOD_NAMES
from core.errors import ConfigError
from core.query.auto import DEFAULT_ARMS, Auto
from core.query.base import QueryStrategy
from core.query.review import Suspects
from core.query.strategies import (
    ClassBalancedMargin,
    Committee,
    Discovery,
    EntropySampling,
    Galaxy,
    LeastConfidence,
    MarginSampling,
    MinorityPositives,
    RandomSampling,
    TargetClass,
    TypiClust,
)
from core.query.wrappers import MAX_LABELLED, ColdStart, KNNSubPool, NoModelFallback

STRATEGY_CLASSES: dict[str, type[QueryStrategy]] = {
    cls.name: cls
    for cls in (
        Auto,
        RandomSampling,
        LeastConfidence,
        MarginSampling,
        EntropySampling,
        Committee,
        ClassBalancedMargin,
        Galaxy,
        Discovery,
        TargetClass,
        TypiClust,
        Suspects,
    )
}
STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGY_CLASSES)
# Strategies that list labelled items to review instead of picking from the unlabelled pool.
REVIEW_STRATEGIES = frozenset(n for n, c in STRATEGY_CLASSES.items()
                              if getattr(c, "reviews_labels", False))
# What ``auto`` may use as arms: every strategy but itself, plus internal helpers.
ARM_CLASSES: dict[str, type[QueryStrategy]] = {
    **{k: v for k, v in STRATEGY_CLASSES.items() if k not in ("auto", "target_class", "suspects")},
    MinorityPositives.name: MinorityPositives,
}

# Strategies whose cost grows faster than linearly in the pool: run on a kNN sub-pool when large.
SUBPOOLED = frozenset({"auto", "committee", "galaxy", "discovery", "typiclust", "target_class"})
_SUBPOOL_PARAMS = ("max_pool", "n_random", "n_neighbors_subpool", "max_labelled")
# What ``auto``'s discovery arm clusters with ("project": the project's ``clusters.method``).
DISCOVERY_CLUSTERS = "project"

__all__ = ["ARM_CLASSES", "REVIEW_STRATEGIES", "STRATEGY_CLASSES", "STRATEGY_NAMES", "SUBPOOLED",
           "get_strategy"]


def with_fallback(strategy: QueryStrategy) -> Any:
    """``strategy``, handing over to ``discovery`` while it lacks a model (if it needs one)."""
    if strategy.needs_model:
        return NoModelFallback(strategy, Discovery())
    return strategy


def build_arms(names: tuple[str, ...] | list[str],
               discovery_clusters: str = DISCOVERY_CLUSTERS,
               discovery_compactness: bool = False) -> dict[str, Any]:
    """The arms of ``auto`` by name, each ready to run with or without a model.

    The ``discovery`` arm clusters with ``discovery_clusters`` (a cluster method name, or
    ``"project"``: the project's ``clusters.method``) and, with ``discovery_compactness``, also
    prefers compact clusters (``Discovery(compactness=True)``)."""
    unknown = [a for a in names if a not in ARM_CLASSES]
    if unknown:
        raise ConfigError(f"auto: unknown arm(s) {unknown}; choose from {sorted(ARM_CLASSES)}")
    if discovery_clusters != "project" and discovery_clusters not in CLUSTER_METHOD_NAMES:
        raise ConfigError(f"auto: unknown discovery_clusters {discovery_clusters!r}; use "
                          f"'project' or one of {', '.join(CLUSTER_METHOD_NAMES)}")
    method = None if discovery_clusters == "project" else discovery_clusters
    return {a: with_fallback(Discovery(cluster_method=method, compactness=discovery_compactness)
                             if a == "discovery"
                             else ARM_CLASSES[a]()) for a in names}


def get_strategy(name: str, **params: Any) -> Any:
    """Build the strategy called ``name``.

    ``params`` go to the strategy's constructor, except: ``cold_start`` (``auto`` only; default 10,
    0 disables TypiClust), ``arms`` (``auto`` only: arm names, default ``DEFAULT_ARMS``),
    ``discovery_clusters`` (``auto`` only: the cluster method of its ``discovery`` arm, default
    ``DISCOVERY_CLUSTERS``; ``"project"`` follows ``clusters.method``), ``discovery_compactness``
    (``auto`` only: its ``discovery`` arm also prefers compact clusters; default off), and
    ``max_pool`` / ``n_random`` / ``n_neighbors_subpool`` / ``max_labelled`` for the sub-pool
    wrapper (``max_pool=None`` disables it). Unknown names or parameters raise
    :class:`~core.errors.ConfigError`.
    """
    if name not in STRATEGY_CLASSES:
        raise ConfigError(
            f"query.strategy: unknown strategy {name!r}; choose one of: "
            + ", ".join(STRATEGY_NAMES)
        )
    sub = {k: params.pop(k) for k in _SUBPOOL_PARAMS if k in params}
    cold_start = params.pop("cold_start", 10)
    discovery_clusters = (params.pop("discovery_clusters", DISCOVERY_CLUSTERS) if name == "auto"
                          else DISCOVERY_CLUSTERS)
    compactness = bool(params.pop("discovery_compactness", False)) if name == "auto" else False
    cls = STRATEGY_CLASSES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(
            f"strategy {name!r}: unknown parameter(s) {unknown}; it accepts "
            + (", ".join(sorted(accepted)) or "no parameters")
        )
    if name == "auto":
        params["arms"] = build_arms(tuple(params.get("arms", DEFAULT_ARMS)), discovery_clusters,
                                    compactness)
    strategy: Any = with_fallback(cls(**params))
    if name == "auto" and cold_start:
        strategy = ColdStart(strategy, TypiClust(), min_labels=int(cold_start))
    max_pool = sub.get("max_pool", 20_000)
    if name in SUBPOOLED and max_pool is not None:
        strategy = KNNSubPool(
            strategy,
            max_pool=int(max_pool),
            n_random=int(sub.get("n_random", 10_000)),
            n_neighbors=int(sub.get("n_neighbors_subpool", 20)),
            max_labelled=int(sub.get("max_labelled", MAX_LABELLED)),
        )
    return strategy
