"""A plain, non-editable install (a wheel) runs ``tailwise serve`` from any folder: the built-in
layouts and the stylesheet travel as package data, found through ``importlib.resources``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from browser_support import REPO, _free_port, stop, wait_until_live
from playwright.sync_api import Page, expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _run(command, **kw):
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel from a copy of the sources and installed into a folder."""
    root = tmp_path_factory.mktemp("plain-install")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".tailwise-cache")
    for name in ("core", "dashboard"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(root / "wheels"), str(src)])
    wheel = next((root / "wheels").glob("tailwise-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"core/layouts/default.yaml", "core/layouts/rare-hunt.yaml", "core/layouts/review.yaml",
            "dashboard/tailwise.css", "dashboard/main.py", "dashboard/server_lifecycle.py"} <= set(names)
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"),
          str(wheel)])
    return root / "site"


def test_layouts_are_read_from_the_installed_package(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    script = ("import core, dashboard; from core.layout import LAYOUTS_DIR, available_layouts, "
              "load_layout; print(core.__file__); print(dashboard.__file__); print(LAYOUTS_DIR); "
              "print(','.join(available_layouts())); print(load_layout('rare-hunt').name)")
    out = _run([sys.executable, "-c", script], cwd=tmp_path, env=env).stdout.splitlines()
    assert all(line.startswith(str(installed)) for line in out[:3]), out
    assert out[3].split(",") == ["default", "rare-hunt", "review"] and out[4] == "rare-hunt"


def test_tailwise_serve_from_any_folder_after_a_plain_install(installed, tmp_path, page: Page,
                                                              screenshots):
    env = {**os.environ, "PYTHONPATH": str(installed), "TAILWISE_HOME": str(tmp_path / "home"),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    tailwise = installed / "bin" / "tailwise"
    _run([str(tailwise), "demo", str(tmp_path / "proj")], cwd=tmp_path, env=env)
    project = tmp_path / "proj" / "project.yaml"
    data = yaml.safe_load(project.read_text())
    data["map"]["method"] = "pca"  # instant map: this test is about the install, not UMAP
    project.write_text(yaml.safe_dump(data, sort_keys=False))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [str(tailwise), "serve", str(project), "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}", "--liveness", "--num-procs", "1"],
            cwd=elsewhere, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_live(server, f"http://127.0.0.1:{port}", log)
        page.set_viewport_size({"width": 1500, "height": 1000})
        page.goto(f"http://127.0.0.1:{port}/dashboard")
        expect(page.locator(".tw-map canvas").first).to_be_visible(timeout=120_000)
        expect(page.locator(".tw-label-0").first).to_be_visible(timeout=30_000)
        expect(page.locator(".tw-error")).to_have_count(0)
        page.screenshot(path=screenshots / "installed-serve.png")
        text = log.read_text()
        assert f"label store: {project.parent.resolve() / 'labels.sqlite'}" in text
        assert f"panel serve {installed / 'dashboard'}" in text  # the installed copy, not the repo
    finally:
        stop(server)
