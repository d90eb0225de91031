"""Unit tests of the SQLite label store (core/labels/)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from core.errors import LabelStoreError
from core.labels import (
    EXCHANGE_FIELDS,
    LABEL_SCHEMA_VERSION,
    ImportReport,
    LabelEvent,
    LabelStore,
    events_sha256,
    read_events_csv,
    read_events_jsonl,
    write_events_jsonl,
)
from core.project import ClassConfig, LabelEventRecord

CLASSES = [
    ClassConfig(name="cat", colour="#e69f00"),
    ClassConfig(name="dog", colour="#56b4e9"),
    ClassConfig(name="axolotl", colour="#009e73", rare=True, description="the rare one"),
]


@pytest.fixture
def store(tmp_path):
    s = LabelStore(tmp_path / "labels.sqlite")
    s.set_classes(CLASSES)
    yield s
    s.close()


def portable(events):
    return [e.to_record() for e in events]


# ------------------------------------------------------------------ opening


def test_new_store_uses_wal_full_sync_and_records_schema_version(tmp_path):
    path = tmp_path / "sub" / "labels.sqlite"
    store = LabelStore(path)
    conn = store.db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000
    assert store.schema_version == LABEL_SCHEMA_VERSION
    assert store.integrity_check() == "ok"
    assert len(store) == 0 and store.current() == {} and store.classes() == []


def test_reopening_keeps_events_and_classes(tmp_path):
    path = tmp_path / "labels.sqlite"
    with LabelStore(path) as first:
        first.set_classes(CLASSES)
        event_id = first.record("a", "cat", "ann")
    with LabelStore(path) as again:
        assert again.current() == {"a": "cat"}
        assert again.event(event_id).label == "cat"
        assert again.class_names == ["cat", "dog", "axolotl"]


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "labels.sqlite"
    path.write_bytes(b"these are not the labels you are looking for" * 20)
    with pytest.raises(LabelStoreError, match="not a SQLite database"):
        LabelStore(path)


def test_a_store_from_a_newer_tailwise_is_refused(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(LabelStoreError, match="schema version 99"):
        LabelStore(path)


def test_connections_of_finished_threads_are_closed(store):
    import threading

    for i in range(5):
        thread = threading.Thread(target=store.record, args=(f"t{i}", "cat", "ann"))
        thread.start()
        thread.join()
    # each new thread's connection closed its dead predecessors': the main thread's and the last remain
    assert store.db.open_connections == 2
    assert len(store) == 5


def test_closed_store_refuses_work(store):
    store.close()
    with pytest.raises(LabelStoreError, match="closed"):
        store.record("a", "cat", "ann")


# ------------------------------------------------------------------ recording


def test_record_history_and_events(store):
    first = store.record("a", "cat", "ann", model_version=3, note="looks like a cat")
    second = store.record("a", "dog", "bob")
    third = store.record("b", "axolotl", "ann", origin="simulated")
    assert first < second < third
    assert store.current() == {"a": "dog", "b": "axolotl"}
    history = store.history("a")
    assert [e.label for e in history] == ["cat", "dog"]
    assert history[0] == LabelEvent(first, "a", "cat", "ann", history[0].time, "expert", 3,
                                    "looks like a cat", None, history[0].action_id)
    assert len({e.action_id for e in store.events()}) == 3  # one action per record call
    assert history[0].time <= history[1].time
    assert [e.event_id for e in store.events()] == [first, second, third]
    assert [e.event_id for e in store.events(since_id=first)] == [second, third]
    assert [e.event_id for e in store.events(since_id=first, limit=1)] == [second]
    assert store.last_event_id() == third and len(store) == 3
    assert store.event(third).origin == "simulated"
    assert store.event(12345) is None
    assert store.history("never-seen") == []


def test_record_many_is_one_transaction_with_contiguous_ids(store):
    ids = store.record_many(np.array(["x", "y", "z"], dtype=object), "dog", "ann", model_version=np.int64(2))
    assert ids == list(range(ids[0], ids[0] + 3))
    events = store.events()
    assert {e.origin for e in events} == {"bulk"} and {e.model_version for e in events} == {2}
    assert len({e.time for e in events}) == 1  # one transaction, one timestamp
    assert store.record_many([], "dog", "ann") == []
    with pytest.raises(LabelStoreError, match="one string"):
        store.record_many("xyz", "dog", "ann")


def test_unknown_class_names_it_lists_known_ones_and_writes_nothing(store):
    store.record("a", "cat", "ann")
    with pytest.raises(LabelStoreError) as err:
        store.record_many(["x", "y"], "unicorn", "ann")
    message = str(err.value)
    assert "'unicorn'" in message and "'cat', 'dog', 'axolotl'" in message
    assert len(store) == 1 and store.current() == {"a": "cat"}


def test_unknown_class_without_any_classes_says_none_are_defined(tmp_path):
    with LabelStore(tmp_path / "l.sqlite") as empty, pytest.raises(LabelStoreError, match="none are defined yet"):
        empty.record("a", "cat", "ann")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"item_id": ""}, "item_id"),
        ({"item_id": 7}, "item_id"),
        ({"annotator": ""}, "annotator"),
        ({"origin": ""}, "origin"),
        ({"model_version": "v1"}, "model_version"),
        ({"model_version": True}, "model_version"),
    ],
)
def test_bad_arguments_raise_a_typed_error_naming_the_field(store, kwargs, field):
    args = {"item_id": "a", "label": "cat", "annotator": "ann", **kwargs}
    with pytest.raises(LabelStoreError, match=field):
        store.record(**args)
    assert len(store) == 0


def test_retraction_removes_the_item_from_current(store):
    store.record("a", "cat", "ann")
    store.record("b", "dog", "ann")
    retraction = store.retract("a", "bob", note="not sure")
    assert store.current() == {"b": "dog"}
    assert store.event(retraction).label is None and store.event(retraction).is_retraction
    assert [e.label for e in store.history("a")] == ["cat", None]
    store.record("a", None, "bob")  # record(label=None) is a retraction too
    store.record("a", "axolotl", "ann")
    assert store.current() == {"a": "axolotl", "b": "dog"}


def test_events_can_never_be_updated_or_deleted(store):
    store.record("a", "cat", "ann")
    conn = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE events SET label = 'dog'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()
    assert store.current() == {"a": "cat"}


def test_current_sees_writes_by_another_store_on_the_same_file(store):
    store.record("a", "cat", "ann")
    assert store.current() == {"a": "cat"}  # fills the cache
    with LabelStore(store.path) as other:
        other.record("b", "dog", "bob")
        other.retract("a", "bob")
        other.record("c", "cat", "bob")
    assert store.current() == {"b": "dog", "c": "cat"}
    fresh = LabelStore(store.path)
    assert fresh.current() == store.current()
    fresh.close()


def test_counts_labelled_ids_and_annotators(store):
    store.record("a", "cat", "zoe")
    store.record("b", "cat", "ann")
    store.record("c", "axolotl", "ann")
    store.record("a", "dog", "ann")
    store.retract("b", "ann")
    assert store.label_counts() == {"cat": 0, "dog": 1, "axolotl": 1}
    assert list(store.label_counts()) == ["cat", "dog", "axolotl"]
    assert store.labelled_ids() == ["c", "a"]  # in the order of their latest event
    assert store.annotators() == ["ann", "zoe"]


# ------------------------------------------------------------------ undo


def test_undo_walks_back_through_an_annotators_events(store):
    e1 = store.record("a", "cat", "ann")
    e2 = store.record("a", "dog", "ann")
    e3 = store.record("a", "axolotl", "ann")
    undo3 = store.undo("ann")
    assert (undo3.origin, undo3.undoes, undo3.label, undo3.item_id) == ("undo", e3, "dog", "a")
    assert store.current() == {"a": "dog"}
    undo2 = store.undo("ann")
    assert (undo2.undoes, undo2.label) == (e2, "cat")
    undo1 = store.undo("ann")
    assert (undo1.undoes, undo1.label) == (e1, None)  # nothing before e1: a retraction
    assert store.current() == {}
    assert store.undo("ann") is None
    assert len(store) == 6  # undo appends, never deletes


def test_undo_only_touches_the_given_annotator(store):
    store.record("a", "cat", "ann")
    store.record("b", "dog", "bob")
    assert store.undo("carol") is None
    undone = store.undo("ann")
    assert undone.item_id == "a" and undone.annotator == "ann"
    assert store.current() == {"b": "dog"}
    assert store.undo("ann") is None


def test_undo_of_a_retraction_restores_the_label(store):
    store.record("a", "cat", "bob")
    store.retract("a", "ann")
    restored = store.undo("ann")
    assert restored.label == "cat" and store.current() == {"a": "cat"}


def test_relabel_after_undo_is_undone_first(store):
    store.record("a", "cat", "ann")
    store.record("a", "dog", "ann")
    store.undo("ann")  # back to cat
    relabel = store.record("a", "axolotl", "ann")
    undone = store.undo("ann")
    assert undone.undoes == relabel and undone.label == "cat"
    assert store.undo("ann").label is None  # then the first label
    assert store.undo("ann") is None


def test_undo_reverts_a_whole_bulk_action_in_one_go(store):
    store.record("z", "dog", "ann")
    ids = store.record_many(["x", "y", "z", "x"], "cat", "ann")  # a repeated id is labelled once
    assert len(ids) == 3 and len({store.event(i).action_id for i in ids}) == 1
    appended = store.undo_action("ann")
    assert sorted((e.item_id, e.label, e.undoes) for e in appended) == [
        ("x", None, ids[0]), ("y", None, ids[1]), ("z", "dog", ids[2])]
    assert len({e.action_id for e in appended}) == 1 and appended[0].action_id not in (
        store.event(ids[0]).action_id,)
    assert store.current() == {"z": "dog"}
    assert store.undo("ann").label is None and store.current() == {}
    assert store.undo("ann") is None


def test_undo_of_an_action_with_several_events_on_one_item_restores_the_label_before_it(store):
    store.record("x", "dog", "bob", split="test")
    report = store.import_events([
        {"item_id": "x", "label": "cat", "annotator": "carl", "time": 100.0, "split": "train"},
        {"item_id": "x", "label": "axolotl", "annotator": "carl", "time": 200.0},
        {"item_id": "y", "label": "cat", "annotator": "carl", "time": 150.0},
    ], on_conflict="replace")
    assert report.imported == 3 and store.current() == {"x": "axolotl", "y": "cat"}
    imported = {e.event_id for e in store.history("x")[1:] + store.history("y")}
    appended = store.undo_action("carl")
    assert len(appended) == 3 and {e.undoes for e in appended} == imported
    # Back where the import found it: bob's label and split, not the import's first event.
    assert store.current() == {"x": "dog"} and store.splits() == {"x": "test"}


def test_undo_never_touches_a_label_someone_else_set_since(store):
    store.record("x", "cat", "ann")
    store.record("x", "dog", "bob")
    with pytest.raises(LabelStoreError, match=r"changed by 'bob' to 'dog'"):
        store.undo("ann")
    assert store.current() == {"x": "dog"}
    assert len(store) == 2  # nothing appended
    # Agreeing with ann is still a label someone else set: ann's undo would remove it.
    store.record("y", "cat", "ann")
    store.record("y", "cat", "carol")
    with pytest.raises(LabelStoreError, match="'carol'"):
        store.undo("ann")
    # A retraction by someone else covers the item too.
    store.record("w", "cat", "dave")
    store.retract("w", "erin")
    with pytest.raises(LabelStoreError, match=r"changed by 'erin' to \(removed\)"):
        store.undo("dave")


def test_undo_proceeds_once_the_other_annotator_undid_their_change(store):
    first = store.record("x", "cat", "ann")
    store.record("x", "dog", "bob")
    assert store.undo("bob").label == "cat"
    undone = store.undo("ann")
    assert undone.undoes == first and undone.label is None
    assert store.current() == {}


def test_undo_of_a_bulk_action_refuses_all_of_it_when_one_item_is_covered(store):
    store.record_many(["x", "y", "z"], "cat", "ann")
    store.record("y", "axolotl", "bob")
    with pytest.raises(LabelStoreError, match=r"item 'y' was changed by 'bob'"):
        store.undo_action("ann")
    assert store.current() == {"x": "cat", "y": "axolotl", "z": "cat"}


def test_undo_walks_back_past_own_later_actions_on_the_same_item(store):
    store.record("x", "cat", "ann")
    store.record("x", "dog", "bob")
    store.record("x", "axolotl", "ann")  # ann relabels after bob
    assert store.undo("ann").label == "dog"  # back to bob's label
    with pytest.raises(LabelStoreError, match="'bob'"):
        store.undo("ann")  # ann's first label is covered by bob's


def test_conflicting_labels_stay_in_history_and_are_listed(store):
    store.record("x", "cat", "ann")
    store.record("x", "dog", "bob")
    store.record("y", "cat", "ann")
    store.record("y", "cat", "bob")
    store.record("z", "cat", "ann")
    store.record("z", "dog", "bob")
    store.undo("bob")  # bob takes his disagreement back
    assert store.current() == {"x": "dog", "y": "cat", "z": "cat"}
    assert [(e.annotator, e.label) for e in store.history("x")] == [("ann", "cat"), ("bob", "dog")]
    assert store.conflicts() == {"x": {"ann": "cat", "bob": "dog"}}
    assert store.conflicts(["y", "z"]) == {}
    assert store.stances("y") == {"ann": "cat", "bob": "cat"}
    assert store.stances("nothing") == {}


def test_a_version_1_store_is_migrated_and_its_events_stay_undoable(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:  # the version-1 layout, as Tailwise 1 wrote it
        conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE classes (name TEXT PRIMARY KEY, colour TEXT NOT NULL, rare INTEGER NOT NULL DEFAULT 0,
                              description TEXT NOT NULL DEFAULT '', position INTEGER NOT NULL);
        CREATE TABLE events (event_id INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,
            label TEXT, annotator TEXT NOT NULL, time REAL NOT NULL, origin TEXT NOT NULL,
            model_version INTEGER, note TEXT, undoes INTEGER REFERENCES events(event_id));
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'label events are append-only: record a new event instead'); END;
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO classes VALUES ('cat', '#000000', 0, '', 0), ('dog', '#111111', 0, '', 1);
        INSERT INTO events(item_id, label, annotator, time, origin) VALUES
            ('a', 'cat', 'ann', 1.0, 'expert'), ('b', 'cat', 'ann', 2.0, 'bulk'),
            ('c', 'dog', 'ann', 2.0, 'bulk');
        """)
    with LabelStore(path) as store:
        assert store.schema_version == LABEL_SCHEMA_VERSION == 3  # 1 -> 2 (actions) -> 3 (splits)
        assert [e.action_id for e in store.events()] == [1, 2, 3]  # one action per old event
        assert store.undo("ann").item_id == "c"
        new = store.record_many(["d", "e"], "dog", "bob")
        assert {store.event(i).action_id for i in new} == {5}
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the trigger is back
            store.db.connection().execute("UPDATE events SET label = 'dog'")
    with LabelStore(path) as again:  # opening a migrated store changes nothing
        assert again.schema_version == LABEL_SCHEMA_VERSION and len(again) == 6


# ------------------------------------------------------------------ classes


def test_add_class_appends_and_accepts_only_an_identical_duplicate(store):
    store.add_class(ClassConfig(name="bird", colour="#ABCDEF"))
    assert store.class_names == ["cat", "dog", "axolotl", "bird"]
    assert store.add_class(ClassConfig(name="bird", colour="#abcdef")).name == "bird"
    with pytest.raises(LabelStoreError, match="'bird' already exists"):
        store.add_class(ClassConfig(name="bird", colour="#000000"))
    store.record("a", "bird", "ann")
    assert store.current() == {"a": "bird"}


def test_update_class_by_name_or_config(store):
    updated = store.update_class("cat", rare=True, description="shy")
    assert updated == ClassConfig(name="cat", colour="#e69f00", rare=True, description="shy")
    store.update_class(ClassConfig(name="dog", colour="#000000"))
    by_name = {c.name: c for c in store.classes()}
    assert by_name["cat"].rare and by_name["dog"].colour == "#000000"
    assert store.class_names == ["cat", "dog", "axolotl"]  # order unchanged
    with pytest.raises(LabelStoreError, match="'unicorn'"):
        store.update_class("unicorn", rare=True)
    with pytest.raises(LabelStoreError, match="only colour, rare and description"):
        store.update_class("cat", name="kitten")
    with pytest.raises(LabelStoreError, match="colour"):
        store.update_class("cat", colour="red")


def test_set_classes_adds_updates_orders_and_keeps_labelled_classes(store):
    store.record("a", "axolotl", "ann")
    result = store.set_classes([
        ClassConfig(name="bird", colour="#111111"),
        ClassConfig(name="cat", colour="#222222", rare=True),
    ])
    # listed first in file order; the others stay, in their previous order
    assert [c.name for c in result] == ["bird", "cat", "dog", "axolotl"]
    assert result[1] == ClassConfig(name="cat", colour="#222222", rare=True)
    pruned = store.set_classes([ClassConfig(name="cat", colour="#222222")], prune=True)
    # dog and bird were never used; axolotl has a label and is never removed
    assert [c.name for c in pruned] == ["cat", "axolotl"]
    with pytest.raises(LabelStoreError, match="duplicate"):
        store.set_classes([ClassConfig(name="cat"), ClassConfig(name="cat")])


# ------------------------------------------------------------------ export / import


def _populated(store):
    store.record("a", "cat", "ann", model_version=1, note='quote " and, comma')
    store.record("b", "dog", "bob")
    store.record("a", "axolotl", "ann", note="multi\nline")
    store.retract("b", "bob")
    store.undo("ann")
    return store


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_export_import_round_trip(store, tmp_path, suffix):
    _populated(store)
    path = tmp_path / f"events{suffix}"
    if suffix == ".jsonl":
        digest = store.export_jsonl(path)
        assert digest == events_sha256(path) == events_sha256(store.events())
    else:
        store.export_csv(path)
    with LabelStore(tmp_path / "other.sqlite") as other:
        other.set_classes(store.classes())
        report = other.import_events(path)
        assert report == ImportReport(imported=5, skipped_duplicates=0, conflicts=[])
        assert portable(other.events()) == portable(store.events())
        assert other.current() == store.current() == {"a": "cat"}
        again = other.import_events(path)
        assert again == ImportReport(imported=0, skipped_duplicates=5, conflicts=[])
        assert len(other) == 5


def test_jsonl_and_csv_exports_carry_the_same_records(store, tmp_path):
    _populated(store)
    store.export_jsonl(tmp_path / "e.jsonl")
    store.export_csv(tmp_path / "e.csv")
    from_jsonl = read_events_jsonl(tmp_path / "e.jsonl")
    from_csv = read_events_csv(tmp_path / "e.csv")
    assert from_jsonl == from_csv
    assert [r.model_dump() for r in from_jsonl] == portable(store.events())
    header = (tmp_path / "e.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == ",".join(EXCHANGE_FIELDS)


def test_write_events_jsonl_accepts_events_records_and_dicts(tmp_path):
    event = LabelEvent(1, "a", "cat", "ann", 1.5, "expert")
    record = LabelEventRecord(item_id="a", label="cat", annotator="ann", time=1.5, origin="expert")
    as_dict = dict(event.to_record())
    digests = [write_events_jsonl([e], tmp_path / f"{i}.jsonl") for i, e in enumerate([event, record, as_dict])]
    assert len(set(digests)) == 1
    assert json.loads((tmp_path / "0.jsonl").read_text()) == as_dict
    with pytest.raises(LabelStoreError, match="cannot export int"):
        write_events_jsonl([3], tmp_path / "bad.jsonl")


def test_import_keeps_annotator_and_time_and_defaults_origin_to_import(store):
    report = store.import_events([
        {"item_id": "a", "label": "cat", "annotator": "remote", "time": 1_700_000_000.25},
        {"item_id": "b", "label": "dog", "annotator": "remote", "time": "2026-01-02T03:04:05Z",
         "origin": "expert"},
        LabelEventRecord(item_id="c", label="cat", time=None),
    ])
    assert report.imported == 3
    a, b, c = store.events()
    assert (a.annotator, a.time, a.origin) == ("remote", 1_700_000_000.25, "import")
    assert (b.time, b.origin) == (1_767_323_045.0, "expert")
    assert c.annotator == "unknown" and c.time > 1_700_000_000


def test_import_conflicts_keep_replace_and_error(store):
    store.record("a", "cat", "local")
    store.record("b", "dog", "local")
    incoming = [
        {"item_id": "a", "label": "dog", "annotator": "remote", "time": 10.0},   # conflict
        {"item_id": "b", "label": "dog", "annotator": "remote", "time": 11.0},   # agrees
        {"item_id": "c", "label": "cat", "annotator": "remote", "time": 12.0},   # new item
        {"item_id": "b", "label": None, "annotator": "remote", "time": 13.0},    # retracts b: conflict
    ]
    with pytest.raises(LabelStoreError, match="2 item\\(s\\).*'a': local 'cat', incoming 'dog'"):
        store.import_events(incoming, on_conflict="error")
    assert len(store) == 2  # nothing imported

    kept = store.import_events(incoming)
    assert kept.conflicts == [("a", "cat", "dog"), ("b", "dog", None)]
    assert kept.imported == 1 and kept.skipped_duplicates == 0
    assert store.current() == {"a": "cat", "b": "dog", "c": "cat"}

    replaced = store.import_events(incoming, on_conflict="replace")
    assert replaced.conflicts == [("a", "cat", "dog"), ("b", "dog", None)]
    assert replaced.imported == 3 and replaced.skipped_duplicates == 1  # c is already there
    assert store.current() == {"a": "dog", "c": "cat"}
    with pytest.raises(LabelStoreError, match="on_conflict"):
        store.import_events(incoming, on_conflict="merge")


def test_import_judges_an_items_incoming_history_by_its_final_label(store):
    store.record("a", "dog", "local")
    report = store.import_events([
        {"item_id": "a", "label": "cat", "annotator": "remote", "time": 1.0},
        {"item_id": "a", "label": "dog", "annotator": "remote", "time": 2.0},
    ])
    assert report.conflicts == [] and report.imported == 2
    assert store.current() == {"a": "dog"}


def test_duplicates_inside_one_import_are_counted_once(store):
    row = {"item_id": "a", "label": "cat", "annotator": "remote", "time": 5.0}
    report = store.import_events([row, dict(row), {**row, "time": 6.0}])
    assert (report.imported, report.skipped_duplicates) == (2, 1)


def test_import_with_unknown_class_names_line_and_imports_nothing(store, tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [{"item_id": "a", "label": "cat"}, {"item_id": "b", "label": "unicorn"}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    with pytest.raises(LabelStoreError, match=r"'unicorn' at .*in.jsonl: line 2.*known classes"):
        store.import_events(path)
    assert len(store) == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"item_id": "a", "label": "cat"}\n\n{"item_id": "b", "label": "cat"\n', r"line 3: not valid JSON"),
        ('{"item_id": "a", "label": "cat"}\n[1, 2]\n', r"line 2: a label event must be an object"),
        ('{"item_id": "a", "label": "cat", "colour": "red"}\n', r"line 1: invalid label event \(colour: unknown field"),
        ('{"item_id": 5, "label": "cat"}\n', r"line 1: invalid label event \(item_id"),
        ('{"label": "cat"}\n', r"line 1: invalid label event \(item_id: Field required"),
        ('{"item_id": "", "label": "cat"}\n', r"line 1: item_id is empty"),
        ('{"item_id": "a", "label": "cat", "time": "yesterday"}\n', r"line 1: time 'yesterday'"),
    ],
)
def test_malformed_jsonl_names_the_line(store, tmp_path, text, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelStoreError, match=match):
        store.import_events(path)
    assert len(store) == 0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("item_id,label,colour\na,cat,red\n", r"line 1: unknown column\(s\) \['colour'\]"),
        ("item,label\na,cat\n", r"line 1: .*missing column\(s\) \['item_id'\]"),
        ("item_id,label,model_version\na,cat,1\nb,dog,v2\n", r"line 3: model_version must be an integer"),
        ("item_id,label\na,cat\nb,dog,extra\n", r"line 3: more values than header"),
    ],
)
def test_malformed_csv_names_the_line(store, tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(LabelStoreError, match=match):
        store.import_events(path)
    assert len(store) == 0


def test_minimal_csv_imports_with_defaults(store, tmp_path):
    path = tmp_path / "min.csv"
    path.write_text("item_id,label\na,cat\nb,\n", encoding="utf-8")
    report = store.import_events(path)
    assert report.imported == 2
    a, b = store.events()
    assert (a.label, a.annotator, a.origin) == ("cat", "unknown", "import")
    assert b.label is None
    assert store.current() == {"a": "cat"}


def test_import_refuses_missing_files_and_unknown_suffixes(store, tmp_path):
    with pytest.raises(LabelStoreError, match="not found"):
        store.import_events(tmp_path / "missing.jsonl")
    (tmp_path / "labels.txt").write_text("x", encoding="utf-8")
    with pytest.raises(LabelStoreError, match=r"\.jsonl, \.ndjson or \.csv"):
        store.import_events(tmp_path / "labels.txt")
    (tmp_path / "latin1.jsonl").write_bytes('{"item_id": "é"}'.encode("latin-1"))
    with pytest.raises(LabelStoreError, match="not UTF-8"):
        store.import_events(tmp_path / "latin1.jsonl")


def test_record_labels_writes_different_labels_as_one_undoable_action(store):
    store.record("c", "dog", "bob")
    ids = store.record_labels({"a": "cat", "b": "axolotl", "c": None}, "ann", origin="accepted")
    assert [store.event(i).label for i in ids] == ["cat", "axolotl", None]
    assert len({store.event(i).action_id for i in ids}) == 1
    with pytest.raises(LabelStoreError, match="unknown class 'bird'"):
        store.record_labels({"a": "bird"}, "ann")
    assert len(store.undo_action("ann")) == 3
    assert store.current() == {"c": "dog"}


def test_bulk_undo_refuses_from_either_side_and_restores_every_earlier_label(store):
    """The refusal is searched from the smaller side (the events after the action, or the action
    itself); either way a covered item stops the whole undo, and an allowed undo of thousands of
    items restores each item's earlier label and split exactly (cache, counts, changes alike)."""
    from core.labels import store as store_module

    n = store_module.BULK_ROWS + 200
    ids = [f"i{k}" for k in range(n)]
    store.record_many(ids[:100], "dog", "bob")
    store.record_many(ids[100:150], "cat", "bob", split="test")
    before = store.current()
    first = store.record_many(ids, "axolotl", "ann")[0]
    assert store.current() == dict.fromkeys(ids, "axolotl")
    # Few later events: searched from them.
    store.record(ids[7], "dog", "carol")
    with pytest.raises(LabelStoreError, match=r"item 'i7' was changed by 'carol' to 'dog'"):
        store.undo_count("ann")
    assert store.undo("carol").label == "axolotl"
    # More later events than the action holds (a small action of ann's): searched from the action.
    store.record("solo", "cat", "ann")
    store.record_many([f"other{k}" for k in range(50)] + ["solo"], "dog", "dave")
    with pytest.raises(LabelStoreError, match=r"item 'solo' was changed by 'dave'"):
        store.undo_count("ann")
    assert store.undo_count("dave") == 51 and store.undo_count("ann") == 1
    # Nothing after ann's bulk action covers it any more: undone in one action.
    assert store.undo_count("ann") == n
    assert store.current() == before
    assert store.current(split="test") == {i: "cat" for i in ids[100:150]}
    assert store.label_counts() == {**dict.fromkeys(store.class_names, 0), "cat": 50, "dog": 100}
    assert store.label_counts(split="train")["dog"] == 100
    assert store.label_counts(split="test")["cat"] == 50
    last, changes = store.changes_since(first - 1)
    assert last == store.last_event_id()
    assert {i: lab for i, (lab, _) in changes.items() if lab is not None} == {
        **{i: "dog" for i in ids[:100]}, **{i: "cat" for i in ids[100:150]}}
    fresh = type(store)(store.path)  # the cache rebuilt from SQL agrees with the updated one
    assert fresh.current() == store.current() and fresh.splits() == store.splits()
    assert fresh.label_counts(split="test") == store.label_counts(split="test")
    fresh.close()


def test_labels_of_a_few_items_is_exact_while_the_cache_is_behind_or_busy(store, monkeypatch):
    """A page asking for a few items' labels reads them from the file while the cache is far
    behind (a bulk action just written) or being refreshed by another thread: same answer."""
    from core.labels import store as store_module

    store.record("a", "cat", "ann")
    assert store.current() == {"a": "cat"}  # the cache is built
    other = LabelStore(store.path)
    other.record_many([f"b{k}" for k in range(40)] + ["a"], "dog", "bob")
    other.record("c", "axolotl", "bob")
    other.retract("b3", "bob")
    monkeypatch.setattr(store_module, "READ_CHUNK", 10)  # 43 new events: "far behind"
    assert store.labels_of(["a", "b3", "b4", "c", "zz"]) == {"a": "dog", "b4": "dog", "c": "axolotl"}
    with store._cache_lock:  # another thread refreshing: not waited for
        assert store.labels_of(["a", "b3"]) == {"a": "dog"}
    assert store.current()["a"] == "dog" and "b3" not in store.current()  # the cache catches up
    assert store.labels_of(["a", "b3"]) == {"a": "dog"}
    other.close()


def test_changes_since_brings_a_cache_at_the_same_event_up_to_date(store):
    """One read of the new events serves both the map's changes and the cache of current labels
    when both stood at the same event; otherwise the cache refreshes on its own, same answers."""
    store.record_many(["a", "b"], "cat", "ann")
    assert store.current() == {"a": "cat", "b": "cat"}
    last = store.last_event_id()
    store.record_many([f"i{k}" for k in range(30)] + ["a"], "dog", "bob", split="test")
    store.retract("b", "bob")
    new_last, changes = store.changes_since(last)
    assert new_last == store.last_event_id() and changes["a"] == ("dog", "bob")
    assert changes["b"] == (None, "bob") and len(changes) == 32
    assert store._cache_last_id == new_last  # fed by the same read
    assert store.current(split="test") == {**{f"i{k}": "dog" for k in range(30)}, "a": "dog"}
    assert "b" not in store.current()
    other = LabelStore(store.path)
    other.record("c", "axolotl", "carol")
    assert store.changes_since(0)[1]["c"] == ("axolotl", "carol")  # not at the cache's event
    assert store.current()["c"] == "axolotl"
    at = store.last_event_id()
    other.record("d", "cat", "carol")
    with store._cache_lock:  # held by another thread: not fed, and not waited for
        assert store.changes_since(at) == (at + 1, {"d": ("cat", "carol")})
        assert store._cache_last_id == at
    assert store.current()["d"] == "cat"
    fresh = LabelStore(store.path)
    assert fresh.current() == store.current() and fresh.splits() == store.splits()
    fresh.close()
    other.close()


def test_splits_of_a_few_items_matches_splits_also_while_the_cache_is_busy(store):
    store.record_many(["a", "b"], "cat", "ann", split="test")
    store.record("c", "dog", "ann")
    store.retract("b", "ann")
    assert store.splits_of(["a", "b", "c", "zz"]) == {"a": "test", "c": "train"}
    with store._cache_lock:  # another thread refreshing: read from the file, same answer
        assert store.splits_of(["a", "b", "c"]) == {"a": "test", "c": "train"}
    assert store.splits_of(["a", "c"]) == {i: s for i, s in store.splits().items() if i in "ac"}
