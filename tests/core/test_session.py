"""Session: the engine state the dashboard and `tailwise retrain` drive (no server)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core.errors import ModelError
from core.project import load_project
from core.session import Session


@pytest.fixture()
def session(tmp_path):
    from core.data import make_demo

    path = make_demo("digits-lt", tmp_path / "demo", seed=0)
    project = load_project(path)
    # Fast settings for tests: PCA map, small MLP.
    project.map.method = "pca"
    project.encoder.kind = "tabular"
    project.model.mlp.epochs = 40
    s = Session.open(project)
    s.prepare()
    return s


def _truth(session, cls, k):
    rows = np.flatnonzero(session.dataset.ground_truth == cls)[:k]
    return session.dataset.ids[rows].tolist()


def test_prepare_gives_map_and_embedding_for_every_item(session):
    n = len(session.dataset)
    assert session.xy.shape == (n, 2)
    assert session.embedding.shape[0] == n
    assert session.state is None  # nothing labelled yet


def test_retrain_needs_two_classes(session):
    session.label(_truth(session, "0", 3), "0", "ann")
    with pytest.raises(ModelError, match="at least two classes"):
        session.retrain()
    assert session.state is None


def test_label_retrain_query_undo_cycle(session):
    classes = sorted(set(session.dataset.ground_truth.tolist()))
    for cls in classes:
        events = session.label(_truth(session, cls, 3), cls, "alice")
        assert len(events) == 3
    assert len(session.current_labels()) == 3 * len(classes)
    state = session.retrain()
    assert state.model_version == 1
    assert state.proba.shape == (len(session.dataset), len(classes))
    np.testing.assert_allclose(state.proba.sum(axis=1), 1.0, atol=1e-5)
    assert state.metrics["source"] == "ground_truth"
    assert 0.0 <= state.metrics["balanced_accuracy"] <= 1.0
    assert session.retrain().model_version == 2
    assert [r.model_version for r in session.history] == [1, 2]

    batch = session.next_batch(7)
    assert len(batch.ids) == 7 and len(set(batch.ids.tolist())) == 7
    assert not set(batch.ids.tolist()) & set(session.current_labels())
    assert all(batch.reasons)

    item = batch.ids[0]
    session.label([item], classes[0], "bob")
    assert session.current_labels()[item] == classes[0]
    undone = session.undo("bob")
    assert undone is not None and item not in session.current_labels()
    assert session.store.history(item)[-1].origin == "undo"


def test_failed_retrain_keeps_the_previous_model(session, monkeypatch):
    for cls in ("0", "1"):
        session.label(_truth(session, cls, 3), cls, "ann")
    good = session.retrain()
    import core.session as session_module

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(session_module, "train_round", broken)
    with pytest.raises(RuntimeError):
        session.retrain()
    assert session.state is good


def test_clusters_summary_and_selection(session):
    clusters = session.clusters(8)
    assert clusters.assignment.shape == (len(session.dataset),)
    assert clusters.summary["size"].sum() == len(session.dataset)
    rows = clusters.rows(int(clusters.summary["cluster"].iloc[0]))
    session.label(session.dataset.ids[rows[:3]].tolist(), "0", "ann")
    again = session.clusters(8).summary.set_index("cluster")
    assert again.loc[int(clusters.summary["cluster"].iloc[0]), "n_labelled"] == 3


def test_the_background_clustering_of_a_replaced_model_is_skipped(session, monkeypatch):
    """A team retraining every few seconds: each model's clusters were computed in turn, one
    clustering per model on the cores the pages need. Those of a model replaced before its
    clustering began are skipped; the current model's still come."""
    import core.session
    from core.session import ClustersSuperseded

    monkeypatch.setattr(core.session, "CLUSTERS_AFTER_RETRAIN_S", 60.0)
    for cls in ("0", "1", "2", "3"):
        session.label(_truth(session, cls, 3), cls, "ann")
    first = session.retrain()
    pending = session.refresh_clusters()  # the retrain's clustering, waiting out its delay
    assert session.cluster_status() == "computing"
    second = session.retrain()
    assert second.model_version > first.model_version
    with pytest.raises(ClustersSuperseded, match=f"v{first.model_version} was replaced"):
        pending.result(timeout=30)
    assert session.cluster_status() == "computing"  # the new model's, after its own delay


def test_the_cluster_thread_runs_below_the_process_priority():
    """Background clustering yields the cores to the served pages, like the training process."""
    import os

    from core.clusters.cache import NICE, ClusterCache

    def nice_of_the_thread():
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    here = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert ClusterCache().start("key", nice_of_the_thread).result(timeout=30) == min(here + NICE, 19)


def test_clusters_by_the_project_method_computed_in_the_background_after_a_retrain(session):
    from core.errors import ConfigError

    for cls in ("0", "1", "2", "3"):
        session.label(_truth(session, cls, 3), cls, "ann")
    assert session.cluster_status() == "none"
    state = session.retrain()
    status = session.cluster_status()
    assert status in ("computing", "ready")  # started by the retrain, not by asking
    session.refresh_clusters().result(timeout=120)  # the same run: waited for, not repeated
    assert session.cluster_status() == "ready"
    kmeans = session.clusters()
    assert (kmeans.method, kmeans.used) == ("kmeans", "kmeans")
    assert kmeans.summary["size"].sum() == len(session.dataset)
    assert (kmeans.summary["predicted"].notna()).all()  # the model of this version predicted

    session.set_cluster_method("linkage", by="ann")
    assert session.project.clusters.method == "linkage"
    assert session.query_context().cluster_method == "linkage"  # discovery clusters with it too
    assert session.cluster_status() == "none"
    linked = session.clusters()
    assert (linked.method, linked.used, linked.note) == ("linkage", "linkage", "")
    assert session.cluster_status() == "ready" and state.model_version == session.state.model_version
    np.testing.assert_array_equal(linked.assignment, session.clusters().assignment)  # cached
    with pytest.raises(ConfigError, match="unknown cluster method 'dbscan'"):
        session.set_cluster_method("dbscan")


def test_concurrent_labelling_from_threads(session):
    ids = session.dataset.ids[:200].tolist()

    def work(part, who):
        for item in part:
            session.label([item], "1", who)

    threads = [threading.Thread(target=work, args=(ids[k::4], f"t{k}")) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(session.current_labels()) == 200


def test_unknown_item_ids_are_refused(session):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown item id"):
        session.label(["no-such-item"], "0", "ann")


def test_opening_a_shared_file_brings_its_labels_without_overwriting(tmp_path):
    """An exported project opened directly (dashboard --project) restores its labels once."""
    from core.data import make_demo
    from core.exchange import export_project
    from core.labels import LabelStore
    from core.project import load_project

    sender_path = make_demo("digits-lt", tmp_path / "sender", seed=0)
    sender = Session.open(sender_path)
    ids = sender.dataset.ids
    sender.label(ids[:3].tolist(), "0", "alice")
    sender.label(ids[3:5].tolist(), "1", "alice")
    shared = export_project(sender, tmp_path / "shared")
    sent = sender.current_labels()

    project = load_project(shared)
    local = LabelStore(project.resolve(project.label_store))
    local.set_classes(project.classes)
    local.record(ids[0], "1", "bob")  # a local label that disagrees with the file
    receiver = Session.open(shared, store=local)
    got = receiver.current_labels()
    assert got[ids[0]] == "1"  # kept, listed as a conflict
    assert [c[0] for c in receiver.import_report.conflicts] == [ids[0]]
    assert {k: v for k, v in got.items() if k != ids[0]} == {k: v for k, v in sent.items() if k != ids[0]}
    again = Session.open(shared, store=local)  # opening twice adds nothing
    assert again.import_report.imported == 0


def test_auto_strategy_resumes_its_bandit_after_a_restart(session):
    classes = sorted(set(session.dataset.ground_truth.tolist()))
    truth = dict(zip(session.dataset.ids.tolist(), session.dataset.ground_truth.tolist()))
    for cls in classes:
        session.label(_truth(session, cls, 2), cls, "ann")
    session.retrain()
    for _ in range(2):  # two rounds: the second rewards the arms that picked the first batch
        for item in session.next_batch(5, strategy="auto").ids:
            session.label([item], truth[item], "ann")
    state = session._strategies["auto"].state_dict()
    assert state["rounds"] >= 2
    restarted = Session.open(session.project, store=session.store)
    assert restarted._strategy("auto").state_dict() == state


def test_before_the_first_model_strategies_explore_as_in_simulate(session):
    """No made-up probabilities: the context has no model, margin hands over to discovery."""
    for cls in ("0", "1"):
        session.label(_truth(session, cls, 2), cls, "ann")
    ctx = session.query_context()
    assert not ctx.has_model and ctx.proba.shape == (len(session.dataset), 0)
    result = session.next_batch(5, strategy="margin")
    assert result.arms == ["discovery"] * 5
    assert all("no model yet: exploring first" in r and "%" not in r for r in result.reasons)


def test_auto_model_choice_is_kept_between_retrains_and_reported(session):
    classes = sorted(set(session.dataset.ground_truth.tolist()))
    for cls in classes:
        session.label(_truth(session, cls, 3), cls, "ann")
    first = session.retrain()
    choice = first.model_choice
    assert choice is not None and choice.compared and choice.chosen in choice.reason
    assert first.metrics["model_choice"]["chosen"] == choice.chosen
    # a few more labels, below the next comparison: the learner is kept without re-comparing
    session.label(_truth(session, classes[0], 4)[3:], classes[0], "ann")
    second = session.retrain()
    assert second.model_choice.chosen == choice.chosen and not second.model_choice.compared
    assert "compared again at" in second.model_choice.reason


def test_two_requesters_get_their_own_pending_picks(session):
    truth = dict(zip(session.dataset.ids.tolist(), session.dataset.ground_truth.tolist()))
    for cls in sorted(set(truth.values())):
        session.label(_truth(session, cls, 2), cls, "ann")
    session.retrain()
    a = session.next_batch(4, strategy="auto", requester="tab-a")
    b = session.next_batch(4, strategy="auto", requester="tab-b")
    assert not set(a.ids.tolist()) & set(b.ids.tolist())  # two experts are sent different items
    bandit = session._strategy("auto").inner
    assert {"tab-a", "tab-b"} <= set(bandit.pending)
    for item in a.ids:
        session.label([item], truth[item], "ann")
    session.next_batch(4, strategy="auto", requester="tab-b")
    assert bandit.log[-1]["requester"] == "tab-a"
    assert sum(v[0] for v in bandit.log[-1]["arms"].values()) == len(a.ids)


def test_double_share_sends_others_labels_for_a_second_opinion(session):
    from core.quality.review import SECOND_OPINION_REASON

    alice = _truth(session, "0", 4) + _truth(session, "1", 4)
    session.label(_truth(session, "0", 4), "0", "alice")
    session.label(_truth(session, "1", 4), "1", "alice")
    session.project.agreement.double_share = 0.5
    batch = session.next_batch(6, strategy="random", requester="b", annotator="bob")
    second = [i for i, r in zip(batch.ids, batch.reasons) if r == SECOND_OPINION_REASON]
    assert len(second) == 3 and set(second) <= set(alice)
    assert len(set(batch.ids.tolist()) - set(alice)) == 3  # the rest are new items
    own = session.next_batch(6, strategy="random", requester="a", annotator="alice")
    assert not set(own.ids.tolist()) & set(alice)  # never her own labels back
    session.label(second[:1], "1" if second[0] in _truth(session, "0", 4) else "0", "bob")
    conflicts = session.conflicts()
    assert [c["item"] for c in conflicts] == second[:1]
    session.resolve(second[0], session.store.stances(second[0])["alice"], "carol")
    assert session.conflicts() == []
    assert session.agreement()["items"] == 1


def test_second_opinions_come_from_the_batch_another_tab_is_labelling(session):
    session.project.agreement.double_share = 0.5
    first = session.next_batch(6, strategy="random", requester="tab-a", annotator="alice")
    done = first.ids[:4].tolist()
    for item in done:
        session.label([item], str(session.dataset.ground_truth[session.positions([item])[0]]), "alice")
    bob = session.next_batch(6, strategy="random", requester="tab-b", annotator="bob")
    second = [i for i, arm in zip(bob.ids, bob.arms) if arm == "second_opinion"]
    assert len(second) == 3 and set(second) <= set(done)  # alice's labels, though still queued
    carol = session.next_batch(6, strategy="random", requester="tab-c", annotator="carol")
    held = {i for i, arm in zip(carol.ids, carol.arms) if arm == "second_opinion"}
    assert not held & set(second)  # bob holds those: carol gets the one left
    assert held <= set(done) and len(held) == 1

def test_review_queue_lists_suspects_and_confirm_closes_them(session):
    classes = sorted(set(session.dataset.ground_truth.tolist()))
    for cls in classes:
        session.label(_truth(session, cls, 6), cls, "alice")
    wrong = _truth(session, "3", 8)[6:8]  # two 3s labelled 8: suspects
    session.label(wrong, "8", "alice")
    state = session.retrain()
    assert state.calibration["per_class"] and state.prevalence and state.stopping["text"]
    suspects = session.suspects()
    assert {s["id"] for s in suspects} & set(wrong)
    batch = session.next_batch(50, strategy="suspects")
    assert batch.ids.tolist() == [s["id"] for s in suspects][:50]
    assert all(r.startswith("labelled ") and "out of fold" in r for r in batch.reasons)
    session.confirm([batch.ids[0]], "alice")
    assert batch.ids[0] not in {s["id"] for s in session.suspects()}
    assert session.store.current()[batch.ids[0]] == suspects[0]["label"]


# ---------------------------------------------------------------------- shared query context
def _old_query_context(session, target_class=None, requester=""):
    """What ``Session.query_context`` built for every request before the pool part was shared:
    a new, fully checked context (the reference the shared one must match exactly)."""
    from core.query import QueryContext

    labels = session.labels_by_row()
    labelled = labels != None  # noqa: E711
    state = session.state
    kw = {"embedding": session.embedding, "pool_ids": session.dataset.ids,
          "labelled_mask": labelled, "labels": labels,
          "rng": np.random.default_rng([session.project.seed, int(labelled.sum())]),
          "rare_classes": tuple(c.name for c in session.classes if c.rare),
          "target_class": target_class, "requester": requester,
          "cluster_method": session.project.clusters.method,
          "cluster_seed": int(session.project.seed)}
    if state is None:
        return QueryContext.without_model(**kw)
    return QueryContext(proba=state.proba, classes=tuple(state.classes), **kw)


def _small_subpool_auto(session):
    """``auto`` on a kNN sub-pool even for this small pool, as at 10^5 items."""
    from core.query import get_strategy

    session._strategies["auto"] = get_strategy("auto", cold_start=10, max_pool=300, n_random=200)


def _count_builds(session, monkeypatch) -> list:
    """Records every check of a whole-pool query context (sub-pool contexts are smaller)."""
    from core.query import QueryContext

    calls, check = [], QueryContext.__post_init__

    def counted(ctx):
        if len(ctx.pool_ids) == len(session.dataset):
            calls.append(ctx.requester)
        check(ctx)

    monkeypatch.setattr(QueryContext, "__post_init__", counted)
    return calls


def test_tabs_share_the_pool_context_of_one_model_and_get_the_same_batches(tmp_path, monkeypatch):
    """Three tabs asking for batches of one model version build the pool context once, and each
    gets exactly the batch it got when every request built its own (same ids, scores, reasons)."""
    from core.data import make_demo

    path = make_demo("digits-lt", tmp_path / "demo", seed=0)
    runs = {}
    for mode in ("shared", "per request"):
        project = load_project(path)
        project.map.method, project.encoder.kind, project.model.mlp.epochs = "pca", "tabular", 40
        project.label_store = f"labels-{mode.replace(' ', '-')}.sqlite"
        session = Session.open(project, resume_strategies=False)
        session.prepare()
        _small_subpool_auto(session)
        if mode == "per request":
            monkeypatch.setattr(session, "query_context",
                                lambda target=None, requester="", s=session: _old_query_context(s, target, requester))
        calls = _count_builds(session, monkeypatch) if mode == "shared" else []
        for cls in sorted(set(session.dataset.ground_truth.tolist())):
            session.label(_truth(session, cls, 2), cls, "ann")
        session.retrain()
        batches = []
        for rnd in range(2):
            before = len(calls)
            for tab in ("tab-a", "tab-b", "tab-c"):
                batches.append(session.next_batch(5, strategy="auto", requester=tab))
            if mode == "shared":
                assert len(calls) - before == 1, calls[before:]  # built once, shared by the tabs
            truth = session.dataset.ground_truth[batches[-1].positions[:2]]
            session.label(batches[-1].ids[:2].tolist(), str(truth[0]), "ann")  # new labels
            session.retrain()
        runs[mode] = [(b.ids.tolist(), b.scores.tolist(), b.reasons, b.arms) for b in batches]
        session.close()
    assert runs["shared"] == runs["per request"]
    ids = [set(b[0]) for b in runs["shared"][:3]]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # still kept apart


def test_a_new_model_or_new_labels_replace_the_shared_pool_context(session, monkeypatch):
    calls = _count_builds(session, monkeypatch)
    for cls in sorted(set(session.dataset.ground_truth.tolist())):
        session.label(_truth(session, cls, 2), cls, "ann")
    first = session.retrain()
    ctx = session.query_context(requester="a")
    assert session.query_context(requester="b").proba is first.proba and len(calls) == 1
    second = session.retrain()  # a new model: built again, with its probabilities
    ctx2 = session.query_context(requester="a")
    assert len(calls) == 2 and ctx2.proba is second.proba and ctx2.proba is not ctx.proba
    item = session.dataset.ids[~ctx2.labelled_mask][0]
    session.label([item], "0", "ann")  # a new label, same model: built again, with the label
    ctx3 = session.query_context(requester="a")
    assert len(calls) == 3 and ctx3.labelled_mask[session.positions([item])[0]]
    assert ctx3.labelled_mask.sum() == ctx2.labelled_mask.sum() + 1
    session.undo("ann")  # the undo is an event too
    assert not session.query_context().labelled_mask[session.positions([item])[0]]
    assert len(calls) == 4
    # one entry kept: the old models' contexts are not held
    assert session._query_base[1].proba is second.proba
    assert not session.query_context().labels.flags.writeable  # shared: read-only


def test_labels_by_row_places_every_current_label_and_skips_unknown_ids(session, monkeypatch):
    assert (session.labels_by_row() == None).all()  # noqa: E711  (nothing labelled yet)
    session.label(_truth(session, "0", 4), "0", "ann")
    session.label(_truth(session, "1", 2), "1", "ann")
    current = dict(session.current_labels())
    monkeypatch.setattr(session, "current_labels", lambda: {**current, "not-in-pool": "0"})
    labels = session.labels_by_row()
    expected = np.full(len(session.dataset), None, dtype=object)
    for item, lab in current.items():
        expected[session.dataset.positions([item])[0]] = lab
    assert labels.dtype == object and labels.tolist() == expected.tolist()


def test_the_tabs_of_a_round_share_one_pool_clustering(session, monkeypatch):
    """discovery's k-means is fitted once for the three tabs of one model version and label
    state, fitted anew when the labels change, and never used for another embedding."""
    import core.query.strategies as strategies
    from core.query.pool_clusters import PoolClusterCache

    cache = PoolClusterCache()
    monkeypatch.setattr(strategies, "POOL_CLUSTERS", cache)
    for cls in sorted(set(session.dataset.ground_truth.tolist())):
        session.label(_truth(session, cls, 3), cls, "ann")
    session.retrain()
    batches = [session.next_batch(strategy="discovery", requester=tab)
               for tab in ("tab-a", "tab-b", "tab-c")]
    assert cache.fits == 1
    ids = [set(b.ids.tolist()) for b in batches]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    session.label(batches[0].ids[:2].tolist(), str(session.dataset.ground_truth[
        batches[0].positions[0]]), "ann")
    session.retrain()
    session.next_batch(strategy="discovery", requester="tab-a")
    session.next_batch(strategy="discovery", requester="tab-b")
    assert cache.fits == 2  # a new label state: one new clustering for both tabs
    assert all(entry.follows(session.embedding) for entry in cache._entries.values())


def test_the_pool_clustering_is_warmed_while_the_model_trains(session, monkeypatch):
    """What ``retrain`` fits on the side (embedding and label count, no model) is exactly the
    clustering the next query's discovery asks for: the query fits nothing more."""
    import core.query.strategies as strategies
    from core.query.pool_clusters import PoolClusterCache

    cache = PoolClusterCache()
    monkeypatch.setattr(strategies, "POOL_CLUSTERS", cache)
    for cls in sorted(set(session.dataset.ground_truth.tolist())):
        session.label(_truth(session, cls, 3), cls, "ann")
    session.retrain()
    session.label(_truth(session, "0", 5)[3:], "0", "ann")  # a new label state
    fits = cache.fits
    session._warm_queries().join()
    assert cache.fits == fits + 1
    session.next_batch(strategy="discovery", requester="tab-a")
    session.next_batch(strategy="auto", requester="tab-b")
    assert cache.fits == fits + 1
    session.project.encoder.kind = "model"  # the model's own embedding: nothing to warm
    assert session._warm_queries() is None
