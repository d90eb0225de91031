"""Clusters view in a real browser: switch the cluster method on the server, label one cluster.

Runs its own server over its own project (with a few labels of several classes, so ``linkage``
has something to learn from): switching ``clusters.method`` changes the project the server
holds, which the shared ``dashboard_server`` of the other browser tests must not see.
"""

from __future__ import annotations

import re
import sqlite3
import time

import numpy as np
import pytest
from browser_support import make_test_project, open_dashboard, serve_dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

WAIT_MS = 120_000


@pytest.fixture(scope="module")
def clusters_server(tmp_path_factory):
    from core.labels import LabelStore
    from core.project import LogisticConfig, dump_project, load_project

    project_path = make_test_project(tmp_path_factory.mktemp("clusters-project"))
    project = load_project(project_path)
    project.model = LogisticConfig(kind="logistic", max_iter=200)  # the view does not care
    dump_project(project, project_path)
    data = np.load(project_path.parent / "digits-lt.npz")
    ids, truth = data["id"].astype(str), data["label"].astype(str)
    with LabelStore(project.resolve(project.label_store)) as store:
        store.set_classes(project.classes)
        for cls in ("0", "1", "2", "3"):
            store.record_many(ids[truth == cls][:3].tolist(), cls, "seed", origin="expert")
    with serve_dashboard(project_path) as server:
        # The seeded labels make the server train once after it starts; opening a page while
        # that run imports its modules can hit Panel's module recorder (a 500 naming a module),
        # so the test starts once the log says the model is ready.
        deadline = time.monotonic() + 300
        while "model v1 ready" not in server.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, server.log.read_text(errors="replace")[-2000:]
            time.sleep(0.25)  # polling the server's log, not test synchronisation
        yield server


def test_switch_the_cluster_method_and_label_one_cluster(page: Page, clusters_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1000})
    open_dashboard(page, clusters_server, annotator="clusterer")
    page.locator(".bk-tab", has_text="Clusters").click()
    status = page.locator(".tw-clusters-status")
    page.locator(".tw-cluster-method select").select_option("linkage")
    expect(status).to_contain_text(re.compile(r"\d+ clusters by linkage"), timeout=WAIT_MS)
    expect(status).to_contain_text("learned from your labels")  # linkage ran, no fallback
    rows = page.locator(".tw-clusters .tabulator-row")
    expect(rows.first).to_be_visible(timeout=WAIT_MS)
    shown = int(status.locator("b").first.inner_text())
    assert rows.count() == shown  # one row per cluster the server found

    biggest = rows.first  # sorted by size
    size = int(biggest.locator(".tabulator-cell[tabulator-field='size']").inner_text())
    biggest.locator(".tabulator-cell[tabulator-field='cluster']").click()
    expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", str(size),
                                                                  timeout=WAIT_MS)
    page.locator(".tw-label-5 button").click()
    expect(page.locator(".tw-status")).to_contain_text("as '5'", timeout=WAIT_MS)
    page.screenshot(path=screenshots / "clusters-linkage.png", full_page=True)
    with sqlite3.connect(clusters_server.store) as conn:
        (labelled,) = conn.execute(
            "SELECT count(DISTINCT item_id) FROM events WHERE annotator = 'clusterer' "
            "AND label = '5'").fetchone()
    assert labelled == size  # the whole cluster, labelled in one action

    page.locator(".tw-outline-clusters input").check()  # the map outlines the linkage clusters
    expect(page.locator(".tw-map-outlines")).not_to_have_attribute("data-count", "0", timeout=WAIT_MS)
    assert int(page.locator(".tw-map-outlines").get_attribute("data-count")) <= min(shown, 200)
    page.screenshot(path=screenshots / "clusters-outlined.png", full_page=True)

    page.locator(".tw-cluster-method select").select_option("hdbscan")  # and back to density
    expect(status).to_contain_text(re.compile(r"\d+ clusters by hdbscan"), timeout=WAIT_MS)
