"""Hostile project files: each is refused with a message naming the problem, and nothing runs or
is written anywhere (no label store, no output folder, no file outside the project folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError, DataError
from core.exchange import import_project


def _write_table(path: Path, n: int = 12) -> None:
    rows = ["id,f1,f2,label"] + [
        f"item-{i},{i * 0.5},{(i % 3) * 1.0},{'a' if i % 2 else 'b'}" for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _valid_project(folder: Path) -> dict:
    from core.data.hashing import file_sha256

    _write_table(folder / "items.csv")
    return {
        "schema_version": 1,
        "name": "hostile",
        "data": {
            "kind": "csv",
            "path": "items.csv",
            "label_column": "label",
            "sha256": file_sha256(folder / "items.csv"),
        },
        "classes": [
            {"name": "a", "colour": "#e69f00"},
            {"name": "b", "colour": "#56b4e9", "rare": True},
        ],
        "encoder": {"kind": "tabular"},
        "model": {"kind": "logistic"},
        "query": {"strategy": "margin"},
        "labels": [{"item_id": "item-1", "label": "a", "annotator": "ann", "time": 1.0}],
    }


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture()
def folder(tmp_path):
    project_dir = tmp_path / "shared"
    project_dir.mkdir()
    (tmp_path / "outside.csv").write_text("id,f1\nx,1\n", encoding="utf-8")
    return project_dir


def _refused(path: Path, error: type[Exception], pattern: str) -> str:
    root = path.parent.parent
    before = _snapshot(root)
    with pytest.raises(error, match=pattern) as info:
        import_project(path)
    assert _snapshot(root) == before, "a refused import must not write anything"
    assert not (path.parent / "labels.sqlite").exists()
    return str(info.value)


def _yaml(folder: Path, data: dict, name: str = "project.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_valid_base_file_imports(folder):
    result = import_project(_yaml(folder, _valid_project(folder)))
    assert result.n_imported == 1 and (folder / "labels.sqlite").exists()


def test_unknown_keys_are_named(folder):
    data = _valid_project(folder)
    data["colour_scheme"] = "dark"
    data["model"]["depth"] = 3
    message = _refused(_yaml(folder, data), ConfigError, "unknown key")
    assert "colour_scheme" in message and "model.depth" in message


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("seed", "abc", "seed"),
        ("classes", "a,b", "classes"),
        ("query", {"batch_size": "lots"}, "query.batch_size"),
        ("labels", [{"item_id": "item-1", "label": "a", "annotator": ["x"]}], "labels"),
    ],
)
def test_wrong_types_are_named(folder, field, value, named):
    data = _valid_project(folder)
    data[field] = value
    assert named in _refused(_yaml(folder, data), ConfigError, "problem")


def test_unknown_strategy_and_model_names_are_named(folder):
    data = _valid_project(folder)
    data["query"]["strategy"] = "magic"
    message = _refused(_yaml(folder, data), ConfigError, "query.strategy")
    assert "'magic'" in message

    data = _valid_project(folder)
    data["model"] = {"kind": "xgboost"}
    assert "model" in _refused(_yaml(folder, data), ConfigError, "xgboost|kind")

    data = _valid_project(folder)
    data["encoder"]["kind"] = "clip"
    assert "encoder.kind" in _refused(_yaml(folder, data), ConfigError, "encoder")


@pytest.mark.parametrize(
    "tag", ["!!python/object/apply:os.system", "!!python/object/apply:subprocess.call"]
)
def test_python_yaml_tags_are_refused_and_never_run(folder, tmp_path, tag):
    marker = tmp_path / "pwned"
    arg = f'["touch {marker}"]' if tag.endswith("os.system") else f'[["touch", "{marker}"]]'
    text = yaml.safe_dump(_valid_project(folder), sort_keys=False)
    path = folder / "project.yaml"
    path.write_text(text.replace("name: hostile", f"name: {tag} {arg}"), encoding="utf-8")
    message = _refused(path, ConfigError, "invalid YAML")
    assert "python/object" in message
    assert not marker.exists(), "the YAML tag must not execute anything"


@pytest.mark.parametrize("data_path", ["../outside.csv", "sub/../../outside.csv", "ABSOLUTE"])
def test_data_paths_leaving_the_folder_are_refused(folder, data_path):
    data = _valid_project(folder)
    target = (
        str((folder.parent / "outside.csv").resolve()) if data_path == "ABSOLUTE" else data_path
    )
    data["data"]["path"] = target
    data["data"]["sha256"] = None
    message = _refused(_yaml(folder, data), ConfigError, "outside the project folder")
    assert "data.path" in message


def test_a_symlink_pointing_outside_is_refused(folder):
    os.symlink(folder.parent / "outside.csv", folder / "link.csv")
    data = _valid_project(folder)
    data["data"]["path"] = "link.csv"
    _refused(_yaml(folder, data), ConfigError, "data.path.*outside")


def test_label_and_store_paths_leaving_the_folder_are_refused(folder):
    data = _valid_project(folder)
    data["labels"] = {"path": "../labels-x.jsonl", "sha256": "0" * 64}
    _refused(_yaml(folder, data), ConfigError, "labels.path.*outside")
    data = _valid_project(folder)
    data["label_store"] = "/tmp/elsewhere.sqlite"
    _refused(_yaml(folder, data), ConfigError, "label_store.*outside")


def test_a_label_file_whose_hash_does_not_match_is_refused(folder):
    from core.labels import write_events_jsonl

    events = [{"item_id": "item-1", "label": "a", "annotator": "ann", "time": 1.0}]
    digest = write_events_jsonl(events, folder / "labels.jsonl")
    data = _valid_project(folder)
    data["labels"] = {"path": "labels.jsonl", "sha256": digest}
    # Tamper after export: the item now reads 'b'.
    text = (folder / "labels.jsonl").read_text(encoding="utf-8").replace('"a"', '"b"')
    (folder / "labels.jsonl").write_text(text, encoding="utf-8")
    message = _refused(_yaml(folder, data), ConfigError, "SHA-256")
    assert "labels.jsonl" in message


def test_a_label_file_with_junk_lines_is_refused(folder):
    from core.errors import LabelStoreError
    from core.labels import events_sha256

    (folder / "labels.jsonl").write_text(
        '{"item_id": "item-1", "label": "a"}\nnot json\n', encoding="utf-8"
    )
    data = _valid_project(folder)
    data["labels"] = {"path": "labels.jsonl", "sha256": events_sha256(folder / "labels.jsonl")}
    assert "line 2" in _refused(_yaml(folder, data), LabelStoreError, "JSON")


def test_labels_naming_undeclared_classes_are_refused(folder):
    data = _valid_project(folder)
    data["labels"].append({"item_id": "item-2", "label": "zebra", "annotator": "ann", "time": 2.0})
    _refused(_yaml(folder, data), ConfigError, "zebra")


def test_an_empty_file_is_refused(folder):
    (folder / "project.yaml").write_bytes(b"")
    _refused(folder / "project.yaml", ConfigError, "empty")


def test_a_file_of_only_a_comment_is_refused(folder):
    (folder / "project.yaml").write_text("# nothing here\n", encoding="utf-8")
    _refused(folder / "project.yaml", ConfigError, "mapping")


def test_a_50_mb_junk_file_is_refused_without_reading_it_all(folder):
    path = folder / "project.yaml"
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        fh.writelines(block for _ in range(50))
    assert path.stat().st_size == 50 * (1 << 20)
    _refused(path, ConfigError, "MB")


def test_non_utf8_bytes_are_refused(folder):
    text = yaml.safe_dump(_valid_project(folder), sort_keys=False).encode("utf-8")
    (folder / "project.yaml").write_bytes(text.replace(b"hostile", b"host\xff\xfeile"))
    _refused(folder / "project.yaml", ConfigError, "UTF-8")


def test_invalid_json_names_line_and_column(folder):
    (folder / "project.json").write_text('{"schema_version": 1, "data": {', encoding="utf-8")
    _refused(folder / "project.json", ConfigError, "invalid JSON at line 1")


def test_an_unknown_schema_version_is_refused(folder):
    data = _valid_project(folder)
    data["schema_version"] = 99
    _refused(_yaml(folder, data), ConfigError, "schema_version 99")


def test_a_missing_data_file_is_named(folder):
    data = _valid_project(folder)
    (folder / "items.csv").unlink()
    message = _refused(_yaml(folder, data), DataError, "not found")
    assert "items.csv" in message


def test_a_data_hash_mismatch_is_refused_by_default(folder):
    data = _valid_project(folder)
    with open(folder / "items.csv", "a", encoding="utf-8") as fh:
        fh.write("item-99,1.0,2.0,a\n")
    message = _refused(_yaml(folder, data), DataError, "SHA-256")
    assert "matched" in message  # says how to continue


def test_the_cli_reports_hostile_files_in_one_paragraph(folder, tmp_path):
    from typer.testing import CliRunner

    import core.cli.retrain_cmd  # noqa: F401  (registers the commands)
    from core.cli.app import app

    marker = tmp_path / "pwned"
    path = folder / "project.yaml"
    path.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n', encoding="utf-8")
    for command in (["import", str(path)], ["retrain", str(path), "--out", str(tmp_path / "out")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "invalid YAML" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_json_files_take_the_same_checks(folder):
    data = _valid_project(folder)
    data["data"]["path"] = "../outside.csv"
    (folder / "project.json").write_text(json.dumps(data), encoding="utf-8")
    _refused(folder / "project.json", ConfigError, "outside")


# ------------------------------------------------------------------ hostile data files


def _stray_string_table(folder: Path) -> None:
    rows = ["id,f1,f2,comment,label"] + [
        f"item-{i},{i * 0.5},{'abc' if i == 7 else (i % 3) * 1.0},note {i},{'a' if i % 2 else 'b'}"
        for i in range(12)
    ]
    (folder / "items.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_a_numeric_column_with_a_stray_string_names_column_row_and_value(folder):
    from core.data import load_dataset
    from core.project import parse_project

    data = _valid_project(folder)
    _stray_string_table(folder)
    del data["data"]["sha256"], data["labels"]
    project = parse_project(data, base_dir=folder)
    with pytest.raises(DataError) as info:
        load_dataset(project)
    message = str(info.value)
    assert "'f2'" in message and "row 8" in message and "'item-7'" in message and "'abc'" in message
    assert "feature_columns" in message
    # The text column 'comment' is not numeric at all: it is left out as before, no error for it.
    assert "comment" not in message


def test_listing_the_feature_columns_leaves_the_stray_column_out_explicitly(folder):
    from core.data import load_dataset
    from core.project import parse_project

    data = _valid_project(folder)
    _stray_string_table(folder)
    del data["data"]["sha256"], data["labels"]
    data["data"]["feature_columns"] = ["f1"]
    dataset = load_dataset(parse_project(data, base_dir=folder))
    assert dataset.feature_names == ["f1"] and dataset.features.shape == (12, 1)


def test_a_ground_truth_column_with_one_class_is_refused_by_simulate():
    import numpy as np

    from core.simulate import simulate

    features = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    with pytest.raises(DataError, match="only the class 'cat'.*at least two classes"):
        simulate(features, np.array(["cat"] * 40, dtype=object), budget=20)


def test_the_cli_refuses_a_single_class_simulation(folder, tmp_path):
    from typer.testing import CliRunner

    from core.cli import app

    rows = ["id,f1,label"] + [f"item-{i},{i * 0.5},same" for i in range(30)]
    (folder / "one.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", "--data", str(folder / "one.csv"), "--id-column", "id",
                                      "--label-column", "label", "--budget", "10",
                                      "--out", str(tmp_path / "sim")])
    assert result.exit_code == 2, result.output
    assert "at least two classes" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "sim" / "summary.json").exists()


def test_the_cli_says_which_columns_are_features_and_which_text_columns_are_not(folder, tmp_path):
    from typer.testing import CliRunner

    from core.cli import app

    rows = ["id,f1,note,f2,label"] + [
        f"item-{i},{i * 0.5},seen on night {i},{(i * 7) % 5},{'rare' if i % 9 == 0 else 'common'}"
        for i in range(40)]
    (folder / "mixed.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["simulate", "--data", str(folder / "mixed.csv"), "--id-column", "id",
                                      "--label-column", "label", "--budget", "12", "--model", "logistic",
                                      "--out", str(tmp_path / "sim")])
    assert result.exit_code == 0, result.output
    assert ("data: 40 items, 2 feature column(s) ('f1', 'f2'); not used as features: 'note'"
            in result.output)
