"""``data: {kind: parquet, path: FOLDER}`` (or a glob): many files read as one pool, and the parts
the Dask path reads them in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data import data_sha256, load_dataset
from core.data.parquet_parts import plan_parts, read_part
from core.data.tables import table_spec
from core.embed.tabular import ColumnStats, TabularTransform, fit_tabular, merge_stats
from core.errors import DataError
from core.project import EncoderConfig, load_project


def _frame(start: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": [f"x{i}" for i in range(start, start + n)],
                         "a": rng.normal(size=n), "b": rng.integers(0, 5, n),
                         "kind": rng.choice(["star", "galaxy"], n)})


@pytest.fixture
def folder(tmp_path):
    """Three files written out of name order; the pool is their rows in name order."""
    pool = tmp_path / "pool"
    pool.mkdir()
    _frame(40, 30, 2).to_parquet(pool / "c.parquet", index=False, row_group_size=10)
    _frame(0, 25, 0).to_parquet(pool / "a.parquet", index=False, row_group_size=10)
    _frame(25, 15, 1).to_parquet(pool / "b.parquet", index=False, row_group_size=10)
    (pool / "notes.txt").write_text("not data")
    return tmp_path


def test_a_folder_is_every_parquet_file_in_name_order(folder, write_project):
    project = load_project(write_project({"kind": "parquet", "path": "pool", "label_column": "kind"}))
    ds = load_dataset(project)
    assert ds.ids.tolist() == [f"x{i}" for i in range(70)]
    assert ds.feature_names == ["a", "b"] and ds.features.shape == (70, 2)
    assert set(ds.ground_truth.tolist()) == {"star", "galaxy"}


def test_a_glob_works_and_picks_only_its_matches(folder, write_project):
    project = load_project(write_project({"kind": "parquet", "path": "pool/[ab].parquet"}))
    ds = load_dataset(project)
    assert ds.ids.tolist() == [f"x{i}" for i in range(40)]


def test_the_pin_covers_every_file(folder, write_project):
    path = folder / "pool"
    pin = data_sha256(path, "parquet")
    project = load_project(write_project({"kind": "parquet", "path": "pool", "sha256": pin}))
    assert len(load_dataset(project)) == 70
    _frame(40, 30, 3).to_parquet(path / "c.parquet", index=False)
    assert data_sha256(path, "parquet") != pin
    with pytest.raises(DataError, match="does not match the pinned digest"):
        load_dataset(project)


def test_empty_folders_unmatched_globs_and_mismatched_files_are_named(folder, write_project, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no \\*.parquet file"):
        load_dataset(load_project(write_project({"kind": "parquet", "path": "empty"})))
    with pytest.raises(DataError, match="matches no file"):
        load_dataset(load_project(write_project({"kind": "parquet", "path": "pool/z*.parquet"})))
    _frame(70, 5, 4).drop(columns=["b"]).to_parquet(folder / "pool" / "d.parquet", index=False)
    with pytest.raises(DataError, match="d.parquet: its columns differ.*missing 'b'"):
        load_dataset(load_project(write_project({"kind": "parquet", "path": "pool"})))


def test_parts_read_exactly_what_the_single_process_loader_reads(folder, write_project):
    project = load_project(write_project({"kind": "parquet", "path": "pool", "label_column": "kind"}))
    ds = load_dataset(project)
    path = project.resolve(project.data.path)
    from core.data.parquet_parts import parquet_files

    parts = plan_parts(parquet_files(path), part_rows=10)
    assert [p.n_rows for p in parts] == [10, 10, 5, 10, 5, 10, 10, 10]
    assert [p.first_row for p in parts] == list(np.cumsum([0] + [p.n_rows for p in parts[:-1]]))
    spec = table_spec(path, project.data)
    assert spec.feature_names == ("a", "b") and spec.label_column == "kind"
    rows = [read_part(p, spec) for p in parts]
    np.testing.assert_array_equal(np.concatenate([r.ids for r in rows]), ds.ids)
    np.testing.assert_array_equal(np.concatenate([r.features for r in rows]), ds.features)
    np.testing.assert_array_equal(np.concatenate([r.truth for r in rows]), ds.ground_truth)
    # Column statistics merged from parts give the same transform as the whole pool's.
    whole = fit_tabular(ds.features, ds.ids, EncoderConfig(kind="tabular"), seed=0)
    merged = TabularTransform.from_stats(merge_stats([ColumnStats.of(r.features) for r in rows]))
    np.testing.assert_array_equal(whole.apply(ds.features), merged.apply(ds.features))


def test_generated_ids_follow_the_row_order_across_parts(tmp_path, write_project):
    pool = tmp_path / "pool"
    pool.mkdir()
    for j in range(2):
        _frame(0, 12, j).drop(columns=["id"]).to_parquet(pool / f"p{j}.parquet", index=False,
                                                          row_group_size=5)
    project = load_project(write_project({"kind": "parquet", "path": "pool"}))
    ds = load_dataset(project)
    from core.data.parquet_parts import parquet_files

    path = project.resolve(project.data.path)
    spec = table_spec(path, project.data)
    ids = np.concatenate([read_part(p, spec).ids for p in plan_parts(parquet_files(path), 5)])
    np.testing.assert_array_equal(ids, ds.ids)
    assert ids[0] == "item-000001" and ids[-1] == "item-000024"


def test_a_pool_over_max_items_opens_as_a_sample_with_every_labelled_item(tmp_path, write_project):
    """data.max_items: the session (and so the dashboard's map) holds an id-hash sample plus
    every labelled item, knows the pool's size, and reads the pool part by part."""
    from core.labels import LabelStore
    from core.project import ClassConfig
    from core.session import Session

    pool = tmp_path / "pool"
    pool.mkdir()
    for j in range(4):
        _frame(j * 5_000, 5_000, j).to_parquet(pool / f"p{j}.parquet", index=False,
                                               row_group_size=1_000)
    path = write_project({"kind": "parquet", "path": "pool", "max_items": 2_000},
                         classes=[{"name": "star"}, {"name": "galaxy"}], map={"method": "pca"})
    labelled = [f"x{i}" for i in range(0, 20_000, 400)]  # 50 items spread over the pool
    with LabelStore(tmp_path / "labels.sqlite") as store:
        store.set_classes([ClassConfig(name="star"), ClassConfig(name="galaxy")])
        store.record_many(labelled, "star", "ann")
    session = Session.open(load_project(path))
    ds = session.dataset
    assert ds.pool_size == 20_000 and 1_500 < len(ds) < 2_600
    assert set(labelled) <= set(ds.ids.tolist())
    # The same sample whatever the split into files: a pure function of the ids.
    whole = load_dataset(load_project(write_project(
        {"kind": "parquet", "path": "pool/p*.parquet", "max_items": 2_000}, name="glob.yaml")),
        keep_ids=frozenset(labelled))
    np.testing.assert_array_equal(whole.ids, ds.ids)
    # The sample is part of the data's fingerprint (the embedding cache follows it).
    more = load_dataset(load_project(path), keep_ids=frozenset(labelled + ["x19999"]))
    assert more.fingerprint != ds.fingerprint
    session.prepare()
    assert session.xy.shape == (len(ds), 2)
    session.store.close()
    # Small pools load whole; sampling needs ids.
    small = load_dataset(load_project(write_project({"kind": "parquet", "path": "pool",
                                                     "max_items": 50_000}, name="small.yaml")))
    assert small.pool_size is None and len(small) == 20_000
    _frame(0, 3_000, 9).drop(columns=["id"]).to_parquet(tmp_path / "noid.parquet", index=False)
    with pytest.raises(DataError, match="needs stable ids"):
        load_dataset(load_project(write_project({"kind": "parquet", "path": "noid.parquet",
                                                 "max_items": 1_000}, name="noid.yaml")))
