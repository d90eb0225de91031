"""Save and load fitted models as ``model.safetensors`` (arrays) + ``model.json`` (settings).

No pickle anywhere: the JSON file names the model kind, its config, classes, temperature and
feature count; the safetensors file holds every learned array. ``load_model`` rebuilds the model
through the registry and gives the same predictions as the model that was saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from core.errors import ModelError
from core.models.base import TailwiseModel
from core.models.registry import CONFIG_CLASSES, MODEL_REGISTRY

FORMAT = "tailwise-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def model_arrays(model: TailwiseModel) -> tuple[dict[str, np.ndarray], dict]:
    """``(arrays, meta)``: what :func:`save_model` writes (safetensors arrays, model.json)."""
    from core import __version__ as tailwise_version

    if not isinstance(model, TailwiseModel):
        raise ModelError(f"save_model: expected a Tailwise model, got {type(model).__name__}")
    tensors, meta = model.state()
    config = model._config()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tailwise_version": tailwise_version,
        "kind": model.kind,
        "config": config.model_dump(mode="json"),
        "seed": int(model.seed),
        "classes": [str(c) for c in model.classes_],
        "n_features_in": int(model.n_features_in_),
        **meta,
    }
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}, meta


def save_model(model: TailwiseModel, folder: str | Path) -> Path:
    """Write ``model`` into ``folder`` (created if needed); returns the folder."""
    from safetensors.numpy import save_file

    arrays, meta = model_arrays(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / WEIGHTS_FILE, lambda p: save_file(arrays, str(p), metadata={"format": FORMAT}))
    _atomic(folder / META_FILE,
            lambda p: p.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
    return folder


def model_to_bytes(model: TailwiseModel) -> tuple[str, bytes]:
    """``(model.json text, safetensors bytes)``: the saved files' content, e.g. for Dask workers."""
    from safetensors.numpy import save

    arrays, meta = model_arrays(model)
    return json.dumps(meta), save(arrays, metadata={"format": FORMAT})


def model_from_bytes(meta_text: str, weights: bytes, where: str = "model") -> TailwiseModel:
    """The model :func:`model_to_bytes` described."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    meta = _parse_meta(meta_text, where)
    try:
        tensors = load(weights)
    except (OSError, SafetensorError) as err:
        raise ModelError(f"{where}: unreadable safetensors data ({err})") from None
    return _rebuild(meta, tensors, where)


def load_model(folder: str | Path) -> TailwiseModel:
    """Read a model written by :func:`save_model`."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder)
    meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{path}: not found; save_model writes {META_FILE} and {WEIGHTS_FILE}")
    try:
        text = meta_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ModelError(f"{meta_path}: not valid JSON ({err})") from None
    meta = _parse_meta(text, str(meta_path))
    try:
        tensors = load_file(str(weights_path))
    except (OSError, SafetensorError) as err:
        raise ModelError(f"{weights_path}: unreadable safetensors file ({err})") from None
    return _rebuild(meta, tensors, str(weights_path))


def _parse_meta(text: str, where: str) -> dict:
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{where}: not a Tailwise model file (missing format '{FORMAT}')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{where}: format_version {meta.get('format_version')!r} is not supported "
                         f"(this Tailwise reads {FORMAT_VERSION})")
    kind = meta.get("kind")
    if kind not in MODEL_REGISTRY:
        raise ModelError(f"{where}: kind {kind!r} is unknown; expected one of {', '.join(MODEL_REGISTRY)}")
    return meta


def _rebuild(meta: dict, tensors: dict[str, np.ndarray], where: str) -> TailwiseModel:
    from pydantic import ValidationError

    kind = meta["kind"]
    try:
        config = CONFIG_CLASSES[kind].model_validate(meta.get("config", {}))
    except ValidationError as err:
        raise ModelError(f"{where}: config is invalid: {err.errors()[0]['msg']}") from None
    try:
        return MODEL_REGISTRY[kind].from_state(config, int(meta.get("seed", 0)), tensors, meta)
    except KeyError as err:
        raise ModelError(f"{where}: missing array {err.args[0]!r}") from None


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
