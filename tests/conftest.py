"""Fixtures shared by every test folder (keep this file small)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


@pytest.fixture
def write_project(tmp_path: Path) -> Callable[..., Path]:
    """``write_project(data={...}, **fields)`` writes ``tmp_path/project.yaml``; returns the path."""

    def write(data: dict[str, Any], name: str = "project.yaml", **fields: Any) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"name": "test", "data": data, **fields}), encoding="utf-8")
        return path

    return write


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    """A fresh digits-lt demo project (seed 0) in ``tmp_path/demo``; returns its project.yaml."""
    from core.data import make_demo

    return make_demo("digits-lt", tmp_path / "demo", seed=0)


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch thread for a module: the machine is shared, and runs whose results are compared
    must use the same thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_sky_project(folder: Path, *, n_items: int, seed: int, model: dict) -> Path:
    """A sky-lt catalogue project with an instant PCA map and the given model settings."""
    from core.data.sky import make_sky_demo

    path = make_sky_demo(folder, n_items=n_items, seed=seed)
    data = yaml.safe_load(path.read_text())
    data["map"] = {"method": "pca"}
    data["model"] = model
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def sky_project_factory():
    """``make(folder, n_items=..., seed=..., model={...})`` -> a small sky-lt project file."""
    return small_sky_project
