"""Cluster method names users write (``clusters.method`` in the project file) mapped to classes."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from core.clusters.base import ClusterMethod, ClusterResult
from core.clusters.density import HDBSCANClusters
from core.clusters.kmeans import KMeansClusters
from core.clusters.linkage import LinkageClusters
from core.errors import ConfigError

CLUSTER_METHODS: dict[str, type[ClusterMethod]] = {
    cls.name: cls for cls in (KMeansClusters, HDBSCANClusters, LinkageClusters)
}
CLUSTER_METHOD_NAMES: tuple[str, ...] = tuple(CLUSTER_METHODS)


def get_cluster_method(name: str, **params: Any) -> ClusterMethod:
    """Build cluster method ``name``; unknown names or parameters raise :class:`ConfigError`.
    Parameters a method does not take are refused, ``None`` values are left at the default."""
    if name not in CLUSTER_METHODS:
        raise ConfigError(f"clusters.method: unknown cluster method {name!r}; choose one of: "
                          + ", ".join(CLUSTER_METHOD_NAMES))
    cls = CLUSTER_METHODS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(k for k, v in params.items() if k not in accepted and v is not None)
    if unknown:
        raise ConfigError(f"clusters: method {name!r} does not take {unknown}; it takes "
                          + ", ".join(sorted(accepted)))
    return cls(**{k: v for k, v in params.items() if k in accepted and v is not None})


def cluster_items(embedding: np.ndarray, method: str = "kmeans", labels: np.ndarray | None = None,
                  *, seed: int = 0, **params: Any) -> ClusterResult:
    """One cluster id per row of ``embedding`` by ``method`` (``labels``: class or None per row,
    used by methods that learn from them)."""
    return get_cluster_method(method, seed=seed, **params).fit_predict(embedding, labels)


def config_params(config: Any) -> dict[str, Any]:
    """The settings of a ``ClustersConfig`` that its method takes (the others are left out)."""
    accepted = set(inspect.signature(CLUSTER_METHODS[config.method].__init__).parameters)
    return {k: v for k, v in config.model_dump().items()
            if k != "method" and k in accepted and v is not None}
