"""A rasterised map of 2x10^5 items in real Chromium: draw a lasso with the mouse, label the
selection, find the labels in the store and the map recoloured.

The pool is a folder of Parquet files (``data: {kind: parquet, path: FOLDER}``) with a PCA map, so
the server is ready in seconds; the map is HoloViews' ``datashade`` of the shared map table.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest
import yaml
from browser_support import serve_dashboard
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

N_ITEMS = 200_000
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def large_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("large-map")
    rng = np.random.default_rng(3)
    centres = rng.normal(0, 4, (6, 16))
    y = rng.choice(6, N_ITEMS, p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01])
    x = (centres[y] + rng.normal(0, 1, (N_ITEMS, 16))).astype(np.float32)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(16)])
    frame.insert(0, "id", [f"src-{i:06d}" for i in range(N_ITEMS)])
    (root / "pool").mkdir()
    for j, rows in enumerate(np.array_split(np.arange(N_ITEMS), 4)):
        frame.iloc[rows].to_parquet(root / "pool" / f"part-{j}.parquet", index=False)
    project = {
        "name": "large map", "data": {"kind": "parquet", "path": "pool"},
        "classes": [{"name": n} for n in ("star", "galaxy", "quasar", "nova", "blazar", "other")],
        "encoder": {"kind": "tabular"}, "model": {"kind": "logistic"},
        "map": {"method": "pca", "raster_threshold": 50_000},
        "query": {"strategy": "margin"},
    }
    path = root / "project.yaml"
    path.write_text(yaml.safe_dump(project), encoding="utf-8")
    with serve_dashboard(path) as server:
        yield server


def _canvas_pixels(page: Page) -> np.ndarray:
    import io

    from PIL import Image

    png = page.locator(".tw-map .bk-Canvas").first.screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _draw_lasso(page: Page, fraction: float = 0.3, vertices: int = 24) -> None:
    """Press the lasso tool and draw an ellipse around the plot's centre with the mouse."""
    page.locator(".tw-map .bk-OnOffButton[title='Lasso Select']").first.click()
    canvas = page.locator(".tw-map .bk-Canvas").first.bounding_box()
    cx, cy = canvas["x"] + 0.5 * canvas["width"], canvas["y"] + 0.5 * canvas["height"]
    rx, ry = fraction * canvas["width"], fraction * canvas["height"]
    page.mouse.move(cx + rx, cy)
    page.mouse.down()
    for a in np.linspace(0, 2 * np.pi, vertices + 1)[1:]:
        page.mouse.move(cx + rx * np.cos(a), cy + ry * np.sin(a), steps=3)
    page.mouse.up()


def test_lasso_drawn_with_the_mouse_labels_the_selection(page: Page, large_server, screenshots):
    page.set_viewport_size({"width": 1500, "height": 1000})
    page.goto(large_server.url)
    expect(page.locator(".tw-map canvas").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".tw-label-star").first).to_be_visible(timeout=WAIT_MS)
    name = page.locator(".tw-annotator input")
    name.fill("lasso-tester")
    name.press("Enter")
    expect(page.locator(".tw-legend")).to_contain_text(f"{N_ITEMS:,} items · rasterised", timeout=WAIT_MS)
    drawn = page.locator(".tw-map-rendered")
    expect(drawn).to_have_attribute("data-colour-by", "label", timeout=WAIT_MS)
    counter = page.locator(".tw-selection-count")
    # The page asks for the first batch when it opens and selects its first item: let it settle.
    expect(counter).to_have_attribute("data-count", "1", timeout=WAIT_MS)
    version = drawn.get_attribute("data-version")
    before = _canvas_pixels(page)

    _draw_lasso(page)
    expect(counter).not_to_have_attribute("data-count", "1", timeout=WAIT_MS)
    count = int(counter.get_attribute("data-count"))
    assert 0.01 * N_ITEMS < count < 0.99 * N_ITEMS, count  # a real lasso, not the whole map

    page.locator(".tw-label-nova button").click()
    expect(page.locator(".tw-status")).to_contain_text(f"saved {count} labels as 'nova'", timeout=WAIT_MS)
    with sqlite3.connect(large_server.store) as conn:
        rows = conn.execute("SELECT item_id FROM events WHERE annotator = ? AND label = ?",
                            ("lasso-tester", "nova")).fetchall()
    assert len(rows) == count and len({r[0] for r in rows}) == count
    assert all(r[0].startswith("src-") for r in rows)

    # The raster is redrawn from the updated table, in the class colour where the lasso was.
    expect(drawn).not_to_have_attribute("data-version", version, timeout=WAIT_MS)
    expect(page.locator(".tw-legend")).to_contain_text("nova", timeout=WAIT_MS)
    changed = 0.0
    for _ in range(50):  # the new image reaches the canvas right after the version attribute
        changed = float(np.abs(_canvas_pixels(page) - before).sum(axis=2).mean())
        if changed > 1.0:
            break
        page.wait_for_timeout(200)
    assert changed > 1.0, "the map did not change colour after labelling"
    page.screenshot(path=screenshots / "large-map-lasso.png", full_page=True)
    expect(page.locator(".tw-error")).to_have_count(0)


def test_the_server_log_reports_the_progress_of_preparing_the_project(page: Page, large_server):
    """``panel serve`` leaves the root logger at WARNING: the progress lines must still be there."""
    page.goto(large_server.url)
    expect(page.locator(".tw-label-star").first).to_be_visible(timeout=WAIT_MS)
    lines = [line for line in large_server.log.read_text().splitlines()
             if "preparing project.yaml:" in line]
    assert "loading embeddings and map (0/1)" in lines[0], lines
    assert "ready (1/1)" in lines[-1], lines
