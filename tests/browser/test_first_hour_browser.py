"""The first screen of the default layout at 1500x1000: the next queued item in the inspector,
the queue's reasons readable, the metrics visible without scrolling, nothing shown as '?' or NaN."""

from __future__ import annotations

import pytest
from browser_support import open_dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

WAIT_MS = 60_000


def test_default_layout_at_1500x1000(page: Page, dashboard_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1000})
    open_dashboard(page, dashboard_server)
    # The first batch is asked for when the page opens; its first item is in the inspector.
    expect(page.locator(".tw-inspector .tw-item-id")).to_be_visible(timeout=WAIT_MS)
    queued = page.locator(".tw-queue .tabulator-row")
    expect(queued.first).to_be_visible(timeout=WAIT_MS)
    assert page.locator(".tw-inspector .tw-item-id").get_attribute("data-item") == (
        queued.first.locator("[tabulator-field=item]").inner_text().strip())
    # Reasons wrap instead of being cut off, and the column is wide enough to read.
    reasons = page.locator(".tw-queue .tabulator-cell[tabulator-field=reason]")
    expect(reasons.first).not_to_be_empty(timeout=WAIT_MS)
    clipped = reasons.evaluate_all(
        "cells => cells.filter(c => c.scrollWidth > c.clientWidth + 1 || "
        "c.scrollHeight > c.clientHeight + 1).length")
    assert clipped == 0
    # Measured in the page in one step: the queue may be re-rendered meanwhile (a tab asks a newer
    # model for its batch when the background retrain after the start lands).
    widths = reasons.evaluate_all("cells => cells.map(c => c.getBoundingClientRect().width)")
    assert widths and widths[0] >= 250, widths
    # The metrics (summary and class table) are on screen without scrolling.
    for selector in (".tw-metrics-summary", ".tw-class-table"):
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["y"] + 40 <= 1000, (selector, box)
    assert page.evaluate("window.scrollY") == 0
    text = page.locator("body").inner_text()
    assert "NaN" not in text and "?" not in page.locator(".tw-model-version").inner_text()
    page.screenshot(path=screenshots / "default-layout-1500x1000.png")


def test_queue_shows_a_batch_that_arrives_while_the_table_is_built(browser, dashboard_server):
    """On a slow browser the first batch can reach the page before its table has been built;
    the queue must still list it (Panel's table drops data sent in that window)."""
    for attempt in range(3):  # the engine is warm after the first page: the batch comes fast
        context = browser.new_context(viewport={"width": 1500, "height": 1000})
        page = context.new_page()
        context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": 8})
        try:
            # 8 times slower JavaScript: ~25 s per page here, over 120 s on a slow CI machine.
            open_dashboard(page, dashboard_server, timeout_ms=600_000)
            first = page.locator(".tw-inspector .tw-item-id")
            expect(first).to_be_visible(timeout=WAIT_MS)
            rows = page.locator(".tw-queue .tabulator-row")
            expect(rows.first).to_be_visible(timeout=WAIT_MS)
            assert first.get_attribute("data-item") == (
                rows.first.locator("[tabulator-field=item]").inner_text().strip()), attempt
        finally:
            context.close()


def test_a_control_changed_before_it_is_drawn_is_no_page_error(page: Page, dashboard_server):
    """Bokeh's widget views toggle ``disabled`` on their control elements even before they have
    drawn them (a button following a job, changed while the page is still being built): with the
    page's guard that is skipped instead of throwing; a control drawn later shows the state."""
    open_dashboard(page, dashboard_server)
    expect(page.locator(".tw-next-batch button")).to_be_visible(timeout=WAIT_MS)
    thrown = page.evaluate("""() => {
      const toggle = window.Bokeh.require('core/dom').toggle_attribute;
      try { toggle(undefined, 'disabled', false); return ''; } catch (err) { return String(err); }
    }""")
    assert thrown == ""
    button = page.locator(".tw-next-batch button")
    button.evaluate("el => window.Bokeh.require('core/dom').toggle_attribute(el, 'disabled', true)")
    expect(button).to_be_disabled()  # drawn controls still follow every change
