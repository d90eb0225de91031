"""The label store's train/test split: an event attribute, sticky per item, migrated, exchanged."""

from __future__ import annotations

import json
import sqlite3

import pytest

from core.errors import LabelStoreError
from core.labels import LABEL_SCHEMA_VERSION, LabelStore, read_events_csv
from core.project import ClassConfig

CLASSES = [ClassConfig(name="star", colour="#e69f00"), ClassConfig(name="qso", colour="#56b4e9")]


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite")
    s.set_classes(CLASSES)
    yield s
    s.close()


def test_test_split_items_are_apart_from_training_labels(store):
    store.record("a", "star", "ann")
    store.record_many(["b", "c"], "qso", "ann", split="test")
    assert store.current() == {"a": "star", "b": "qso", "c": "qso"}
    assert store.current(split="train") == {"a": "star"}
    assert store.current(split="test") == {"b": "qso", "c": "qso"}
    assert store.splits() == {"a": "train", "b": "test", "c": "test"}
    assert store.label_counts(split="test") == {"star": 0, "qso": 2}
    assert store.label_counts(split="train") == {"star": 1, "qso": 0}
    assert [e.split for e in store.history("b")] == ["test"]


def test_a_test_item_stays_in_the_test_split_unless_moved_explicitly(store):
    store.record("b", "qso", "ann", split="test")
    store.record("b", "star", "other")  # an ordinary relabel (e.g. a box selection)
    assert store.current(split="test") == {"b": "star"}
    store.retract("b", "ann")
    store.record("b", "qso", "ann")  # labelled again: still test
    assert store.splits() == {"b": "test"}
    store.record("b", "qso", "ann", split="train")  # an explicit move
    assert store.current(split="train") == {"b": "qso"} and store.current(split="test") == {}


def test_undo_restores_the_split_of_the_previous_label(store):
    store.record("a", "star", "ann", split="test")
    store.record("a", "qso", "ann", split="train")
    store.undo("ann")
    assert store.current(split="test") == {"a": "star"}


def test_unknown_split_is_refused(store):
    with pytest.raises(LabelStoreError, match="split must be one of train, test"):
        store.record("a", "star", "ann", split="validation")
    assert len(store) == 0


def test_an_older_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the version 1 schema, as Tailwise 0.1 wrote it
        conn.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE classes (name TEXT PRIMARY KEY, colour TEXT NOT NULL,
                rare INTEGER NOT NULL DEFAULT 0, description TEXT NOT NULL DEFAULT '',
                position INTEGER NOT NULL);
            CREATE TABLE events (event_id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,
                label TEXT, annotator TEXT NOT NULL, time REAL NOT NULL, origin TEXT NOT NULL,
                model_version INTEGER, note TEXT, undoes INTEGER REFERENCES events(event_id));
            CREATE TRIGGER events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, 'append-only'); END;
            CREATE TRIGGER events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, 'append-only'); END;
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO classes VALUES ('star', '#e69f00', 0, '', 0);
            INSERT INTO events(item_id, label, annotator, time, origin) VALUES ('a', 'star', 'x', 1.0, 'expert');
        """)
    store = LabelStore(path)  # 1 -> 2 (actions) -> 3 (splits)
    assert store.schema_version == LABEL_SCHEMA_VERSION == 3
    assert store.current(split="train") == {"a": "star"}
    store.record("b", "star", "y", split="test")
    assert store.splits() == {"a": "train", "b": "test"}
    store.close()


def test_splits_travel_through_json_lines_and_csv(store, tmp_path):
    store.record("a", "star", "ann")
    store.record("b", "qso", "ann", split="test")
    store.export_jsonl(tmp_path / "events.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [line["split"] for line in lines] == ["train", "test"]
    assert lines[0]["time"].endswith("Z")  # ISO 8601, UTC

    other = LabelStore(tmp_path / "other.sqlite")
    other.set_classes(CLASSES)
    other.import_events(tmp_path / "events.jsonl")
    assert other.splits() == {"a": "train", "b": "test"}
    assert [e.time for e in other.events()] == [e.time for e in store.events()]  # exact round trip
    other.close()

    store.export_csv(tmp_path / "events.csv")
    assert [r.split for r in read_events_csv(tmp_path / "events.csv")] == ["train", "test"]
    (tmp_path / "no-split.csv").write_text("item_id,label\nc,star\n", encoding="utf-8")
    assert [r.split for r in read_events_csv(tmp_path / "no-split.csv")] == ["train"]


def test_bulk_actions_keep_each_items_split_like_small_ones(store):
    """Actions of thousands of items take the single-statement path: same events, same splits."""
    from core.labels import store as store_module

    ids = [f"i{k}" for k in range(store_module.BULK_ROWS + 500)]
    store.record_many(ids[:300], "qso", "ann", split="test")  # some items already in the test split
    events = store.record_many(ids, "star", "bob")  # keeps each item's split
    assert len(events) == len(ids) and events == sorted(events)
    assert [e.item_id for e in store.action(store.event(events[0]).action_id)] == ids
    assert set(store.current(split="test")) == set(ids[:300])
    assert len(store.current(split="train")) == len(ids) - 300
    store.record_labels(dict.fromkeys(ids), "bob")  # a bulk retraction, splits kept too
    assert store.current() == {} and store.splits() == {}
    assert store.undo_count("bob") == len(ids)
    assert set(store.current(split="test")) == set(ids[:300])
    moved = store.record_many(ids, "qso", "carol", split="test")
    assert len(moved) == len(ids) and len(store.current(split="test")) == len(ids)


def test_bulk_action_of_mixed_labels_matches_the_small_path(store):
    """A bulk ``record_labels`` with different labels and retractions per item stores exactly what
    it was given, in order, with consecutive event ids; a bad id or label in it is named and
    nothing is written."""
    from core.labels import store as store_module

    n = store_module.BULK_ROWS + 10
    labels = {f"ï✓-{k}": ("star", "qso", None)[k % 3] for k in range(n)}  # not only ASCII
    before = store.last_event_id()
    with pytest.raises(LabelStoreError, match="label"):
        store.record_labels({**labels, "ï✓-2": ""}, "bob")
    with pytest.raises(LabelStoreError, match="item_id"):
        store.record_labels({**labels, "": "star"}, "bob")
    assert store.last_event_id() == before  # nothing written
    events = store.record_labels(labels, "bob")
    assert events == list(range(events[0], events[0] + n))
    written = store.action(store.event(events[0]).action_id)
    assert [(e.item_id, e.label) for e in written] == list(labels.items())
    assert store.current() == {i: lab for i, lab in labels.items() if lab is not None}
