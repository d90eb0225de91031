"""Building the page: a view that fails to build never stops the others or what runs after them,
and a selection made before the inspector exists is what it shows once built."""

from __future__ import annotations

import asyncio
import logging

import panel as pn

from dashboard.app import App, run_in_slices
from dashboard.state import AppState


def _html(app: App) -> str:
    return "".join(str(pane.object) for pane in app.body.select(pn.pane.HTML)
                   + app.sidebar.select(pn.pane.HTML))


def test_slices_run_one_per_turn_and_a_failing_one_does_not_stop_the_chain(caplog):
    turns: list = []  # what the event loop would run later, one callback a turn
    ran: list[str] = []
    finished: list[bool] = []

    def fail() -> None:
        raise RuntimeError("this view cannot be built")

    steps = [lambda: ran.append("a"), fail, lambda: ran.append("c")]
    with caplog.at_level(logging.ERROR, logger="tailwise"):
        run_in_slices(steps, turns.append, finish=lambda: finished.append(True))
        count = 0
        while turns:
            assert not finished  # nothing is done until every slice has had its turn
            turns.pop(0)()
            count += 1
    assert ran == ["a", "c"] and finished == [True]
    assert count == 3  # one slice per turn of the loop, and the last one finishes
    assert "this view cannot be built" in caplog.text


def test_a_newer_build_ends_the_older_chain_without_finishing_it():
    turns: list = []
    ran: list[int] = []
    finished: list[bool] = []
    state = {"cancelled": False}

    def first() -> None:
        ran.append(1)
        state["cancelled"] = True  # a layout switched meanwhile

    run_in_slices([first, lambda: ran.append(2)], turns.append, finish=lambda: finished.append(True),
                  cancelled=lambda: state["cancelled"])
    while turns:
        turns.pop(0)()
    assert ran == [1] and not finished


def test_a_view_that_fails_shows_its_error_in_its_place_and_the_page_still_follows(
        session, dashboard_project, monkeypatch):
    import dashboard.app as app_module

    classes = dict(app_module.view_classes())

    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("queue <failed>")

    monkeypatch.setattr(app_module, "view_classes", lambda: {**classes, "queue": Broken})
    app = App(dashboard_project, layout="default")
    app.state = AppState(session)
    followed: list[bool] = []
    app._relayout(then=lambda: followed.append(True))
    html = _html(app)
    assert "Could not show queue: queue &lt;failed&gt;" in html  # escaped, in the queue's place
    assert {"map", "inspector"} <= set(app.views) and "queue" not in app.views
    assert followed == [True]  # the refresh and the first batch still start


def test_a_failure_after_the_views_are_built_is_shown_on_the_page(session, dashboard_project):
    app = App(dashboard_project, layout="default")
    app.state = AppState(session)

    def follow() -> None:
        raise RuntimeError("no periodic callbacks")

    app._relayout(then=follow)
    assert "could not start following the other tabs" in _html(app)
    assert "no periodic callbacks" in _html(app)


def test_a_selection_made_before_the_inspector_is_built_is_shown_once_it_is(session, dashboard_project):
    app = App(dashboard_project, layout="default")
    app.state = AppState(session)
    item = str(session.dataset.ids[5])
    app.state.select([item])  # e.g. the first batch arriving while the page is being built
    app._relayout()
    assert "inspector" in app.views
    assert f"data-item='{item}'" in _html(app)
    other = str(session.dataset.ids[6])
    app.state.select([other])  # and it follows the selection from then on
    assert f"data-item='{other}'" in _html(app)


def _failing_history(monkeypatch):
    """The inspector cannot read an item's history (any failure while it draws)."""
    from dashboard.views.inspector import InspectorView

    def history(self, item: str) -> str:
        raise RuntimeError("history <unreadable>")

    monkeypatch.setattr(InspectorView, "_history", history)


def test_a_view_that_cannot_draw_the_selection_shows_why_and_the_selection_still_changes(
        session, dashboard_project, monkeypatch, caplog):
    """A view redraws in a watcher of the parameter it follows: its exception used to go up into
    whatever set the selection, so ``select`` raised and the views after it never heard of it."""
    app = App(dashboard_project, layout="default")
    app.state = AppState(session)
    app._relayout()
    _failing_history(monkeypatch)
    item = str(session.dataset.ids[5])
    with caplog.at_level(logging.ERROR, logger="tailwise"):
        assert app.state.select([item]) == [item]
    html = _html(app)
    assert "data-count=\"1\"" in html  # the map's count of selected items followed
    assert "Could not show this part of the page: RuntimeError: history &lt;unreadable&gt;" in html
    failed = [r for r in caplog.records if r.exc_info and "history <unreadable>" in str(r.exc_info[1])]
    assert failed and "could not draw" in failed[0].getMessage()  # with its traceback


def test_a_label_is_announced_and_the_queue_moves_on_even_if_a_view_cannot_draw(
        session, dashboard_project, monkeypatch):
    """The label of a queued item is saved, announced to the other views and the next queued
    item selected, although the inspector fails to draw that item (it says so in its place)."""
    app = App(dashboard_project, layout="default")
    app.state = state = AppState(session, annotator="ann")
    app._relayout()
    queue = state.next_batch()
    assert len(queue) >= 2 and state.selection == queue[:1]
    _failing_history(monkeypatch)
    changes = state.changes
    events = state.label_selection(session.classes[0].name)
    assert len(events) == 1 and state.saved_events == 1
    assert state.selection == [queue[1]]  # the queue moved on
    assert state.changes == changes + 1  # and the other views heard of the label
    assert "Could not show this part of the page" in _html(app)


def test_a_page_that_cannot_start_says_so_instead_of_preparing_for_ever(
        session, dashboard_project, caplog):
    """The poll stops before the page starts: a failure there left "Preparing…" on the page."""
    from concurrent.futures import Future
    from types import SimpleNamespace

    app = App(dashboard_project, layout="default")
    ready: Future = Future()
    ready.set_result(session)
    app.preparation = SimpleNamespace(future=ready)

    def fail(_session) -> None:
        raise RuntimeError("no state <for you>")

    app.ready = fail
    with caplog.at_level(logging.ERROR, logger="tailwise"):
        assert app._check() is True
    assert "The page could not start: RuntimeError: no state &lt;for you&gt;" in _html(app)
    assert any(r.exc_info for r in caplog.records if "could not start the page" in r.getMessage())


def test_background_work_that_fails_is_logged_and_shown_on_the_page(session, caplog):
    from async_support import run_async

    state = AppState(session)

    async def work() -> None:
        raise RuntimeError("renewal <failed>")

    async def scenario() -> None:
        task = state.spawn(work(), "the new model's batch")
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callback runs on the next turn of the loop

    with caplog.at_level(logging.ERROR, logger="tailwise"):
        run_async(scenario())
    assert state.error == "the new model's batch failed: RuntimeError: renewal <failed>"
    assert any(r.exc_info for r in caplog.records if "the new model's batch failed" in r.getMessage())


def test_a_callback_of_the_page_that_fails_is_logged_and_shown(session, dashboard_project, caplog):
    """What Panel's exception handler for the session (and the page's own timeout and next-tick
    callbacks) do with a failure."""
    app = App(dashboard_project, layout="default")
    app.state = AppState(session)

    def click() -> None:
        raise KeyError("item-7")

    with caplog.at_level(logging.ERROR, logger="tailwise"):
        app._reported(click)()
    assert app.state.error == "KeyError: 'item-7'"
    assert any(r.exc_info for r in caplog.records if "callback of the page failed" in r.getMessage())


def test_a_batch_chosen_while_its_first_item_was_labelled_selects_the_next_open_item(session):
    """The one-user latency run that stopped with 'the page still shows item-00627 after
    labelling it': the page's first batch was labelled while a Next batch was being chosen, and
    that batch, chosen before the label, came back with the labelled item first and selected it."""
    state = AppState(session, annotator="ann")
    choose = state._query

    def chosen_while_labelled():
        result = choose()  # the strategy's snapshot: nothing labelled yet
        session.label([str(result.ids[0])], session.classes[0].name, "ann")  # then the label lands
        return result

    state._query = chosen_while_labelled
    queue = state.next_batch()
    assert len(queue) >= 2
    assert state.selection == [queue[1]]  # the labelled item is not offered again
    state.label_selection(session.classes[1].name)
    assert state.selection == [queue[2]]  # and the queue goes on from there


def test_a_layout_switch_leaves_no_view_of_the_earlier_layout_following_the_state(
        session, dashboard_project):
    """The views of a layout switched away from stop watching the page's state (their own
    watchers, their widgets' bindings and HoloViews streams): before, each switch left ~100 more
    watchers, and every earlier layout's map and tables redrew at every label and model."""
    import gc

    from page_support import show_every_tab

    from core.layout import load_layout

    app = App(dashboard_project, layout="default")
    app.ready(session)
    show_every_tab(app)

    def watchers() -> list:
        gc.collect()  # `rx` expressions of dropped widgets unregister themselves when collected
        return app.state._watchers()

    first = len(watchers())
    old_views = list(app.views.values())
    for name in ("review", "default", "review", "default"):
        app.layout = load_layout(name)
        show_every_tab(app)
    assert not {id(v) for v in old_views} & {id(v) for v in app.views.values()}
    owners = {id(getattr(w.fn, "__self__", None)) for w in watchers()}
    assert not owners & {id(v) for v in old_views}
    assert len(watchers()) <= first + 5  # the same views again: about the same watchers
    # The views shown now follow the state; the ones switched away from do not.
    old_history = next(v for v in old_views if type(v).__name__ == "HistoryView")
    app.state.annotator = "ann"
    app.state.select(session.dataset.ids[:2].tolist())
    app.state.label_selection("0")
    assert "saved 2 labels" in app.state.status
    assert len(app.views["history"].table.object) == 2
    assert len(old_history.table.object) == 0
