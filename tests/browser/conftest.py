"""Browser-test fixtures: Chromium launch settings and one shared ``panel serve dashboard``.

The server runs as a subprocess from the repository root over a small digits-lt demo project
whose map uses PCA (instant; UMAP's JIT warm-up would cost ~40 s per process). Tests reach it at
``dashboard_server.url`` and may read its label store (``dashboard_server.store``) with SQLite.
Helpers live in ``browser_support`` (re-exported here for older imports).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import expect as async_expect
from playwright.sync_api import expect
from browser_support import (  # noqa: F401  (re-exported)
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    Server,
    make_test_project,
    open_dashboard,
    serve_dashboard,
)

# An assertion without its own timeout waits up to 30 s (Playwright's default is 5 s): the CI
# machine (2 cores, shared) is at times several times slower than a workstation, and a page that
# answers a click in 6 s there is slow, not wrong. The latency benchmark measures speed.
EXPECT_TIMEOUT_MS = 30_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)
async_expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def dashboard_server(tmp_path_factory) -> Iterator[Server]:
    """One server over a small demo project, shared by every browser test."""
    folder = tmp_path_factory.mktemp("dashboard-project")
    with serve_dashboard(make_test_project(folder)) as server:
        yield server
