"""Two annotators on one real server, in two Chromium contexts: with ``agreement.double_share``
the second annotator's queue receives items the first one labelled (never her own), a different
answer shows in the admin's conflicts list, and only the admin resolves it (recorded as an event).
Runs its own server and project (the ``review`` layout), so the shared ``dashboard_server`` of
the other browser tests is never touched.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
from browser_support import SCREENSHOTS, basic_auth_args, make_team_project, serve_dashboard
from team_driver import WAIT_MS, UserRun, label_items, launch, login, run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

USERS = {"ann": "pw-ann", "bob": "pw-bob"}
SECOND = "second opinion"
W = {"timeout": WAIT_MS}  # every wait is on page state, as long as the team tests allow


def choose(item: str, k: int) -> str:
    return str((k * 7 + len(item)) % 6)


def review_project(folder):
    from core.project import AccessConfig, dump_project, load_project

    path = make_team_project(folder)
    project = load_project(path)
    project.layout = "review"
    project.agreement.double_share = 0.5
    project.query.batch_size = 6  # three of bob's six items are second opinions
    project.access = AccessConfig(admins=["ann"], annotators=["bob"])
    dump_project(project, path)
    return path


@pytest.mark.timeout(900)
def test_second_annotator_gets_the_double_share_and_the_admin_resolves_the_conflict(tmp_path):
    async def scenario(server):
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await launch(playwright)
            pages, runs = {}, {name: UserRun(name) for name in USERS}
            try:
                return await two_annotators(browser, server, pages, runs)
            except Exception as err:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                for name, page in pages.items():
                    await page.screenshot(path=SCREENSHOTS / f"review-failure-{name}.png",
                                          full_page=True)
                errors = [e for r in runs.values() for e in r.page_errors]
                raise AssertionError(f"{err}\npage errors: {errors}") from err
            finally:
                await browser.close()

    async def two_annotators(browser, server, pages, runs):
        from playwright.async_api import expect

        ann_context = await browser.new_context(viewport={"width": 1500, "height": 1000})
        pages["ann"] = ann = await login(ann_context, server, "ann", USERS["ann"], runs["ann"])
        await expect(ann.locator(".tw-selection-count")).to_have_attribute("data-count", "1", **W)
        await label_items(ann, runs["ann"], 4, choose)
        given = dict(runs["ann"].acknowledged)

        bob_context = await browser.new_context(viewport={"width": 1500, "height": 1000})
        pages["bob"] = bob = await login(bob_context, server, "bob", USERS["bob"], runs["bob"])
        # Bob's first batch: half of it is ann's labelled items, each with the reason.
        seconds = bob.locator(".tw-queue .tabulator-row", has_text=SECOND)
        await expect(seconds).to_have_count(3, **W)
        items = [(await row.locator("[tabulator-field=item]").inner_text()).strip()
                 for row in await seconds.all()]
        assert set(items) <= set(given), (items, given)
        # Ann's own queue never holds her labels for a second opinion.
        await expect(ann.locator(".tw-queue .tabulator-row", has_text=SECOND)).to_have_count(0, **W)

        item = items[0]
        other = str((int(given[item]) + 1) % 6)
        await bob.locator(".tw-queue .tabulator-row", has_text=item).click()
        shown = bob.locator(".tw-inspector .tw-item-id")
        await expect(shown).to_have_attribute("data-item", item, **W)
        await bob.locator(f".tw-label-{other} button").click()
        await expect(bob.locator(".tw-status")).to_contain_text(f"saved 1 label as '{other}'", **W)

        # The admin's conflicts list shows the disagreement, with who said what.
        conflict = ann.locator(".tw-conflicts .tabulator-row", has_text=item)
        await expect(conflict).to_contain_text(f"ann: {given[item]} · bob: {other}", **W)
        summary = ann.locator(".tw-agreement-summary")
        await expect(summary).to_have_attribute("data-disagreements", "1", **W)
        await expect(summary).to_contain_text("Cohen's kappa", **W)
        # Bob is no admin: his Resolve is off (and the server refuses it; see the view tests).
        await expect(bob.locator(".tw-resolve button")).to_be_disabled(**W)

        await conflict.click()
        await expect(ann.locator(".tw-conflict-item")).to_have_attribute("data-item", item, **W)
        await ann.locator(".tw-settle-class select").select_option(other)
        await ann.locator(".tw-resolve button").click()
        await expect(ann.locator(".tw-status")).to_contain_text(f"resolved {item} as '{other}'",
                                                                 **W)
        await expect(conflict).to_have_count(0, **W)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await ann.screenshot(path=SCREENSHOTS / "review-agreement.png", full_page=True)

        # A retrain: the calibration and prevalence tab fills in.
        version = ann.locator(".tw-model-version")
        before = await version.get_attribute("data-version")
        await ann.locator(".tw-retrain button").click()
        await expect(version).not_to_have_attribute("data-version", before, **W)
        await ann.locator(".bk-tab", has_text="Calibration").click()
        await expect(ann.locator(".tw-calibration-summary")).to_have_attribute(
            "data-source", "ground_truth", **W)
        prevalence = ann.locator(".tw-prevalence-table")
        in_words = re.compile(r"≈ [\d,]+ more '\d' in the pool, 90 % interval [\d,]+–[\d,]+")
        await expect(prevalence).to_contain_text(in_words, **W)
        await expect(ann.locator(".tw-reliability canvas").first).to_be_visible(**W)
        await ann.screenshot(path=SCREENSHOTS / "review-calibration.png", full_page=True)
        for page in pages.values():
            await page.context.close()
        return given, item, other, runs

    project = review_project(tmp_path)
    with serve_dashboard(project, extra_args=basic_auth_args(tmp_path, USERS)) as server:
        given, item, other, runs = run(scenario(server))
        log = server.log.read_text(errors="replace")
    with sqlite3.connect(server.store) as conn:
        events = conn.execute("SELECT annotator, item_id, label, origin FROM events "
                              "ORDER BY event_id").fetchall()
    assert [e for e in events if e[0] == "ann" and e[3] == "expert"] == [
        ("ann", i, lab, "expert") for i, lab in given.items()]
    assert ("bob", item, other, "expert") in events
    assert events[-1] == ("ann", item, other, "resolution")
    assert [e for r in runs.values() for e in r.page_errors] == []
    assert "Traceback" not in log
