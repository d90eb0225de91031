"""Export from one running dashboard, import into a fresh one: the map shows the same labels."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from core.labels import LabelStore


@pytest.mark.browser
def test_export_from_one_server_import_in_a_fresh_one(page, dashboard_server, tmp_path):
    """Export in the browser from one server, upload into a fresh server: same labels on its map."""
    from browser_support import make_test_project, open_dashboard, serve_dashboard
    from playwright.sync_api import expect

    open_dashboard(page, dashboard_server)  # the server has opened the project and its store
    with LabelStore(dashboard_server.store) as store:  # the sender's labels, as if clicked
        truth = np.load(dashboard_server.project.parent / "digits-lt.npz")
        ids, gt = truth["id"].astype(str), truth["label"].astype(str)
        for cls in ("4", "6", "0"):
            store.record_many(ids[gt == cls][:3].tolist(), cls, "alice")
    page.locator(".bk-tab", has_text="Project").click()
    page.locator(".tw-export button").click()
    expect(page.locator(".tw-import-result")).to_contain_text("exported", timeout=30_000)
    with page.expect_download(timeout=30_000) as download:
        page.locator(".tw-export-download button").click()
    shared = tmp_path / download.value.suggested_filename
    download.value.save_as(shared)
    with LabelStore(dashboard_server.store) as store:
        sent = store.current()
    assert (
        shared.suffix == ".yaml"
        and len(yaml.safe_load(shared.read_text(encoding="utf-8"))["labels"]) >= 9
    )

    fresh = make_test_project(tmp_path / "receiver")
    with serve_dashboard(fresh) as server:
        open_dashboard(page, server)
        legend = page.locator(".tw-legend .tw-legend-item").filter(has_not=page.locator(".tw-ring"))
        expect(legend).to_have_count(0)  # nothing labelled yet
        page.locator(".bk-tab", has_text="Project").click()
        page.locator(".tw-import-upload input[type=file]").set_input_files(shared)
        expect(page.locator(".tw-import-result")).to_contain_text("press Import", timeout=30_000)
        page.locator(".tw-import button").click()
        expect(page.locator(".tw-import-result")).to_contain_text("imported", timeout=30_000)
        with LabelStore(server.store) as store:
            assert store.current() == sent
        shown = sorted({v for v in sent.values()})
        expect(legend).to_have_count(len(shown), timeout=30_000)
        texts = [t.replace("★", "").strip() for t in legend.all_inner_texts()]
        assert sorted(texts) == shown
