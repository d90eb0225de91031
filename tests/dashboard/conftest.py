"""A small prepared digits-lt project (PCA map, logistic model) for dashboard state tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def dashboard_project(tmp_path_factory) -> Path:
    from core.data import make_demo
    from core.project import LogisticConfig, dump_project, load_project

    folder = tmp_path_factory.mktemp("dashboard-demo")
    path = make_demo("digits-lt", folder, seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.model = LogisticConfig(kind="logistic", max_iter=200)  # the views do not care; it is fast
    dump_project(project, path)
    return path


@pytest.fixture
def session(dashboard_project, tmp_path):
    """A prepared Session over the demo with its own, empty label store."""
    from core.labels import LabelStore
    from core.session import Session

    s = Session.open(dashboard_project, store=LabelStore(tmp_path / "labels.sqlite"))
    s.prepare()
    yield s
    s.store.close()

