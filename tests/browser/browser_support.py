"""Helpers for browser tests: serve the dashboard on a free port, open it in a page.

A uniquely named module (not ``conftest``) so test files can import it directly:
``from browser_support import open_dashboard, serve_dashboard, make_test_project``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
START_TIMEOUT_S = 180


@dataclass(frozen=True)
class Server:
    url: str
    project: Path
    store: Path
    log: Path
    pid: int = 0  # the panel serve process (benchmarks read its memory)
    process: subprocess.Popen | None = None
    port: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_test_project(folder: Path) -> Path:
    """A digits-lt demo project with a PCA map and a short MLP schedule (fast on 2 cores)."""
    from core.data import make_demo
    from core.project import dump_project, load_project

    path = make_demo("digits-lt", folder, seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.model.mlp.epochs = 60
    dump_project(project, path)
    return path


def basic_auth_args(folder: Path, users: dict[str, str]) -> list[str]:
    """``panel serve`` arguments for Panel's basic authentication with ``users`` (name: password)."""
    import json

    credentials = folder / "credentials.json"
    credentials.write_text(json.dumps(users), encoding="utf-8")
    return ["--basic-auth", str(credentials), "--cookie-secret", "tailwise-test-secret"]


@contextmanager
def serve_dashboard(project: Path, *, log: Path | None = None, extra_args: list[str] = (),
                    port: int | None = None) -> Iterator[Server]:
    """Run ``python -m panel serve dashboard [extra_args] --args --project PROJECT`` on a free
    port (or ``port``).

    Waits for ``/liveness`` and stops the server on exit. The label store is the project's.
    """
    from core.project import load_project

    project = Path(project)
    config = load_project(project)
    port = port or _free_port()
    log = log or project.with_name(f"server-{port}.log")
    env = {**os.environ, "TAILWISE_HOME": str(project.parent / "home"), "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "panel", "serve", "dashboard", "--port", str(port),
               "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}",
               "--liveness", "--num-procs", "1", *extra_args, "--args", "--project", str(project)]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_live(process, url, log)
        yield Server(url=f"{url}/dashboard", project=project,
                     store=config.resolve(config.label_store), log=log, pid=process.pid,
                     process=process, port=port)
    finally:
        stop(process)


def wait_until_live(process: subprocess.Popen, url: str, log: Path) -> None:
    """Poll ``url/liveness`` until the server answers; fail with its log if it exits or stalls."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"panel serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/liveness", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"panel serve did not start in {START_TIMEOUT_S} s:\n{log.read_text()}")
            time.sleep(0.25)  # readiness polling of the socket, not test synchronisation


def stop(process: subprocess.Popen) -> None:
    """Terminate a server process (kill it if it does not stop within 10 s); one a test killed
    already is only reaped."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_team_project(folder: Path, n_items: int = 2400, seed: int = 0) -> Path:
    """A synthetic long-tailed table (six classes named "0".."5", so number keys label them)
    with a tabular encoder, a PCA map and a short MLP schedule: room for 1,000+ labels."""
    import numpy as np
    import pandas as pd

    from core.project import ClassConfig, ProjectConfig, dump_project, parse_project

    rng = np.random.default_rng(seed)
    shares = np.array([0.45, 0.25, 0.15, 0.09, 0.04, 0.02])
    labels = rng.choice(len(shares), size=n_items, p=shares)
    centres = rng.normal(scale=3.0, size=(len(shares), 12))
    features = centres[labels] + rng.normal(size=(n_items, 12))
    table = pd.DataFrame(features, columns=[f"f{i}" for i in range(12)])
    table.insert(0, "id", [f"item-{i:05d}" for i in range(n_items)])
    table["label"] = labels.astype(str)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "items.csv", index=False)
    palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948"]
    project: ProjectConfig = parse_project({
        "name": "Team test", "data": {"kind": "csv", "path": "items.csv", "id_column": "id",
                                      "label_column": "label"},
        "classes": [ClassConfig(name=str(k), colour=palette[k], rare=k >= 4).model_dump()
                    for k in range(len(shares))],
        "encoder": {"kind": "tabular"}, "model": {"kind": "mlp", "epochs": 40},
        "map": {"method": "pca"}, "query": {"strategy": "margin", "batch_size": 20},
    }, base_dir=folder)
    path = folder / "project.yaml"
    dump_project(project, path)
    return path


def open_dashboard(page, server: Server, annotator: str | None = None,
                   timeout_ms: int = 120_000):
    """Load the dashboard and wait until the map and the class buttons are on the page
    (each within ``timeout_ms``: longer for a page in a throttled browser)."""
    from playwright.sync_api import expect

    page.goto(server.url)
    expect(page.locator(".tw-map canvas").first).to_be_visible(timeout=timeout_ms)
    expect(page.locator(".tw-label-0").first).to_be_visible(timeout=timeout_ms)
    # The page asks for the first batch when it opens and selects its first item: wait for it,
    # so that a later selection is never overwritten by (or confused with) that one.
    expect(page.locator(".tw-selection-count")).to_have_attribute("data-count", "1", timeout=timeout_ms)
    if annotator is not None:
        box = page.locator(".tw-annotator input")
        box.fill(annotator)
        box.press("Enter")
    return page


# A browser closing its websocket while the server writes to it (a page closed under load) makes
# tornado log these; they are not failures of the server's own code.
CLOSED_CONNECTION_ERRORS = ("WebSocketClosedError", "StreamClosedError")


def server_tracebacks(log: str) -> list[str]:
    """The tracebacks in a server log, without those of connections the browser closed."""
    blocks, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            current = [line]
            blocks.append(current)
        elif current is not None:
            current.append(line)
            if line and not line[0].isspace():  # the exception line ends the traceback
                current = None
    texts = ["\n".join(block) for block in blocks]
    return [t for t in texts if not t.splitlines()[-1].split(":")[0].endswith(CLOSED_CONNECTION_ERRORS)]
