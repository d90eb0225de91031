"""The Project view without a server: export, import (upload / path, hash mismatch), layouts.

The browser round trip (export in one server, import in a fresh one) is in
tests/browser/test_exchange_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from async_support import run_async

from core.layout import load_layout
from core.project import dump_project, load_project


def _demo(folder: Path) -> Path:
    from core.data import make_demo

    path = make_demo("digits-lt", folder, seed=0)
    project = load_project(path)
    project.map.method = "pca"
    project.model.mlp.hidden = [32]
    project.model.mlp.epochs = 20
    dump_project(project, path)
    return path


def _state(project_path: Path):
    from core.session import Session
    from dashboard.state import AppState

    session = Session.open(project_path)
    session.prepare()
    return AppState(session, annotator="alice")


def _label_truth(state, per_class: int = 3) -> dict[str, str]:
    ds = state.session.dataset
    for cls in ("4", "6", "0"):
        state.select(ds.ids[ds.ground_truth == cls][:per_class].tolist())
        state.label_selection(cls)
    return state.session.current_labels()


@pytest.fixture()
def two_states(tmp_path):
    """Two independent copies of the demo: the sender's and the receiver's."""
    mine, theirs = _demo(tmp_path / "mine"), _demo(tmp_path / "theirs")
    return _state(mine), _state(theirs)


def test_export_then_upload_into_a_fresh_session(two_states):
    from dashboard.views.project import ProjectView

    sender, receiver = two_states
    labels = _label_truth(sender)
    sender.session.project.query.strategy = "margin"
    sender.session.project.model.mlp.epochs = 11
    view = ProjectView(sender)
    view.layout_name = "rare-hunt"
    path = view.export()
    assert path is not None and path.parent.parent.name == "exports"
    assert view.download.visible and view.download.filename == path.name

    target = ProjectView(receiver)
    version = receiver.labels_version
    result = target.import_text(path.name, path.read_bytes())
    assert result is not None and result.n_imported == len(labels)
    assert receiver.session.current_labels() == labels
    assert receiver.labels_version > version  # the map and the other views redraw
    assert target.layout_name == "rare-hunt"  # the file's layout is restored
    assert "imported" in target.message and receiver.status == target.message
    assert receiver.session.project.model.mlp.epochs == 11  # model and query settings restored
    assert receiver.strategy == receiver.session.project.query.strategy == "margin"
    run_async(receiver.retrain_async())
    assert receiver.model_version == 1


def test_label_file_exports_download_as_a_zip(two_states):
    import zipfile

    from dashboard.views.project import ProjectView

    sender, _ = two_states
    _label_truth(sender)
    view = ProjectView(sender)
    view.labels_mode.value = "file"
    view.fmt.value = "json"
    path = view.export()
    assert view.download.filename == f"{path.stem}.zip"
    names = zipfile.ZipFile(view.download.file).namelist()
    assert path.name in names and any(n.startswith("labels-") for n in names)


def test_hash_mismatch_offers_matched_ids_only(two_states, tmp_path):
    from dashboard.views.project import ProjectView

    sender, receiver = two_states
    labels = _label_truth(sender)
    path = ProjectView(sender).export()
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["data"]["sha256"] = "0" * 64  # made on other data
    raw["labels"].append({"item_id": "not-here", "label": "4", "annotator": "bob", "time": 5.0})
    view = ProjectView(receiver)
    assert view.import_path(str(path)) is None and "outside the project folder" in view.message
    inside = Path(receiver.session.project.base_dir) / "incoming" / path.name
    inside.parent.mkdir()
    inside.write_text(yaml.safe_dump(raw), encoding="utf-8")
    view.path_input.value = f"incoming/{path.name}"  # relative to the project folder
    run_async(view._on_import())
    assert view.pending_mismatch and view.matched_button.visible
    assert "SHA-256" in view.message and receiver.session.current_labels() == {}
    run_async(view._on_matched())
    assert not view.pending_mismatch and not view.matched_button.visible
    assert receiver.session.current_labels() == labels
    assert view.last_import.skipped_ids == ["not-here"]
    assert receiver.model_version == 1  # retrained after the import


def test_conflicts_are_listed_and_local_labels_kept(two_states):
    from dashboard.views.project import ProjectView

    sender, receiver = two_states
    labels = _label_truth(sender)
    item = min(labels)
    other = "6" if labels[item] != "6" else "4"
    receiver.select([item])
    receiver.label_selection(other)
    path = ProjectView(sender).export()
    view = ProjectView(receiver)
    view.import_text(path.name, path.read_bytes())
    assert receiver.session.current_labels()[item] == other
    assert "Conflicts" in view.message and item in view.message


def test_bad_uploads_are_reported_not_raised(two_states):
    from dashboard.views.project import ProjectView

    _, receiver = two_states
    view = ProjectView(receiver)
    assert view.import_text("evil.py", b"import os") is None and "end in .yaml" in view.message
    assert view.import_text("x.yaml", b'name: !!python/object/apply:os.system ["true"]\n') is None
    assert "invalid YAML" in view.message and receiver.error
    assert view.import_path("") is None and "choose a file" in view.message


def test_save_current_arrangement_as_a_layout(two_states):
    from dashboard.views.project import ProjectView

    _, state = two_states
    state.colour_by = "uncertainty"
    state.strategy = "discovery"
    view = ProjectView(state)
    path = view.save_layout("my-hunt")
    assert path == Path(state.session.project.base_dir) / "layouts" / "my-hunt.yaml"
    saved = load_layout("my-hunt", search=[path.parent])
    assert (
        saved.options.map.colour_by == "uncertainty" and saved.options.queue.strategy == "discovery"
    )
    assert saved.views() == load_layout("default").views()
    assert "my-hunt" in view.layout_select.options
    assert view.save_layout("../escape") is None and "layout name" in view.message
