"""Cluster methods (``core.clusters``): one contract for every method, and linkage on a long tail."""

from __future__ import annotations

import numpy as np
import pytest

from core.clusters import (
    CLUSTER_METHOD_NAMES,
    ClusterResult,
    cluster_items,
    config_params,
    get_cluster_method,
)
from core.errors import ConfigError, DataError
from core.project import CLUSTER_METHODS, ProjectConfig, parse_project


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    """The linkage model trains with torch: one thread on the shared machine."""


# every method at its defaults, and the options that change how a method works
CASES = [pytest.param(m, {}, id=m) for m in CLUSTER_METHOD_NAMES] + [
    pytest.param("linkage", {"linkage_head": "gcn"}, id="linkage-gcn")]


def _blobs(seed=0, n_per=40):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [9, 0, 0, 0], [0, 9, 0, 0]], dtype=np.float32)
    x = np.concatenate([rng.normal(c, 0.7, (n_per, 4)) for c in centres]).astype(np.float32)
    y = np.repeat(np.array(["a", "b", "c"], dtype=object), n_per)
    labels = np.full(len(x), None, dtype=object)
    for cls in ("a", "b", "c"):
        labels[np.flatnonzero(y == cls)[:3]] = cls
    return x, y, labels


def _check_ids(result: ClusterResult, n: int) -> None:
    a = result.assignment
    assert a.shape == (n,) and a.dtype == np.int64  # one id per item
    assert a.min() == 0 and set(np.unique(a)) == set(range(result.n_clusters))  # no noise label


def test_the_registry_names_exactly_the_methods_the_project_file_accepts():
    assert CLUSTER_METHOD_NAMES == CLUSTER_METHODS == ("kmeans", "hdbscan", "linkage")


@pytest.mark.parametrize("method, params", CASES)
def test_deterministic_for_a_seed_with_one_id_per_item(method, params):
    x, _, labels = _blobs()
    first = cluster_items(x, method, labels, seed=3, **params)
    _check_ids(first, len(x))
    assert first.method == method and first.used == method and first.note == ""
    np.testing.assert_array_equal(first.assignment, cluster_items(x, method, labels, seed=3, **params).assignment)


@pytest.mark.parametrize("method, params", CASES)
def test_separated_blobs_are_never_mixed(method, params):
    x, y, labels = _blobs(seed=1)
    a = cluster_items(x, method, labels, seed=0, **params).assignment
    for cluster in np.unique(a):
        assert len(set(y[a == cluster])) == 1  # finer is allowed, mixing is not


@pytest.mark.parametrize("method, params", CASES)
@pytest.mark.parametrize("case", ["one class", "unlabelled"])
def test_one_class_or_no_labels_still_give_one_id_per_item(method, params, case):
    x, _, labels = _blobs()
    labels = np.where(labels != None, "a", None) if case == "one class" else None  # noqa: E711
    result = cluster_items(x, method, labels, seed=0, **params)
    _check_ids(result, len(x))
    if method == "linkage":  # nothing to learn from: an explicit, reported fallback
        assert result.used == "kmeans" and "fell back to kmeans" in result.note
        assert ("only class 'a'" if case == "one class" else "no item is labelled") in result.note
    else:
        assert result.used == method


@pytest.mark.parametrize("method, params", CASES)
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_tiny_pools(method, params, n):
    x, _, labels = _blobs()
    rows = np.arange(n) * 17  # spread over the blobs
    result = cluster_items(x[rows], method, labels[rows], seed=0, **params)
    _check_ids(result, n)
    if n == 1:
        assert "one item" in result.note
    elif method == "hdbscan" and n < 10:
        assert result.n_clusters == 1 and "too few" in result.note


@pytest.mark.parametrize("method, params", CASES)
def test_bad_input_is_a_data_error_naming_the_problem(method, params):
    with pytest.raises(DataError, match="no items"):
        cluster_items(np.zeros((0, 3)), method, **params)
    with pytest.raises(DataError, match="NaN"):
        cluster_items(np.array([[0.0, 1.0], [np.nan, 0.0]]), method, **params)
    with pytest.raises(DataError, match="2-D"):
        cluster_items(np.zeros(5), method, **params)
    with pytest.raises(DataError, match="one entry per item"):
        cluster_items(np.zeros((4, 2)), method, np.array(["a", None], dtype=object), **params)


def test_unknown_method_or_parameter_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown cluster method 'dbscan'.*kmeans, hdbscan, linkage"):
        get_cluster_method("dbscan")
    with pytest.raises(ConfigError, match="does not take \\['threshold'\\]"):
        get_cluster_method("kmeans", threshold=0.5)
    x, _, labels = _blobs()
    with pytest.raises(ConfigError, match="'gat' is not a linkage head; choose one of: mlp, gcn"):
        cluster_items(x, "linkage", labels, linkage_head="gat")


def test_project_file_clusters_section():
    base = {"data": {"kind": "demo", "demo": "digits-lt"}}
    assert ProjectConfig.model_validate(base).clusters.method == "kmeans"  # the default
    assert parse_project({**base, "clusters": {"method": "linkage"}}).clusters.method == "linkage"
    with pytest.raises(ConfigError, match="clusters.method: 'dbscan' is not allowed; choose one of: 'kmeans', 'hdbscan', 'linkage'"):
        parse_project({**base, "clusters": {"method": "dbscan"}})
    with pytest.raises(ConfigError, match="clusters.threshold"):
        parse_project({**base, "clusters": {"method": "linkage", "threshold": 1.5}})
    assert ProjectConfig.model_validate(base).clusters.linkage_head == "mlp"  # the default
    gcn = parse_project({**base, "clusters": {"method": "linkage", "linkage_head": "gcn"}})
    assert config_params(gcn.clusters)["linkage_head"] == "gcn"
    with pytest.raises(ConfigError, match="clusters.linkage_head"):
        parse_project({**base, "clusters": {"method": "linkage", "linkage_head": "gat"}})


# ---------------------------------------------------------------------------- long tail
def long_tailed_mixture(seed: int):
    """Five head classes of 300 items (8-D Gaussians, unit spread, 9 apart from the origin) and
    three rare classes of 12 tight items, each 5.5 from a head's centre: small, well separated.
    Labels: 3 per head class, 1 per rare class."""
    rng = np.random.default_rng(seed)
    heads = rng.normal(0, 1, (5, 8))
    heads = heads / np.linalg.norm(heads, axis=1, keepdims=True) * 9
    xs, ys = [], []
    for c, h in enumerate(heads):
        xs.append(rng.normal(h, 1.0, (300, 8)))
        ys += [f"head{c}"] * 300
    for j in range(3):
        u = rng.normal(0, 1, 8)
        xs.append(rng.normal(heads[j] + 5.5 * u / np.linalg.norm(u), 0.3, (12, 8)))
        ys += [f"rare{j}"] * 12
    x, y = np.concatenate(xs).astype(np.float32), np.array(ys, dtype=object)
    labels = np.full(len(x), None, dtype=object)
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))[:1 if cls.startswith("rare") else 3]
        labels[rows] = cls
    return x, y, labels


def own_cluster(assignment: np.ndarray, y: np.ndarray, cls: str) -> int | None:
    """The cluster holding at least 90 % of ``cls`` with ``cls`` its majority, else None."""
    main = np.bincount(assignment[y == cls]).argmax()
    inside = assignment == main
    if (assignment[y == cls] == main).mean() >= 0.9 and (y[inside] == cls).mean() > 0.5:
        return int(main)
    return None


@pytest.mark.parametrize("head", ["mlp", "gcn"])
def test_linkage_keeps_small_rare_classes_apart_where_kmeans_with_the_same_k_merges_one(head):
    x, y, labels = long_tailed_mixture(seed=0)
    linkage = cluster_items(x, "linkage", labels, seed=0, linkage_head=head)
    kept = [own_cluster(linkage.assignment, y, f"rare{j}") for j in range(3)]
    assert None not in kept and len(set(kept)) == 3, linkage.note
    assert linkage.n_clusters < 20  # not by cutting the head classes into crumbs
    kmeans = cluster_items(x, "kmeans", labels, seed=0, n_clusters=linkage.n_clusters)
    assert kmeans.n_clusters == linkage.n_clusters
    assert any(own_cluster(kmeans.assignment, y, f"rare{j}") is None for j in range(3))


def test_discovery_clusters_with_the_context_cluster_method():
    from core.query import QueryContext, get_strategy

    x, _, labels = long_tailed_mixture(seed=1)
    ids = np.array([f"i{i}" for i in range(len(x))], dtype=object)
    kw = dict(embedding=x, pool_ids=ids, labelled_mask=labels != None, labels=labels,  # noqa: E711
              rng=np.random.default_rng(0))
    for method in CLUSTER_METHOD_NAMES:
        ctx = QueryContext.without_model(cluster_method=method, **kw)
        result = get_strategy("discovery").query(ctx, 5)
        assert len(set(result.ids.tolist())) == 5 and not (labels[result.positions] != None).any()  # noqa: E711
    with pytest.raises(DataError, match="cluster_method.*'dbscan'"):
        QueryContext.without_model(cluster_method="dbscan", **kw)
