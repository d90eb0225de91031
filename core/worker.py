"""Training rounds in a process of their own, so that a server stays responsive while it trains.

Training holds the GIL for long stretches and would take both cores of a small machine: in the
dashboard's process every click of every expert would wait behind it. :class:`TrainingProcess`
runs :func:`core.pipeline.train_round` in a Python of its own (``python -m core.worker --serve``,
never a fork of the threaded server) at a lower priority (``os.nice``) with few torch threads, and
gives back the same :class:`~core.pipeline.ModelState` the round would have returned in-process.
The child is started once and kept warm between rounds (torch imported, the pool read): a Retrain
then pays neither an interpreter start nor a torch import, seconds each on a busy machine.

Nothing crosses the process boundary as pickle: the request is JSON plus the embedding as ``.npy``
(written once per pool), the result is the model's ``model.safetensors`` + ``model.json``, the
arrays in one safetensors file and the rest as JSON. Progress comes back as JSON lines on stdout.
An error in the round comes back with its type and message (a ``ModelError`` stays a
``ModelError``); a process that dies (killed, out of memory) raises :class:`WorkerError` saying
so, and the next round starts a fresh child. The child exits when its parent does (its stdin
closes).
"""

from __future__ import annotations

import dataclasses
import gc
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
    torch/BLAS threads. The child stays between rounds, idle on its stdin (a round then costs no
    interpreter start and no torch import: seconds each on a busy machine); one that died is
    replaced at the next round. ``process`` is that child (None before the first round and after
    one that died).
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
        self._started = 0  # children started so far (each has its own stderr file)
        self._stderr_path = self.folder / "stderr-0.txt"
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the child (idle or in a round) and delete the scratch folder."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.kill()
            self._discard(process)
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
                }
                (run / "request.json").write_text(json.dumps(request), encoding="utf-8")
                self._run(run, progress)
                started = time.monotonic()
                state = state_from_folder(run / "result", dataset)
                log.info("training result read back in %.2f s", time.monotonic() - started)
                return state
            finally:
                shutil.rmtree(run, ignore_errors=True)

    def _start(self) -> subprocess.Popen:
        """A fresh child, torch and the engine imported before its first round."""
        core_parent = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "PYTHONPATH": os.pathsep.join(filter(None, [core_parent, os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        self._started += 1
        self._stderr_path = self.folder / f"stderr-{self._started}.txt"
        with open(self._stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "core.worker", "--serve", "--nice", str(self.nice),
                 "--threads", str(self.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=stderr, env=env, text=True)
        log.info("training process %d started (nice %d, %d thread(s)); it stays for the next rounds",
                 process.pid, self.nice, self.threads)
        return process

    def _run(self, run: Path, progress: Progress | None) -> None:
        process = self.process
        if process is not None and process.poll() is not None:  # died between rounds: replace it
            log.warning("training process %d had exited (code %s) between rounds; starting another",
                        process.pid, process.returncode)
            self._discard(process)
            process = None
        if process is None:
            process = self.process = self._start()
        started = time.monotonic()
        code = None
        try:
            process.stdin.write(f"{run}\n")
            process.stdin.flush()
        except (OSError, ValueError):
            pass  # the child is gone: its exit code says how, below
        else:
            try:
                for line in process.stdout:
                    code = _report(line, progress)
                    if code is not None:
                        break
            except BaseException:
                # Interrupted mid-round (a progress callback raised): the child's answer would
                # be read as the next round's. Stop it; the next round starts a fresh one.
                process.kill()
                self._discard(process)
                raise
        if code is None:  # its output ended without an answer: the process is gone
            code = self._discard(process)
            tail = self._stderr_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL:].strip()
            how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
                   else f"exited with code {code}")
            raise WorkerError(f"the training process {how} before it finished (out of memory, or "
                              f"stopped from outside?); the previous model is kept"
                              + (f". Its last output: {tail}" if tail else ""))
        log.info("training round in process %d ended with code %d after %.1f s", process.pid, code,
                 time.monotonic() - started)
        if code == 0:
            return
        failure = run / "error.json"
        if failure.is_file():
            raise _error_from(json.loads(failure.read_text(encoding="utf-8")))
        raise WorkerError(f"the training process answered code {code} without saying why")

    def _discard(self, process: subprocess.Popen) -> int:
        """Stop ``process`` (if it still runs) and forget it; returns its exit code."""
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()  # the child exits when its stdin closes, if it has not yet
            except OSError:
                pass
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        if self.process is process:
            self.process = None
        return code


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


def _report(line: str, progress: Progress | None) -> int | None:
    """Handle one line of the child's output; the round's exit code once it says it is done."""
    try:
        message = json.loads(line)
        if "done" in message:
            return int(message["done"])
        if "timing" in message:
            log.info("training process: %s", ", ".join(f"{k} {v:.2f} s" for k, v in message["timing"].items()))
            return None
        done, total, text = message["progress"]
    except (ValueError, KeyError, TypeError):
        return None  # a stray print of a library: not a progress line
    if progress is not None:
        progress(int(done), int(total), str(text))
    return None


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
def serve(nice: int, threads: int) -> int:
    """The child's loop: import the engine once, then run each round whose folder arrives as a
    line on stdin, answering ``{"done": code}`` on stdout. It leaves at once when the parent goes
    (its end of our stdin closes), even in the middle of a round: no orphan training."""
    import queue

    try:
        os.nice(nice)
    except OSError:
        pass  # lowering one's own priority is always allowed; a platform without it just runs
    runs: queue.Queue[str] = queue.Queue()

    def read() -> None:
        try:
            for line in sys.stdin:
                runs.put(line.strip())
        finally:
            os._exit(70)

    threading.Thread(target=read, name="tailwise-parent-watch", daemon=True).start()
    started = time.monotonic()
    import torch

    torch.set_num_threads(threads)
    import core.models.io  # noqa: F401
    import core.pipeline  # noqa: F401

    log_imports = {"imports": time.monotonic() - started}
    while True:
        run = Path(runs.get())
        code = child_main(run, log_imports)
        log_imports = {}
        print(json.dumps({"done": code}), flush=True)
        gc.collect()  # the round's pool-sized temporaries, freed while the child idles


def child_main(run: Path, timing: dict | None = None) -> int:
    """Run the round ``run/request.json`` describes; write ``run/result`` or ``run/error.json``."""
    try:
        request = json.loads((run / "request.json").read_text(encoding="utf-8"))
        started = time.monotonic()
        state, dataset = _train(request)
        trained = time.monotonic()
        state_to_folder(state, dataset, run / "result")
        del state
        print(json.dumps({"timing": {**(timing or {}), "round": trained - started,
                                     "write": time.monotonic() - trained}}), flush=True)
    except Exception as err:  # noqa: BLE001  (reported to the parent with its type)
        (run / "error.json").write_text(json.dumps({
            "type": type(err).__name__, "message": str(err),
            "traceback": traceback.format_exc()}), encoding="utf-8")
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        return 1
    return 0


_POOL: dict[str, Any] = {}  # the last pool read (folder -> (dataset, embedding)): rounds reuse it
# The last round's state on that pool (folder -> ModelState without its pool-sized arrays): the next
# round's ``auto`` model reuses its out-of-fold predictions while the labels grew by less than
# ``oof_growth``, as a session training inline does (the parent always adopts a finished round).
_EARLIER: dict[str, Any] = {}


def _pool(folder: Path):
    """The pool's ids, ground truth and embedding as a round reads them, read once per folder."""
    from core.data.base import Dataset

    key = str(folder)
    if key not in _POOL:
        _POOL.clear()
        meta = json.loads((folder / "pool.json").read_text(encoding="utf-8"))
        embedding = np.load(folder / "embedding.npy", mmap_mode="r", allow_pickle=False)
        truth = meta["ground_truth"]
        dataset = Dataset(ids=np.asarray(meta["ids"], dtype=object),
                          features=np.empty((len(meta["ids"]), 0), dtype=np.float32),
                          feature_names=[],
                          ground_truth=None if truth is None else np.asarray(truth, dtype=object),
                          name=meta["name"])
        _POOL[key] = (dataset, embedding)
        _EARLIER.clear()
    return _POOL[key]


def _slim(state):
    """``state`` as the next round's ``earlier``: its out-of-fold rows, not its pool-sized arrays."""
    empty = np.empty(0, dtype=np.float32)
    return dataclasses.replace(state, proba=empty, predicted=empty, uncertainty=empty,
                               learned_embedding=None, suspects=[], prevalence_details=None)


def _train(request: dict):
    from core.models.selection import ModelChoice
    from core.pipeline import train_round
    from core.project import ProjectConfig

    project = ProjectConfig.model_validate(request["project"])
    project._base_dir = Path(request["base_dir"])
    dataset, embedding = _pool(Path(request["pool"]))
    previous = request.get("previous")
    if previous is not None:
        previous = ModelChoice(**{**previous, "classes": tuple(previous.get("classes", ()))})

    def progress(done: int, total: int, message: str) -> None:
        print(json.dumps({"progress": [done, total, message]}), flush=True)

    pool = str(Path(request["pool"]))
    state = train_round(project, dataset, embedding, request["labels"],
                        model_version=request["model_version"], previous=previous,
                        progress=progress, test_labels=request["test_labels"] or None,
                        learned_embedding=request["learned_embedding"],
                        earlier=_EARLIER.pop(pool, None))
    _EARLIER[pool] = _slim(state)
    return state, dataset


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m core.worker",
                                     description="Tailwise's training process (started by the server).")
    parser.add_argument("--serve", action="store_true", required=True,
                        help="run the rounds whose folders arrive on stdin")
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    return serve(args.nice, max(args.threads, 1))


if __name__ == "__main__":
    raise SystemExit(main())
