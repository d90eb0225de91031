"""The first pass over a partitioned pool: what the driver needs to train without the pool.

:func:`survey_part` reads one part and returns small things only: its column statistics (for the
tabular encoder), the rows of labelled items (the driver trains on them: labels are few), the rows
PCA is fitted on, and an id-hash sample of rows for fitting the map. :func:`merge_survey` puts
the parts together in pool order, so the result does not depend on which worker read which part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.data.parquet_parts import ParquetPart, TableSpec, read_part
from core.embed.tabular import ColumnStats, id_hash_below, merge_stats, pca_fit_mask


@dataclass(frozen=True)
class SurveyPayload:
    spec: dict
    labelled_ids: frozenset[str] = frozenset()
    pca_pool_size: int = 0  # rows of the whole pool, for PCA's row choice (0: no PCA)
    sample_fraction: float = 0.0  # share of rows the map is fitted on


@dataclass
class Survey:
    """Merged result: statistics, and rows (features + global row numbers) by purpose."""

    n_rows: int
    stats: ColumnStats
    labelled: tuple[np.ndarray, np.ndarray, np.ndarray]  # ids, features, rows
    pca: np.ndarray  # features
    sample: tuple[np.ndarray, np.ndarray, np.ndarray]  # ids, features, rows


def survey_part(part: dict, payload: SurveyPayload) -> dict:
    """One part's statistics and chosen rows (see the module docstring)."""
    part = ParquetPart.from_dict(part) if isinstance(part, dict) else part
    rows = read_part(part, TableSpec.from_dict(payload.spec))
    ids = rows.ids
    lab = np.fromiter((i in payload.labelled_ids for i in ids.tolist()), dtype=bool, count=len(ids))
    pca = (pca_fit_mask(ids, payload.pca_pool_size) if payload.pca_pool_size
           else np.zeros(len(ids), dtype=bool))
    sample = id_hash_below(ids, payload.sample_fraction)
    stats = ColumnStats.of(rows.features)
    positions = part.first_row + np.arange(len(ids))
    return {
        "index": part.index,
        "rows": len(ids),
        "stats": stats.arrays(),
        "labelled": (ids[lab].astype(str), rows.features[lab], positions[lab]),
        "pca": rows.features[pca],
        "sample": (ids[sample].astype(str), rows.features[sample], positions[sample]),
    }


def merge_survey(results: list[dict], n_features: int) -> Survey:
    """The parts' surveys merged in pool (part) order."""
    results = sorted(results, key=lambda r: r["index"])
    stats = merge_stats([ColumnStats.from_arrays(r["stats"]) for r in results])

    def stack(key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = [r[key][0] for r in results]
        feats = [r[key][1] for r in results]
        pos = [r[key][2] for r in results]
        return (np.concatenate(ids).astype(object) if ids else np.zeros(0, object),
                np.concatenate(feats) if feats else np.zeros((0, n_features), np.float32),
                np.concatenate(pos) if pos else np.zeros(0, np.int64))

    pca_parts = [r["pca"] for r in results]
    return Survey(
        n_rows=sum(r["rows"] for r in results),
        stats=stats,
        labelled=stack("labelled"),
        pca=np.concatenate(pca_parts) if pca_parts else np.zeros((0, n_features), np.float32),
        sample=stack("sample"),
    )
