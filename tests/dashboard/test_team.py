"""Many experts on one server, without a server: identity, roles refused in the callbacks
themselves, undo and conflicts between two annotators, cheap catching up, one retrain at a time."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from async_support import run_async

from core.project import AccessConfig
from dashboard.pacing import Pacer
from dashboard.state import AppState


@pytest.fixture
def guarded(session):
    """The session with an access section: ada admin, ann annotator, vic viewer."""
    session.project = session.project.model_copy(
        update={"access": AccessConfig(admins=["ada"], annotators=["ann"], viewers=["vic"])})
    return session


def first_ids(state: AppState, n: int) -> list[str]:
    return state.dataset.ids[:n].tolist()


# ------------------------------------------------------------------ identity


def test_without_authentication_a_tab_must_choose_a_name_before_its_first_label(session):
    state = AppState(session)
    assert state.annotator == "" and state.identity == ""
    state.select(first_ids(state, 1))
    assert state.label_selection("3") == []
    assert "choose your annotator name" in state.error and len(session.store) == 0
    assert state.undo() == 0 and "choose your annotator name" in state.error
    state.annotator = "  zoe "
    assert len(state.label_selection("3")) == 1
    assert session.store.events()[-1].annotator == "zoe"


def test_the_logged_in_user_is_the_annotator_and_cannot_be_changed(session):
    state = AppState(session, user="ada", annotator="mallory")
    assert state.annotator == "ada"
    state.annotator = "mallory"  # e.g. a forged widget message
    assert state.annotator == "ada" and state.identity == "ada"
    state.select(first_ids(state, 2))
    state.label_selection("4")
    assert {e.annotator for e in session.store.events()} == {"ada"}


# ------------------------------------------------------------------ roles, server-side


def test_a_viewer_is_refused_every_change_by_the_callbacks_themselves(guarded, monkeypatch):
    from dashboard.views.labelling import LabellingView

    calls = []
    monkeypatch.setattr(guarded, "retrain", lambda *a, **k: calls.append("retrain"))
    monkeypatch.setattr(guarded, "next_batch", lambda *a, **k: calls.append("query"))
    viewer = AppState(guarded, user="vic")
    viewer.select(first_ids(viewer, 3))
    refusals = {
        "label": lambda: viewer.label_selection("3"),
        "undo": viewer.undo,
        "skip": viewer.skip,
        "queue": viewer.next_batch,
        "queue (async)": lambda: run_async(viewer.next_batch_async()),
        "retrain": viewer.retrain,
        "retrain (async)": lambda: run_async(viewer.retrain_async()),
        "map": lambda: run_async(viewer.recompute_map_async()),
        "new class": lambda: viewer.add_class("smudge"),
        "edit class": lambda: viewer.edit_class("3", rare=True),
    }
    for name, call in refusals.items():
        viewer.error = ""
        call()
        assert "'vic' is a viewer" in viewer.error, name
    view = LabellingView(viewer)  # a number key pressed on the viewer's page
    view._on_key(type("KeyEvent", (), {"new": "3:1"})())
    assert "'vic' is a viewer" in viewer.error
    assert len(guarded.store) == 0 and calls == [] and guarded.state is None
    assert "smudge" not in guarded.class_names and not {c.name: c for c in guarded.classes}["3"].rare
    assert viewer.selection == first_ids(viewer, 3)  # looking around is allowed


def test_an_annotator_labels_but_is_refused_admin_work(guarded, tmp_path):
    from dashboard.views.project import ProjectView

    ann = AppState(guarded, user="ann")
    ann.select(first_ids(ann, 2))
    assert len(ann.label_selection("5")) == 2 and ann.undo() == 2
    view = ProjectView(ann)
    assert view.export(tmp_path / "out") is None and "may not export" in ann.error
    assert not (tmp_path / "out").exists()
    assert view.import_text("shared.yaml", b"name: x\n") is None and "may not import" in ann.error
    assert view.import_path("shared.yaml") is None and "may not import" in ann.error
    assert view.save_layout("mine") is None and "may not save layouts" in ann.error
    assert not (guarded.project.base_dir / "layouts" / "mine.yaml").exists()
    assert "may not change settings" in view.apply_settings(guarded.project)
    ann.add_class("smudge")
    assert "may not edit the classes" in ann.error and "smudge" not in guarded.class_names
    assert view.export_button.disabled and view.import_button.disabled

    ada = AppState(guarded, user="ada")
    ada.add_class("smudge", rare=True)
    assert ada.error == "" and "smudge" in guarded.class_names
    assert ProjectView(ada).export(tmp_path / "out") is not None


def test_a_user_without_a_role_sees_no_views(guarded, tmp_path):
    import panel as pn

    from dashboard.app import App

    app = App(guarded.project.base_dir / "project.yaml")
    pn.state.cache.clear()
    original = pn.state.__class__.user
    try:
        pn.state.__class__.user = property(lambda self: "eve")
        app.ready(guarded)
    finally:
        pn.state.__class__.user = original
    assert app.state is None and not app.views
    assert "has no role" in app.body.objects[0].object


# ------------------------------------------------------------------ two annotators


def test_undo_never_reverts_another_annotators_later_label(session):
    alice, bob = AppState(session, annotator="alice"), AppState(session, annotator="bob")
    item = first_ids(alice, 1)
    alice.select(item)
    alice.label_selection("3")
    bob.select(item)
    bob.label_selection("5")
    assert alice.undo() == 0
    assert "changed by 'bob' to '5'" in alice.error and "Nothing was undone" in alice.error
    assert session.current_labels()[item[0]] == "5"
    assert bob.undo() == 1 and session.current_labels()[item[0]] == "3"
    assert alice.undo() == 1 and item[0] not in session.current_labels()


def test_conflicting_labels_are_kept_and_shown_in_the_inspector(session):
    from dashboard.views.inspector import InspectorView

    alice, bob = AppState(session, annotator="alice"), AppState(session, annotator="bob")
    item = first_ids(alice, 1)
    for state, label in ((alice, "3"), (bob, "5")):
        state.select(item)
        state.label_selection(label)
    html = InspectorView(bob).render(item)
    assert "experts disagree" in html and "alice: <b>3</b>" in html and "bob: <b>5</b>" in html
    assert [(e.annotator, e.label) for e in session.store.history(item[0])] == [
        ("alice", "3"), ("bob", "5")]
    alice.select(first_ids(alice, 2)[1:])
    alice.label_selection("3")
    assert "experts disagree" not in InspectorView(alice).render(first_ids(alice, 2)[1:])


# ------------------------------------------------------------------ speed: what a label redraws


class ManualClock:
    """A schedule for Pacer: callbacks run when the test advances time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.queue: list[tuple[float, object]] = []

    def schedule(self, delay, callback) -> None:
        self.queue.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:  # run what is due in time order, each at its own time
            due = sorted((t, i) for i, (t, _) in enumerate(self.queue) if t <= end + 1e-9)
            if not due:
                break
            when, index = due[0]
            callback = self.queue.pop(index)[1]
            self.now = max(self.now, when)
            callback()
        self.now = end


def test_the_pacer_fires_once_labelling_pauses_or_after_the_longest_wait():
    clock = ManualClock()
    fired = []
    pacer = Pacer(lambda: fired.append(clock.now), clock.schedule, quiet_s=1.5, max_wait_s=8.0,
                  clock=lambda: clock.now)
    for _ in range(3):  # three quick labels: one call, 1.5 s after the last
        pacer.poke()
        clock.advance(0.5)
    clock.advance(2.0)
    assert fired == [2.5]
    for _ in range(20):  # labelling on without a pause: at most every 8 s
        pacer.poke()
        clock.advance(1.0)
    assert fired[1:] == [11.5, 19.5]
    pacer.poke()
    pacer.flush()
    assert len(fired) == 4 and not pacer.pending


def test_the_pacer_fires_no_more_often_than_its_minimum_interval():
    clock = ManualClock()
    fired = []
    pacer = Pacer(lambda: fired.append(clock.now), clock.schedule, quiet_s=1.5, max_wait_s=8.0,
                  min_interval_s=10.0, clock=lambda: clock.now)
    for _ in range(15):  # other tabs' labels arrive with every 2-second refresh
        pacer.poke()
        clock.advance(2.0)
    assert fired == [1.5, 11.5, 21.5]


def test_a_label_patches_this_map_and_other_tabs_catch_up_from_the_store(session):
    from bokeh.document import Document

    from dashboard.views.map import MapView

    clock = ManualClock()
    alice = AppState(session, annotator="alice", schedule=clock.schedule, clock=lambda: clock.now)
    bob = AppState(session, annotator="bob", schedule=clock.schedule, clock=lambda: clock.now)
    view = MapView(alice)
    view.pane.get_root(Document())  # draw it once, as a page would
    assert view._source is not None
    summary = alice.labels_version
    item = first_ids(alice, 1)
    alice.select(item)
    alice.label_selection("0")
    assert alice.last_changed == item and alice.changes == 1
    assert view.patched == 1 and view.redraw == 0  # just that point: no redraw
    assert alice.labels_version == summary  # summaries wait for a pause
    row = int(session.positions(item)[0])
    colour = next(c.colour for c in session.classes if c.name == "0")
    assert view._source.data["color"][row] == colour  # the point itself is recoloured
    stars = view._layer_sources["rare"].data  # the drawn star layer, updated in place
    assert stars["color"][np.isfinite(stars["x"])].tolist() == [colour]  # "0" is rare: a star, at once
    alice.select(first_ids(alice, 2)[1:])
    alice.label_selection("3")
    stars = view._layer_sources["rare"].data
    assert view.patched == 2 and np.isfinite(stars["x"]).sum() == 1
    clock.advance(2.5)
    assert alice.labels_version == summary + 1

    assert bob.changes == 0  # another tab: nothing until it looks
    assert bob.refresh() and bob.last_changed == first_ids(bob, 2) and bob.changes == 1
    assert not bob.refresh()


def test_a_served_tab_shows_other_tabs_labels_at_most_every_few_seconds(session):
    """Five experts labelling made every page repaint its map for the others' labels twice a
    second: a served tab takes them at most every OTHERS_MIN_INTERVAL_S (the first at once, all
    that came meanwhile together), its own at once, the others' at once on Refresh and undo."""
    from dashboard.state import OTHERS_MIN_INTERVAL_S

    clock = ManualClock()
    alice = AppState(session, annotator="alice", schedule=clock.schedule, clock=lambda: clock.now)
    bob = AppState(session, annotator="bob", schedule=clock.schedule, clock=lambda: clock.now)
    ids = first_ids(alice, 6)

    def label(state, items, cls):
        state.select(items)
        assert state.label_selection(cls)

    label(alice, ids[:1], "0")
    assert bob.refresh() and bob.last_changed == ids[:1]  # the first: at once
    label(alice, ids[1:2], "1")
    clock.advance(0.5)
    label(alice, ids[2:3], "2")
    clock.advance(0.5)
    changes = bob.changes
    assert not bob.refresh() and bob.changes == changes  # 1 s later: not yet
    label(bob, ids[3:4], "3")
    assert bob.last_changed == ids[3:4] and bob.changes == changes + 1  # its own: at once
    assert not bob.refresh()
    clock.advance(OTHERS_MIN_INTERVAL_S)
    assert bob.refresh() and bob.last_changed == ids[1:3]  # both of alice's, in one patch
    assert not bob.refresh()  # bob's own label was announced already
    label(alice, ids[4:5], "4")
    assert bob.refresh(now=True) and bob.last_changed == ids[4:5]  # the Refresh button
    label(alice, ids[5:6], "5")
    assert bob.undo() == 1  # its undo shows the reverted item and the others' labels since
    assert set(bob.last_changed) == {ids[3], ids[5]}


def test_retrains_asked_by_two_tabs_run_one_at_a_time(session, monkeypatch):
    import core.session as core_session

    real = core_session.train_round
    running, most, rounds = [0], [0], []
    lock = threading.Lock()
    started, release = threading.Event(), threading.Event()

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            rounds.append(1)
        try:
            if len(rounds) == 1:  # hold the first run until the other tabs have asked
                started.set()
                assert release.wait(timeout=60)
            return real(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(core_session, "train_round", counted)
    tabs = [AppState(session, annotator=f"a{i}") for i in range(3)]
    gt = session.dataset.ground_truth
    for cls in ("0", "5"):
        tabs[0].select(session.dataset.ids[gt == cls][:4].tolist())
        tabs[0].label_selection(cls)

    async def press_all():
        first = asyncio.ensure_future(tabs[0].retrain_async())
        while not started.is_set():
            await asyncio.sleep(0.01)
        assert session.retraining
        rest = [asyncio.ensure_future(t.retrain_async()) for t in tabs[1:]]
        while not session._retrains.pending:  # the other tabs' requests reached the scheduler
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest)

    assert run_async(press_all()) == [True, True, True]
    assert len(rounds) == 2 and most[0] == 1  # the running one and exactly one follow-up
    # The followers share the follow-up's model (the first asker may already show it too).
    assert {t.model_version for t in tabs[1:]} == {2} and tabs[0].model_version in (1, 2)


def test_every_background_failure_is_shown_on_the_page_that_asked(session, monkeypatch):
    state = AppState(session, annotator="ann")
    other = AppState(session, annotator="bob")

    def broken(*args, **kwargs):
        raise KeyError("strategy cache lost")

    monkeypatch.setattr(session, "next_batch", broken)
    assert run_async(state.next_batch_async()) == []
    assert state.error == "KeyError: 'strategy cache lost'" and other.error == ""
    monkeypatch.setattr(session, "clusters", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_async(state.clusters_async())  # the clusters view shows it (test_views)


def test_a_training_process_that_dies_is_shown_on_the_page_that_asked(session):
    import os
    import signal
    import time

    session.training = "process"  # as the server trains: in a child process
    state, other = AppState(session, annotator="ann"), AppState(session, annotator="bob")
    for cls in ("0", "2"):
        rows = np.flatnonzero(session.dataset.ground_truth == cls)[:4]
        session.label(session.dataset.ids[rows].tolist(), cls, "ann")

    def kill_the_child() -> None:  # polls the engine's state, not a fixed wait
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            trainer = session._trainer
            if trainer is not None and trainer.process is not None:
                os.kill(trainer.process.pid, signal.SIGKILL)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_the_child)
    killer.start()
    try:
        assert run_async(state.retrain_async()) is False
    finally:
        killer.join()
        session.close()
    assert "training process was killed by signal SIGKILL" in state.error
    assert "previous model is kept" in state.error and other.error == ""
    assert session.state is None and state.job == ""


def test_panels_login_and_logout_pages_take_their_files_from_this_server(monkeypatch):
    import re

    from panel import auth

    from dashboard.offline import offline_auth_pages

    monkeypatch.setattr(auth.BasicLoginHandler, "_login_template", auth.BASIC_LOGIN_TEMPLATE)
    monkeypatch.setattr(auth.LogoutHandler, "_logout_template", auth.LOGOUT_TEMPLATE)
    offline_auth_pages()
    offline_auth_pages()  # twice (a second app on the server) wraps once
    login = auth.BasicLoginHandler._login_template.render(
        login_endpoint="/login", errormessage="", PANEL_CDN=auth.CDN_DIST)
    logout = auth.LogoutHandler._logout_template.render(PANEL_CDN=auth.CDN_DIST, LOGIN_ENDPOINT="/login")
    for page in (login, logout):
        links = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert "static/extensions/panel/images/logo_stacked.png" in links
        assert not [url for url in links if "://" in url or url.startswith("//")]
    custom = object()  # a template given with --basic-login-template is left alone
    monkeypatch.setattr(auth.BasicLoginHandler, "_login_template", custom)
    offline_auth_pages()
    assert auth.BasicLoginHandler._login_template is custom


def test_a_view_redrawn_off_the_page_keeps_its_stylesheets_on_this_server(monkeypatch):
    """Panel rewrites the page's shared stylesheet objects to its CDN when it redraws a model that
    is off the page (a hidden tab); with Panel's files served here they keep this server's path."""
    import panel.io.resources as resources
    import panel.reactive as reactive
    from bokeh.models import ImportedStyleSheet

    from dashboard.offline import local_stylesheets

    monkeypatch.setattr(resources, "patch_stylesheet", resources.patch_stylesheet)
    monkeypatch.setattr(reactive, "patch_stylesheet", reactive.patch_stylesheet)
    shared = ImportedStyleSheet(url=f"{resources.LOCAL_DIST}css/loading.css")
    reactive.patch_stylesheet(shared, resources.CDN_DIST)  # what Panel does for a detached model
    assert shared.url.startswith(resources.CDN_DIST)  # the request an offline page cannot make
    local_stylesheets()
    wrapped = resources.patch_stylesheet
    local_stylesheets()  # a second app on the server wraps once
    assert resources.patch_stylesheet is wrapped and reactive.patch_stylesheet is wrapped
    for sheet in (ImportedStyleSheet(url=f"{resources.LOCAL_DIST}css/loading.css"), shared,
                  ImportedStyleSheet(url=f"{resources.CDN_DIST}bundled/theme/fast.css")):
        reactive.patch_stylesheet(sheet, resources.CDN_DIST)
        assert sheet.url.startswith(resources.LOCAL_DIST), sheet.url
    page = ImportedStyleSheet(url=f"{resources.LOCAL_DIST}css/loading.css")
    resources.patch_stylesheet(page, "./static/extensions/panel/")  # a page's own path: kept
    assert page.url.startswith("./static/extensions/panel/css/loading.css")

def test_labelling_an_item_of_a_queue_a_new_model_replaced_moves_on_to_the_new_batch(
        session, monkeypatch):
    """Another tab's retrain re-asks this tab's queue in the background; the item the expert was
    looking at stays selected, and labelling it moves on to the new batch (not a dead end)."""
    from dataclasses import replace

    a, b = AppState(session, annotator="a"), AppState(session, annotator="b")
    gt = session.dataset.ground_truth
    for cls in ("0", "5"):
        a.select(session.dataset.ids[gt == cls][:4].tolist())
        a.label_selection(cls)
    assert a.retrain()
    b.refresh()
    b.next_batch()
    item = b.selection[0]
    real = session.next_batch

    def without_item(*args, **kwargs):  # the new model no longer asks about the item
        result = real(*args, **kwargs)
        keep = [k for k, i in enumerate(result.ids) if str(i) != item]
        return replace(result, ids=result.ids[keep], scores=result.scores[keep],
                       reasons=[result.reasons[k] for k in keep], arms=[], positions=None)

    monkeypatch.setattr(session, "next_batch", without_item)
    a.select(session.dataset.ids[gt == "3"][:4].tolist())
    a.label_selection("3")
    assert a.retrain()

    async def tick():
        assert b.refresh()
        while b.queue_model != a.model_version:  # the new batch is chosen on the work pool
            await asyncio.sleep(0.01)

    run_async(asyncio.wait_for(tick(), 60))
    assert item not in b.queue_ids and b.selection == [item]  # the expert's item stays
    b.label_selection(str(gt[session.dataset.positions([item])[0]]))
    assert b.selection == b.queue_ids[:1] and b.selection != [item]


def test_a_tab_closed_while_the_server_writes_to_it_is_one_log_line_not_a_traceback(caplog):
    import asyncio

    from tornado.iostream import StreamClosedError

    from dashboard.server_lifecycle import quiet_closed_connections

    loop = asyncio.new_event_loop()
    try:
        quiet_closed_connections(loop)
        with caplog.at_level("INFO"):
            loop.call_exception_handler({"message": "Task exception was never retrieved",
                                         "exception": StreamClosedError()})
            assert "closed its connection" in caplog.text and "Traceback" not in caplog.text
            loop.call_exception_handler({"message": "Task exception was never retrieved",
                                         "exception": RuntimeError("a real failure")})
    finally:
        loop.close()
    assert "a real failure" in caplog.text  # anything else is still reported in full
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_a_served_tab_shows_other_tabs_models_at_most_every_few_seconds(session):
    """While one expert retrains every few seconds, another served tab shows a newer model (and asks
    it for a batch) at most every MODEL_MIN_INTERVAL_S; the Refresh button shows it at once."""
    from dashboard.state import MODEL_MIN_INTERVAL_S

    truth = session.dataset.ground_truth
    clock = ManualClock()
    trainer = AppState(session, annotator="trainer")
    viewer = AppState(session, annotator="viewer", schedule=clock.schedule, clock=lambda: clock.now)

    def retrain(cls: str, k: int) -> int:
        trainer.select(session.dataset.ids[np.flatnonzero(truth == cls)[k:k + 3]].tolist())
        assert trainer.label_selection(cls)
        trainer.retrain()
        return trainer.model_version

    retrain("0", 0)  # one class: no model yet
    first = retrain("1", 0)
    viewer.refresh()
    assert viewer.model_version == first  # the first model other than its own: at once
    second = retrain("2", 0)
    assert first is not None and second > first
    clock.advance(1.0)
    viewer.refresh()
    assert viewer.model_version == first  # one second later: not yet
    clock.advance(MODEL_MIN_INTERVAL_S)
    viewer.refresh()
    assert viewer.model_version == second
    third = retrain("2", 3)
    assert third > second
    viewer.refresh(now=True)  # the Refresh button
    assert viewer.model_version == third
