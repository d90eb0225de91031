"""The team driver reads the page the way it is, including the moments between two updates.

The count of selected items and the inspector are separate views of the page; the driver reads
them in two round trips. These tests stage the page's states in Chromium (inside shadow roots,
as Panel renders them) so the moment between the two reads is certain rather than a rare race.
"""

from __future__ import annotations

import time

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS
from team_driver import _current_item, leaves_server, run

# A page like the dashboard's: each view's HTML in a shadow root of its own.
PAGE = """
<div id="count-host"></div><div id="inspector-host"></div>
<script>
  const count = document.getElementById('count-host').attachShadow({mode: 'open'});
  const inspector = document.getElementById('inspector-host').attachShadow({mode: 'open'});
  window.show = (n, item) => {
    count.innerHTML = `<span class="tw-selection-count" data-count="${n}">${n} selected</span>`;
    inspector.innerHTML = item === null
      ? "<div class='tw-inspector tw-muted'>Select items on the map</div>"
      : `<div class='tw-inspector'><b class='tw-item-id' data-item='${item}'>${item}</b></div>`;
  };
</script>
"""


async def _on_page(script: str, wait_s: float):
    """``_current_item`` of a page on which ``script`` ran (it may schedule later changes)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(5_000)  # as the latency run's 120 s, shorter
            await page.set_content(PAGE)
            await page.evaluate(script)
            started = time.monotonic()
            try:
                return await _current_item(page, wait_s=wait_s), time.monotonic() - started
            except TimeoutError as err:
                return err, time.monotonic() - started
        finally:
            await browser.close()


@pytest.mark.browser
def test_the_selection_cleared_between_the_two_reads_is_seen_as_nothing_selected():
    """The last item of a batch labelled: the inspector already says nothing is selected while
    the count still says 1, then the count follows. Waiting for an item id here waited for one
    that never came (a whole latency run stopped); the driver sees the selection is gone."""
    item, seconds = run(_on_page("show(1, null); setTimeout(() => show(0, null), 300)", wait_s=30))
    assert item is None
    assert seconds < 5


@pytest.mark.browser
def test_one_selected_item_is_read_from_the_inspector_and_several_are_not_one():
    assert run(_on_page("show(1, 'item-00042')", wait_s=30))[0] == "item-00042"
    # The inspector catching up with the count a moment later is waited for.
    item, _ = run(_on_page("show(1, null); setTimeout(() => show(1, 'item-7'), 300)", wait_s=30))
    assert item == "item-7"
    assert run(_on_page("show(3, null)", wait_s=30))[0] is None


@pytest.mark.browser
def test_an_inspector_that_never_follows_its_selection_is_an_error():
    error, seconds = run(_on_page("show(1, null)", wait_s=1.5))
    assert isinstance(error, TimeoutError) and "no item id" in str(error)
    assert 1.5 <= seconds < 10


@pytest.mark.browser
def test_a_stopped_run_leaves_the_page_state_it_stopped_in(tmp_path):
    """The file beside a failure's screenshot holds the error, the page's errors and the parts
    of the page the driver reads (inside their shadow roots)."""
    from playwright.async_api import async_playwright
    from team_driver import UserRun, write_failure

    async def scenario(path):
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.set_content(PAGE)
                await page.evaluate("show(1, null)")
                user = UserRun("expert1", page_errors=["console: boom"])
                await write_failure(page, user, TimeoutError("no item id"), path)
            finally:
                await browser.close()

    path = tmp_path / "team-failure-expert1.txt"
    run(scenario(path))
    text = path.read_text(encoding="utf-8")
    assert "expert1 stopped after 0 acknowledged labels" in text and "TimeoutError: no item id" in text
    assert "console: boom" in text
    assert 'data-count=\\"1\\"' in text and "Select items on the map" in text


def test_a_request_is_off_the_server_unless_it_goes_to_the_pages_own_origin():
    page = "http://127.0.0.1:5006/dashboard"
    assert not leaves_server("http://127.0.0.1:5006/static/extensions/panel/panel.min.js", page)
    assert not leaves_server("data:image/png;base64,AAAA", page)
    assert not leaves_server("blob:http://127.0.0.1:5006/4f1c", page)
    assert leaves_server("https://cdn.holoviz.org/panel/1.8.0/dist/css/markdown.css", page)
    assert leaves_server("https://fonts.googleapis.com/css2?family=Inter", page)
    assert leaves_server("http://127.0.0.1:5007/static/x.js", page)  # another port: another server
    assert leaves_server("http://127.0.0.1:50060/x", page)  # not a prefix match on the port
    assert leaves_server("blob:https://example.org/4f1c", page)
