"""Building the page: a view that fails to build never stops the others or what runs after them,
and a selection made before the inspector exists is what it shows once built."""

from __future__ import annotations

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
