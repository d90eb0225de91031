"""Training rounds in a process of their own, so that a server stays responsive while it trains.

Training holds the GIL for long stretches and would take both cores of a small machine: in the
dashboard's process every click of every expert would wait behind it. :class:`TrainingProcess`
runs :func:`core.pipeline.train_round` in a fresh Python (``python -m core.worker FOLDER``, never
a fork of the threaded server) at a lower priority (``os.nice``) with few torch threads, and gives
back the same :class:`~core.pipeline.ModelState` the round would have returned in-process.

Nothing crosses the process boundary as pickle: the request is JSON plus the embedding as ``.npy``
(written once per pool), the result is the model's ``model.safetensors`` + ``model.json``, the
arrays in one safetensors file and the rest as JSON. Progress comes back as JSON lines on stdout.
An error in the round comes back with its type and message (a ``ModelError`` stays a
``ModelError``); a process that dies (killed, out of memory) raises :class:`WorkerError` saying
so. The child exits when its parent does (its stdin closes).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core import errors
from core.errors import TailwiseError, WorkerError
from core.jsonable import jsonable

Progress = Callable[[int, int, str], None]
log = logging.getLogger("tailwise")

__all__ = ["TrainingProcess", "WorkerError", "state_from_folder", "state_to_folder"]

# Arrays of a ModelState written to arrays.safetensors (the rest is JSON, the model its own files).
_ARRAYS = ("proba", "best", "learned_embedding", "oof_positions", "oof_proba")
_OWN = {"model", "proba", "predicted", "uncertainty", "learned_embedding", "oof_ids", "oof_proba",
        "model_choice"}
# Errors the round raises on purpose come back as the same type (others as WorkerError).
_ERRORS = {cls.__name__: cls for cls in (errors.ModelError, errors.ConfigError, errors.DataError,
                                         errors.EmptyPoolError, errors.LabelStoreError,
                                         errors.TailwiseError)}
STDERR_TAIL = 2_000
SCRATCH_PREFIX = "tailwise-train-"  # + the server's pid: leftovers of dead servers are removed


# ---------------------------------------------------------------------- the parent's side
class TrainingProcess:
    """Runs training rounds in a child process, one at a time (the caller serialises them).

    ``nice`` lowers the child's priority (the server's clicks come first); ``threads`` bounds its
    torch/BLAS threads. ``process`` is the running child (None between rounds).
    """

    def __init__(self, *, nice: int = 10, threads: int = 1, scratch: str | Path | None = None) -> None:
        self.nice = int(nice)
        self.threads = max(int(threads), 1)
        if scratch is not None:
            remove_leftovers(Path(scratch))
        self._scratch = tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-",
                                                    dir=scratch)
        self.folder = Path(self._scratch.name)
        self._pool: tuple[int, int, Path] | None = None  # (id of the embedding, rows, folder)
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop a running child and delete the scratch folder."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
        self._scratch.cleanup()

    def _pool_folder(self, dataset, embedding: np.ndarray) -> Path:
        """The pool as the child reads it (embedding, ids, ground truth), written once per
        embedding."""
        key = (id(embedding), len(embedding))
        if self._pool is not None and self._pool[:2] == key:
            return self._pool[2]
        folder = self.folder / f"pool-{len(list(self.folder.glob('pool-*')))}"
        folder.mkdir()
        np.save(folder / "embedding.npy", np.ascontiguousarray(embedding), allow_pickle=False)
        truth = dataset.ground_truth
        pool = {"ids": [str(i) for i in dataset.ids.tolist()], "name": dataset.name,
                "ground_truth": None if truth is None else [None if t is None else str(t)
                                                            for t in truth.tolist()]}
        (folder / "pool.json").write_text(json.dumps(pool), encoding="utf-8")
        if self._pool is not None:
            shutil.rmtree(self._pool[2], ignore_errors=True)
        self._pool = (*key, folder)
        return folder

    def train(self, project, dataset, embedding: np.ndarray, labels: dict[str, str], *,
              model_version: int, previous=None, progress: Progress | None = None,
              test_labels: dict[str, str] | None = None, learned_embedding: bool | None = None):
        """:func:`core.pipeline.train_round` in the child; returns its ``ModelState``."""
        with self._lock:
            pool = self._pool_folder(dataset, embedding)
            run = Path(tempfile.mkdtemp(prefix="round-", dir=self.folder))
            try:
                request = {
                    "project": project.model_copy(update={"labels": None}).to_dict(),
                    "base_dir": str(project.base_dir), "pool": str(pool),
                    "labels": labels, "test_labels": test_labels or {},
                    "model_version": int(model_version), "learned_embedding": learned_embedding,
                    "previous": None if previous is None else jsonable(dataclasses.asdict(previous)),
                    "nice": self.nice, "threads": self.threads,
                }
                (run / "request.json").write_text(json.dumps(request), encoding="utf-8")
                self._run(run, progress)
                return state_from_folder(run / "result", dataset)
            finally:
                shutil.rmtree(run, ignore_errors=True)

    def _run(self, run: Path, progress: Progress | None) -> None:
        core_parent = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "PYTHONPATH": os.pathsep.join(filter(None, [core_parent, os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        with open(run / "stderr.txt", "wb") as stderr:
            self.process = process = subprocess.Popen(
                [sys.executable, "-m", "core.worker", str(run)], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
            log.info("training process %d started (nice %d, %d thread(s))", process.pid, self.nice,
                     self.threads)
            try:
                for line in process.stdout:
                    _report(line, progress)
                code = process.wait()
            finally:
                process.stdout.close()
                process.stdin.close()  # the child exits when this closes, if it has not yet
                if process.poll() is None:
                    process.kill()
                    process.wait()
                self.process = None
        log.info("training process %d ended with code %d after %.1f s", process.pid, code,
                 time.monotonic() - started)
        if code == 0:
            return
        failure = run / "error.json"
        if failure.is_file():
            raise _error_from(json.loads(failure.read_text(encoding="utf-8")))
        tail = (run / "stderr.txt").read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL:].strip()
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        raise WorkerError(f"the training process {how} before it finished (out of memory, or "
                          f"stopped from outside?); the previous model is kept"
                          + (f". Its last output: {tail}" if tail else ""))


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete scratch folders of servers that are gone (killed before they could clean up: each
    holds a copy of the pool's embedding). Returns the folders removed."""
    removed = []
    for path in folder.glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _report(line: str, progress: Progress | None) -> None:
    try:
        message = json.loads(line)
        done, total, text = message["progress"]
    except (ValueError, KeyError, TypeError):
        return  # a stray print of a library: not a progress line
    if progress is not None:
        progress(int(done), int(total), str(text))


def _error_from(data: dict) -> Exception:
    """The error the child reported: the same type for our own errors, WorkerError otherwise."""
    kind, message = str(data.get("type", "")), str(data.get("message", ""))
    if kind in _ERRORS:
        return _ERRORS[kind](message)
    return WorkerError(f"training failed: {kind}: {message}")


# ---------------------------------------------------------------------- the result on disk
def state_to_folder(state, dataset, folder: Path) -> None:
    """Write a ``ModelState`` as safetensors (model, arrays) and JSON (everything else)."""
    from safetensors.numpy import save_file

    from core.models.io import save_model

    folder.mkdir(parents=True)
    save_model(state.model, folder / "model")
    import pandas as pd

    # The predicted class as its column (taken on float64 probabilities in the round: kept as is).
    best = pd.Index(list(state.classes), dtype=object).get_indexer(state.predicted).astype(np.int64)
    arrays = {"proba": np.asarray(state.proba, dtype=np.float32), "best": best}
    if state.learned_embedding is not None:
        arrays["learned_embedding"] = np.asarray(state.learned_embedding, dtype=np.float32)
    if state.oof_ids is not None:
        arrays["oof_positions"] = dataset.positions(state.oof_ids.tolist())
        arrays["oof_proba"] = np.asarray(state.oof_proba)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(folder / "arrays.safetensors"))
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state) if f.name not in _OWN}
    fields["model_choice"] = (None if state.model_choice is None
                              else dataclasses.asdict(state.model_choice))
    (folder / "state.json").write_text(json.dumps(jsonable(fields)), encoding="utf-8")


def state_from_folder(folder: Path, dataset):
    """The ``ModelState`` :func:`state_to_folder` wrote (``dataset`` gives the ids)."""
    from safetensors.numpy import load_file

    from core.models.io import load_model
    from core.models.selection import ModelChoice
    from core.pipeline import ModelState

    fields = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    arrays = load_file(str(folder / "arrays.safetensors"))
    classes = tuple(str(c) for c in fields["classes"])
    proba = arrays["proba"]
    choice = fields.pop("model_choice")
    if choice is not None:
        choice = ModelChoice(**{**choice, "classes": tuple(choice.get("classes", ()))})
    oof = arrays.get("oof_positions")
    fields.update(
        classes=classes, proba=proba, model=load_model(folder / "model"), model_choice=choice,
        predicted=np.asarray(classes, dtype=object)[arrays["best"]],
        uncertainty=1.0 - proba.max(axis=1),
        learned_embedding=arrays.get("learned_embedding"),
        oof_ids=None if oof is None else dataset.ids[oof], oof_proba=arrays.get("oof_proba"))
    return ModelState(**fields)


# ---------------------------------------------------------------------- the child's side
def _exit_with_parent() -> None:
    """Leave at once when the parent goes (its end of our stdin closes): no orphan training."""
    def watch() -> None:
        try:
            sys.stdin.read()
        finally:
            os._exit(70)

    threading.Thread(target=watch, name="tailwise-parent-watch", daemon=True).start()


def child_main(run: Path) -> int:
    """Run the round ``run/request.json`` describes; write ``run/result`` or ``run/error.json``."""
    request = json.loads((run / "request.json").read_text(encoding="utf-8"))
    _exit_with_parent()
    try:
        os.nice(int(request.get("nice", 0)))
    except OSError:
        pass  # lowering one's own priority is always allowed; a platform without it just runs
    try:
        import torch

        torch.set_num_threads(int(request.get("threads", 1)))
        state, dataset = _train(request)
        state_to_folder(state, dataset, run / "result")
    except Exception as err:  # noqa: BLE001  (reported to the parent with its type)
        (run / "error.json").write_text(json.dumps({
            "type": type(err).__name__, "message": str(err),
            "traceback": traceback.format_exc()}), encoding="utf-8")
        print(traceback.format_exc(), file=sys.stderr)
        return 1
    return 0


def _train(request: dict):
    from core.data.base import Dataset
    from core.models.selection import ModelChoice
    from core.pipeline import train_round
    from core.project import ProjectConfig

    project = ProjectConfig.model_validate(request["project"])
    project._base_dir = Path(request["base_dir"])
    pool = Path(request["pool"])
    meta = json.loads((pool / "pool.json").read_text(encoding="utf-8"))
    embedding = np.load(pool / "embedding.npy", mmap_mode="r", allow_pickle=False)
    truth = meta["ground_truth"]
    dataset = Dataset(ids=np.asarray(meta["ids"], dtype=object),
                      features=np.empty((len(meta["ids"]), 0), dtype=np.float32), feature_names=[],
                      ground_truth=None if truth is None else np.asarray(truth, dtype=object),
                      name=meta["name"])
    previous = request.get("previous")
    if previous is not None:
        previous = ModelChoice(**{**previous, "classes": tuple(previous.get("classes", ()))})

    def progress(done: int, total: int, message: str) -> None:
        print(json.dumps({"progress": [done, total, message]}), flush=True)

    state = train_round(project, dataset, embedding, request["labels"],
                        model_version=request["model_version"], previous=previous,
                        progress=progress, test_labels=request["test_labels"] or None,
                        learned_embedding=request["learned_embedding"])
    return state, dataset


if __name__ == "__main__":
    raise SystemExit(child_main(Path(sys.argv[1])))
