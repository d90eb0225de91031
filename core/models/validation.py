"""Input checks shared by every model: finite 2-D float features, class-name labels."""

from __future__ import annotations

import numpy as np

from core.errors import ModelError

CHECK_CHUNK = 65_536  # rows per chunk when scanning large matrices


def check_features(X, *, name: str = "X", n_features: int | None = None) -> np.ndarray:
    """Return ``X`` as a C-contiguous float32 matrix, or raise ``ModelError`` naming the problem."""
    try:
        arr = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{name}: features must be numeric ({err})") from None
    if arr.ndim != 2:
        raise ModelError(f"{name}: features must be a 2-D (items, features) matrix, got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ModelError(
            f"{name}: the model was fitted on {n_features} features but got {arr.shape[1]}; "
            "use the same encoder settings as at training time"
        )
    for start in range(0, len(arr), CHECK_CHUNK):  # chunked: no full-size mask for big pools
        finite = np.isfinite(arr[start:start + CHECK_CHUNK])
        if not finite.all():
            rows, cols = np.nonzero(~finite)
            row, col = start + rows[0], cols[0]
            kind = "NaN" if np.isnan(arr[row, col]) else "infinite"
            total = len(rows) + int((~np.isfinite(arr[start + CHECK_CHUNK:])).sum())
            raise ModelError(
                f"{name}: {total} non-finite value(s) ({kind} first at row {row}, column {col}); "
                "impute or drop those items before training"
            )
    return np.ascontiguousarray(arr)


def column_stats(*arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale (std; 1 where constant) over the rows of all ``arrays``.

    Computed in float64 over row chunks, so a large unlabelled pool needs no full-size temporary.
    """
    d = arrays[0].shape[1]
    n, total, squares = 0, np.zeros(d), np.zeros(d)
    for arr in arrays:
        for start in range(0, len(arr), CHECK_CHUNK):
            chunk = arr[start:start + CHECK_CHUNK].astype(np.float64)
            n += len(chunk)
            total += chunk.sum(axis=0)
    mean = total / max(n, 1)
    for arr in arrays:
        for start in range(0, len(arr), CHECK_CHUNK):
            squares += ((arr[start:start + CHECK_CHUNK].astype(np.float64) - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / max(n, 1))
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


def check_labels(y, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, codes)``: sorted class names and each item's index into them."""
    labels = np.asarray(y, dtype=object)
    if labels.ndim != 1 or len(labels) != n_items:
        raise ModelError(f"y: expected {n_items} labels (one per row of X), got shape {labels.shape}")
    if any(lab is None or (isinstance(lab, float) and np.isnan(lab)) for lab in labels):
        raise ModelError("y: some labels are missing (None/NaN); pass only labelled items")
    labels = np.array([str(lab) for lab in labels], dtype=object)
    classes, codes = np.unique(labels.astype(str), return_inverse=True)
    if len(classes) < 2:
        raise ModelError(
            f"y: training needs labelled items of at least two classes, got {len(classes)} "
            f"({', '.join(map(str, classes)) or 'none'}); label a few items of another class"
        )
    return np.array(classes.tolist(), dtype=object), codes.astype(np.int64)
