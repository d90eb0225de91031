"""Encoders: registry names, shapes, determinism, the on-disk cache, and the offline pretrained net."""

import numpy as np
import pytest

from core.data.base import Dataset
from core.embed import ENCODER_REGISTRY, base_config, encode
from core.errors import ConfigError
from core.models import MODEL_REGISTRY, build_model
from core.project import ENCODER_KINDS, MODEL_KINDS, EncoderConfig, MLPConfig, default_model_config


def table(n=120, d=5, seed=0, fingerprint="tbl-1"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32) * np.arange(1, d + 1, dtype=np.float32) + 10
    return Dataset(ids=np.array([f"r{i}" for i in range(n)], dtype=object), features=X,
                   feature_names=[f"f{j}" for j in range(d)], fingerprint=fingerprint, name="tbl")


def images(n=6, side=28, rgb=False, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, side, side, 3) if rgb else (n, side, side)
    imgs = rng.integers(0, 256, size=shape, dtype=np.uint8)
    feats = imgs.reshape(n, -1).astype(np.float32) / 255
    return Dataset(ids=np.array([f"i{i}" for i in range(n)], dtype=object), features=feats,
                   feature_names=[f"p{j}" for j in range(feats.shape[1])], images=imgs,
                   fingerprint=f"img-{n}-{side}-{rgb}", name="imgs")


def test_registries_match_project_names():
    from core.models import LOSS_REGISTRY, SAMPLER_EXPONENTS
    from core.project import LOSSES, SAMPLERS

    assert tuple(ENCODER_REGISTRY) == ENCODER_KINDS
    assert tuple(LOSS_REGISTRY) == LOSSES
    assert tuple(SAMPLER_EXPONENTS) == SAMPLERS
    from typing import get_args

    from core.project import ModelConfig

    config_classes = get_args(get_args(ModelConfig)[0])
    kinds = {get_args(cls.model_fields["kind"].annotation)[0] for cls in config_classes}
    assert set(MODEL_REGISTRY) == kinds == set(MODEL_KINDS)
    for kind in MODEL_KINDS:
        cfg = default_model_config(kind)
        assert cfg.kind == kind and build_model(cfg).kind == kind


def test_tabular_standardises(tmp_path):
    out = encode(table(), EncoderConfig(kind="tabular"), cache_dir=tmp_path, seed=0)
    assert out.dtype == np.float32 and out.shape == (120, 5)
    assert np.allclose(out.mean(axis=0), 0, atol=1e-5) and np.allclose(out.std(axis=0), 1, atol=1e-4)


def test_tabular_pca(tmp_path):
    out = encode(table(), EncoderConfig(kind="tabular", pca_components=3), cache_dir=tmp_path, seed=0)
    assert out.shape == (120, 3)
    var = out.var(axis=0)
    assert var[0] >= var[1] >= var[2]


def test_cache_hit_returns_stored_array_and_key_follows_settings(tmp_path):
    ds = table()
    cfg = EncoderConfig(kind="tabular")
    first = encode(ds, cfg, cache_dir=tmp_path, seed=0)
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1
    # overwrite the cache entry: a hit must return what is on disk, not recompute
    marker = np.full_like(first, 7.0)
    np.save(files[0], marker, allow_pickle=False)
    messages = []
    again = encode(ds, cfg, cache_dir=tmp_path, seed=0, progress=lambda d, t, m: messages.append(m))
    assert np.array_equal(again, marker) and "cache" in messages[-1]
    # other settings or other data: a different key, a fresh computation
    encode(ds, EncoderConfig(kind="tabular", pca_components=2), cache_dir=tmp_path, seed=0)
    encode(table(fingerprint="tbl-2"), cfg, cache_dir=tmp_path, seed=0)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 3


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    ds = table()
    cfg = EncoderConfig(kind="tabular")
    first = encode(ds, cfg, cache_dir=tmp_path, seed=0)
    (path,) = (tmp_path / "embeddings").glob("*.npy")
    path.write_bytes(b"not an npy file")
    assert np.array_equal(encode(ds, cfg, cache_dir=tmp_path, seed=0), first)


def test_self_supervised_table_is_seeded(tmp_path):
    cfg = EncoderConfig(kind="self-supervised", dim=4, epochs=3, batch_size=64)
    a = encode(table(), cfg, cache_dir=None, seed=1)
    b = encode(table(), cfg, cache_dir=None, seed=1)
    c = encode(table(), cfg, cache_dir=None, seed=2)
    assert a.shape == (120, 4) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_self_supervised_images_reports_progress():
    cfg = EncoderConfig(kind="self-supervised", dim=8, epochs=2, batch_size=4)
    seen = []
    out = encode(images(n=10), cfg, cache_dir=None, seed=0, progress=lambda d, t, m: seen.append((d, t)))
    assert out.shape == (10, 8) and np.isfinite(out).all()
    assert seen[-1] == (2, 2)


def test_self_supervised_learns_structure():
    """Two well-separated groups in 20-d must stay separated in the 2-d code."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (100, 20)), rng.normal(4, 1, (100, 20))]).astype(np.float32)
    ds = Dataset(ids=np.array([str(i) for i in range(200)], dtype=object), features=X,
                 feature_names=[f"f{i}" for i in range(20)], fingerprint="two-groups")
    out = encode(ds, EncoderConfig(kind="self-supervised", dim=2, epochs=30, batch_size=64),
                 cache_dir=None, seed=0)
    from sklearn.linear_model import LogisticRegression

    truth = np.repeat([0, 1], 100)
    assert LogisticRegression().fit(out, truth).score(out, truth) > 0.95


@pytest.mark.parametrize("rgb", [False, True])
def test_pretrained_image_offline_1280_features(tmp_path, rgb):
    ds = images(n=5, rgb=rgb)
    seen = []
    cfg = EncoderConfig(kind="pretrained-image", image_size=64, batch_size=2)
    out = encode(ds, cfg, cache_dir=tmp_path, seed=0, progress=lambda d, t, m: seen.append(d))
    assert out.shape == (5, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    assert seen == [2, 4, 5]
    assert out.std(axis=0).mean() > 0  # different images give different features


def test_pretrained_features_separate_simple_shapes():
    """ImageNet features tell bright squares from dark rings (the weights are really loaded)."""
    side = 28
    yy, xx = np.mgrid[:side, :side]
    square = ((abs(yy - 14) < 8) & (abs(xx - 14) < 8)).astype(np.uint8) * 255
    ring = ((np.hypot(yy - 14, xx - 14) > 6) & (np.hypot(yy - 14, xx - 14) < 10)).astype(np.uint8) * 255
    rng = np.random.default_rng(0)
    imgs = np.stack([np.roll(s, rng.integers(-3, 4, 2), axis=(0, 1)) for s in [square, ring] * 4])
    ds = Dataset(ids=np.array([str(i) for i in range(8)], dtype=object),
                 features=imgs.reshape(8, -1).astype(np.float32) / 255,
                 feature_names=[str(i) for i in range(side * side)], images=imgs, fingerprint="shapes")
    out = encode(ds, EncoderConfig(kind="pretrained-image", image_size=64), cache_dir=None, seed=0)
    sq, rg = out[0::2], out[1::2]
    within = np.mean([np.linalg.norm(a - b) for a in sq for b in sq] + [np.linalg.norm(a - b) for a in rg for b in rg])
    between = np.mean([np.linalg.norm(a - b) for a in sq for b in rg])
    assert between > within


def test_pretrained_image_needs_images():
    with pytest.raises(ConfigError, match="needs image data"):
        encode(table(), EncoderConfig(kind="pretrained-image"), cache_dir=None, seed=0)


def test_model_encoder_falls_back_and_says_so():
    ds = table()
    cfg = EncoderConfig(kind="model")
    with pytest.warns(UserWarning, match="no trained model yet"):
        out = encode(ds, cfg, cache_dir=None, seed=0)
    assert np.array_equal(out, encode(ds, EncoderConfig(kind="tabular"), cache_dir=None, seed=0))


def test_model_encoder_uses_penultimate_layer(tmp_path):
    ds = table()
    cfg = EncoderConfig(kind="model")
    base = encode(ds, base_config(cfg), cache_dir=tmp_path, seed=0)
    y = np.where(base[:, 0] > 0, "hi", "lo").astype(object)
    model = build_model(MLPConfig(hidden=[16, 8], epochs=10), seed=0).fit(base, y)
    out = encode(ds, cfg, cache_dir=tmp_path, seed=0, model=model)
    assert out.shape == (120, 8) and np.array_equal(out, model.embed(base))


def test_model_encoder_shows_the_quintuplet_embedding_of_cluster_knn(tmp_path):
    from core.project import ClusterKNNConfig

    ds = table()
    cfg = EncoderConfig(kind="model")
    base = encode(ds, base_config(cfg), cache_dir=tmp_path, seed=0)
    y = np.where(base[:, 0] > 0, "hi", "lo").astype(object)
    mlp = MLPConfig(hidden=[16, 8], epochs=10, embedding_loss="quintuplet")
    model = build_model(ClusterKNNConfig(mlp=mlp), seed=0).fit(base, y)
    out = encode(ds, cfg, cache_dir=tmp_path, seed=0, model=model)
    assert out.shape == (120, 8) and np.array_equal(out, model.embed(base))
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # the margins' geometry
    plain = build_model(MLPConfig(hidden=[16, 8], epochs=10), seed=0).fit(base, y)
    assert not np.allclose(out, plain.embed(base), atol=1e-3)
