"""Query strategies: one contract test over the whole registry, then strategy-specific tests."""

from __future__ import annotations

import dataclasses
import json
import typing

import numpy as np
import pytest

from core.clusters import CLUSTER_METHOD_NAMES
from core.errors import ConfigError, DataError, EmptyPoolError, ModelError
from core.project import STRATEGIES, QueryConfig
from core.query import QueryContext, get_strategy
from core.query.base import Picks, QueryStrategy
from core.query.auto import Auto, label_reward
from core.query.measures import entropy, least_confidence, margin, vote_entropy
from core.query.registry import (
    ARM_CLASSES,
    REVIEW_STRATEGIES,
    STRATEGY_NAMES,
    SUBPOOLED,
    build_arms,
)
from core.query.wrappers import ColdStart, KNNSubPool, balanced_quota

SIZES = (120, 60, 30, 12, 8)  # a long tail of five well separated blobs


def blobs(seed: int = 0, sizes=SIZES, d: int = 4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (len(sizes), d))
    x = np.concatenate([rng.normal(c, 1.0, (m, d)) for c, m in zip(centres, sizes)]).astype(
        np.float32
    )
    y = np.concatenate([[f"c{i}"] * m for i, m in enumerate(sizes)]).astype(object)
    return x, y


def softmax_proba(x: np.ndarray, y: np.ndarray, labelled: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Probabilities of a nearest-centroid model fitted on the labelled rows."""
    classes = tuple(sorted(set(y[labelled].tolist())))
    centres = np.stack([x[labelled & (y == c)].mean(axis=0) for c in classes])
    logits = -((x[:, None, :] - centres[None]) ** 2).sum(axis=2) / 4.0
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), classes


def make_ctx(labelled_rows, seed: int = 0, with_model: bool = True, target: str | None = "c1"):
    x, y = blobs()
    labelled = np.zeros(len(y), bool)
    labelled[list(labelled_rows)] = True
    labels = np.where(labelled, y, None).astype(object)
    ids = np.array([f"item-{i:03d}" for i in range(len(y))], dtype=object)
    kw = {
        "embedding": x,
        "pool_ids": ids,
        "labelled_mask": labelled,
        "labels": labels,
        "rng": np.random.default_rng(seed),
        "target_class": target,
        "rare_classes": ("c4",),
    }
    if with_model and len(set(y[labelled].tolist())) >= 2:
        proba, classes = softmax_proba(x, y, labelled)
        return QueryContext(proba=proba, classes=classes, **kw)
    return QueryContext.without_model(**kw)


# rows of c0 (0..119), c1 (120..179) and c2 (180..209) are labelled; c3 and c4 are not
LABELLED = list(range(0, 120, 12)) + list(range(120, 180, 15)) + [180, 190]


ARM_ONLY = sorted(set(ARM_CLASSES) - set(STRATEGY_NAMES))  # arms of auto users cannot name


# discovery with each cluster method, and auto with its discovery arm on each ("name:method")
CLUSTER_VARIANTS = [f"discovery:{m}" for m in CLUSTER_METHOD_NAMES] + [
    f"auto:{m}" for m in ("project", *CLUSTER_METHOD_NAMES)]


def strategy(name: str, subpool: bool = False):
    if name in ARM_ONLY:  # built the way auto builds its arms
        return build_arms((name,))[name]
    params = {"max_pool": 40, "n_random": 30} if subpool else {}
    if ":" in name:
        name, method = name.split(":")
        params["cluster_method" if name == "discovery" else "discovery_clusters"] = method
    if name == "auto":
        params["cold_start"] = 5
    return get_strategy(name, **params)


# Pool strategies pick unlabelled items; review strategies (suspects) list labelled ones and have
# a contract of their own (tests/core/test_quality.py).
CASES = (
    [(n, False) for n in STRATEGY_NAMES if n not in REVIEW_STRATEGIES]
    + [(n, False) for n in ARM_ONLY]
    + [(n, True) for n in sorted(SUBPOOLED)]
    + [(n, False) for n in CLUSTER_VARIANTS]
)


def test_registry_matches_the_names_users_write():
    assert STRATEGY_NAMES == STRATEGIES
    assert set(typing.get_args(QueryConfig.model_fields["strategy"].annotation)) == set(STRATEGIES)


@pytest.mark.parametrize(
    ("name", "subpool"), CASES, ids=[f"{n}{'-subpool' if s else ''}" for n, s in CASES]
)
def test_strategy_contract(name, subpool):
    ctx = make_ctx(LABELLED)
    result = strategy(name, subpool).query(ctx, 7)
    # n distinct unlabelled ids from the pool, with a finite score and a reason each
    assert len(result.ids) == 7 and len(set(result.ids.tolist())) == 7
    rows = np.array([int(i.split("-")[1]) for i in result.ids])
    assert not ctx.labelled_mask[rows].any()
    assert np.isfinite(result.scores).all() and len(result.scores) == 7
    assert all(isinstance(r, str) and r.strip() for r in result.reasons)
    assert result.positions is not None and (ctx.pool_ids[result.positions] == result.ids).all()
    # deterministic for a seed
    again = strategy(name, subpool).query(make_ctx(LABELLED), 7)
    assert again.ids.tolist() == result.ids.tolist()
    # asking for more than remain returns all that remain
    almost = [i for i in range(sum(SIZES)) if i not in (3, 130, 200, 215)]
    rest = strategy(name, subpool).query(make_ctx(almost), 10)
    assert sorted(rest.ids.tolist()) == ["item-003", "item-130", "item-200", "item-215"]
    # an empty pool is a clear error
    with pytest.raises(EmptyPoolError, match="already labelled"):
        strategy(name, subpool).query(make_ctx(range(sum(SIZES))), 3)
    # without a model (nothing labelled, one class, or several classes but no model yet) every
    # strategy takes the documented no-model path: valid ids, explained, no made-up probabilities
    no_model = (
        make_ctx(range(0, 120, 10)),
        make_ctx([], with_model=False),
        make_ctx(LABELLED, with_model=False),
    )
    for ctx1 in no_model:
        res = strategy(name, subpool).query(ctx1, 5)
        rows = np.array([int(i.split("-")[1]) for i in res.ids])
        assert len(set(rows.tolist())) == 5 and not ctx1.labelled_mask[rows].any()
        assert all(r.strip() for r in res.reasons)
        assert not any("%" in r for r in res.reasons), res.reasons  # no invented probabilities
    with pytest.raises(ConfigError, match="positive integer"):
        strategy(name, subpool).query(ctx, 0)
    # items queued for another expert are not offered again while others remain
    reserved = np.zeros(ctx.n_pool, bool)
    reserved[result.positions] = True
    held = strategy(name, subpool).query(dataclasses.replace(make_ctx(LABELLED), reserved=reserved), 7)
    assert not reserved[held.positions].any()


def test_nan_and_unnormalised_probabilities_are_refused():
    ctx = make_ctx(LABELLED)
    bad = ctx.proba.copy()
    bad[5, 0] = np.nan
    fields = {
        "classes": ctx.classes,
        "embedding": ctx.embedding,
        "pool_ids": ctx.pool_ids,
        "labelled_mask": ctx.labelled_mask,
        "labels": ctx.labels,
        "rng": np.random.default_rng(0),
    }
    with pytest.raises(ModelError, match="NaN.*item-005"):
        QueryContext(proba=bad, **fields)
    with pytest.raises(ModelError, match="sum to 1"):
        QueryContext(proba=ctx.proba * 2, **fields)
    with pytest.raises(ModelError, match="negative"):
        QueryContext(proba=ctx.proba - 0.5, **fields)
    with pytest.raises(DataError, match="columns"):
        QueryContext(proba=ctx.proba[:, :2], **fields)
    emb = ctx.embedding.copy()
    emb[3, 1] = np.inf
    with pytest.raises(DataError, match="embedding.*item-003"):
        QueryContext(proba=ctx.proba, **{**fields, "embedding": emb})


def test_unknown_strategy_and_parameter_are_config_errors():
    with pytest.raises(ConfigError, match="unknown strategy 'nope'.*margin"):
        get_strategy("nope")
    with pytest.raises(ConfigError, match="unknown parameter.*'bogus'"):
        get_strategy("margin", bogus=1)
    with pytest.raises(ConfigError, match="unknown arm"):
        get_strategy("auto", arms=("margin", "nope"))
    with pytest.raises(ConfigError, match="no target class"):
        get_strategy("target_class").query(make_ctx(LABELLED, target=None), 3)


def test_measures():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(least_confidence(p), [0.0, 0.5, 2 / 3])
    np.testing.assert_allclose(margin(p), [1.0, 0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(
        entropy(p), [0.0, -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2)), np.log(3)]
    )
    votes = np.array([[0, 0, 1], [0, 1, 2], [0, 1, 0]])  # 3 members, 3 items
    np.testing.assert_allclose(
        vote_entropy(votes, 3), [0.0, entropy(np.array([[1 / 3, 2 / 3]]))[0], np.log(3)]
    )


def test_discovery_finds_the_unlabelled_cluster():
    _x, y = blobs()
    ctx = make_ctx(LABELLED)  # c3 and c4 have no label
    res = get_strategy("discovery").query(ctx, 2)
    rows = [int(i.split("-")[1]) for i in res.ids]
    assert {y[r] for r in rows} == {"c3", "c4"}
    assert all("no labelled item in this cluster" in r for r in res.reasons)
    # uncertainty sampling, by contrast, need not look there at all
    assert get_strategy("random").query(make_ctx(LABELLED), 2).ids.tolist() != res.ids.tolist()


def test_discovery_still_finds_unlabelled_groups_after_many_labels():
    # 150 tight groups, 140 of them labelled once: with far more labels than the old cap of 100
    # clusters, discovery must still cluster finely enough to see the 10 unlabelled groups.
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 10, (150, 8)).astype(np.float32)
    group = np.repeat(np.arange(150), 20)
    x = centres[group] + rng.normal(0, 0.3, (len(group), 8)).astype(np.float32)
    labelled = np.zeros(len(group), bool)
    labelled[np.arange(140) * 20] = True
    labels = np.where(labelled, group.astype(str), None).astype(object)
    ids = np.array([f"g-{i}" for i in range(len(group))], dtype=object)
    ctx = QueryContext(
        np.zeros((len(group), 0)), (), x, ids, labelled, labels, np.random.default_rng(0)
    )
    res = get_strategy("discovery").query(ctx, 10)
    assert sorted(set(group[res.positions].tolist())) == list(range(140, 150))
    assert all("no labelled item in this cluster" in r for r in res.reasons)


def test_discovery_prefers_compact_clusters_by_their_pooled_spread():
    from core.query.strategies import Discovery

    # Three clusters of 20 candidates, equal doubt: members 0.5, 1 and 4 from their centres.
    assign = np.repeat(np.arange(3), 20)
    d_centre = np.repeat([0.5, 1.0, 4.0], 20)
    sizes, doubt = np.full(3, 20), np.ones(3)
    pooled = Discovery(compactness=True)._cluster_weight(doubt, sizes, d_centre, assign)
    plain = Discovery()._cluster_weight(doubt, sizes, d_centre, assign)
    assert np.allclose(plain, np.log1p(20))  # size and doubt only
    assert pooled[0] > pooled[1] > pooled[2]
    assert np.allclose(pooled / plain, [2.0, 1.0, 0.25])  # median spread 1, clipped to 1/4..4


@pytest.mark.parametrize("method", CLUSTER_METHOD_NAMES)
def test_discovery_with_each_cluster_method_finds_the_unlabelled_blobs(method):
    _x, y = blobs()
    res = get_strategy("discovery", cluster_method=method).query(make_ctx(LABELLED), 2)
    assert {y[p] for p in res.positions} == {"c3", "c4"}, (method, res.reasons)
    assert all("no labelled item in this cluster" in r for r in res.reasons)


@pytest.mark.parametrize("method", ["hdbscan", "linkage"])
def test_learned_clusters_on_a_sample_assign_every_row(method):
    """Above max_rows a strategy clusters the labelled rows plus a sample, the rest join their
    nearest clustered row: every row gets a cluster, deterministic for a seed."""
    from core.query import _geometry as geo

    x, y = blobs()
    labels = np.full(len(y), None, dtype=object)
    labels[LABELLED] = y[LABELLED]
    assign, centres = geo.cluster_nodes(x, 8, np.random.default_rng(4), method, labels, max_rows=80)
    again, _ = geo.cluster_nodes(x, 8, np.random.default_rng(4), method, labels, max_rows=80)
    assert assign.shape == (len(y),) and (assign == again).all()
    assert centres.shape == (assign.max() + 1, x.shape[1]) and np.isfinite(centres).all()
    assert (np.bincount(assign) > 0).all()
    if method == "linkage":  # learns from every label: the unlabelled blobs stay apart
        labelled_clusters = set(assign[LABELLED].tolist())
        for cls in ("c3", "c4"):
            assert not set(assign[y == cls].tolist()) & labelled_clusters, cls


def test_auto_discovery_arm_clusters_with_its_own_method_or_the_projects(monkeypatch):
    from core.query import _geometry as geo
    from core.query.registry import DISCOVERY_CLUSTERS

    used = []
    real = geo.cluster_nodes

    def spy(x, k, rng, method="kmeans", labels=None, **kw):
        used.append(method)
        return real(x, k, rng, method, labels, **kw)

    monkeypatch.setattr(geo, "cluster_nodes", spy)
    ctx = dataclasses.replace(make_ctx(LABELLED), cluster_method="hdbscan")
    arms = build_arms(("discovery",))
    assert arms["discovery"].cluster_method == (None if DISCOVERY_CLUSTERS == "project"
                                                else DISCOVERY_CLUSTERS)
    build_arms(("discovery",), "project")["discovery"].query(ctx, 3)
    build_arms(("discovery",), "linkage")["discovery"].query(ctx, 3)
    get_strategy("discovery").query(ctx, 3)  # the strategy on its own follows the project
    assert used == ["hdbscan", "linkage", "hdbscan"]
    with pytest.raises(ConfigError, match="discovery_clusters"):
        get_strategy("auto", discovery_clusters="spectral")
    with pytest.raises(ConfigError, match="cluster_method"):
        get_strategy("discovery", cluster_method="spectral")
    with pytest.raises(ConfigError, match="discovery_clusters"):  # only auto takes it
        get_strategy("margin", discovery_clusters="linkage")
    assert build_arms(("discovery",))["discovery"].compactness is False  # off by default
    assert build_arms(("discovery",), "project", True)["discovery"].compactness is True
    with pytest.raises(ConfigError, match="discovery_compactness"):  # only auto takes it
        get_strategy("margin", discovery_compactness=True)


def test_target_class_favours_the_target():
    ctx = make_ctx(LABELLED, target="c2")
    res = get_strategy("target_class").query(ctx, 10)
    j = ctx.classes.index("c2")
    picked = ctx.proba[res.positions, j]
    others = np.delete(ctx.proba[:, j], np.concatenate([res.positions, ctx.labelled_positions]))
    assert picked.min() > np.median(others)
    _, y = blobs()
    share_pool = np.mean(y[ctx.unlabelled_positions] == "c2")  # about 13 %
    assert np.mean(y[res.positions] == "c2") >= max(0.5, 3 * share_pool)
    assert all("'c2'" in r for r in res.reasons)


def test_class_balanced_margin_gives_the_least_labelled_class_most_queries():
    ctx = make_ctx(LABELLED)  # c2 has 2 labels, c1 4, c0 10
    res = get_strategy("class_balanced_margin").query(ctx, 6)
    named = [r.split("'")[1] for r in res.reasons]
    assert named.count("c2") >= named.count("c1") >= named.count("c0")
    assert named.count("c2") >= 3


def test_typiclust_covers_every_cluster_without_labels():
    ctx = make_ctx([], with_model=False)
    res = get_strategy("typiclust").query(ctx, 5)
    _, y = blobs()
    assert len({y[p] for p in res.positions}) >= 4  # one pick per blob (the two smallest may merge)


def test_cold_start_wrapper_switches_at_the_threshold():
    wrapped = get_strategy("auto", cold_start=12)
    assert isinstance(wrapped, ColdStart) or isinstance(
        getattr(wrapped, "strategy", None), ColdStart
    )
    early = wrapped.query(make_ctx(LABELLED[:10]), 4)
    assert early.arms == ["typiclust"] * 4 and "cold start" in early.reasons[0]
    later = wrapped.query(make_ctx(LABELLED), 4)
    assert "typiclust" not in later.arms


def test_subpool_restricts_the_candidates_to_neighbours_and_a_sample():
    ctx = make_ctx(LABELLED)
    sub = KNNSubPool(get_strategy("margin"), max_pool=40, n_random=10, n_neighbors=3)
    cands = sub.candidates(ctx)
    assert 10 <= len(cands) <= 10 + 3 * len(LABELLED)
    assert not ctx.labelled_mask[cands].any()
    # the neighbours of a labelled item are among the candidates
    lab = LABELLED[0]
    d = ((ctx.embedding - ctx.embedding[lab]) ** 2).sum(axis=1)
    d[ctx.labelled_mask] = np.inf
    assert int(np.argmin(d)) in set(cands.tolist())


def test_label_reward_prefers_new_then_rare_classes():
    counts = {"head": 100, "mid": 9, "tail": 1}
    assert label_reward("new", counts) == 1.0
    assert label_reward("tail", counts) == 1.0
    assert label_reward("head", counts) < label_reward("mid", counts) < 1.0
    # known_scale shrinks known-class rewards so a new class stands out
    assert label_reward("tail", counts, known_scale=0.5) == 0.5
    assert label_reward("new", counts, known_scale=0.5) == 1.0


def test_auto_bandit_updates_and_round_trips_as_json():
    bandit = Auto(arms=build_arms(("discovery", "margin")), discount=1.0)
    ctx = make_ctx(LABELLED, seed=1)
    res = bandit.query(ctx, 8)
    assert set(res.arms) <= {"discovery", "margin"} and all(r.startswith("[") for r in res.reasons)
    before = dict(bandit.alpha), dict(bandit.beta)
    # the expert labels the batch; items chosen by discovery turn out to be a brand-new class
    _, y = blobs()
    labelled = ctx.labelled_mask.copy()
    labelled[res.positions] = True
    labels = np.where(labelled, y, None).astype(object)
    for p, arm in zip(res.positions, res.arms):
        labels[p] = "brand-new" if arm == "discovery" else "c0"
    nxt = QueryContext(
        proba=ctx.proba,
        classes=ctx.classes,
        embedding=ctx.embedding,
        pool_ids=ctx.pool_ids,
        labelled_mask=labelled,
        labels=labels,
        rng=np.random.default_rng(2),
    )
    rewards = bandit.update(nxt)
    for arm in ("discovery", "margin"):
        n_items = res.arms.count(arm)
        assert len(rewards[arm]) == n_items
        assert bandit.alpha[arm] + bandit.beta[arm] == pytest.approx(
            sum(before[0].values()) / 2 + sum(before[1].values()) / 2 + n_items
        )
    if "discovery" in res.arms:
        assert bandit.alpha["discovery"] > before[0]["discovery"]
        assert rewards["discovery"] and min(rewards["discovery"]) == 1.0
    state = json.loads(json.dumps(bandit.state_dict()))
    clone = Auto(arms=build_arms(("discovery", "margin")))
    clone.load_state_dict(state)
    assert (
        clone.alpha == bandit.alpha and clone.beta == bandit.beta and clone.rounds == bandit.rounds
    )
    with pytest.raises(ConfigError, match="unsupported bandit state"):
        clone.load_state_dict({"version": 99})


def test_auto_surprise_rewards_wrong_predictions():
    bandit = Auto(arms=build_arms(("margin",)), discount=1.0, surprise=1.0)
    ctx = make_ctx(LABELLED, seed=3)
    res = bandit.query(ctx, 6)
    predicted = [p[3] for p in bandit.pending[""]]
    labelled = ctx.labelled_mask.copy()
    labelled[res.positions] = True
    labels = np.where(labelled, None, None).astype(object)
    labels[ctx.labelled_mask] = ctx.labels[ctx.labelled_mask]
    truth = ["c0" if i % 2 else "c1" for i in range(6)]  # known, not the rarest (c2) class
    labels[res.positions] = truth
    nxt = QueryContext(
        proba=ctx.proba,
        classes=ctx.classes,
        embedding=ctx.embedding,
        pool_ids=ctx.pool_ids,
        labelled_mask=labelled,
        labels=labels,
        rng=np.random.default_rng(4),
    )
    rewards = bandit.update(nxt)["margin"]
    expected = [float(p != t) for p, t in zip(predicted, truth)]
    assert rewards == pytest.approx(expected)
    assert 0 < sum(expected) < 6  # the check saw both right and wrong predictions


def test_auto_shifts_budget_to_the_rewarded_arm():
    bandit = Auto(arms=build_arms(("discovery", "margin")), discount=1.0)
    bandit.alpha, bandit.beta = (
        {"discovery": 30.0, "margin": 1.0},
        {"discovery": 1.0, "margin": 30.0},
    )
    quota = bandit.allocate(20, np.random.default_rng(0))
    assert quota["discovery"] >= 18


def test_a_bare_strategy_without_a_model_says_what_it_needs():
    from core.query.strategies import MarginSampling

    with pytest.raises(ModelError, match="needs a trained model.*no model yet"):
        MarginSampling().query(make_ctx(LABELLED, with_model=False), 3)
    fallback = get_strategy("margin").query(make_ctx(LABELLED, with_model=False), 3)
    assert fallback.arms == ["discovery"] * 3
    assert all("no model yet: exploring first" in r for r in fallback.reasons)


def test_auto_credits_each_label_to_the_session_that_asked():
    """Two dashboard sessions share one bandit: B asking for a batch must not discard A's picks,
    and A's labels reward the arms that picked A's items."""
    bandit = Auto(arms=build_arms(("discovery", "margin")), discount=1.0)
    x, y = blobs()
    base = make_ctx(LABELLED, seed=1)

    def ctx_for(requester: str, labelled: np.ndarray, labels: np.ndarray, seed: int):
        return QueryContext(proba=base.proba, classes=base.classes, embedding=x,
                            pool_ids=base.pool_ids, labelled_mask=labelled, labels=labels,
                            rng=np.random.default_rng(seed), requester=requester)

    labelled, labels = base.labelled_mask.copy(), np.asarray(base.labels, dtype=object).copy()
    res_a = bandit.query(ctx_for("A", labelled, labels, 1), 6)
    res_b = bandit.query(ctx_for("B", labelled, labels, 2), 6)
    assert set(bandit.pending) == {"A", "B"}  # B's batch did not overwrite A's picks
    a_only = [p for p in res_a.positions if p not in set(res_b.positions.tolist())]
    labelled[a_only] = True  # the expert in session A labels A's batch
    labels[a_only] = y[a_only]
    before = {a: bandit.alpha[a] + bandit.beta[a] for a in bandit.arms}
    bandit.query(ctx_for("B", labelled, labels, 3), 4)  # B asks again
    entries = [e for e in bandit.log if e["round"] == 2]
    assert [e["requester"] for e in entries] == ["A"]  # the rewards are A's
    credited = {a: v[0] for a, v in entries[0]["arms"].items()}
    arms_of_a = [arm for p, arm in zip(res_a.positions, res_a.arms) if p in set(a_only)]
    assert credited == {a: arms_of_a.count(a) for a in set(arms_of_a)}
    for a in bandit.arms:
        assert bandit.alpha[a] + bandit.beta[a] == pytest.approx(before[a] + arms_of_a.count(a))
    # A's picks that are still unlabelled (those B had picked too) stay pending for A
    shared = {str(base.pool_ids[p]) for p in res_a.positions if p not in set(a_only)}
    assert {pick[0] for pick in bandit.pending.get("A", [])} == shared


def test_query_package_has_no_import_cycles():
    """The registry composes strategies, wrappers and arms; nothing imports back into it."""
    import ast
    from pathlib import Path

    import core.query

    folder = Path(core.query.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps = set()
        for node in ast.walk(tree):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core.query."):
                deps.add(node.module.rsplit(".", 1)[1])
            elif isinstance(node, ast.ImportFrom) and node.module == "core.query":
                deps.update(a.name for a in node.names if (folder / f"{a.name}.py").exists())
        graph[path.stem] = deps - {path.stem}

    def visit(node, trail):
        assert node not in trail, f"import cycle: {' -> '.join([*trail, node])}"
        for nxt in graph.get(node, ()):
            visit(nxt, [*trail, node])

    for module in graph:
        if module != "__init__":
            visit(module, [])


def test_for_request_changes_only_request_fields_and_checks_them():
    rng = np.random.default_rng(0)
    ctx = QueryContext.without_model(embedding=rng.normal(size=(6, 2)), pool_ids=np.arange(6),
                                     labelled_mask=np.zeros(6, bool), labels=np.full(6, None, object),
                                     rng=rng)
    reserved = np.array([1, 0, 0, 0, 0, 1])
    other = ctx.for_request(requester="tab-b", reserved=reserved, target_class="3")
    assert other.requester == "tab-b" and other.target_class == "3" and ctx.requester == ""
    assert other.reserved.dtype == bool and ctx.reserved is None
    assert other.embedding is ctx.embedding and other.labels is ctx.labels  # shared, not copied
    assert other.open_positions.tolist() == [1, 2, 3, 4]
    with pytest.raises(DataError, match="reserved must have shape"):
        ctx.for_request(reserved=np.zeros(5, bool))
    with pytest.raises(ConfigError, match="not per-request fields"):
        ctx.for_request(labels=np.full(6, "a", object))


def test_class_counts_are_counted_once_and_kept_by_subsets_holding_every_label(monkeypatch):
    rng = np.random.default_rng(0)
    labels = np.array(["a", None, "b", "a", None, None], dtype=object)
    ctx = QueryContext.without_model(embedding=rng.normal(size=(6, 2)), pool_ids=np.arange(6),
                                     labelled_mask=labels != None, labels=labels, rng=rng)  # noqa: E711
    counted = []
    unique = np.unique
    monkeypatch.setattr(np, "unique", lambda *a, **k: counted.append(1) or unique(*a, **k))
    first = ctx.class_counts()
    first["a"] = 99  # a caller's dict: the context's counts stay
    assert ctx.class_counts() == ctx.for_request(requester="x").class_counts() == {"a": 2, "b": 1}
    assert len(counted) == 1
    whole = ctx.subset(np.array([0, 2, 3, 5]))  # every labelled row: the same counts
    assert whole.class_counts() == {"a": 2, "b": 1}
    before = len(counted)
    part = ctx.subset(np.array([0, 1, 4]))  # one labelled row only: counted anew
    assert part.class_counts() == {"a": 1} and len(counted) > before


# ------------------------------------------------------------------ bounded at many labels
class _Spy(QueryStrategy):
    """Records the context it is asked on and picks the first candidates."""

    name = "spy"
    needs_model = False

    def __init__(self) -> None:
        self.seen: list[QueryContext] = []

    def _select(self, ctx, candidates, n):
        self.seen.append(ctx)
        return Picks(candidates[:n], np.zeros(n), ["spy"] * n)


def many_labels_ctx(seed: int = 0):
    """The blobs with every row of c0 and c1 labelled, 4 of c2, none of c3 and c4."""
    rows = list(range(0, 180)) + [180, 185, 190, 195]
    return make_ctx(rows, seed=seed)


def test_balanced_quota_shares_evenly_and_gives_small_classes_whole():
    assert balanced_quota(np.array([100, 3, 50]), 30).tolist() == [14, 3, 13]
    assert balanced_quota(np.array([5, 5]), 30).tolist() == [5, 5]  # fewer than asked: all
    assert balanced_quota(np.array([7, 0, 9]), 10).sum() == 10


@pytest.mark.parametrize("max_pool", [40, 10_000])  # with and without the kNN sub-pool
def test_subpool_shows_a_class_balanced_sample_of_labels_above_max_labelled(max_pool):
    ctx = many_labels_ctx()
    spy = _Spy()
    wrapper = KNNSubPool(spy, max_pool=max_pool, n_random=20, n_neighbors=3, max_labelled=24)
    result = wrapper.query(ctx, 5)
    seen = spy.seen[-1]
    seen_labels = np.asarray(seen.labels, dtype=object)[seen.labelled_mask]
    assert len(seen_labels) == 24  # bounded, whatever the number of labels
    # class-balanced: c2's 4 labels all, the rest split between c0 and c1
    assert sorted(seen_labels.tolist()).count("c2") == 4
    assert abs(int((seen_labels == "c0").sum()) - int((seen_labels == "c1").sum())) <= 1
    # the strategy still balances by the true counts, and picks stay unlabelled pool rows
    assert seen.class_counts() == ctx.class_counts() == {"c0": 120, "c1": 60, "c2": 4}
    assert not ctx.labelled_mask[result.positions].any()
    assert set(result.ids.tolist()) <= set(ctx.pool_ids[~ctx.labelled_mask].tolist())
    # every unlabelled row is still there when the pool is small
    if max_pool == 10_000:
        assert (~seen.labelled_mask).sum() == (~ctx.labelled_mask).sum()


def test_subpool_at_or_below_max_labelled_changes_nothing():
    ctx = make_ctx(LABELLED, seed=3)
    spy = _Spy()
    KNNSubPool(spy, max_pool=10_000, max_labelled=len(LABELLED)).query(ctx, 4)
    assert spy.seen[-1] is ctx  # the very context: no sample, no subset
    for name in ("auto", "galaxy", "discovery"):
        capped = get_strategy(name, max_pool=40, n_random=30, max_labelled=len(LABELLED),
                              cold_start=5) if name == "auto" else get_strategy(
            name, max_pool=40, n_random=30, max_labelled=len(LABELLED))
        plain = strategy(name, subpool=True)
        a = capped.query(make_ctx(LABELLED, seed=4), 6)
        b = plain.query(make_ctx(LABELLED, seed=4), 6)
        assert a.ids.tolist() == b.ids.tolist() and a.reasons == b.reasons


def test_subpool_keeps_labelled_recent_picks_so_auto_still_learns():
    wrapped = get_strategy("auto", max_pool=10_000, max_labelled=10, cold_start=5)
    ctx = many_labels_ctx(seed=1)
    first = wrapped.query(ctx, 6)
    _, y = blobs()
    labelled = ctx.labelled_mask.copy()
    labelled[first.positions] = True
    labels = np.where(labelled, y, None).astype(object)
    after = QueryContext(proba=ctx.proba, classes=ctx.classes, embedding=ctx.embedding,
                         pool_ids=ctx.pool_ids, labelled_mask=labelled, labels=labels,
                         rng=np.random.default_rng(9))
    bandit = wrapped.inner
    before = sum(bandit.alpha.values()) + sum(bandit.beta.values())
    wrapped.query(after, 6)
    # each of the 6 labelled picks earned its arm a reward (alpha + beta grow by one per label,
    # after the discount): the picks were in the sample the bandit saw
    rewarded = sum(v[0] for entry in bandit.log for v in entry["arms"].values())
    assert rewarded == 6 and sum(bandit.alpha.values()) + sum(bandit.beta.values()) != before


@pytest.mark.parametrize("name", sorted(SUBPOOLED))
def test_subpooled_strategies_keep_the_contract_above_max_labelled(name):
    ctx = many_labels_ctx(seed=2)
    params = {"max_pool": 40, "n_random": 20, "max_labelled": 12}
    if name == "auto":
        params["cold_start"] = 5
    result = get_strategy(name, **params).query(ctx, 7)
    assert len(set(result.ids.tolist())) == 7 and not ctx.labelled_mask[result.positions].any()
    assert np.isfinite(result.scores).all() and all(result.reasons)


def test_galaxy_label_changes_match_the_pairwise_walk():
    """The vectorised cuts of GALAXY's linear graph equal a walk over adjacent labelled pairs."""
    import heapq
    import itertools

    from core.query.strategies import _label_changes

    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(2, 400))
        is_lab = rng.random(m) < rng.uniform(0.05, 0.9)
        y = np.where(is_lab, rng.choice(["a", "b", "c"], m), None).astype(object)
        expected = []
        lab_rank = np.flatnonzero(is_lab)
        positive = y == "a"
        for a, b in itertools.pairwise(lab_rank):
            if positive[a] != positive[b] and b - a > 1:
                other = y[b] if positive[a] else y[a]
                heapq.heappush(expected, (int(b - a - 1), int(a), int(b), str(other)))
        got = _label_changes(y, is_lab, "a")
        assert [heapq.heappop(got) for _ in range(len(got))] == [
            heapq.heappop(expected) for _ in range(len(expected))]


def test_labelled_classes_are_worked_out_once_and_read_only():
    ctx = many_labels_ctx()
    positions, codes, names = ctx.labelled_classes()
    assert names == ("c0", "c1", "c2") and len(positions) == len(codes) == 184
    assert ctx.for_request(requester="x").labelled_classes()[0] is positions
    with pytest.raises(ValueError):
        codes[0] = 1
    with pytest.raises(ConfigError, match="max_labelled"):
        KNNSubPool(_Spy(), max_labelled=0)
