"""A domain expert's headless workflow on the sky-lt catalogue: derived colours, search, a curated
test set through ``tailwise label``, retrain metrics on it, and label exports in CSV/Parquet/FITS."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from core.cli import app
from core.labels import LabelStore
from core.project import load_project

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sky(tmp_path_factory, sky_project_factory) -> Path:
    """A small sky-lt project (300 items) with a PCA map and a short MLP schedule."""
    return sky_project_factory(tmp_path_factory.mktemp("sky"), n_items=300, seed=1,
                               model={"epochs": 40, "hidden": [32]})


def _catalogue(sky: Path) -> pd.DataFrame:
    return pd.read_csv(sky.parent / "sky.csv")


def test_validate_shows_derived_colours_as_features(sky):
    result = _run("validate", sky, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # u, g, r, i, z, extended + 10 colours + 1 derived ratio; info and image columns are not features
    assert summary["n_features"] == 17
    from core.data import load_dataset

    dataset = load_dataset(load_project(sky))
    frame = _catalogue(sky)
    np.testing.assert_allclose(dataset.columns["g_r"], frame["g"] - frame["r"])
    assert "g_r" in dataset.feature_names and "ra" not in dataset.feature_names
    assert "class" not in dataset.columns  # the ground truth never becomes a column to use


@pytest.mark.parametrize("expr, reason", [
    ("__import__('os').system('touch pwned')", "names starting with '__'"),
    ("g.real", "attribute access"),
    ("g ** 99", "exponent 99 is too large"),
    ("g - nope", "unknown column 'nope'"),
    ("`class` * 2", "reads the ground-truth column 'class'"),
    ("u / (g - g)", "division by zero at item 'sky-00001'"),
])
def test_a_refused_expression_makes_validate_exit_2_with_the_reason(sky, tmp_path, expr, reason):
    data = yaml.safe_load(sky.read_text())
    data["data"]["path"] = str(sky.parent / "sky.csv")
    data["features"] = {"derived": [{"name": "bad", "expr": expr}]}
    data["layout"] = "default"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = _run("validate", bad, "--allow-outside")
    assert result.exit_code == 2, result.output
    assert reason in result.stderr
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_declared_fill_replaces_division_by_zero(sky, tmp_path):
    data = yaml.safe_load(sky.read_text())
    data["data"]["path"] = str(sky.parent / "sky.csv")
    data["features"] = {"derived": [{"name": "ratio", "expr": "u / (g - g)", "fill": -1.0}]}
    data["layout"] = "default"
    path = tmp_path / "fill.yaml"
    path.write_text(yaml.safe_dump(data))
    from core.data import load_dataset

    dataset = load_dataset(load_project(path, allow_outside=True))
    assert (dataset.columns["ratio"] == -1.0).all()


def test_search_finds_items_and_refuses_hostile_criteria(sky, tmp_path):
    frame = _catalogue(sky)
    expected = frame[(frame["g"] - frame["r"] < -0.1) & (frame["u"] - frame["g"] < 0.6)]["id"]
    out = tmp_path / "blue.csv"
    result = _run("search", sky, "--where", "g_r < -0.1 AND u_g < 0.6", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{len(expected)} items match" in result.stdout
    written = pd.read_csv(out, keep_default_na=False)
    assert written["id"].tolist() == expected.tolist()
    assert set(written["split"]) == {"test"} and list(written.columns[:3]) == ["id", "label", "split"]
    for hostile, message in [("__import__('os').system('x')", "names starting with '__'"),
                             ("r.__class__", "not allowed"), ("r > 1e999", "too large"),
                             ("nope > 1", "unknown column 'nope'"), ("g_r + 1", "a criterion is needed")]:
        refused = _run("search", sky, "--where", hostile)
        assert refused.exit_code == 2 and message in refused.stderr, (hostile, refused.output)


def test_label_from_csv_builds_a_test_set_that_training_never_sees(sky, tmp_path):
    frame = _catalogue(sky)
    train = frame.groupby("class").head(6)[["id", "class"]].rename(columns={"class": "label"})
    train_file = tmp_path / "train.csv"
    train.to_csv(train_file, index=False)
    result = _run("label", sky, "--from", train_file, "--annotator", "alice")
    assert result.exit_code == 0, result.output
    assert f"labelled {len(train)} items ({len(train)} train)" in result.stdout

    rest = frame[~frame["id"].isin(train["id"])]
    test = rest.groupby("class").head(2)[["id", "class"]].rename(columns={"class": "label"})
    test["annotator"], test["split"] = "bob", "test"
    test_file = tmp_path / "test.csv"
    test.to_csv(test_file, index=False)
    result = _run("label", sky, "--from", test_file)
    assert result.exit_code == 0, result.output
    assert f"({len(test)} test)" in result.stdout
    with LabelStore(sky.parent / "labels.sqlite") as store:
        assert set(store.current(split="test")) == set(test["id"])
        assert {e.annotator for e in store.events() if e.split == "test"} == {"bob"}

    out = tmp_path / "retrain"
    result = _run("retrain", sky, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert f"({len(test)} more in the test split, never trained on)" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_labels"] == len(train) and metrics["n_test_labels"] == len(test)
    per_class = metrics["test_split"]["per_class"]
    assert {c: v["support"] for c, v in per_class.items() if v["support"]} == {
        c: 2 for c in test["label"].unique()}
    low, high = per_class["white dwarf"]["recall_ci"]
    assert 0.0 <= low <= per_class["white dwarf"]["recall"] <= high <= 1.0 and high - low > 0.3
    # ground truth exists here, so it heads the report; the test split is shown apart
    assert metrics["headline"]["source"] == "ground_truth"
    report = (out / "report.md").read_text()
    assert f"test split ({len(test)} expert-labelled items)" in report and "95 % interval" in report
    assert "| class | training labels | test labels |" in report

    predictions = pd.read_parquet(out / "predictions.parquet")
    labelled = predictions.dropna(subset=["label"])
    assert set(labelled["id"]) == set(train["id"]) | set(test["id"])


def test_label_file_problems_are_refused_with_line_numbers_and_nothing_is_written(sky, tmp_path):
    store_path = sky.parent / "labels.sqlite"
    before = len(LabelStore(store_path)) if store_path.exists() else 0
    cases = [
        ("id,label\nsky-00001,star\nnot-an-id,star\n", "'not-an-id' (line 3)"),
        ("id,label\nsky-00001,comet\n", "unknown class(es) 'comet' (line 2)"),
        ("id,label,split\nsky-00001,star,validation\n", "line 2: split 'validation'"),
        ("id,label\nsky-00001,star\nsky-00001,galaxy\n", "labelled 'star' at line 2 and 'galaxy' at line 3"),
        ("item,label\nsky-00001,star\n", "missing column(s) id"),
    ]
    for i, (text, message) in enumerate(cases):
        path = tmp_path / f"case{i}.csv"
        path.write_text(text, encoding="utf-8")
        result = _run("label", sky, "--from", path)
        assert result.exit_code == 2 and message in result.stderr, (text, result.output)
    with LabelStore(store_path) as store:
        assert len(store) == before


@pytest.mark.parametrize("fmt", ["csv", "parquet", "fits"])
def test_label_exports_read_back_and_match_the_store(sky, tmp_path, fmt):
    with LabelStore(sky.parent / "labels.sqlite") as store:
        store.record("sky-00003", "quasar", "carol", split="test")
        latest = {}
        for event in store.events():
            latest[event.item_id] = event
        expected = {i: e for i, e in latest.items() if e.label is not None}
        classes = store.class_names
    out = tmp_path / f"labels.{fmt}"
    result = _run("export-labels", sky, "--format", fmt, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    if fmt == "fits":
        from astropy.table import Table

        table = Table.read(out, format="fits")
        table.convert_bytestring_to_unicode()
        frame = table.to_pandas()
    elif fmt == "parquet":
        frame = pd.read_parquet(out)
    else:
        frame = pd.read_csv(out, keep_default_na=False)
    assert len(frame) == len(expected)
    for row in frame.itertuples(index=False):
        event = expected[row.id]
        assert (row.label, row.annotator, row.split) == (event.label, event.annotator, event.split)
        assert pd.Timestamp(row.time).timestamp() == pytest.approx(event.time, abs=1e-6)
        assert row.time.endswith("Z")
    probabilities = frame[[f"p_{c}" for c in classes if f"p_{c}" in frame.columns]].to_numpy(float)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert set(frame["predicted"]) <= set(classes)


def test_export_without_predictions_and_bad_format(sky, tmp_path):
    out = tmp_path / "plain.csv"
    result = _run("export-labels", sky, "--format", "csv", "--out", out, "--no-predictions")
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out).columns) == ["id", "label", "annotator", "time", "split", "origin"]
    bad = _run("export-labels", sky, "--format", "xlsx", "--out", out)
    assert bad.exit_code == 2 and "xlsx" in bad.output


def test_labels_recorded_through_the_cli_keep_iso_times_in_the_store_file(sky):
    with sqlite3.connect(sky.parent / "labels.sqlite") as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        splits = {s for (s,) in conn.execute("SELECT DISTINCT split FROM events")}
    assert version == "3" and splits == {"train", "test"}


def test_the_test_split_travels_with_an_exported_project(sky, tmp_path):
    from core.exchange import export_project, open_project_parts, import_project

    with LabelStore(sky.parent / "labels.sqlite") as store:
        store.set_classes(load_project(sky).classes)
        store.record_many(["sky-00010", "sky-00011"], "star", "dan", split="train")
        store.record("sky-00012", "galaxy", "dan", split="test")
        splits = store.splits()
    assert splits["sky-00012"] == "test" and splits["sky-00010"] == "train"
    shared = export_project(open_project_parts(sky), tmp_path / "shared", labels="file")
    store = LabelStore(tmp_path / "theirs.sqlite")
    result = import_project(shared, store=store)
    assert result.n_imported > 0
    assert store.splits() == splits
    store.close()


def test_validate_warns_about_extra_images_it_cannot_show(sky, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(sky.parent, folder, ignore=shutil.ignore_patterns("*.sqlite*", ".tailwise-cache"))
    frame = pd.read_csv(folder / "sky.csv")
    frame.loc[0, "cutout_r"] = "../../outside.png"
    frame.loc[1, "cutout_r"] = "https://example.org/cut.png"
    (folder / frame.loc[2, "cutout_gri"]).unlink()
    frame.to_csv(folder / "sky.csv", index=False)
    result = _run("validate", folder / "project.yaml", "--json")
    assert result.exit_code == 0, result.output
    warnings = json.loads(result.stdout)["warnings"]
    assert any("'cutout_r': 2 of the first 300 items" in w and "outside the project folder" in w
               for w in warnings), warnings
    assert any("'cutout_gri': 1 of the first 300 items" in w and "not found" in w for w in warnings)
