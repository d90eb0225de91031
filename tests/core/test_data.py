"""Data sources, validation errors, long-tailing and the built-in demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import (
    DEMOS,
    build_demo,
    data_sha256,
    file_sha256,
    load_dataset,
    load_fashion_mnist,
    long_tail_counts,
    long_tail_indices,
    make_demo,
    save_npz,
)
from core.errors import ConfigError, DataError
from core.project import load_project

# ------------------------------------------------------------------ helpers


def _table(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"{i:03d}" for i in range(n)],
            "x1": rng.normal(size=n),
            "x2": rng.integers(0, 5, size=n),
            "note": ["text"] * n,
            "label": ["a", "b"] * (n // 2),
        }
    )


def _load(write_project, data: dict, **kw):
    return load_dataset(load_project(write_project(data)), **kw)


def _data_error(write_project, data: dict) -> str:
    with pytest.raises(DataError) as info:
        _load(write_project, data)
    return str(info.value)


def _png(path: Path, value: int, size=(6, 4), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, colour).save(path)
    return path


# ------------------------------------------------------------------ tables


def test_csv_loads_ids_features_and_ground_truth(tmp_path: Path, write_project) -> None:
    _table().to_csv(tmp_path / "items.csv", index=False)
    ds = _load(write_project, {"kind": "csv", "path": "items.csv", "label_column": "label"})
    assert ds.ids.dtype == object and ds.ids[0] == "000"  # leading zeros kept: ids stay strings
    assert ds.feature_names == ["x1", "x2"]  # numeric columns only, id and label left out
    assert ds.features.dtype == np.float32 and ds.features.shape == (6, 2)
    np.testing.assert_allclose(ds.features[:, 0], _table()["x1"].to_numpy(), rtol=1e-6)
    assert ds.ground_truth.tolist() == ["a", "b"] * 3
    assert ds.images is None and ds.name == "items"
    assert ds.positions(["002", "000"]).tolist() == [2, 0]


def test_parquet_loads_like_csv(tmp_path: Path, write_project) -> None:
    _table().to_parquet(tmp_path / "items.parquet")
    ds = _load(
        write_project,
        {
            "kind": "parquet",
            "path": "items.parquet",
            "feature_columns": ["x2"],
            "label_column": "label",
        },
    )
    assert ds.feature_names == ["x2"] and ds.features[:, 0].tolist() == _table()["x2"].tolist()
    assert ds.ids.tolist() == _table()["id"].tolist()


def test_integer_labels_become_strings(tmp_path: Path, write_project) -> None:
    df = _table().assign(label=[0, 1, 0, 1, 0, 1])
    df.to_parquet(tmp_path / "items.parquet")
    ds = _load(write_project, {"kind": "parquet", "path": "items.parquet", "label_column": "label"})
    assert ds.ground_truth.tolist() == ["0", "1"] * 3


def test_table_without_id_column_gets_row_ids(tmp_path: Path, write_project) -> None:
    _table().drop(columns="id").to_csv(tmp_path / "items.csv", index=False)
    ds = _load(write_project, {"kind": "csv", "path": "items.csv"})
    assert ds.ids.tolist()[:2] == ["item-000001", "item-000002"]


def test_fingerprint_follows_bytes_and_options(tmp_path: Path, write_project) -> None:
    _table().to_csv(tmp_path / "items.csv", index=False)
    data = {"kind": "csv", "path": "items.csv"}
    first = _load(write_project, data).fingerprint
    assert _load(write_project, data).fingerprint == first
    assert _load(write_project, {**data, "feature_columns": ["x1"]}).fingerprint != first
    _table(8).to_csv(tmp_path / "items.csv", index=False)
    assert _load(write_project, data).fingerprint != first


def test_table_with_image_paths(tmp_path: Path, write_project) -> None:
    for i in range(3):
        _png(tmp_path / "img" / f"{i}.png", 40 * i)
    pd.DataFrame({"id": ["a", "b", "c"], "file": [f"img/{i}.png" for i in range(3)]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    ds = _load(write_project, {"kind": "csv", "path": "items.csv", "image_field": "file"})
    assert ds.images.shape == (3, 4, 6) and ds.images.dtype == np.uint8
    assert ds.features.shape == (3, 24) and ds.features.max() == pytest.approx(80 / 255)


def test_table_image_path_may_not_escape(tmp_path: Path, write_project) -> None:
    _png(tmp_path.parent / f"{tmp_path.name}-outside.png", 1)
    pd.DataFrame({"id": ["a"], "file": [f"../{tmp_path.name}-outside.png"]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    message = _data_error(
        write_project, {"kind": "csv", "path": "items.csv", "image_field": "file"}
    )
    assert "row 1 (id 'a'), column 'file'" in message and "outside the project folder" in message
    assert f"'../{tmp_path.name}-outside.png'" in message


def test_missing_image_in_table_names_file(tmp_path: Path, write_project) -> None:
    pd.DataFrame({"id": ["a"], "file": ["img/gone.png"]}).to_csv(
        tmp_path / "items.csv", index=False
    )
    message = _data_error(
        write_project, {"kind": "csv", "path": "items.csv", "image_field": "file"}
    )
    assert "gone.png" in message and "not found" in message


# ------------------------------------------------------------------ npz


def test_npz_uint8_images(tmp_path: Path, write_project) -> None:
    images = np.arange(4 * 3 * 2, dtype=np.uint8).reshape(4, 3, 2) * 10
    np.savez(
        tmp_path / "x.npz",
        images=images,
        id=np.array(["w", "x", "y", "z"]),
        y=np.array([1, 2, 1, 2]),
    )
    ds = _load(write_project, {"kind": "npz", "path": "x.npz", "label_column": "y"})
    assert ds.ids.tolist() == ["w", "x", "y", "z"] and ds.ground_truth.tolist() == [
        "1",
        "2",
        "1",
        "2",
    ]
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_allclose(ds.features, images.reshape(4, -1) / 255, rtol=1e-6)


def test_npz_float_rgb_images_and_generated_ids(tmp_path: Path, write_project) -> None:
    images = np.random.default_rng(0).random((3, 4, 4, 3))
    np.savez(tmp_path / "x.npz", pixels=images)
    ds = _load(write_project, {"kind": "npz", "path": "x.npz", "image_field": "pixels"})
    assert ds.images.shape == (3, 4, 4, 3) and ds.ids.tolist()[-1] == "item-000003"
    np.testing.assert_allclose(ds.features, images.reshape(3, -1), atol=1 / 255)


def test_npz_feature_matrix(tmp_path: Path, write_project) -> None:
    np.savez(tmp_path / "x.npz", images=np.eye(3) * 7)
    ds = _load(write_project, {"kind": "npz", "path": "x.npz"})
    assert ds.images is None and ds.features.tolist() == (np.eye(3) * 7).tolist()


def test_npz_object_arrays_are_never_unpickled(tmp_path: Path, write_project) -> None:
    np.savez(
        tmp_path / "x.npz",
        images=np.zeros((2, 2, 2), np.uint8),
        id=np.array(["a", None], dtype=object),
    )
    message = _data_error(write_project, {"kind": "npz", "path": "x.npz"})
    assert "'id'" in message and "Python objects" in message


def test_npz_float_images_out_of_range(tmp_path: Path, write_project) -> None:
    np.savez(tmp_path / "x.npz", images=np.full((2, 2, 2), 3.0))
    assert "[0, 1]" in _data_error(write_project, {"kind": "npz", "path": "x.npz"})


def test_npz_length_mismatch_names_array(tmp_path: Path, write_project) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((3, 2, 2), np.uint8), id=np.array(["a", "b"]))
    assert "'id' has shape (2,)" in _data_error(write_project, {"kind": "npz", "path": "x.npz"})


def test_not_an_npz_file(tmp_path: Path, write_project) -> None:
    (tmp_path / "x.npz").write_bytes(b"garbage")
    assert "x.npz" in _data_error(write_project, {"kind": "npz", "path": "x.npz"})


def test_save_npz_is_reproducible(tmp_path: Path) -> None:
    arrays = {"images": np.arange(8, dtype=np.uint8).reshape(2, 2, 2), "id": np.array(["a", "b"])}
    save_npz(tmp_path / "a.npz", arrays)
    save_npz(tmp_path / "b.npz", arrays)
    assert file_sha256(tmp_path / "a.npz") == file_sha256(tmp_path / "b.npz")
    with np.load(tmp_path / "a.npz", allow_pickle=False) as back:
        np.testing.assert_array_equal(back["images"], arrays["images"])


# ------------------------------------------------------------------ image folders


def test_image_folder_classes_ids_and_common_size(tmp_path: Path, write_project) -> None:
    _png(tmp_path / "imgs" / "cat" / "1.png", 10)
    _png(tmp_path / "imgs" / "cat" / "2.jpg", 20, size=(12, 8))  # resized to the common 6x4
    _png(tmp_path / "imgs" / "dog" / "1.PNG", 30)
    (tmp_path / "imgs" / "dog" / "notes.txt").write_text("ignored")
    ds = _load(write_project, {"kind": "image_folder", "path": "imgs"})
    assert ds.ids.tolist() == ["cat/1.png", "cat/2.jpg", "dog/1.PNG"]
    assert ds.ground_truth.tolist() == ["cat", "cat", "dog"]
    assert ds.images.shape == (3, 4, 6)  # all grey -> (n, h, w)
    assert abs(int(ds.images[1].mean()) - 20) <= 2


def test_image_folder_mixed_modes_become_rgb(tmp_path: Path, write_project) -> None:
    _png(tmp_path / "imgs" / "a" / "1.png", 10)
    _png(tmp_path / "imgs" / "b" / "1.png", 200, mode="RGB")
    ds = _load(write_project, {"kind": "image_folder", "path": "imgs"})
    assert ds.images.shape == (2, 4, 6, 3)
    assert ds.images[1, 0, 0].tolist() == [200, 0, 55]


def test_image_folder_without_class_folders_has_no_ground_truth(
    tmp_path: Path, write_project
) -> None:
    _png(tmp_path / "imgs" / "1.png", 10)
    _png(tmp_path / "imgs" / "a" / "2.png", 10)
    ds = _load(write_project, {"kind": "image_folder", "path": "imgs"})
    assert ds.ground_truth is None and ds.ids.tolist() == ["1.png", "a/2.png"]


def test_unreadable_image_names_file(tmp_path: Path, write_project) -> None:
    _png(tmp_path / "imgs" / "a" / "1.png", 10)
    (tmp_path / "imgs" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    message = _data_error(write_project, {"kind": "image_folder", "path": "imgs"})
    assert "broken.png" in message and "unreadable image" in message


def test_truncated_image_names_file(tmp_path: Path, write_project) -> None:
    good = _png(tmp_path / "imgs" / "a" / "1.png", 10, size=(64, 64))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    (tmp_path / "imgs" / "a" / "cut.png").write_bytes(good.read_bytes()[:200])
    assert "cut.png" in _data_error(write_project, {"kind": "image_folder", "path": "imgs"})


def test_empty_image_folder(tmp_path: Path, write_project) -> None:
    (tmp_path / "imgs").mkdir()
    assert "empty" in _data_error(write_project, {"kind": "image_folder", "path": "imgs"})


def test_image_folder_pin_is_the_manifest(tmp_path: Path, write_project) -> None:
    _png(tmp_path / "imgs" / "a" / "1.png", 10)
    pin = data_sha256(tmp_path / "imgs")
    ds = _load(write_project, {"kind": "image_folder", "path": "imgs", "sha256": pin})
    assert len(ds) == 1
    _png(tmp_path / "imgs" / "a" / "2.png", 10)
    assert "does not match" in _data_error(
        write_project, {"kind": "image_folder", "path": "imgs", "sha256": pin}
    )


# ------------------------------------------------------------------ DataErrors


def test_missing_file(write_project) -> None:
    message = _data_error(write_project, {"kind": "csv", "path": "nope.csv"})
    assert message.startswith("data.path:") and "'nope.csv' not found" in message


def test_folder_where_a_file_is_needed(tmp_path: Path, write_project) -> None:
    (tmp_path / "items.csv").mkdir()
    assert "image_folder" in _data_error(write_project, {"kind": "csv", "path": "items.csv"})


def test_missing_columns_are_named_with_available_ones(tmp_path: Path, write_project) -> None:
    _table().to_csv(tmp_path / "items.csv", index=False)
    message = _data_error(
        write_project,
        {
            "kind": "csv",
            "path": "items.csv",
            "id_column": "uid",
            "label_column": "truth",
            "feature_columns": ["x1", "x9"],
        },
    )
    assert "data.id_column: column 'uid' not found" in message
    assert "data.label_column: column 'truth' not found" in message
    assert "data.feature_columns: column 'x9' not found" in message
    assert "Available columns: 'id', 'x1', 'x2', 'note', 'label'" in message


def test_missing_npz_array_lists_arrays(tmp_path: Path, write_project) -> None:
    np.savez(tmp_path / "x.npz", pixels=np.zeros((2, 2, 2), np.uint8))
    message = _data_error(write_project, {"kind": "npz", "path": "x.npz"})
    assert "data.image_field: array 'images' not found" in message and "'pixels'" in message


def test_duplicate_ids_are_named(tmp_path: Path, write_project) -> None:
    _table().assign(id=["a", "b", "a", "c", "b", "d"]).to_csv(tmp_path / "items.csv", index=False)
    message = _data_error(write_project, {"kind": "csv", "path": "items.csv"})
    assert "2 duplicate id(s) in id: 'a', 'b'" in message


def test_blank_id_names_row(tmp_path: Path, write_project) -> None:
    _table().assign(id=["a", "b", "", "c", "d", "e"]).to_csv(tmp_path / "items.csv", index=False)
    assert "empty at row(s) '3'" in _data_error(write_project, {"kind": "csv", "path": "items.csv"})


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "an infinite value")])
def test_non_finite_feature_names_column_and_row_id(
    tmp_path: Path, write_project, bad, word
) -> None:
    df = _table()
    df.loc[4, "x1"] = bad
    df.to_csv(tmp_path / "items.csv", index=False)
    message = _data_error(write_project, {"kind": "csv", "path": "items.csv"})
    assert f"column 'x1' has {word}" in message and "row 5 (id '004')" in message


def test_overflowing_float32_is_refused(tmp_path: Path, write_project) -> None:
    _table().assign(x2=1e300).to_csv(tmp_path / "items.csv", index=False)
    assert "column 'x2' has an infinite value" in _data_error(
        write_project, {"kind": "csv", "path": "items.csv"}
    )


def test_non_numeric_feature_names_column_and_value(tmp_path: Path, write_project) -> None:
    _table().assign(x2=["1", "2", "x3", "4", "5", "6"]).to_csv(tmp_path / "items.csv", index=False)
    message = _data_error(
        write_project, {"kind": "csv", "path": "items.csv", "feature_columns": ["x1", "x2"]}
    )
    assert (
        "feature column 'x2' is not numeric" in message
        and "'x3'" in message
        and "id '002'" in message
    )


def test_no_numeric_columns(tmp_path: Path, write_project) -> None:
    _table()[["id", "note"]].to_csv(tmp_path / "items.csv", index=False)
    message = _data_error(write_project, {"kind": "csv", "path": "items.csv"})
    assert "no numeric feature columns" in message and "data.feature_columns" in message


@pytest.mark.parametrize("text", ["", "id,x1\n"])
def test_empty_table(tmp_path: Path, write_project, text: str) -> None:
    (tmp_path / "items.csv").write_text(text)
    assert "empty" in _data_error(write_project, {"kind": "csv", "path": "items.csv"})


def test_empty_npz(tmp_path: Path, write_project) -> None:
    np.savez(tmp_path / "x.npz", images=np.zeros((0, 2, 2), np.uint8))
    assert "empty" in _data_error(write_project, {"kind": "npz", "path": "x.npz"})


def test_missing_ground_truth_names_ids(tmp_path: Path, write_project) -> None:
    _table().assign(label=["a", None, "b", "a", "b", "a"]).to_csv(
        tmp_path / "items.csv", index=False
    )
    message = _data_error(
        write_project, {"kind": "csv", "path": "items.csv", "label_column": "label"}
    )
    assert "'label' is empty for 1 item(s), ids '001'" in message


def test_broken_parquet(tmp_path: Path, write_project) -> None:
    (tmp_path / "items.parquet").write_bytes(b"PAR1 nope")
    assert "cannot read it as PARQUET" in _data_error(
        write_project, {"kind": "parquet", "path": "items.parquet"}
    )


def test_sha256_mismatch_says_expected_and_actual(tmp_path: Path, write_project) -> None:
    _table().to_csv(tmp_path / "items.csv", index=False)
    actual = file_sha256(tmp_path / "items.csv")
    assert len(_load(write_project, {"kind": "csv", "path": "items.csv", "sha256": actual})) == 6
    message = _data_error(write_project, {"kind": "csv", "path": "items.csv", "sha256": "0" * 64})
    assert f"expected {'0' * 64}" in message and f"actual {actual}" in message
    assert message.startswith("data.sha256:")


def test_load_dataset_honours_allow_outside_of_the_load(tmp_path: Path, write_project) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-items.csv"
    _table().to_csv(outside, index=False)
    project = load_project(write_project({"kind": "csv", "path": str(outside)}), allow_outside=True)
    assert len(load_dataset(project)) == 6  # the flag the file was loaded with carries over
    with pytest.raises(ConfigError, match="data.path: .* outside the project folder"):
        load_dataset(project, allow_outside=False)


# ------------------------------------------------------------------ long tail


def test_long_tail_counts_follow_the_exponential_profile() -> None:
    counts = long_tail_counts(10, 150, 50)
    assert counts[0] == 150 and counts[-1] == 3
    expected = np.floor(150 * 50 ** (-np.arange(10) / 9) + 0.5)
    np.testing.assert_array_equal(counts, expected)
    assert long_tail_counts(3, 2, 1000).tolist() == [2, 1, 1]  # never below one item


def test_long_tail_indices_respects_order_and_quotas() -> None:
    y = np.repeat(np.array(["a", "b", "c"]), 40)
    keep = long_tail_indices(y, 10, np.random.default_rng(0), n_max=40, class_order=["c", "a", "b"])
    labels, counts = np.unique(y[keep], return_counts=True)
    assert dict(zip(labels.tolist(), counts.tolist())) == {"c": 40, "a": 13, "b": 4}
    assert np.all(np.diff(keep) > 0)


def test_long_tail_indices_refuses_too_few_items() -> None:
    y = np.array([0] * 5 + [1] * 50)
    with pytest.raises(DataError, match="fewer than"):
        long_tail_indices(y, 10, np.random.default_rng(0), n_max=50, class_order=[0, 1])


# ------------------------------------------------------------------ demos


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    names, counts = np.unique(labels, return_counts=True)
    return dict(zip(names.tolist(), counts.tolist()))


def test_digits_demo_project_is_long_tailed_with_rare_flags(demo_project: Path) -> None:
    project = load_project(demo_project)
    ds = load_dataset(project)
    counts = _class_counts(ds.ground_truth)
    assert max(counts.values()) / min(counts.values()) == pytest.approx(50)
    assert project.class_names == [str(d) for d in range(10)]
    smallest = sorted(counts, key=counts.get)[:3]
    assert sorted(project.rare_classes) == sorted(smallest)
    assert len({c.colour for c in project.classes}) == 10
    assert project.data.kind == "npz" and project.data.path == "digits-lt.npz"
    assert project.data.sha256 == file_sha256(demo_project.parent / "digits-lt.npz")
    assert ds.images.shape[1:] == (8, 8) and 0 <= ds.features.min() and ds.features.max() <= 1


def test_demo_is_deterministic_by_seed(tmp_path: Path) -> None:
    a = make_demo("digits-lt", tmp_path / "a", seed=3)
    b = make_demo("digits-lt", tmp_path / "b", seed=3)
    c = make_demo("digits-lt", tmp_path / "c", seed=4)
    sha = [file_sha256(p.parent / "digits-lt.npz") for p in (a, b, c)]
    assert sha[0] == sha[1] != sha[2]
    assert a.read_text() == b.read_text()
    ids_a, ids_c = load_dataset(load_project(a)).ids, load_dataset(load_project(c)).ids
    assert set(ids_a) != set(ids_c)


def test_kind_demo_loads_the_same_items_in_memory(tmp_path: Path, write_project) -> None:
    from_file = load_dataset(load_project(make_demo("digits-lt", tmp_path / "d", seed=5)))
    in_memory = load_dataset(
        load_project(write_project({"kind": "demo", "demo": "digits-lt"}, seed=5))
    )
    np.testing.assert_array_equal(from_file.ids, in_memory.ids)
    np.testing.assert_array_equal(from_file.features, in_memory.features)
    assert from_file.ground_truth.tolist() == in_memory.ground_truth.tolist()
    assert (
        in_memory.fingerprint
        != load_dataset(
            load_project(write_project({"kind": "demo", "demo": "digits-lt"}, seed=6))
        ).fingerprint
    )


def test_fashion_mnist_demo(tmp_path: Path) -> None:
    spec = DEMOS["fashion-mnist-lt"]
    data = build_demo("fashion-mnist-lt", seed=0)
    counts = _class_counts(data.labels)
    assert max(counts.values()) == spec.n_max and max(counts.values()) / min(counts.values()) == 100
    assert "T-shirt/top" in counts and "Ankle boot" in counts and len(counts) == 10
    assert data.images.shape[1:] == (28, 28) and data.images.dtype == np.uint8
    assert set(data.rare) == set(sorted(counts, key=counts.get)[:3])


def test_fashion_mnist_missing_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="sudo apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)


def test_unknown_demo_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="digits-lt, fashion-mnist-lt"):
        make_demo("cifar-lt", tmp_path)
