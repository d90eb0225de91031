"""``tailwise retrain``: headless training from a project file, its outputs and reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import core.cli.retrain_cmd  # noqa: F401  (registers the commands)
from core.cli.app import app
from core.headless import OPTIONAL_FILES, OUTPUT_FILES
from core.labels import LabelStore
from core.project import LEARNERS, AutoConfig, dump_project, load_project

REPO = Path(__file__).resolve().parents[2]
# Labels per class: '1' gets one label (not evaluable), the smallest evaluable class has 3.
PER_CLASS = {"4": 6, "6": 5, "2": 5, "7": 4, "3": 4, "5": 3, "9": 3, "0": 3, "8": 3, "1": 1}


@pytest.fixture(scope="module", autouse=True)
def one_thread(torch_one_thread):
    """One torch thread: the machine is shared, and both runs must use the same thread count."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The digits demo with fast settings (tabular encoder, PCA map, small MLP) and some labels."""
    from core.data import load_dataset, make_demo

    folder = tmp_path_factory.mktemp("demo")
    path = make_demo("digits-lt", folder, seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.model.mlp.hidden = [32]
    project.model.mlp.epochs = 15
    dump_project(project, path)
    truth = load_dataset(project)
    with LabelStore(folder / project.label_store) as store:
        store.set_classes(project.classes)
        for cls, k in PER_CLASS.items():
            ids = truth.ids[truth.ground_truth == cls][:k].tolist()
            store.record_many(ids, cls, "alice", origin="expert")
    return path


@pytest.fixture(scope="module")
def shared(demo, tmp_path_factory) -> Path:
    """The demo exported as a shareable file with a sibling label file."""
    from core.exchange import export_project, open_project_parts

    return export_project(open_project_parts(demo), tmp_path_factory.mktemp("share"), labels="file")


@pytest.fixture(scope="module")
def first_run(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out1"
    result = CliRunner().invoke(app, ["retrain", str(shared), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_retrain_writes_every_output(first_run):
    out, _ = first_run
    # The demo's encoder is tabular: its fitted transform and the map's projector are saved too,
    # so that `tailwise score` can score new data with this model.
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES + OPTIONAL_FILES)
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert meta["kind"] == "auto" and len(meta["classes"]) == 10
    assert meta["learner"] in LEARNERS and meta["model_choice"]["chosen"] == meta["learner"]


def test_metrics_say_which_learner_auto_chose_and_why(first_run):
    out, output = first_run
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    choice = metrics["model_choice"]
    assert choice["chosen"] in LEARNERS
    assert set(choice["candidates"]) == set(AutoConfig().candidates)  # every one was scored
    assert all(0.0 <= v <= 1.0 for v in choice["candidates"].values())
    assert choice["chosen"] in choice["reason"] and "out-of-fold balanced accuracy" in choice["reason"]
    assert choice["candidates"][choice["chosen"]] >= max(choice["candidates"].values()) - 0.02
    assert f"learner: {choice['reason']}" in output  # the CLI summary says it too
    assert choice["reason"] in (out / "report.md").read_text(encoding="utf-8")


def test_predictions_hold_ids_classes_probabilities_map_and_query(first_run, shared):
    out, _ = first_run
    frame = pd.read_parquet(out / "predictions.parquet")
    classes = [str(d) for d in range(10)]
    proba_cols = [f"p_{c}" for c in classes]
    assert list(frame.columns[:3]) == ["id", "label", "predicted"]
    assert set(proba_cols + ["x", "y", "query_score", "query_rank", "query_reason"]) <= set(
        frame.columns
    )
    assert len(frame) == 420 and frame["id"].is_unique
    np.testing.assert_allclose(frame[proba_cols].sum(axis=1), 1.0, atol=1e-5)
    assert set(frame["predicted"]) <= set(classes)
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all()

    labelled = frame["label"].notna()
    assert labelled.sum() == sum(PER_CLASS.values())
    assert frame.loc[labelled, "query_score"].isna().all()  # scores only for unlabelled items
    assert frame.loc[labelled, "query_rank"].isna().all()
    unlabelled = frame.loc[~labelled]
    assert unlabelled["query_score"].notna().all() and unlabelled["query_reason"].notna().all()
    assert sorted(unlabelled["query_rank"].tolist()) == list(range(1, len(unlabelled) + 1))


def test_predictions_carry_the_cluster_of_the_project_method(first_run, demo, tmp_path):
    from core.session import Session

    frame = pd.read_parquet(first_run[0] / "predictions.parquet")
    assert frame["cluster"].dtype == np.int64 and frame["cluster"].min() == 0
    assert frame["cluster"].nunique() == 10  # kmeans, the default: about sqrt(420 / 4) clusters

    project = load_project(demo)
    project.clusters.method = "linkage"
    path = demo.with_name("linkage.yaml")
    dump_project(project, path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["retrain", str(path), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    linked = pd.read_parquet(out / "predictions.parquet")
    session = Session.open(load_project(path), resume_strategies=False)
    try:
        session.prepare()
        expected = session.clusters()
    finally:
        session.store.close()
    assert expected.used == "linkage"
    np.testing.assert_array_equal(linked["cluster"].to_numpy(),
                                  expected.assignment[session.positions(linked["id"])])


def test_metrics_are_cross_validated_with_k_from_the_smallest_class(first_run):
    out, _ = first_run
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    cv = metrics["cross_validated"]
    assert cv["source"] == "cv" and cv["evaluable"]
    assert cv["not_evaluable"] == ["1"]  # a class with one label cannot be cross-validated
    assert cv["n_evaluated"] == sum(PER_CLASS.values()) - 1  # out of fold: every other label
    assert 0.0 <= cv["balanced_accuracy"] <= 1.0
    truth = metrics["ground_truth"]  # the demo has a label column
    assert truth["source"] == "ground_truth" and truth["n_evaluated"] == 420 - sum(
        PER_CLASS.values()
    )
    assert metrics["n_labels"] == sum(PER_CLASS.values()) and metrics["seed"] == 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert (
        report.startswith("# Retrain report")
        and "balanced accuracy" in report
        and "Label next" in report
    )


def test_plain_log_lines_when_not_on_a_terminal(first_run):
    _, output = first_run
    assert "\x1b[" not in output  # no terminal control codes
    assert "choosing the learner and training on" in output and "outputs in" in output


def test_headless_in_a_fresh_process_and_reproducible(first_run, shared, tmp_path):
    """A second run in a new process: no UI library gets imported, predictions are identical."""
    out1, _ = first_run
    out2 = tmp_path / "out2"
    script = (
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from core.cli.app import app\n"
        "import core.cli.retrain_cmd\n"
        "try:\n"
        f"    app(['retrain', {str(shared)!r}, '--out', {str(out2)!r}, '--device', 'cpu', '-q'])\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "ui = sorted(m for m in sys.modules if m.split('.')[0] in ('panel', 'bokeh', 'holoviews'))\n"
        "print(json.dumps({'code': code, 'ui': ui}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    assert status == {"code": 0, "ui": []}
    first = pd.read_parquet(out1 / "predictions.parquet")
    second = pd.read_parquet(out2 / "predictions.parquet")
    # Predictions and probabilities are bit-identical. Query scores come from BLAS distance
    # computations whose last digits depend on the thread count of the process: compare them
    # to 1e-5 (the chosen items and their order are compared exactly through query_rank).
    exact = [c for c in first.columns if c != "query_score"]
    pd.testing.assert_frame_equal(first[exact], second[exact], check_exact=True)
    np.testing.assert_allclose(first["query_score"], second["query_score"], rtol=1e-5, atol=1e-9)
    m1 = json.loads((out1 / "metrics.json").read_text(encoding="utf-8"))
    m2 = json.loads((out2 / "metrics.json").read_text(encoding="utf-8"))
    assert m1 == m2


def test_a_project_without_labels_in_the_file_uses_its_label_store(demo):
    result = CliRunner().invoke(app, ["retrain", str(demo), "-q"])
    assert result.exit_code == 0, result.output
    out = demo.with_name("project-retrain")
    frame = pd.read_parquet(out / "predictions.parquet")
    assert frame["label"].notna().sum() == sum(PER_CLASS.values())


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "not found"),
        ("no_labels", "label some items first"),
        ("one_class", "at least two classes"),
        ("bad_device", "device"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph(demo, tmp_path, setup, message):
    project = load_project(demo)
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "digits-lt.npz").write_bytes((demo.parent / "digits-lt.npz").read_bytes())
    path = folder / "project.yaml"
    args = []
    if setup == "missing":
        path = folder / "nope.yaml"
    elif setup == "one_class":
        project.labels = [{"item_id": "digits-0004", "label": "4", "annotator": "a", "time": 1.0}]
    elif setup == "bad_device":
        args = ["--device", "tpu"]
    if setup != "missing":
        project.map.method = "pca"
        dump_project(project, path)
    result = CliRunner().invoke(
        app, ["retrain", str(path), "--out", str(tmp_path / "out"), "-q", *args]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_is_refused_with_a_message(shared, tmp_path):
    import torch

    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["retrain", str(shared), "--out", str(out), "--device", "cuda", "-q"]
    )
    if torch.cuda.is_available():
        assert result.exit_code == 0, result.output
        assert (out / "model.safetensors").exists()
    else:
        assert (
            result.exit_code == 2
            and "no CUDA GPU" in result.output
            and "Traceback" not in result.output
        )
        assert not out.exists()


def test_data_outside_the_folder_needs_allow_outside(tmp_path):
    rows = ["id,f1,f2"] + [f"r{i},{i % 4},{(i * 7) % 5}" for i in range(40)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    folder = tmp_path / "project"
    folder.mkdir()
    labels = [
        {"item_id": f"r{i}", "label": "a" if i % 4 < 2 else "b", "annotator": "x", "time": float(i)}
        for i in range(12)
    ]
    (folder / "p.yaml").write_text(
        yaml.safe_dump(
            {
                "data": {"kind": "csv", "path": "../items.csv"},
                "classes": [{"name": "a"}, {"name": "b"}],
                "model": {"kind": "logistic"},
                "map": {"method": "pca"},
                "labels": labels,
            }
        ),
        encoding="utf-8",
    )
    runner = CliRunner()
    refused = runner.invoke(
        app, ["retrain", str(folder / "p.yaml"), "--out", str(folder / "out"), "-q"]
    )
    assert refused.exit_code == 2 and "--allow-outside" in refused.output
    allowed = runner.invoke(
        app,
        ["retrain", str(folder / "p.yaml"), "--out", str(folder / "out"), "-q", "--allow-outside"],
    )
    assert allowed.exit_code == 0, allowed.output
    metrics = json.loads((folder / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["ground_truth"] is None and metrics["cross_validated"]["evaluable"]
    assert metrics["model"] == "logistic"


def test_retrain_writes_suspects_prevalence_calibration_and_agreement(first_run):
    out, _ = first_run
    suspects = pd.read_csv(out / "suspects.csv", dtype={"id": str, "label": str, "suggested": str})
    assert list(suspects.columns) == ["id", "label", "suggested", "score", "reason"]
    frame = pd.read_parquet(out / "predictions.parquet")
    labels = dict(zip(frame["id"], frame["label"]))
    for row in suspects.itertuples():  # only expert-labelled items, with the label they carry
        assert labels[row.id] == row.label and row.suggested != row.label
        assert row.reason.startswith(f"labelled {row.label} by alice; model gives {row.suggested}")
    assert suspects["score"].is_monotonic_decreasing and suspects["score"].between(0, 1).all()
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["agreement"] is None  # one annotator
    classes = [str(d) for d in range(10)]
    prevalence = metrics["prevalence"]
    assert sorted(prevalence) == classes
    for v in prevalence.values():
        assert set(v) == {"estimate", "low", "high"} and 0 <= v["low"] <= v["estimate"] <= v["high"]
    unlabelled = int(frame["label"].isna().sum())
    assert sum(v["estimate"] for v in prevalence.values()) == pytest.approx(unlabelled, rel=1e-6)
    assert metrics["prevalence_details"]["unlabelled_items"] == unlabelled
    calibration = metrics["calibration"]
    assert set(calibration) <= set(classes) and len(calibration) >= 9
    for v in calibration.values():
        assert set(v) == {"ece_before", "ece_after"}
        assert 0 <= v["ece_before"] <= 1 and 0 <= v["ece_after"] <= 1
    import pyarrow.parquet as pq

    meta = pq.read_schema(out / "predictions.parquet").metadata
    assert json.loads(meta[b"tailwise.prevalence"]) == prevalence
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "more '" in report and "90 % interval" in report and "ECE before" in report


def test_two_labels_give_a_wide_prevalence_interval_never_a_tight_one(demo, tmp_path):
    """Two labels (one '4', one '6'): no out-of-fold prediction checks the model, so the
    estimate is the model's own and the 90 % interval is wide (the dashboard's demo once said
    '949, interval 945-953' from two labels); the eight declared digits without a label are
    counted too, from none up."""
    project = load_project(demo)
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "digits-lt.npz").write_bytes((demo.parent / "digits-lt.npz").read_bytes())
    project.labels = [{"item_id": "digits-0004", "label": "4", "annotator": "a", "time": 1.0},
                      {"item_id": "digits-0006", "label": "6", "annotator": "a", "time": 2.0}]
    project.map.method = "pca"
    dump_project(project, folder / "project.yaml")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["retrain", str(folder / "project.yaml"), "--out",
                                      str(out), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    details = metrics["prevalence_details"]
    assert details["checked_by"] == 0 and "not checked" in details["method"]
    unlabelled = details["unlabelled_items"]
    unseen = set(details["unseen_classes"])  # the demo declares ten digits; two have labels
    assert unseen == set(project.class_names) - {"4", "6"}
    assert set(metrics["prevalence"]) == set(project.class_names)
    for name, v in metrics["prevalence"].items():
        assert 0 <= v["low"] <= v["estimate"] <= v["high"] <= unlabelled
        if name in unseen:  # no label has shown it: from none to the share the phantom label
            assert v["low"] == 0 and v["high"] > 0.1 * unlabelled, (name, v)  # leaves it
        else:  # no label checked it: the interval is over half the estimate wide (eight
            # declared classes without a label share the pool with it)
            assert v["high"] - v["low"] > max(0.5 * v["estimate"], 0.2 * unlabelled), (name, v)


def test_retrain_reports_agreement_when_two_annotators_overlap(demo, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(demo.parent, folder)
    path = folder / demo.name
    project = load_project(path)
    with LabelStore(folder / project.label_store) as store:
        alice = store.current()
        items = sorted(alice)[:12]
        for k, item in enumerate(items):  # bob agrees on 10 items, disagrees on 2
            other = alice[item] if k >= 2 else ("0" if alice[item] != "0" else "1")
            store.record(item, other, "bob", origin="expert")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["retrain", str(path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    agreement = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["agreement"]
    assert agreement["items"] == 12 and agreement["annotators"] == ["alice", "bob"]
    assert agreement["disagreements"] == 2 and agreement["open_conflicts"] == 2
    assert agreement["kappa_method"] == "cohen" and 0.5 < agreement["kappa"]["value"] < 1.0
    assert agreement["alpha"]["value"] is not None


def test_a_rerun_into_the_same_folder_measures_the_change_of_predictions(first_run, shared,
                                                                           tmp_path):
    """Headless runs have no earlier round in memory: the stopping guidance compares with the
    predictions.parquet the last run left in --out (here doctored: five predictions differ)."""
    import shutil

    out1, _ = first_run
    out = tmp_path / "again"
    shutil.copytree(out1, out)
    first = json.loads((out1 / "metrics.json").read_text(encoding="utf-8"))
    assert first["stopping"]["prediction_change"] is None  # a first run: nothing to compare
    frame = pd.read_parquet(out / "predictions.parquet")
    classes = sorted(frame["predicted"].unique())
    for i in range(5):
        now = frame.at[i, "predicted"]
        frame.at[i, "predicted"] = next(c for c in classes if c != now)
    frame.to_parquet(out / "predictions.parquet", index=False)
    result = CliRunner().invoke(app, ["retrain", str(shared), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    stopping = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["stopping"]
    assert stopping["prediction_change"] == pytest.approx(5 / len(frame))
    assert f"predictions changed for {100 * 5 / len(frame):.1f} % of the pool" in stopping["text"]
    assert stopping["advice"] in ("continue", "diminishing")
