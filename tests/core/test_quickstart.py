"""The README's first hour: the headless quick start runs as written, and ``tailwise serve``
finds the installed dashboard and says where the project and its label store live."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.cli import app

REPO = Path(__file__).resolve().parents[2]
TAILWISE = Path(sys.executable).with_name("tailwise")  # the installed console script


def readme_block(marker: str) -> list[str]:
    """The command lines of the fenced block right after ``<!-- marker -->`` in the README."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)```", text, re.S)
    assert found, f"README.md has no block after <!-- {marker} -->"
    return [line for line in found.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_headless_quick_start_runs_as_written(tmp_path):
    lines = readme_block("headless-quick-start")
    assert [shlex.split(line)[:2] for line in lines] == [["tailwise", "demo"], ["tailwise", "retrain"]]
    assert "--labels" in lines[0]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    outputs = []
    for line in lines:
        args = shlex.split(line)
        done = subprocess.run([str(TAILWISE), *args[1:]], cwd=tmp_path, capture_output=True,
                              text=True, timeout=900, env=env)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    demo_dir = tmp_path / shlex.split(lines[0])[2]
    n = int(shlex.split(lines[0])[shlex.split(lines[0]).index("--labels") + 1])
    store = (demo_dir / "labels.sqlite").resolve()
    assert f"into the label store {store}" in outputs[0]
    with sqlite3.connect(store) as conn:
        origins = conn.execute("SELECT origin, annotator, count(*) FROM events GROUP BY 1, 2").fetchall()
    assert origins == [("demo", "demo", n)]
    # The headline is the most trustworthy measurement: here the demo's ground truth.
    assert f"trained on {n} labels" in outputs[1]
    assert re.search(r"headline: balanced accuracy \d\.\d{3} on \d+ unlabelled items with ground truth",
                     outputs[1]), outputs[1]
    out = tmp_path / shlex.split(lines[1])[shlex.split(lines[1]).index("--out") + 1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["headline"]["source"] == "ground_truth" and metrics["n_labels"] == n
    assert "?" not in (out / "report.md").read_text().split("## Label next")[0]


def test_serve_runs_panel_on_the_installed_dashboard(tmp_path, demo_project):
    from core.serve import dashboard_dir, serve_command, where_it_lives

    command = serve_command(demo_project, ["--show", "--port", "5077", "--args", "--layout", "review"])
    assert command[:4] == [sys.executable, "-m", "panel", "serve"]
    assert Path(command[4]) == dashboard_dir() and (dashboard_dir() / "main.py").is_file()
    assert command[5:8] == ["--show", "--port", "5077"]
    assert command[8:] == ["--args", "--project", str(demo_project.resolve()), "--layout", "review"]
    said = where_it_lives(demo_project)
    assert f"label store: {demo_project.parent.resolve() / 'labels.sqlite'}" in said


def test_serve_refuses_a_bad_project_before_starting_a_server(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "missing.yaml"), "--show"])
    assert result.exit_code == 2 and "project file not found" in result.stderr


def test_help_is_in_plain_words():
    for command in ([], ["demo"], ["retrain"], ["simulate"], ["serve"], ["label"], ["search"],
                    ["export-labels"], ["validate"], ["export"], ["import"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.stdout and "{" not in result.stdout, (command, result.stdout)
        assert not re.search(r"<(int|str|path|float)", result.stdout), (command, result.stdout)
    demo_help = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "120"}).stdout
    assert "tailwise demo [OPTIONS] DIR" in demo_help and "--labels" in demo_help


def test_a_budget_beyond_the_pool_is_capped_out_loud(tmp_path):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": [f"i{k}" for k in range(60)], "a": rng.normal(size=60),
                          "b": rng.normal(size=60), "y": np.repeat(["p", "q", "r"], 20)})
    frame.loc[frame["y"] == "q", "a"] += 3
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = CliRunner().invoke(app, ["simulate", "--data", str(tmp_path / "t.csv"), "--label-column",
                                      "y", "--budget", "300", "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "note: budget 300 is more than the 42 items in the pool" in result.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["budget_requested"] == 300 and summary["budget"] == 42


def test_classes_without_a_colour_get_distinct_stable_palette_colours():
    from core.project import PALETTE, parse_project

    spec = {"data": {"kind": "csv", "path": "x.csv"},
            "classes": [{"name": "a"}, {"name": "b", "colour": "#e69f00"}, *(
                {"name": f"c{i}"} for i in range(30))]}
    first = [c.colour for c in parse_project(spec).classes]
    again = [c.colour for c in parse_project(spec).classes]
    assert first == again and len(set(first)) == len(first) == 32
    assert first[0] == PALETTE[1] and first[1] == "#e69f00"  # an explicit colour is never reused


def test_validation_messages_are_in_plain_words(tmp_path):
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"data": {"kind": "csv", "path": "x.csv"},
                                    "model": {"kind": "mpl"}, "seed": "abc"}))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "model: unknown kind 'mpl'; choose one of: 'auto', 'mlp', 'logistic'" in result.stderr
    assert "seed: must be a whole number (integer), got 'abc'" in result.stderr
    assert "Input tag" not in result.stderr and "Value error" not in result.stderr
