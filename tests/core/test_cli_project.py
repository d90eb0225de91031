"""``tailwise validate`` and ``tailwise demo`` through typer's runner, plus one real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from core.cli import app
from core.cli.project_cmds import EXIT_INVALID, DemoName
from core.data import DEMO_NAMES, DEMOS, file_sha256

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_validate_prints_one_line_summary(demo_project: Path) -> None:
    result = _run("validate", demo_project)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert "420 items" in lines[0] and "10 classes (3 rare)" in lines[0] and "npz" in lines[0]
    assert result.stderr == ""


def test_validate_json(demo_project: Path) -> None:
    result = _run("validate", demo_project, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["n_items"] == 420 and summary["n_classes"] == 10
    assert summary["data_kind"] == "npz" and summary["ground_truth"] is True
    assert summary["n_ground_truth_classes"] == 10 and summary["warnings"] == []
    assert summary["data_sha256"] == file_sha256(demo_project.parent / "digits-lt.npz")


def test_validate_config_error_exits_2_naming_field(write_project) -> None:
    path = write_project({"kind": "csv", "path": "x.csv"}, query={"strategy": "magic"})
    result = _run("validate", path)
    assert result.exit_code == EXIT_INVALID
    assert "query.strategy" in result.stderr and result.stdout == ""


def test_validate_data_error_exits_2_naming_column(tmp_path: Path, write_project) -> None:
    pd.DataFrame({"id": ["a", "b"], "x": [1.0, np.nan]}).to_csv(tmp_path / "t.csv", index=False)
    result = _run("validate", write_project({"kind": "csv", "path": "t.csv"}), "--json")
    assert result.exit_code == EXIT_INVALID
    report = json.loads(result.stdout)
    assert report == {"ok": False, "error": "DataError", "message": report["message"]}
    assert "column 'x' has NaN at row 2 (id 'b')" in report["message"]
    assert "column 'x' has NaN" in result.stderr


def test_validate_allow_outside(tmp_path: Path, write_project) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-t.csv"
    pd.DataFrame({"id": ["a"], "x": [1.0]}).to_csv(outside, index=False)
    path = write_project({"kind": "csv", "path": str(outside)})
    refused = _run("validate", path)
    assert refused.exit_code == EXIT_INVALID and "--allow-outside" in refused.stderr
    allowed = _run("validate", path, "--allow-outside")
    assert allowed.exit_code == 0 and "1 items" in allowed.stdout


def test_validate_warns_about_unknown_ground_truth(tmp_path: Path, write_project) -> None:
    pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "zebra"]}).to_csv(tmp_path / "t.csv", index=False)
    path = write_project(
        {"kind": "csv", "path": "t.csv", "label_column": "y"}, classes=[{"name": "a"}]
    )
    result = _run("validate", path)
    assert result.exit_code == 0 and "zebra" in result.stderr and "warning" in result.stderr


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = _run("validate", tmp_path / "nope.yaml")
    assert result.exit_code == EXIT_INVALID and "not found" in result.stderr


def test_demo_writes_project_and_says_what_next(tmp_path: Path) -> None:
    result = _run("demo", tmp_path / "d", "--seed", "2")
    assert result.exit_code == 0, result.output
    project = (tmp_path / "d" / "project.yaml").resolve()
    assert f"Wrote {project}" in result.stdout and "420 items" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.startswith("Next: tailwise serve") and str(project) in line for line in lines)
    # It says where the label store lives, and that a fresh demo needs labels before retraining.
    assert f"Label store (created on first use): {project.parent / 'labels.sqlite'}" in lines
    assert "tailwise label" in result.stdout and "--labels 30" in result.stdout
    assert _run("validate", project).exit_code == 0
    assert "seed: 2" in project.read_text()


def test_demo_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert _run("demo", tmp_path).exit_code == 0
    again = _run("demo", tmp_path, "--seed", "1")
    assert again.exit_code == EXIT_INVALID and "--force" in again.stderr
    assert "seed: 0" in (tmp_path / "project.yaml").read_text()
    assert _run("demo", tmp_path, "--seed", "1", "--force").exit_code == 0
    assert "seed: 1" in (tmp_path / "project.yaml").read_text()


def test_demo_rejects_unknown_dataset(tmp_path: Path) -> None:
    result = _run("demo", tmp_path, "--dataset", "cifar")
    assert result.exit_code != 0 and "cifar" in result.output
    assert not (tmp_path / "project.yaml").exists()


def test_demo_choices_match_the_registry() -> None:
    assert [d.value for d in DemoName] == list(DEMO_NAMES)
    assert set(DEMOS) < set(DEMO_NAMES)


def _console(*args: object) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("tailwise")  # the installed console script
    return subprocess.run(
        [str(script), *map(str, args)],
        capture_output=True,
        check=False,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_console_script_runs(tmp_path: Path) -> None:
    made = _console("demo", tmp_path / "d")
    assert made.returncode == 0, made.stderr
    checked = _console("validate", tmp_path / "d" / "project.yaml", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["n_items"] == 420
    bad = _console("validate", tmp_path / "missing.yaml")
    assert bad.returncode == EXIT_INVALID and "not found" in bad.stderr


def test_simulate_reads_an_image_folders_ground_truth_from_its_sub_folders(tmp_path: Path,
                                                                          write_project) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, n, shade in (("cat", 24, 40), ("dog", 16, 200)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(shade + rng.normal(0, 20, (6, 6)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "imgs" / cls / f"{i}.png")
    project = write_project({"kind": "image_folder", "path": "imgs"},
                            classes=[{"name": "cat"}, {"name": "dog"}])
    result = _run("simulate", "--project", project, "--budget", "12", "--model", "logistic",
                  "--out", tmp_path / "sim")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert summary["n_classes"] == 2 and summary["classes_found"] == 2
    # Loose images (no class folders) have no ground truth: said, not a crash.
    (tmp_path / "loose").mkdir()
    Image.new("L", (6, 6), 9).save(tmp_path / "loose" / "a.png")
    Image.new("L", (6, 6), 99).save(tmp_path / "loose" / "b.png")
    loose = write_project({"kind": "image_folder", "path": "loose"}, name="loose.yaml")
    result = _run("simulate", "--project", loose, "--budget", "2", "--out", tmp_path / "sim2")
    assert result.exit_code != 0 and "sub-folder named after its class" in result.output


def test_validate_image_folder_reports_progress_on_stderr(tmp_path: Path, write_project) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("L", (5, 5), 9).save(tmp_path / "imgs" / cls / "1.png")
    result = _run("validate", write_project({"kind": "image_folder", "path": "imgs"}))
    assert result.exit_code == 0, result.output
    assert "2 items" in result.stdout and "25 features" in result.stdout
    assert "reading images" in result.stderr
