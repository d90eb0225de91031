"""End to end: a real ``panel serve dashboard`` driven by headless Chromium.

Every wait is on page state (``expect`` / ``wait_for_function``), never on a fixed sleep. Label
events are checked in the project's SQLite label store directly.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from browser_support import open_dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

WAIT_MS = 60_000


def stored(server, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(server.store) as conn:
        return conn.execute(sql, args).fetchall()


def selected_count(page: Page) -> int:
    return int(page.locator(".tw-selection-count").get_attribute("data-count"))


def box_drag(page: Page, fx0: float, fy0: float, fx1: float, fy1: float) -> None:
    """Drag a box over the map between two points given as fractions of the plot area."""
    box = page.locator(".tw-map .bk-Canvas").first.bounding_box()
    page.mouse.move(box["x"] + fx0 * box["width"], box["y"] + fy0 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + fx1 * box["width"], box["y"] + fy1 * box["height"], steps=10)
    page.mouse.up()


def wait_selected(page: Page, at_least: int = 1, before: int = 0) -> int:
    """Wait until the selection count differs from ``before`` (what was selected until now)."""
    expect(page.locator(".tw-selection-count")).not_to_have_attribute("data-count", str(before),
                                                                      timeout=WAIT_MS)
    count = selected_count(page)
    assert count >= at_least
    return count


def saved(page: Page) -> int:
    """How many label events this browser session has had committed (shown on the page)."""
    return int(page.locator(".tw-status-box [data-saved]").get_attribute("data-saved"))


def label_selected(page: Page, label: str, key: bool = False) -> None:
    """Label the selection (class button, or its number key) and wait for the commit."""
    before = saved(page)
    if key:
        page.keyboard.press(label)
    else:
        page.locator(f".tw-label-{label} button").click()
    expect(page.locator(".tw-status-box [data-saved]")).not_to_have_attribute("data-saved", str(before),
                                                                                timeout=WAIT_MS)
    expect(page.locator(".tw-status")).to_contain_text(f"as '{label}'")


def test_map_renders(page: Page, dashboard_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1000})
    open_dashboard(page, dashboard_server)
    canvas = page.locator(".tw-map .bk-Canvas").first
    expect(canvas).to_be_visible()
    size = canvas.bounding_box()
    assert size["width"] > 300 and size["height"] > 300
    expect(page.locator(".tw-error")).to_have_count(0)
    expect(page.locator(".tw-legend")).to_contain_text("420 items")
    page.screenshot(path=screenshots / "map.png", full_page=True)


def test_box_drag_selects_and_class_button_stores_events(page: Page, dashboard_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1000})
    open_dashboard(page, dashboard_server, annotator="box-tester")
    before = selected_count(page)  # the first queued item, selected when the page opened
    box_drag(page, 0.25, 0.25, 0.75, 0.75)
    count = wait_selected(page, at_least=2, before=before)
    expect(page.locator(".tw-inspector")).to_contain_text(f"{count} selected")
    page.locator(".tw-label-3 button").click()
    expect(page.locator(".tw-status")).to_contain_text(f"saved {count} labels as '3'", timeout=WAIT_MS)
    rows = stored(dashboard_server, "SELECT item_id FROM events WHERE annotator = ? AND label = ?",
                  "box-tester", "3")
    assert len(rows) == count
    page.screenshot(path=screenshots / "labelled.png", full_page=True)

    # Undo reverts the whole action: every item gets an 'undo' event restoring its old label.
    page.locator(".tw-undo button").click()
    expect(page.locator(".tw-status")).to_contain_text(f"undone {count} labels", timeout=WAIT_MS)
    undone = stored(dashboard_server, "SELECT count(*) FROM events WHERE annotator = ? AND origin = 'undo'",
                    "box-tester")
    assert undone == [(count,)]


def test_retrain_changes_the_model_version(page: Page, dashboard_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1100})
    open_dashboard(page, dashboard_server, annotator="retrainer")
    page.locator(".tw-next-batch button").click()
    expect(page.locator(".tw-status")).to_contain_text("queued 10 items", timeout=WAIT_MS)
    expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", "1", timeout=WAIT_MS)
    # Each label moves the selection to the next queued item; digit classes have digit keys.
    for label, key in (("5", False), ("5", True), ("2", False), ("2", True)):
        label_selected(page, label, key=key)
    version = page.locator(".tw-model-version")
    before = int(version.get_attribute("data-version"))
    page.locator(".tw-retrain button").click()
    expect(version).to_have_attribute("data-version", str(before + 1), timeout=180_000)
    expect(version).to_contain_text(f"model v{before + 1}")
    expect(page.locator(".tw-error")).to_have_count(0)
    # The map can now show the model's predictions; keep a picture of it for the README.
    page.locator(".tw-colour-by select").select_option(label="predicted class")
    expect(page.locator(".tw-map-rendered")).to_have_attribute("data-colour-by", "predicted", timeout=WAIT_MS)
    expect(page.locator(".tw-legend")).to_contain_text("2")
    page.locator(".tw-next-batch button").click()
    expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", "1", timeout=WAIT_MS)
    page.screenshot(path=screenshots / "dashboard.png", full_page=True)


def test_two_browser_contexts_label_at_once(browser, dashboard_server, screenshots):
    pages = []
    for name in ("expert-a", "expert-b"):
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        pages.append(open_dashboard(context.new_page(), dashboard_server, annotator=name))
    for page in pages:
        page.locator(".tw-next-batch button").click()
    for page in pages:
        expect(page.locator(".tw-status")).to_contain_text("queued 10 items", timeout=WAIT_MS)
        expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", "1", timeout=WAIT_MS)
    # Both click before either waits for its confirmation.
    pages[0].locator(".tw-label-0 button").click()
    pages[1].locator(".tw-label-8 button").click()
    for page, label in zip(pages, ("0", "8")):
        expect(page.locator(".tw-status")).to_contain_text(f"as '{label}'", timeout=WAIT_MS)
    for name, label in (("expert-a", "0"), ("expert-b", "8")):
        rows = stored(dashboard_server, "SELECT count(*) FROM events WHERE annotator = ? AND label = ?",
                      name, label)
        assert rows == [(1,)]
    # Each session keeps its own selection and annotator.
    assert pages[0].locator(".tw-annotator input").input_value() == "expert-a"
    assert pages[1].locator(".tw-annotator input").input_value() == "expert-b"
    pages[1].screenshot(path=screenshots / "second-expert.png", full_page=True)
    for page in pages:
        page.context.close()


def tile(page: Page, name: str) -> float:
    """The value of a metrics tile ('balanced accuracy', 'tail recall', ...)."""
    cell = page.locator(".tw-tile", has=page.locator(".tw-tile-name", has_text=name))
    return float(cell.locator(".tw-tile-value").inner_text())


def test_labelling_the_queue_improves_the_metrics(browser, tmp_path, screenshots):
    """A new user's loop from the README: queue → label → retrain, twice. Balanced accuracy goes
    up, the queue finds rare classes, and the model panel says which learner it is.

    (The demo's rare classes hold 3-7 of 420 items: with one label each, their held-out recall
    on the two to six items left is too coarse a signal to require a rise at every retrain.)"""
    import numpy as np
    from browser_support import make_test_project, serve_dashboard

    from core.project import load_project

    project = make_test_project(tmp_path / "loop")
    data = np.load(project.parent / "digits-lt.npz")
    truth = dict(zip(data["id"].astype(str).tolist(), data["label"].astype(str).tolist()))
    with serve_dashboard(project) as server:
        page = browser.new_context(viewport={"width": 1500, "height": 1100}).new_page()
        open_dashboard(page, server, annotator="new-user")
        version = page.locator(".tw-model-version")

        def label_batches(count: int) -> None:
            for _ in range(count):
                page.locator(".tw-next-batch button").click()
                expect(page.locator(".tw-status")).to_contain_text("queued 10 items", timeout=WAIT_MS)
                previous = None
                for _ in range(10):
                    item = page.locator(".tw-inspector .tw-item-id")
                    if previous is not None:
                        expect(item).not_to_have_attribute("data-item", previous, timeout=WAIT_MS)
                    previous = item.get_attribute("data-item")
                    label_selected(page, truth[previous])  # the expert knows the answer

        def retrain() -> tuple[float, float]:
            before = int(version.get_attribute("data-version"))
            page.locator(".tw-retrain button").click()
            expect(version).to_have_attribute("data-version", str(before + 1), timeout=180_000)
            expect(version).to_contain_text(re.compile(  # which learner model: auto chose
                r"model v\d+ · (logistic|mlp|random forest|gradient boosting)"))
            expect(page.locator(".tw-learner")).to_contain_text("labels")
            page.locator(".bk-tab", has_text="Metrics").click()
            expect(page.locator(".tw-metrics-summary")).to_contain_text(f"model v{before + 1}",
                                                                        timeout=WAIT_MS)
            return tile(page, "balanced accuracy"), tile(page, "tail recall")

        label_batches(2)
        early, _ = retrain()
        label_batches(2)
        later, _ = retrain()
        page.screenshot(path=screenshots / "tail-recall.png", full_page=True)
        with sqlite3.connect(server.store) as conn:
            (stored_labels,) = conn.execute(
                "SELECT count(*) FROM events WHERE annotator = 'new-user'").fetchone()
            rare = [c.name for c in load_project(project).classes if c.rare]
            found = {label for (label,) in conn.execute(
                "SELECT DISTINCT label FROM events WHERE annotator = 'new-user'")}
        assert stored_labels == 40
        assert later > early, (early, later)
        assert set(rare) & found, (rare, found)  # the queue led to a rare class
