"""The project file: round trips and one test per kind of bad input, each naming its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError
from core.project import (
    MAX_PROJECT_FILE_BYTES,
    ClassConfig,
    DataConfig,
    MLPConfig,
    ProjectConfig,
    QueryConfig,
    default_classes,
    dump_project,
    load_project,
    parse_project,
)

DATA = {"kind": "csv", "path": "items.csv", "label_column": "label"}


def _full_project() -> ProjectConfig:
    return ProjectConfig(
        name="Plankton survey",
        data=DataConfig(**DATA),
        classes=default_classes(["diatom", "copepod", "larva"], rare={"larva"}),
        model=MLPConfig(loss="focal", sampler="class_balanced", hidden=[32], gamma=1.5),
        query=QueryConfig(strategy="class_balanced_margin", batch_size=7, target_class="larva"),
        seed=42,
    )


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip_keeps_every_setting(tmp_path: Path, suffix: str) -> None:
    original = _full_project()
    path = dump_project(original, tmp_path / f"project{suffix}")
    loaded = load_project(path)
    assert loaded.to_dict() == original.to_dict()
    assert loaded.rare_classes == ["larva"]
    assert loaded.model.loss == "focal" and loaded.query.target_class == "larva"
    assert loaded.base_dir == tmp_path.resolve()
    # the file is plain data in the format its suffix says
    text = path.read_text(encoding="utf-8")
    parsed = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    assert parsed["data"]["path"] == "items.csv"


def test_minimal_file_gets_defaults(write_project) -> None:
    project = load_project(write_project(DATA))
    assert project.schema_version == 1
    assert project.model.kind == "auto" and project.query.strategy == "auto"
    assert project.resolve(project.data.path) == project.base_dir / "items.csv"


def test_model_without_kind_means_mlp(write_project) -> None:
    project = load_project(write_project(DATA, model={"loss": "ldam_drw"}))
    assert project.model.kind == "mlp" and project.model.loss == "ldam_drw"


def _error(path: Path, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        load_project(path, **kw)
    return str(info.value)


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\ndata: {kind: csv, path: a.csv\n")
    message = _error(path)
    assert "invalid YAML" in message and "line 3" in message and str(path) in message


def test_json_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "data": {"kind": "csv",, "path": "a.csv"}\n}')
    message = _error(path)
    assert "invalid JSON at line 2, column 26" in message


def test_unknown_key_names_its_location(write_project) -> None:
    message = _error(write_project({**DATA, "colour": "red"}))
    assert "data.colour" in message and "unknown key" in message


def test_unknown_top_level_key(write_project) -> None:
    assert "retrain_every: unknown key" in _error(write_project(DATA, retrain_every=5))


def test_wrong_type_names_field(write_project) -> None:
    message = _error(write_project(DATA, seed="abc"))
    assert "seed:" in message and "integer" in message


def test_wrong_type_in_nested_list(write_project) -> None:
    message = _error(write_project(DATA, classes=[{"name": "a", "colour": "red"}]))
    assert "classes.0.colour" in message and "'red'" in message


def test_unknown_loss_names_field_and_choices(write_project) -> None:
    message = _error(write_project(DATA, model={"kind": "mlp", "loss": "hinge"}))
    assert "model.loss" in message and "'hinge'" in message and "'focal'" in message


def test_embedding_loss_through_the_project_file(write_project) -> None:
    project = load_project(write_project(DATA, model={"embedding_loss": "quintuplet"}))
    assert project.model.kind == "mlp" and project.model.embedding_loss == "quintuplet"
    assert load_project(write_project(DATA, model={"kind": "mlp"})).model.embedding_loss == "none"
    knn = load_project(write_project(DATA, model={"kind": "cluster_knn", "mlp": {"epochs": 7}}))
    assert knn.model.mlp.embedding_loss == "quintuplet" and knn.model.mlp.epochs == 7


def test_unknown_embedding_loss_names_field_and_choices(write_project) -> None:
    message = _error(write_project(DATA, model={"kind": "mlp", "embedding_loss": "triplet"}))
    assert "model.embedding_loss" in message and "'triplet'" in message
    assert "'quintuplet'" in message and "'none'" in message


def test_unknown_model_kind_lists_kinds(write_project) -> None:
    message = _error(write_project(DATA, model={"kind": "svm"}))
    assert "model" in message and "'svm'" in message and "'random_forest'" in message


def test_unknown_strategy_names_field(write_project) -> None:
    message = _error(write_project(DATA, query={"strategy": "magic"}))
    assert "query.strategy" in message and "'magic'" in message and "'margin'" in message


def test_target_class_must_be_a_class(write_project) -> None:
    message = _error(write_project(DATA, classes=[{"name": "a"}], query={"target_class": "b"}))
    assert "query.target_class" in message and "'b'" in message


def test_python_tag_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: !!python/object/apply:os.system ['touch {marker}']\n"
        "data: {kind: csv, path: a.csv}\n"
    )
    message = _error(path)
    assert "python/object" in message and "invalid YAML" in message
    assert not marker.exists()


def test_python_name_tag_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("data: !!python/name:os.system\n")
    assert "python/name" in _error(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("data.path", "../outside.csv"),
        ("label_store", "../labels.sqlite"),
        ("cache_dir", "sub/../../cache"),
    ],
)
def test_relative_path_escaping_folder_is_refused(write_project, field: str, value: str) -> None:
    data = {**DATA, "path": value} if field == "data.path" else DATA
    extra = {} if field == "data.path" else {field: value}
    message = _error(write_project(data, **extra))
    assert message.startswith(f"{field}:") and "outside the project folder" in message
    assert "--allow-outside" in message


def test_absolute_path_outside_folder_is_refused(write_project, tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / "elsewhere.csv"
    message = _error(write_project({**DATA, "path": str(elsewhere)}))
    assert "data.path" in message and str(elsewhere) in message


def test_absolute_path_inside_folder_is_accepted(write_project, tmp_path: Path) -> None:
    project = load_project(write_project({**DATA, "path": str(tmp_path / "items.csv")}))
    assert project.resolve(project.data.path) == (tmp_path / "items.csv").resolve()


def test_allow_outside_lets_paths_through(write_project, tmp_path: Path) -> None:
    path = write_project({**DATA, "path": "../shared/items.csv"}, label_store="/var/tmp/l.sqlite")
    project = load_project(path, allow_outside=True)
    assert (
        project.resolve(project.data.path, allow_outside=True)
        == (tmp_path.parent / "shared" / "items.csv").resolve()
    )


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"")
    assert "empty" in _error(path)


def test_yaml_with_only_a_comment_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("# nothing here\n")
    assert "mapping" in _error(path)


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: caf\xe9\ndata: {kind: csv, path: a.csv}\n")
    message = _error(path)
    assert "not UTF-8" in message and "byte 9" in message


def test_too_large_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    with open(path, "wb") as handle:
        handle.write(b'{"name": "')
        handle.write(b"x" * MAX_PROJECT_FILE_BYTES)
        handle.write(b'"}')
    message = _error(path)
    assert "limit" in message and ".jsonl" in message


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _error(tmp_path / "nope.yaml")


def test_unsupported_schema_version(write_project) -> None:
    message = _error(write_project(DATA, schema_version=7))
    assert "schema_version" in message and "7" in message


def test_kind_needs_path_or_demo_name(write_project) -> None:
    assert "needs 'path'" in _error(write_project({"kind": "csv"}))
    assert "digits-lt" in _error(write_project({"kind": "demo"}))


def test_duplicate_class_names(write_project) -> None:
    message = _error(write_project(DATA, classes=[{"name": "a"}, {"name": "a"}]))
    assert "duplicate class names ['a']" in message


def test_parse_project_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        parse_project(["not", "a", "mapping"])


def test_dump_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.json"):
        dump_project(_full_project(), tmp_path / "project.toml")


def test_class_config_normalises_colour() -> None:
    assert ClassConfig(name=" larva ", colour="#ABCDEF").model_dump()["colour"] == "#abcdef"
    assert ClassConfig(name=" larva ").name == "larva"
