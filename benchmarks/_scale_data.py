"""Synthetic catalogues for the scale benchmarks: long-tailed Gaussian classes, as arrays or as a
partitioned Parquet pool with a project file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_CLASSES = 10
DIM = 32


def catalogue(n: int, dim: int = DIM, n_classes: int = N_CLASSES, seed: int = 0):
    """``(ids, features float32 (n, dim), truth)``: class sizes 0.6^k (the rarest ~0.4 %)."""
    rng = np.random.default_rng(seed)
    weights = 0.6 ** np.arange(n_classes)
    truth = rng.choice(n_classes, n, p=weights / weights.sum())
    centres = rng.normal(0.0, 2.0, (n_classes, dim)).astype(np.float32)
    x = centres[truth]
    x += rng.standard_normal((n, dim), dtype=np.float32)
    ids = np.array([f"obj-{i:08d}" for i in range(n)], dtype=object)
    return ids, x, np.array([f"c{k}" for k in truth], dtype=object)


def write_pool(folder: Path, n: int, parts: int = 4, *, map_method: str = "umap",
               extra: dict | None = None, seed: int = 0) -> Path:
    """A Parquet folder of ``n`` items in ``parts`` files plus ``project.yaml`` (project defaults
    but for the map method); returns the project file."""
    import pandas as pd
    import yaml

    folder = Path(folder)
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    ids, x, truth = catalogue(n, seed=seed)
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(x.shape[1])])
    frame.insert(0, "id", ids)
    frame["truth"] = truth
    for j, rows in enumerate(np.array_split(np.arange(n), parts)):
        frame.iloc[rows].to_parquet(folder / "pool" / f"part-{j:03d}.parquet", index=False,
                                    row_group_size=50_000)
    project = {"name": f"synthetic catalogue ({n:,} items)",
               "data": {"kind": "parquet", "path": "pool", "label_column": "truth"},
               "classes": [{"name": f"c{k}", "rare": k >= 7} for k in range(N_CLASSES)],
               "map": {"method": map_method}, **(extra or {})}
    path = folder / "project.yaml"
    path.write_text(yaml.safe_dump(project), encoding="utf-8")
    return path
