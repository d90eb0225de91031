"""The last trained model of a project, kept on disk so that a restart shows it at once.

After every successful retrain the session writes ``CACHE/last-model/``: the model
(``model.safetensors`` + ``model.json``, no pickle), the pool's probabilities (``proba.npy``,
float32) and ``state.json`` (version, metrics, label counts, learning curve, the label event the
round had seen, and what it was computed on: data fingerprint, encoder, pool size). A restarted
dashboard restores it in a second instead of retraining before the first page can show the map,
then retrains in the background when labels changed since (``stale``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import TailwiseError
from core.jsonable import jsonable

log = logging.getLogger("tailwise")

FOLDER = "last-model"
FORMAT = 1
_ARRAYS = ("proba", "predicted", "uncertainty", "learned_embedding", "oof_ids", "oof_proba")


def what_it_fits(session) -> dict[str, Any]:
    """What a saved state must match to be shown for this session's data and settings."""
    return {"fingerprint": session.dataset.fingerprint, "n_items": len(session.dataset),
            "encoder": session.project.encoder.model_dump(mode="json"), "format": FORMAT}


def save(folder: Path, session, state, history: list, event_id: int) -> None:
    """Write ``state`` (a ``core.pipeline.ModelState``) atomically into ``folder/last-model``."""
    from core.models.io import save_model

    target = Path(folder) / FOLDER
    tmp = Path(folder) / f".{FOLDER}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(state.model, tmp)
    np.save(tmp / "proba.npy", np.asarray(state.proba, dtype=np.float32), allow_pickle=False)
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
              if f.name not in _ARRAYS and f.name != "model"}
    meta = {"fits": what_it_fits(session), "event_id": int(event_id), "state": jsonable(fields),
            "history": [jsonable(dataclasses.asdict(r)) for r in history]}
    (tmp / "state.json").write_text(json.dumps(meta), encoding="utf-8")
    old = Path(folder) / f".{FOLDER}.{os.getpid()}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path, session, state_class, record_class) -> tuple[Any, list, int] | None:
    """``(ModelState, history, event id)`` saved for this session's data, or None (absent, made
    for other data or settings, or unreadable: the session then retrains as usual)."""
    from core.models.io import load_model

    source = Path(folder) / FOLDER
    try:
        meta = json.loads((source / "state.json").read_text(encoding="utf-8"))
        if meta.get("fits") != jsonable(what_it_fits(session)):
            return None
        proba = np.load(source / "proba.npy", allow_pickle=False)
        model = load_model(source)
        fields = dict(meta["state"])
        classes = tuple(str(c) for c in fields["classes"])
        if proba.shape != (len(session.dataset), len(classes)):
            return None
        best = proba.argmax(axis=1)
        known = {f.name for f in dataclasses.fields(state_class)}
        fields = {k: v for k, v in fields.items() if k in known}
        if fields.get("model_choice"):  # auto's choice: kept, so the next round stays with it
            from core.models.selection import ModelChoice

            fields["model_choice"] = ModelChoice.from_dict(fields["model_choice"])
        fields.update(classes=classes, proba=proba, model=model,
                      predicted=np.asarray(classes, dtype=object)[best],
                      uncertainty=1.0 - proba.max(axis=1))
        if "learned_embedding" in known and session.project.encoder.kind == "model":
            fields["learned_embedding"] = np.asarray(model.embed(session.base_embedding_()),
                                                     dtype=np.float32)
        history = [record_class(**r) for r in meta.get("history", [])]
        return state_class(**fields), history, int(meta.get("event_id", 0))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, TailwiseError) as err:  # damaged or foreign
        log.warning("not restoring the last model from %s: %s", source, err)
        return None
