"""Child process for the label-store reliability tests (run as a script, not collected by pytest).

    python label_store_worker.py DB crash WORKER
        Label items WORKER-0, WORKER-1, ... forever (record, and every 5th step record_many of
        three items); after each commit print one ``EVENT_ID ITEM_ID`` line per event, flushed.
        The parent kills it with SIGKILL at some point.
    python label_store_worker.py DB burst WORKER N GO_FILE
        Print ``ready``, wait until GO_FILE exists, then open (maybe create) the store, seed the
        classes and record N labels as fast as possible; print ``done N``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from core.labels import LabelStore
from core.project import ClassConfig

CLASSES = [ClassConfig(name="common"), ClassConfig(name="rare", rare=True)]


def label_for(i: int) -> str:
    return "rare" if i % 7 == 0 else "common"


def crash(db: str, worker: str) -> None:
    store = LabelStore(db)
    i = 0
    while True:
        if i % 5 == 4:
            items = [f"{worker}-{i + k}" for k in range(3)]
            ids = store.record_many(items, label_for(i), worker)
        else:
            items = [f"{worker}-{i}"]
            ids = [store.record(items[0], label_for(i), worker, note=f"step {i}")]
        sys.stdout.write("".join(f"{e} {item}\n" for e, item in zip(ids, items)))
        sys.stdout.flush()
        i += len(items)


def burst(db: str, worker: str, n: int, go_file: str) -> None:
    print("ready", flush=True)
    go = Path(go_file)
    while not go.exists():
        time.sleep(0.005)
    store = LabelStore(db)
    store.set_classes(CLASSES)
    for i in range(n):
        store.record(f"{worker}-{i}", label_for(i), worker, origin="simulated")
    store.close()
    print(f"done {n}", flush=True)


def main(argv: list[str]) -> None:
    db, mode, *rest = argv
    if mode == "crash":
        crash(db, *rest)
    elif mode == "burst":
        worker, n, go_file = rest
        burst(db, worker, int(n), go_file)
    else:
        raise SystemExit(f"unknown mode {mode!r}; use crash or burst")


if __name__ == "__main__":
    main(sys.argv[1:])
