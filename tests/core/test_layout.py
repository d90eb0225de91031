"""Layout files: the built-in ones load, bad ones fail naming the field, save/load round-trips."""

from __future__ import annotations

import pytest
import yaml

from core.errors import ConfigError
from core.layout import (
    VIEW_NAMES,
    Layout,
    Tabs,
    available_layouts,
    load_layout,
    parse_layout,
    save_layout,
)


def test_builtin_layouts_load_and_place_known_views():
    names = available_layouts()
    assert {"default", "rare-hunt", "review"} <= set(names)
    for name in names:
        layout = load_layout(name)
        assert layout.name == name
        assert set(layout.views()) <= set(VIEW_NAMES)
        assert "map" in layout.views() and "labelling" in layout.views()


def test_rare_hunt_uses_discovery_and_emphasises_rare_classes():
    layout = load_layout("rare-hunt")
    assert layout.options.queue.strategy == "discovery"
    assert layout.options.map.emphasise_rare and layout.emphasise_rare


def test_review_puts_suspect_labels_beside_the_queue_and_agreement_first_in_the_tabs():
    layout = load_layout("review")
    assert layout.main[1] == ["review", "queue"]
    assert layout.main[2][0].tabs[:3] == ["agreement", "calibration", "metrics"]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    layout = Layout(name="mine", sidebar=["labelling"], main=[["map", Tabs(tabs=["metrics", "history"])]])
    layout.options.map.colour_by = "uncertainty"
    path = save_layout(layout, tmp_path / f"mine{suffix}")
    again = load_layout(path)
    assert again == layout
    assert load_layout("mine", search=[tmp_path]) == layout


@pytest.mark.parametrize("data, field", [
    ({"sidebar": ["mapp"]}, "sidebar.0"),
    ({"main": [["map", "map"]]}, "placed more than once"),
    ({"options": {"map": {"colour_by": "rainbow"}}}, "options.map.colour_by"),
    ({"options": {"queue": {"strategy": "psychic"}}}, "options.queue.strategy"),
    ({"main": [["map"]], "surprise": 1}, "surprise"),
    ({"main": [["map"]], "schema_version": 9}, "schema_version"),
    ({}, "at least one view"),
])
def test_bad_layouts_name_the_problem(data, field):
    with pytest.raises(ConfigError, match=field):
        parse_layout(data, source="bad.yaml")


def test_unknown_name_lists_the_available_layouts():
    with pytest.raises(ConfigError, match="available: .*default"):
        load_layout("nope")


def test_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\nmain: [[map]]\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_layout(path)


def test_layout_file_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump(["map"]))
    with pytest.raises(ConfigError, match="mapping"):
        load_layout(path)
