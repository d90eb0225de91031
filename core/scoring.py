"""Score a pool part by part: the one pure partition function the local and Dask executors run.

:func:`score_part` reads one :class:`~core.data.parquet_parts.ParquetPart`, embeds it with the
saved tabular transform, predicts it with the saved model, places it on the map with the saved
projector, computes a per-item query score and writes ``part-NNNNN.parquet`` (id, label,
predicted, ``p_<class>``, uncertainty, x, y, query_score, query_rank, query_reason: the ranks are
filled in afterwards for the merged top-k only). It returns only what is small: the
part's top-k query candidates and ground-truth confusion counts, so that the driver merges a
distributed top-k instead of gathering the pool.

Everything a part needs travels in one :class:`ScoringPayload` of bytes and JSON (safetensors
weights, never pickled objects); on a Dask cluster it is broadcast to each worker once and
deserialised once per worker (:func:`payload_loads` counts it).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.parquet_parts import ParquetPart, TableSpec, read_part

PART_FILE = "part-{index:05d}.parquet"
TOP_K = 100
RARE_FIRST = 1.0  # added to the score of items whose two likeliest classes include a rare one


@dataclass(frozen=True)
class ScoringPayload:
    """What every worker needs to score parts: weights as bytes, settings as JSON values."""

    model_meta: str  # model.json text
    model_weights: bytes  # model.safetensors bytes
    encoder: bytes  # the tabular transform (safetensors bytes)
    projector: bytes | None  # the map's projector, or None for no x/y columns
    map_from_model: bool  # the map shows the model's penultimate layer (encoder kind 'model')
    spec: dict  # TableSpec.to_dict()
    labels: dict[str, str] = field(default_factory=dict)  # expert labels by item id
    strategy: str = "auto"
    target_class: str | None = None
    rare_classes: tuple[str, ...] = ()
    top_k: int = TOP_K
    out_dir: str | None = None  # folder of part files; None: nothing written

    @property
    def digest(self) -> str:
        """Identifies the payload's content (the worker-side cache key)."""
        h = hashlib.sha256()
        for blob in (self.model_meta.encode(), self.model_weights, self.encoder, self.projector or b""):
            h.update(hashlib.sha256(blob).digest())
        h.update(json.dumps([self.map_from_model, self.spec, sorted(self.labels.items()), self.strategy,
                             self.target_class, list(self.rare_classes), self.top_k, self.out_dir],
                            default=str).encode())
        return h.hexdigest()[:32]


@dataclass
class _Loaded:
    model: Any
    encoder: Any
    projector: Any
    spec: TableSpec
    classes: tuple[str, ...]


_CACHE: dict[str, _Loaded] = {}
_CACHE_LOCK = threading.Lock()
_LOADS = [0]


def _load(payload: ScoringPayload) -> _Loaded:
    """The payload's objects, deserialised once per process (per worker) and cached."""
    from core.embed.tabular import TabularTransform
    from core.models.io import model_from_bytes
    from core.parametric import projector_from_bytes

    key = payload.digest
    with _CACHE_LOCK:
        if key not in _CACHE:
            model = model_from_bytes(payload.model_meta, payload.model_weights)
            _CACHE.clear()  # one job at a time per worker: drop the previous job's weights
            _CACHE[key] = _Loaded(
                model=model,
                encoder=TabularTransform.from_bytes(payload.encoder),
                projector=None if payload.projector is None else projector_from_bytes(payload.projector),
                spec=TableSpec.from_dict(payload.spec),
                classes=tuple(str(c) for c in model.classes_),
            )
            _LOADS[0] += 1
        return _CACHE[key]


def payload_loads() -> int:
    """How many payloads this process has deserialised (a test checks: once per worker)."""
    return _LOADS[0]


def predict_rows(model, x: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """``(proba float32 (n, k), best class index (n,))`` of ``x``, ``chunk`` rows at a time.

    The argmax is taken on the model's float64 probabilities, before they are stored in float32,
    so the predicted class does not depend on the rounding or on how the rows are split.
    """
    k = len(model.classes_)
    proba = np.empty((len(x), k), dtype=np.float32)
    best = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), chunk):
        block = np.asarray(model.predict_proba(x[start:start + chunk]), dtype=np.float64)
        best[start:start + chunk] = block.argmax(axis=1)
        proba[start:start + chunk] = block
    return proba, best


# ---------------------------------------------------------------------------- the query score
def item_scores(proba: np.ndarray, classes: tuple[str, ...], strategy: str,
                rare_classes: tuple[str, ...] = (), target_class: str | None = None,
                ids: np.ndarray | None = None) -> np.ndarray:
    """A per-item query score (larger = ask first) that needs no other item: the pool-wide
    strategies (``auto``, ``discovery``, ...) cannot run part by part, so on a cluster they rank by
    rare-first uncertainty: ``1 - margin``, plus one when a rare class is among the two likeliest.
    ``margin``/``entropy``/``least_confidence``/``target_class`` use their own measure and
    ``random`` a hash of the id."""
    from core.query.measures import entropy, least_confidence, top_two

    i1, p1, i2, p2 = top_two(proba)
    if strategy == "entropy":
        return entropy(proba)
    if strategy == "least_confidence":
        return least_confidence(proba)
    if strategy == "target_class" and target_class in classes:
        return proba[:, classes.index(target_class)].astype(np.float64)
    if strategy == "random" and ids is not None:
        import pandas as pd

        return pd.util.hash_array(np.asarray(ids, dtype=object)) / float(2**64)
    score = 1.0 - (p1 - p2)
    if strategy != "margin" and rare_classes:
        rare = np.isin(np.asarray(classes, dtype=object), list(rare_classes))
        rare_pair = rare[i1] | np.where(i2 >= 0, rare[np.maximum(i2, 0)], False)
        score = score + RARE_FIRST * rare_pair
    return score


def reason(proba_row: np.ndarray, classes: tuple[str, ...], strategy: str,
           target_class: str | None = None) -> str:
    """Why an item ranks high, in words (for the merged top-k only)."""
    order = np.argsort(-proba_row)
    a = classes[order[0]]
    if strategy == "target_class" and target_class in classes:
        p = proba_row[classes.index(target_class)]
        return f"predicted '{target_class}' with {100 * p:.0f}% (target class)"
    if len(order) < 2:
        return f"predicted '{a}' with {100 * proba_row[order[0]]:.0f}%"
    b = classes[order[1]]
    return (f"torn between '{a}' ({100 * proba_row[order[0]]:.0f}%) and '{b}' "
            f"({100 * proba_row[order[1]]:.0f}%) (scored part by part)")


# ---------------------------------------------------------------------------- one part
def score_part(part: dict, payload: ScoringPayload) -> dict:
    """Score one part (see the module docstring); returns its summary, top-k and confusion."""
    import pandas as pd

    start = time.perf_counter()
    part = ParquetPart.from_dict(part) if isinstance(part, dict) else part
    loaded = _load(payload)
    rows = read_part(part, loaded.spec)
    emb = loaded.encoder.apply(rows.features)
    proba, best = predict_rows(loaded.model, emb)
    classes = loaded.classes
    predicted = np.asarray(classes, dtype=object)[best]
    labels = np.array([payload.labels.get(i) for i in rows.ids.tolist()], dtype=object)
    unlabelled = np.array([v is None for v in labels], dtype=bool)
    score = item_scores(proba, classes, payload.strategy, tuple(payload.rare_classes),
                           payload.target_class, rows.ids)
    score = np.where(unlabelled, score, np.nan)

    if payload.out_dir is not None:
        columns: dict[str, Any] = {
            "id": rows.ids.astype(str),
            "label": pd.array([None if v is None else str(v) for v in labels], dtype="string"),
            "predicted": predicted.astype(str),
        }
        for j, name in enumerate(classes):
            columns[f"p_{name}"] = proba[:, j].astype(np.float64)
        columns["uncertainty"] = (1.0 - proba.max(axis=1)).astype(np.float64)
        if loaded.projector is not None:
            shown = loaded.model.embed(emb) if payload.map_from_model else emb
            xy = loaded.projector.transform(shown)
            columns["x"], columns["y"] = xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)
        # Clusters need the whole pool at once: not computed part by part on a cluster (missing).
        columns["cluster"] = pd.array([None] * len(rows.ids), dtype="Int64")
        columns["query_score"] = score.astype(np.float64)
        columns["query_rank"] = pd.array([None] * len(rows.ids), dtype="Int64")  # set for the
        columns["query_reason"] = pd.array([None] * len(rows.ids), dtype="string")  # merged top-k
        write_part(pd.DataFrame(columns), Path(payload.out_dir), part.index)

    k = min(payload.top_k, int(unlabelled.sum()))
    top = np.flatnonzero(unlabelled)
    if k and len(top) > k:
        top = top[np.argpartition(-score[top], k - 1)[:k]]
    confusion: dict[tuple[str, str], int] = {}
    if rows.truth is not None:
        held = unlabelled
        pairs, counts = np.unique(np.stack([rows.truth[held].astype(str), predicted[held].astype(str)]),
                                  axis=1, return_counts=True)
        confusion = {(str(t), str(p)): int(c) for (t, p), c in zip(pairs.T, counts)}
    return {
        "index": part.index,
        "rows": len(rows.ids),
        "first_row": part.first_row,
        "seconds": time.perf_counter() - start,
        "worker_pid": os.getpid(),
        "top": {
            "id": rows.ids[top].astype(str).tolist(),
            "row": (part.first_row + top).tolist(),
            "score": score[top].astype(float).tolist(),
            "predicted": predicted[top].astype(str).tolist(),
            "reason": [reason(proba[i], classes, payload.strategy, payload.target_class) for i in top],
        },
        "confusion": [[t, p, c] for (t, p), c in confusion.items()],
    }


def write_part(frame, folder: Path, index: int) -> Path:
    """Write one part file atomically (a retried task overwrites it with the same rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PART_FILE.format(index=index)
    tmp = folder / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def merge_top(results: list[dict], k: int) -> Any:
    """The merged top-k candidates of every part, best first (ties: pool order)."""
    import pandas as pd

    frames = [pd.DataFrame(r["top"]) for r in results if r["top"]["id"]]
    if not frames:
        return pd.DataFrame({"id": [], "query_score": [], "query_rank": [], "predicted": [],
                             "query_reason": []})
    top = pd.concat(frames, ignore_index=True)
    top = top.sort_values(["score", "row"], ascending=[False, True], kind="stable").head(k)
    return pd.DataFrame({
        "id": top["id"].astype(str).to_numpy(),
        "query_score": top["score"].to_numpy(dtype=float),
        "query_rank": np.arange(1, len(top) + 1, dtype=np.int64),
        "predicted": top["predicted"].astype(str).to_numpy(),
        "query_reason": top["reason"].astype(str).to_numpy(),
        "row": top["row"].to_numpy(dtype=np.int64),
    })


def merge_confusion(results: list[dict]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in results:
        for t, p, c in r["confusion"]:
            out[(t, p)] = out.get((t, p), 0) + int(c)
    return out
