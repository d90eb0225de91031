"""AppState without a server: selection -> labels -> store events, undo, retrain, sessions."""

from __future__ import annotations

import numpy as np
import pytest
from async_support import run_async

from core.errors import ModelError
from dashboard.state import AppState


def truth(state: AppState, item: str) -> str:
    return str(state.dataset.ground_truth[state.dataset.positions([item])[0]])


def label_truth(state: AppState, per_class: int, classes) -> None:
    gt = state.dataset.ground_truth
    for cls in classes:
        state.select(state.dataset.ids[gt == cls][:per_class].tolist())
        assert state.label_selection(cls)


def test_box_selection_then_label_records_one_event_per_item(session):
    state = AppState(session, annotator="ann")
    xy = state.xy
    x0, y0 = np.percentile(xy, 30, axis=0)
    x1, y1 = np.percentile(xy, 60, axis=0)
    ids = state.select_box(x0, y0, x1, y1)
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    assert sorted(ids) == sorted(state.dataset.ids[inside].tolist()) and ids
    version = state.labels_version
    events = state.label_selection("3")
    assert len(events) == len(ids)
    stored = session.store.events()
    assert [e.item_id for e in stored] == ids
    assert {(e.label, e.annotator) for e in stored} == {("3", "ann")}
    assert state.status == f"saved {len(ids)} labels as '3'" and state.saved_events == len(ids)
    assert state.labels_version > version


def test_lasso_and_tap_select_items(session):
    state = AppState(session)
    x, y = state.xy[17]
    assert state.select_tap(x, y) == [state.dataset.ids[17]]
    xs = x + np.array([-1e-6, 1e-6, 1e-6, -1e-6])
    ys = y + np.array([-1e-6, -1e-6, 1e-6, 1e-6])
    assert state.dataset.ids[17] in state.select_lasso(xs, ys)
    far = state.xy.max(axis=0) + 100
    assert state.select_tap(*far) == []


def test_undo_reverts_the_whole_last_action(session):
    state = AppState(session, annotator="ann")
    first = state.dataset.ids[:3].tolist()
    state.select(first)
    state.label_selection("2")
    state.select(first[:2])
    state.label_selection("7")
    assert [session.current_labels()[i] for i in first] == ["7", "7", "2"]
    assert state.undo() == 2
    assert [session.current_labels()[i] for i in first] == ["2", "2", "2"]
    assert state.undo() == 3
    assert not any(i in session.current_labels() for i in first)
    assert [e.origin for e in session.store.events()][-5:] == ["undo"] * 5


def test_labelling_an_unknown_class_shows_the_error_and_stores_nothing(session):
    state = AppState(session, annotator="ann")
    state.select(state.dataset.ids[:2].tolist())
    assert state.label_selection("not-a-class") == []
    assert "not-a-class" in state.error and not session.store.events()
    state.clear_selection()
    assert state.label_selection("3") == [] and "select items" in state.error


def test_new_class_can_be_used_at_once(session):
    state = AppState(session, annotator="ann")
    state.add_class("smudge", colour="#123456", rare=True)
    assert "smudge" in state.rare_classes and state.error == ""
    state.select([state.dataset.ids[0]])
    assert len(state.label_selection("smudge")) == 1
    state.add_class("bad\x00name")
    assert "class name" in state.error


def test_retrain_bumps_the_model_version_and_keeps_it_on_failure(session, monkeypatch):
    state = AppState(session, annotator="ann")
    assert state.model_version is None
    assert not state.retrain() and "label" in state.error  # nothing labelled yet: error, no model
    assert state.model_version is None
    label_truth(state, 4, ["0", "5"])
    assert state.retrain() and state.model_version == 1 and state.error == ""
    assert state.status == "model v1 trained"
    assert state.learner == "logistic"  # the fixture's fixed learner, shown in the model panel
    assert set(state.points()["predicted"]) <= {"0", "5"}
    assert run_async(state.retrain_async()) and state.model_version == 2

    def broken_round(*args, **kwargs):
        raise ModelError("the GPU caught fire")

    monkeypatch.setattr("core.session.train_round", broken_round)
    assert not state.retrain()
    assert not run_async(state.retrain_async())
    assert "caught fire" in state.error and state.model_version == 2  # the old model stays
    assert session.state.model_version == 2


def test_queue_selects_its_first_item_and_labelling_advances(session):
    state = AppState(session, annotator="ann", batch_size=4, strategy="random")
    queue = run_async(state.next_batch_async())
    assert len(queue) == 4 and len(state.queue_reasons) == 4
    assert state.selection == queue[:1]
    assert state.points()["queued"].sum() == 4
    state.label_selection(truth(state, queue[0]))
    assert state.selection == [queue[1]]
    state.skip()
    assert state.selection == [queue[2]]


def test_clusters_select_and_accept_predictions(session):
    state = AppState(session, annotator="ann")
    label_truth(state, 3, ["1", "4"])
    state.retrain()
    clusters = state.clusters()
    biggest = int(clusters.summary.sort_values("size").iloc[-1]["cluster"])
    ids = state.select_cluster(biggest)
    assert len(ids) == int(clusters.summary.set_index("cluster").loc[biggest, "size"])
    state.select([ids[0]])
    assert set(state.select_cluster_of_selection()) == set(ids)
    state.select(ids[:5])
    events = state.accept_predictions()
    assert len(events) == 5
    predicted = session.state.predicted[session.positions(ids[:5])]
    assert [session.current_labels()[i] for i in ids[:5]] == predicted.tolist()


def test_two_states_share_the_store_not_the_selection(session):
    alice, bob = AppState(session, annotator="alice"), AppState(session, annotator="bob")
    alice.select([session.dataset.ids[0]])
    bob.select([session.dataset.ids[1]])
    alice.label_selection("6")
    before = bob.labels_version
    assert bob.refresh() and bob.labels_version > before  # bob sees alice's label on refresh
    assert not bob.refresh()
    bob.label_selection("9")
    assert alice.selection != bob.selection
    assert {(e.annotator, e.label) for e in session.store.events()} == {("alice", "6"), ("bob", "9")}
    assert alice.refresh()


def test_select_unknown_id_raises(session):
    with pytest.raises(KeyError, match="nope"):
        AppState(session).select(["nope"])


def test_the_map_stays_put_across_retrains_and_moves_only_on_request(session):
    state = AppState(session, annotator="ann")
    before = state.xy.copy()
    label_truth(state, 3, ["3", "7"])
    assert state.retrain()
    assert np.array_equal(state.xy, before)
    assert run_async(state.recompute_map_async()) and state.status == "map recomputed"
    assert state.xy.shape == before.shape and np.isfinite(state.xy).all()
    x0, y0 = state.xy.min(axis=0)
    x1, y1 = state.xy.max(axis=0)
    assert len(state.select_box(x0, y0, x1, y1)) == len(session.dataset)  # index follows the map


def test_retrain_refreshes_an_existing_queue(session):
    state = AppState(session, annotator="ann", batch_size=3, strategy="margin")
    label_truth(state, 3, ["0", "6"])
    state.retrain()
    state.next_batch()
    assert run_async(state.retrain_async())
    assert len(state.queue_ids) == 3 and state.status.endswith("queue refreshed")
    # asked of the new model while the page redrew with it
    assert state.queue_model == state.model_version == session.state.model_version


def test_retrain_asks_the_new_models_batch_while_the_page_redraws(session, monkeypatch):
    """The round trip: the tab's next batch is chosen on the work pool while the page redraws
    with the new model (before: only after the redraw, which holds the serving loop)."""
    import threading

    state = AppState(session, annotator="ann", batch_size=3, strategy="margin")
    label_truth(state, 3, ["0", "6"])
    state.retrain()
    state.next_batch()
    started, overlapped = threading.Event(), []
    query, redraw = state._query, state._retrained

    def watched_query():
        started.set()
        return query()

    def watched_redraw():
        overlapped.append(started.wait(timeout=5))  # the batch is being chosen meanwhile
        redraw()

    monkeypatch.setattr(state, "_query", watched_query)
    monkeypatch.setattr(state, "_retrained", watched_redraw)
    assert run_async(state.retrain_async())
    assert overlapped == [True]
    assert len(state.queue_ids) == 3 and state.status.endswith("queue refreshed")
    assert state.queue_model == state.model_version == session.state.model_version
    assert state.job == "" and state.job_message == ""


def test_a_restarted_server_shows_the_last_model_then_retrains_in_the_background(
        dashboard_project, tmp_path, caplog, monkeypatch):
    """open_shared (what `panel serve` runs at start): the saved model is there when the page
    opens, labels added since are trained on in the background, progress goes to the log."""
    import shutil
    import threading
    import time

    import dashboard.state as state_module
    from core.session import Session
    from dashboard.state import open_shared

    folder = tmp_path / "project"
    shutil.copytree(dashboard_project.parent, folder)
    project = folder / dashboard_project.name
    first = Session.open(project)
    first.prepare()
    gt = first.dataset.ground_truth
    for cls in ("0", "1"):
        first.label(first.dataset.ids[gt == cls][:4].tolist(), cls, "ann")
    trained = first.retrain()
    first.label(first.dataset.ids[gt == "2"][:4].tolist(), "2", "ann")  # after that model
    first.store.close()

    go = threading.Event()  # the background retrain starts when the test has looked at the page
    real = state_module.background_retrain

    def held_back(session, why):
        assert go.wait(60)
        real(session, why)

    monkeypatch.setattr(state_module, "background_retrain", held_back)
    with caplog.at_level("INFO", logger="tailwise"):
        prep = open_shared(project)
        session = prep.future.result(timeout=120)
        assert session.state.model_version == trained.model_version  # shown at once
        assert session.stale  # labels were given after it
        state = AppState(session, annotator="viewer")
        assert state.model_version == trained.model_version
        go.set()
        deadline = time.monotonic() + 600  # the round runs in a child process, at a lower priority
        while session.state.model_version == trained.model_version and time.monotonic() < deadline:
            time.sleep(0.1)
    assert session.state.model_version == trained.model_version + 1
    assert "2" in session.state.classes  # trained on the labels given after the saved model
    assert state.refresh() and state.model_version == trained.model_version + 1
    assert "preparing" in caplog.text and "retraining after the start" in caplog.text
    assert "model v%d ready" % (trained.model_version + 1) in caplog.text
    session.store.close()


def test_large_label_and_undo_actions_run_off_the_serving_thread(session, monkeypatch):
    """While a bulk label is written, the event loop that serves the pages keeps running: another
    session's box selection is answered before the write ends."""
    import asyncio
    import threading

    import dashboard.state as state_module

    monkeypatch.setattr(state_module, "LARGE_ACTION", 50)
    writer = AppState(session, annotator="bulk")
    other = AppState(session, annotator="other")
    writer.select(session.dataset.ids[:200].tolist())
    started, release = threading.Event(), threading.Event()
    threads: list[str] = []
    real_label = session.label

    def slow_label(*args, **kwargs):
        threads.append(threading.current_thread().name)
        started.set()
        assert release.wait(30)
        return real_label(*args, **kwargs)

    monkeypatch.setattr(session, "label", slow_label)
    refreshed: list[str] = []
    real_refresh = session.store.refresh

    def refresh():
        refreshed.append(threading.current_thread().name)
        real_refresh()

    monkeypatch.setattr(session.store, "refresh", refresh)

    async def scenario():
        job = asyncio.ensure_future(writer.label_selection_async("4"))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 30)
        assert writer.job == "label"
        x0, y0 = other.xy.min(axis=0)
        x1, y1 = other.xy.max(axis=0)
        picked = other.select_box(x0, y0, x1, y1)  # served while the write is still running
        release.set()
        events = await job
        undone = await writer.undo_async()
        return picked, events, undone

    picked, events, undone = run_async(scenario())
    assert len(picked) == len(session.dataset) and len(events) == 200 and undone == 200
    assert len(threads) == 1 and threads[0].startswith("tailwise-store")
    assert writer.job == "" and "undone 200 labels" in writer.status
    assert writer.frame.counts("label").get("4", 0) == 0  # the shared table followed the undo
    # The store's cache of current labels was brought up to date on the store's thread too
    # (the views that redraw next read it), and the box's rows come without an id lookup.
    assert refreshed and all(name.startswith("tailwise-store") for name in refreshed)
    assert session.store.labels_of(picked[:200]) == {}
    np.testing.assert_array_equal(other.selected_rows(), session.positions(picked))
    assert other.selected_rows() is other.rows_of(other.selection)


def test_the_model_panel_says_which_learner_auto_chose(session):
    from core.project import AutoConfig, LogisticConfig, RandomForestConfig

    session.project.model = AutoConfig(
        candidates=["logistic", "random_forest"], min_labels=10,
        logistic=LogisticConfig(max_iter=200), random_forest=RandomForestConfig(n_estimators=20))
    state = AppState(session, annotator="ann")
    label_truth(state, 6, ["0", "5", "7"])
    assert state.retrain()
    choice = session.state.model_choice
    assert state.learner == choice.chosen in ("logistic", "random_forest")
    assert state.learner_reason == choice.reason and "out-of-fold" in choice.reason


def test_a_new_model_refreshes_the_queue_of_every_tab(session):
    """After one tab retrains, another tab's next refresh asks the new model for its batch."""
    import asyncio

    a, b = AppState(session, annotator="a"), AppState(session, annotator="b")
    label_truth(a, 3, ["0", "1", "2"])
    assert a.retrain()
    b.refresh()
    b.next_batch()
    first = b.model_version
    assert b.queue_model == first and b.queue_ids
    label_truth(a, 4, ["3"])
    assert a.retrain() and a.model_version == first + 1

    async def tick():
        assert b.refresh()
        while "chose a new batch" not in b.notice:  # the new batch is chosen in a worker thread
            await asyncio.sleep(0.01)
        return b.queue_model

    assert b.status.startswith("queued")
    own = b.status = "saved 1 label as '0'"  # whatever this expert did last
    assert run_async(asyncio.wait_for(tick(), 60)) == first + 1
    assert b.model_version == first + 1 and len(b.queue_ids) == b.batch_size
    assert b.notice.startswith(f"model v{first + 1} chose a new batch: {b.batch_size} items")
    assert b.status == own  # said beside it, never in its place


def test_tabs_renew_their_queues_for_a_new_model_one_at_a_time(session, monkeypatch):
    """Every tab asks a new model for its batch at its next refresh; the batches are chosen and
    shown one tab at a time, so the clicks of every tab get the event loop between them."""
    import asyncio
    import threading
    import time

    tabs = [AppState(session, annotator=f"a{i}") for i in range(3)]
    label_truth(tabs[0], 3, ["0", "1", "2"])
    assert tabs[0].retrain()
    for tab in tabs:
        tab.refresh()
        tab.next_batch()
    label_truth(tabs[0], 4, ["3"])
    assert tabs[0].retrain()
    real, lock, inside, most = session.next_batch, threading.Lock(), [0], [0]

    def counted(*args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)  # long enough for a second tab's query to overlap, were it allowed
            return real(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(session, "next_batch", counted)

    async def renew():
        for tab in tabs:
            tab.refresh()
        while any(t.queue_model != session.state.model_version for t in tabs):
            await asyncio.sleep(0.01)

    run_async(asyncio.wait_for(renew(), 60))
    assert most[0] == 1 and all(len(t.queue_ids) == t.batch_size for t in tabs)


def test_a_tab_busy_when_a_new_model_arrives_asks_it_for_a_queue_once_free(session):
    """A tab in the middle of its own action when another tab's retrain lands keeps no stale
    queue: the first refresh after the action asks the new model."""
    import asyncio

    a, b = AppState(session, annotator="a"), AppState(session, annotator="b")
    label_truth(a, 3, ["0", "1", "2"])
    assert a.retrain()
    b.refresh()
    b.next_batch()
    first = b.model_version
    label_truth(a, 4, ["3"])
    assert a.retrain()

    async def scenario():
        b.job = "label"  # busy with its own action when the new model is seen
        assert b.refresh() and b.model_version == first + 1
        await asyncio.sleep(0.05)
        stale = b.queue_model
        b.job = ""
        b.refresh()  # nothing new in the store or the model: the queue is still the old model's
        while b.queue_model != b.model_version:
            await asyncio.sleep(0.01)
        return stale

    assert run_async(asyncio.wait_for(scenario(), 60)) == first
    assert b.queue_model == first + 1 and len(b.queue_ids) == b.batch_size


def test_label_counts_are_read_once_per_store_state_for_every_tab(session, monkeypatch):
    a, b = AppState(session, annotator="a"), AppState(session, annotator="b")
    reads: list[str | None] = []
    real = session.store.label_counts

    def counted(split=None):
        reads.append(split)
        return real(split=split)

    monkeypatch.setattr(session.store, "label_counts", counted)
    label_truth(a, 3, ["0"])
    assert a.label_counts("train")["0"] == 3 and b.label_counts("train")["0"] == 3
    assert reads == ["train"]  # the second tab reused the first tab's read
    label_truth(b, 2, ["5"])  # a new event: read again, the same for both tabs
    assert b.label_counts("train")["5"] == 2 and a.label_counts("train") == b.label_counts("train")
    assert a.label_counts("test") == {name: 0 for name in a.label_counts("train")}
    assert reads == ["train", "train", "test"]
    a.add_class("smudge")  # a new class, no label event: counted again
    assert a.label_counts("train")["smudge"] == 0 and len(reads) == 4
