"""Predicted clusters of the embedding: methods behind one interface, and their summaries.

``cluster_items(embedding, method, labels, seed=...)`` runs a registered method
(:data:`CLUSTER_METHODS`: ``kmeans``, ``hdbscan``, ``linkage``) and returns a
:class:`ClusterResult`; :func:`summarise_clusters` describes a clustering against the labels;
:func:`cluster_outlines` gives each cluster's outline on the 2-D map.
``cluster_embedding`` (k-means ids) keeps its old import path.
"""

from core.clusters.base import ClusterMethod, ClusterResult
from core.clusters.kmeans import cluster_embedding
from core.clusters.outlines import Outline, cluster_outlines
from core.clusters.registry import (
    CLUSTER_METHOD_NAMES,
    CLUSTER_METHODS,
    cluster_items,
    config_params,
    get_cluster_method,
)
from core.clusters.summary import Clusters, default_cluster_count, summarise_clusters

__all__ = ["CLUSTER_METHODS", "CLUSTER_METHOD_NAMES", "ClusterMethod", "ClusterResult", "Clusters",
           "Outline", "cluster_embedding", "cluster_items", "cluster_outlines", "config_params",
           "default_cluster_count", "get_cluster_method", "summarise_clusters"]
