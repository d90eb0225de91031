"""Export and import of shareable project files (no training: these tests are fast)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from core.errors import ConfigError, DataError
from core.exchange import ProjectParts, export_project, import_project, open_project_parts
from core.labels import LabelStore
from core.project import ClassConfig, ProjectConfig, dump_project, load_project
from core.session import Session


def _write_table(path: Path, n: int = 30) -> None:
    rows = ["id,f1,f2,f3,label"]
    rows += [
        f"item-{i:03d},{i * 0.1:.3f},{(i % 5) * 1.5},{(i % 7) * 0.25},{'cat' if i % 3 else 'dog'}"
        for i in range(n)
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture()
def project_path(tmp_path) -> Path:
    """A small local CSV project with non-default settings everywhere an export must keep them."""
    from core.data import file_sha256

    folder = tmp_path / "mine"
    folder.mkdir()
    _write_table(folder / "items.csv")
    project = ProjectConfig.model_validate(
        {
            "name": "Cats & dogs / test",
            "data": {
                "kind": "csv",
                "path": "items.csv",
                "label_column": "label",
                "sha256": file_sha256(folder / "items.csv"),
            },
            "classes": [
                {"name": "cat", "colour": "#e69f00"},
                {"name": "dog", "colour": "#56b4e9", "rare": True, "description": "rare"},
            ],
            "encoder": {"kind": "tabular", "pca_components": 2},
            "model": {
                "kind": "mlp",
                "loss": "focal",
                "sampler": "sqrt",
                "hidden": [16],
                "epochs": 7,
            },
            "query": {"strategy": "discovery", "batch_size": 4, "target_class": "dog"},
            "map": {"method": "pca"},
            "seed": 1234,
            "layout": "rare-hunt",
        }
    )
    return dump_project(project, folder / "project.yaml")


@pytest.fixture()
def session(project_path):
    s = Session.open(project_path)
    yield s
    s.store.close()


def _label_some(s: Session) -> None:
    s.label(["item-001", "item-002"], "cat", "alice")
    s.label(["item-003"], "dog", "bob", note="clear case")
    s.add_class("bird", colour="#009e73", rare=True)
    s.label(["item-004"], "bird", "alice")
    s.label(["item-001"], "dog", "bob")  # relabel: history keeps both events
    s.retract(["item-002"], "alice")


def _settings(p: ProjectConfig) -> dict:
    return {k: p.to_dict()[k] for k in ("encoder", "model", "query", "map", "seed", "layout")}


def _history(store: LabelStore) -> list[tuple]:
    return [(e.item_id, e.label, e.annotator, e.time, e.note) for e in store.events()]


@pytest.mark.parametrize(("fmt", "labels"), [("yaml", "inline"), ("json", "file")])
def test_round_trip_session_export_import_into_an_empty_store(
    session, project_path, tmp_path, fmt, labels
):
    _label_some(session)
    exported = export_project(session, tmp_path / "share", fmt=fmt, labels=labels)
    assert exported.suffix == f".{fmt}" and exported.parent == (tmp_path / "share").resolve()

    empty = LabelStore(tmp_path / "theirs.sqlite")
    result = import_project(exported, store=empty)

    assert (
        empty.current()
        == session.current_labels()
        == {"item-001": "dog", "item-003": "dog", "item-004": "bird"}
    )
    assert empty.classes() == session.classes  # names, colours, rare flags, order
    assert [c.name for c in result.classes] == ["cat", "dog", "bird"]
    assert _history(empty) == _history(session.store)  # annotator, time and note per event
    assert _settings(result.project) == _settings(session.project)
    assert result.layout == "rare-hunt"
    assert result.n_imported == result.n_events == len(session.store.events())
    assert result.conflicts == [] and result.data_hash_matched
    empty.close()


def test_exported_file_layout_and_contents(session, tmp_path):
    _label_some(session)
    path = export_project(session, tmp_path / "share", labels="file", layout="review")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["schema_version"] == 1 and raw["layout"] == "review"
    assert raw["data"]["path"] == "data/items.csv"  # copied into the folder, referenced relatively
    from core.data import file_sha256

    assert raw["data"]["sha256"] == file_sha256(tmp_path / "share" / "data" / "items.csv")
    ref = raw["labels"]
    assert ref["path"] == f"labels-{ref['sha256']}.jsonl"
    lines = (tmp_path / "share" / ref["path"]).read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    # times are ISO 8601 UTC, to the microsecond (what the store keeps)
    assert first["annotator"] == "alice" and first["time"].endswith("Z")
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert len(lines) == len(session.store.events())
    assert path.name == "Cats-dogs-test.yaml"  # a safe file name from the project name


def test_export_writes_only_inside_the_chosen_folder(session, project_path, tmp_path):
    _label_some(session)
    before = {p for p in tmp_path.rglob("*") if "share" not in p.parts}
    export_project(session, tmp_path / "share", labels="file", name="../../escape")
    after = {p for p in tmp_path.rglob("*") if "share" not in p.parts}
    assert after == before
    written = list((tmp_path / "share").rglob("*"))
    assert all(p.resolve().is_relative_to((tmp_path / "share").resolve()) for p in written)
    assert not list(tmp_path.parent.glob("escape*"))


def test_export_references_data_already_inside_the_folder(session, project_path):
    _label_some(session)
    path = export_project(session, project_path.parent / "shared")
    assert path.parent.parent == project_path.parent.resolve()
    # The data lies outside 'shared/' (one level up), so it is copied in, never referenced with '..'.
    assert load_project(path).data.path == "data/items.csv"
    path = export_project(session, project_path.parent, name="again")
    assert load_project(path).data.path == "items.csv"


def test_export_refuses_to_reference_data_outside_without_copying(session, tmp_path):
    with pytest.raises(ConfigError, match="outside the export folder"):
        export_project(session, tmp_path / "share", copy_data=False)


def test_import_keeps_local_labels_and_lists_conflicts(session, tmp_path):
    _label_some(session)
    exported = export_project(session, tmp_path / "share")
    local = LabelStore(tmp_path / "local.sqlite")
    local.set_classes([ClassConfig(name="cat", colour="#123456"), ClassConfig(name="dog")])
    local.record("item-003", "cat", "carol")  # the file says 'dog'
    result = import_project(exported, store=local)
    assert local.current()["item-003"] == "cat"  # never overwritten silently
    assert {"item_id": "item-003", "local": "cat", "incoming": "dog"} in result.conflicts
    assert any("'cat'" in c for c in result.class_conflicts)  # colour differs, local kept
    assert local.current()["item-004"] == "bird"  # the rest came in
    assert "conflicting" in result.summary()
    # A second import of the same file adds nothing (events are recognised as duplicates).
    again = import_project(exported, store=local)
    assert again.n_imported == 0
    local.close()


def test_hash_mismatch_errors_or_keeps_matched_ids_only(session, tmp_path):
    _label_some(session)
    exported = export_project(session, tmp_path / "share")
    data = tmp_path / "share" / "data" / "items.csv"
    kept = [
        line
        for line in data.read_text(encoding="utf-8").splitlines()
        if not line.startswith("item-004")
    ]
    data.write_text("\n".join(kept) + "\n", encoding="utf-8")

    with pytest.raises(DataError, match="SHA-256.*matched"):
        import_project(exported, store=LabelStore(tmp_path / "a.sqlite"))
    store = LabelStore(tmp_path / "b.sqlite")
    result = import_project(exported, store=store, on_hash_mismatch="matched_only")
    assert not result.data_hash_matched and result.skipped_ids == ["item-004"]
    assert store.current() == {"item-001": "dog", "item-003": "dog"}
    assert result.warnings and "SHA-256" in result.warnings[0]
    store.close()


def test_import_defaults_to_the_store_beside_the_file(session, tmp_path):
    _label_some(session)
    exported = export_project(session, tmp_path / "share", labels="file")
    result = import_project(exported)
    assert result.store_path == (tmp_path / "share" / "labels.sqlite").resolve()
    with LabelStore(result.store_path) as store:
        assert store.current() == session.current_labels()


def test_open_project_parts_reads_the_local_store(session, project_path, tmp_path):
    _label_some(session)
    parts = open_project_parts(project_path)
    assert isinstance(parts, ProjectParts) and len(parts.events) == len(session.store.events())
    assert [c.name for c in parts.classes] == ["cat", "dog", "bird"]


def test_cli_export_then_import(session, project_path, tmp_path):
    from typer.testing import CliRunner

    import core.cli.retrain_cmd  # noqa: F401  (registers the commands)
    from core.cli.app import app

    _label_some(session)
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "export",
            str(project_path),
            "--out",
            str(tmp_path / "share"),
            "--json",
            "--labels",
            "file",
        ],
    )
    assert out.exit_code == 0, out.output
    shared = next((tmp_path / "share").glob("*.json"))
    assert next((tmp_path / "share").glob("labels-*.jsonl"))

    other = tmp_path / "other"
    other.mkdir()
    (other / "project.yaml").write_text(project_path.read_text(encoding="utf-8"), encoding="utf-8")
    (other / "items.csv").write_bytes((project_path.parent / "items.csv").read_bytes())
    res = runner.invoke(
        app, ["import", str(shared), "--project", str(other / "project.yaml"), "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["imported"] == len(session.store.events()) and report["conflicts"] == []
    with LabelStore(other / "labels.sqlite") as store:
        assert store.current() == session.current_labels()

    bad = runner.invoke(app, ["import", str(tmp_path / "nope.yaml")])
    assert bad.exit_code == 2 and "not found" in bad.output and "Traceback" not in bad.output


def test_export_refuses_a_bad_layout_name_and_an_oversized_inline_file(session, tmp_path):
    with pytest.raises(ConfigError, match="layout"):
        export_project(session, tmp_path / "a", layout="../../etc")
    events = [
        {"item_id": f"item-{i % 30:03d}", "label": "cat", "annotator": "a" * 40, "time": float(i)}
        for i in range(40_000)
    ]
    parts = ProjectParts(project=session.project, events=events)
    with pytest.raises(ConfigError, match="labels in a file"):
        export_project(parts, tmp_path / "big", fmt="json")
    assert not list((tmp_path / "big").glob("*.json"))
    path = export_project(parts, tmp_path / "big", fmt="json", labels="file")
    assert len(import_project(path, store=LabelStore(tmp_path / "big.sqlite")).classes) == 2


def test_a_shared_file_can_be_exported_again_with_its_labels(session, tmp_path):
    _label_some(session)
    first = export_project(session, tmp_path / "one", labels="file")
    parts = open_project_parts(first)  # no label store beside it: the pinned label file is read
    assert len(parts.events) == len(session.store.events())
    second = export_project(parts, tmp_path / "two")
    store = LabelStore(tmp_path / "two.sqlite")
    import_project(second, store=store)
    assert store.current() == session.current_labels()
    store.close()
