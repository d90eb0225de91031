"""Concurrency: several processes and several threads label one store at the same time."""

from __future__ import annotations

import threading
from collections import Counter

from core.labels import LabelStore
from core.project import ClassConfig

WORKERS = 4
LABELS_PER_WORKER = 500


def _expected_label(i: int) -> str:  # mirrors label_store_worker.label_for
    return "rare" if i % 7 == 0 else "common"


def test_four_processes_label_one_new_store_concurrently(tmp_path, spawn_worker):
    db = tmp_path / "labels.sqlite"  # does not exist yet: the workers race to create it
    go = tmp_path / "go"
    procs = [spawn_worker(db, "burst", f"p{w}", LABELS_PER_WORKER, go) for w in range(WORKERS)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    go.touch()  # start every worker at the same moment
    outputs = [proc.communicate(timeout=300) for proc in procs]

    for proc, (out, err) in zip(procs, outputs):
        assert "locked" not in err.lower() and "busy" not in err.lower(), err
        assert proc.returncode == 0, err
        assert out == f"done {LABELS_PER_WORKER}\n"

    with LabelStore(db) as store:
        events = store.events()
        assert len(events) == WORKERS * LABELS_PER_WORKER
        assert [e.event_id for e in events] == list(range(1, len(events) + 1))
        assert Counter(e.annotator for e in events) == {f"p{w}": LABELS_PER_WORKER for w in range(WORKERS)}
        for w in range(WORKERS):  # each worker's events are in its own order
            mine = [e.item_id for e in events if e.annotator == f"p{w}"]
            assert mine == [f"p{w}-{i}" for i in range(LABELS_PER_WORKER)]
        assert store.current() == {
            f"p{w}-{i}": _expected_label(i) for w in range(WORKERS) for i in range(LABELS_PER_WORKER)
        }
        assert [c.name for c in store.classes()] == ["common", "rare"]
        assert store.integrity_check() == "ok"


def test_threads_share_one_store(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.set_classes([ClassConfig(name="a"), ClassConfig(name="b")])
    threads_n, per_thread = 4, 150
    errors: list[BaseException] = []
    ids: dict[int, list[int]] = {}
    stop = threading.Event()
    snapshots: list[int] = []

    def writer(t: int) -> None:
        try:
            mine = []
            for i in range(per_thread):
                if i % 10 == 9:
                    mine += store.record_many([f"t{t}-{i}-x", f"t{t}-{i}-y"], "b", f"t{t}")
                else:
                    mine.append(store.record(f"t{t}-{i}", "a", f"t{t}"))
                if i % 25 == 0:
                    assert store.undo(f"t{t}") is not None
            ids[t] = mine
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    def reader() -> None:
        try:
            while not stop.is_set():
                snapshots.append(len(store.current()))
        except BaseException as err:  # noqa: BLE001
            errors.append(err)

    watcher = threading.Thread(target=reader)
    watcher.start()
    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    watcher.join()

    assert errors == []
    records_per_thread = per_thread + per_thread // 10  # record_many writes two events
    undos_per_thread = len(range(0, per_thread, 25))
    assert sorted(len(v) for v in ids.values()) == [records_per_thread] * threads_n
    assert len(store) == threads_n * (records_per_thread + undos_per_thread)
    all_ids = [e for v in ids.values() for e in v]
    assert len(set(all_ids)) == len(all_ids)
    # every undo reverted its own thread's latest record, which had no earlier label
    assert len(store.current()) == threads_n * (records_per_thread - undos_per_thread)
    assert snapshots and max(snapshots) <= threads_n * records_per_thread  # the reader ran
    assert store.integrity_check() == "ok"
    store.close()
