"""Crash safety: a label acknowledged by ``LabelStore.record`` survives SIGKILL of the process."""

from __future__ import annotations

import os
import signal
import sqlite3

from core.labels import LabelStore
from core.project import ClassConfig

ACKS_BEFORE_KILL = 300
ROUNDS = 3
BATCH = 3  # the largest transaction the worker commits (record_many of three items)


def _read_acks(proc, wanted: int) -> list[tuple[int, str]]:
    acks = []
    while len(acks) < wanted:
        line = proc.stdout.readline()
        assert line, f"worker exited early (rc={proc.poll()}): {proc.stderr.read()}"
        event_id, item_id = line.split()
        acks.append((int(event_id), item_id))
    return acks


def _drain(proc) -> list[tuple[int, str]]:
    """Acknowledgements printed before the kill but not read yet (whole lines only)."""
    rest = proc.stdout.read()
    lines = rest.split("\n")[:-1]  # a pipe write of one short line is atomic; drop any tail
    return [(int(e), item) for e, item in (line.split() for line in lines)]


def test_acknowledged_labels_survive_sigkill(tmp_path, spawn_worker):
    db = tmp_path / "labels.sqlite"
    with LabelStore(db) as store:
        store.set_classes([ClassConfig(name="common"), ClassConfig(name="rare", rare=True)])

    acknowledged: list[tuple[int, str]] = []
    for round_ in range(ROUNDS):  # each round also reopens a store recovered from a kill
        proc = spawn_worker(db, "crash", f"w{round_}")
        acks = _read_acks(proc, ACKS_BEFORE_KILL)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the worker never stops writing
        assert proc.wait(timeout=60) == -signal.SIGKILL
        acks += _drain(proc)
        acknowledged += acks

        with LabelStore(db) as store:
            stored = {e.event_id: e for e in store.events()}
            missing = [(e, item) for e, item in acks if stored.get(e) is None or stored[e].item_id != item]
            assert missing == []
            # committed-but-unacknowledged events can only come from the one transaction in flight
            this_round = [e for e in stored.values() if e.annotator == f"w{round_}"]
            assert len(acks) <= len(this_round) <= len(acks) + BATCH
            assert store.integrity_check() == "ok"

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored_pairs = set(conn.execute("SELECT event_id, item_id FROM events").fetchall())
    finally:
        conn.close()
    assert set(acknowledged) <= stored_pairs
    assert len(acknowledged) >= ROUNDS * ACKS_BEFORE_KILL

    with LabelStore(db) as store:  # still writable after the crashes
        event_id = store.record("after-crash", "rare", "parent")
        assert store.current()["after-crash"] == "rare" and store.last_event_id() == event_id
