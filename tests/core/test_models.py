"""One contract test over every registered model (and the MLP with every loss and sampler)."""

import json
from dataclasses import replace

import numpy as np
import pytest

from core.errors import ModelError
from core.models import MODEL_REGISTRY, build_model, load_model, save_model
from core.project import (
    LOSSES,
    SAMPLERS,
    AutoConfig,
    ClusterKNNConfig,
    GradientBoostingConfig,
    LogisticConfig,
    MLPConfig,
    RandomForestConfig,
)

SMALL_MLP = {"hidden": [32, 16], "epochs": 40, "patience": 5}


def _configs():
    cases = {f"mlp-{loss}": MLPConfig(loss=loss, **SMALL_MLP) for loss in LOSSES}
    cases.update({f"mlp-sampler-{s}": MLPConfig(loss="ce", sampler=s, **SMALL_MLP) for s in SAMPLERS})
    # riws draws the single-item class most of the time; post-hoc adjustment by the sampled
    # prior restores the head classes (see docs/models.md)
    cases["mlp-sampler-riws"] = MLPConfig(loss="ce", sampler="riws", posthoc_tau=1.0, **SMALL_MLP)
    cases["mlp-crt"] = MLPConfig(loss="ce", crt=True, **SMALL_MLP)
    cases["mlp-posthoc"] = MLPConfig(loss="ce", posthoc_tau=1.0, **SMALL_MLP)
    cases["mlp-pseudo-label"] = MLPConfig(pseudo_label=True, **SMALL_MLP)
    cases["mlp-uncalibrated"] = MLPConfig(calibrate=False, dropout=0.0, **SMALL_MLP)
    cases["mlp-quintuplet"] = MLPConfig(embedding_loss="quintuplet", **SMALL_MLP)
    cases["mlp-quintuplet-ldam"] = MLPConfig(embedding_loss="quintuplet", loss="ldam_drw", crt=True,
                                             **SMALL_MLP)
    cases["cluster_knn"] = ClusterKNNConfig(mlp=MLPConfig(embedding_loss="quintuplet", **SMALL_MLP))
    cases["logistic"] = LogisticConfig(kind="logistic")
    cases["random_forest"] = RandomForestConfig(kind="random_forest", n_estimators=15)
    cases["gradient_boosting"] = GradientBoostingConfig(max_iter=20)
    cases["auto"] = AutoConfig(
        mlp=MLPConfig(**SMALL_MLP),
        random_forest=RandomForestConfig(n_estimators=15),
        gradient_boosting=GradientBoostingConfig(max_iter=20),
    )
    cases["auto-spreading"] = cases["auto"].model_copy(update={"spreading_labels": 200})
    return cases


CONFIGS = _configs()


def test_every_registered_model_is_in_the_contract_test():
    assert {c.kind for c in CONFIGS.values()} == set(MODEL_REGISTRY)


def make_data(seed=0, n_per_class=(60, 25, 8, 1), d=6, spread=3.0):
    """Long-tailed blobs; the last class has a single labelled item."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(n_per_class), d)) * spread
    X = np.concatenate([rng.normal(c, 1.0, (n, d)) for c, n in zip(centres, n_per_class)])
    names = ["zebra", "ant", "mole", "yak"]
    y = np.concatenate([[names[i]] * n for i, n in enumerate(n_per_class)]).astype(object)
    Xu = np.concatenate([rng.normal(c, 1.0, (20, d)) for c in centres])
    return X.astype(np.float32), y, Xu.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module", params=sorted(CONFIGS), ids=sorted(CONFIGS))
def fitted(request, data):
    X, y, Xu = data
    cfg = CONFIGS[request.param]
    return cfg, build_model(cfg, seed=3).fit(X, y, X_unlabelled=Xu)


def test_fit_predict_shapes_and_classes(fitted, data):
    _, model = fitted
    X, _, Xu = data
    assert list(model.classes_) == ["ant", "mole", "yak", "zebra"]
    assert model.n_features_in_ == X.shape[1]
    pred = model.predict(Xu)
    assert pred.shape == (len(Xu),) and set(pred) <= set(model.classes_)
    proba = model.predict_proba(Xu)
    assert proba.shape == (len(Xu), 4)
    assert np.allclose(proba.sum(axis=1), 1.0) and (proba >= 0).all()
    assert np.array_equal(model.classes_[proba.argmax(axis=1)], pred)
    emb = model.embed(Xu)
    assert emb.ndim == 2 and emb.shape[0] == len(Xu) and emb.dtype == np.float32


def test_learns_the_majority_structure(fitted, data):
    _, model = fitted
    X, y, _ = data
    head = np.isin(y, ["zebra", "ant"])
    assert np.mean(model.predict(X[head]) == y[head]) > 0.9


def test_single_item_class_is_kept(fitted, data):
    _, model = fitted
    X, y, _ = data
    assert "yak" in model.classes_
    assert np.isfinite(model.predict_proba(X[y == "yak"])).all()


def test_nan_and_inf_rejected_with_clear_error(fitted, data):
    cfg, model = fitted
    X, y, _ = data
    bad = X.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ModelError, match="NaN first at row 5, column 2"):
        build_model(cfg, seed=0).fit(bad, y)
    bad[5, 2] = np.inf
    with pytest.raises(ModelError, match="infinite"):
        model.predict(bad)


def test_wrong_feature_count_rejected(fitted, data):
    _, model = fitted
    X, _, _ = data
    with pytest.raises(ModelError, match="fitted on 6 features but got 5"):
        model.predict_proba(X[:, :5])


def test_save_load_gives_identical_predictions(fitted, data, tmp_path):
    cfg, model = fitted
    _, _, Xu = data
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["kind"] == cfg.kind and meta["classes"] == list(model.classes_)
    assert meta["n_features_in"] == 6 and "temperature" in meta
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    assert np.array_equal(loaded.predict_proba(Xu), model.predict_proba(Xu))
    assert np.array_equal(loaded.predict(Xu), model.predict(Xu))
    assert np.array_equal(loaded.embed(Xu), model.embed(Xu))


def test_same_seed_same_model(fitted, data):
    cfg, model = fitted
    X, y, Xu = data
    again = build_model(cfg, seed=3).fit(X, y, X_unlabelled=Xu)
    assert np.array_equal(again.predict_proba(Xu), model.predict_proba(Xu))


def test_needs_two_classes():
    X, _, _ = make_data()
    with pytest.raises(ModelError, match="at least two classes"):
        build_model(MLPConfig(**SMALL_MLP)).fit(X[:10], np.array(["a"] * 10, dtype=object))


def test_label_count_mismatch_named():
    X, y, _ = make_data()
    with pytest.raises(ModelError, match="expected 94 labels"):
        build_model(LogisticConfig(kind="logistic")).fit(X, y[:-1])


def test_unfitted_model_says_so():
    with pytest.raises(ModelError, match="not fitted"):
        build_model(LogisticConfig(kind="logistic")).predict(np.zeros((2, 3)))


def test_temperature_fitted_when_enough_labels():
    X, y, _ = make_data(n_per_class=(80, 40, 20, 10))
    model = build_model(MLPConfig(**SMALL_MLP), seed=0).fit(X, y)
    assert model.temperature != 1.0
    few = build_model(MLPConfig(**SMALL_MLP), seed=0).fit(*make_data()[:2])
    assert few.temperature == 1.0  # a single-item class: no held-out split, no calibration


@pytest.mark.parametrize("loss", ["ce", "logit_adjusted"])
def test_temperature_improves_held_out_likelihood(loss):
    X, y, _ = make_data(seed=1, n_per_class=(400, 200, 100, 50), spread=1.0)
    # same centres (same seed), new draws: a balanced test set with overlapping classes
    Xt, yt, _ = make_data(seed=1, n_per_class=(200, 200, 200, 200), spread=1.0)
    cfg = {"loss": loss, "hidden": [64], "epochs": 200, "patience": 30, "dropout": 0.0,
           "weight_decay": 0.0}
    cal = build_model(MLPConfig(calibrate=True, **cfg), seed=0).fit(X, y)
    raw = build_model(MLPConfig(calibrate=False, **cfg), seed=0).fit(X, y)

    def nll(m):
        p = m.predict_proba(Xt)
        return -np.mean(np.log(p[np.arange(len(yt)), np.searchsorted(m.classes_, yt)] + 1e-12))

    assert cal.temperature != 1.0 and raw.temperature == 1.0
    assert nll(cal) < nll(raw)


def test_random_forest_matches_scikit_learn():
    from sklearn.ensemble import RandomForestClassifier

    X, y, Xu = make_data()
    model = build_model(RandomForestConfig(kind="random_forest", n_estimators=10), seed=1).fit(X, y)
    ref = RandomForestClassifier(n_estimators=10, class_weight="balanced", random_state=1, n_jobs=1)
    ref.fit(X, np.searchsorted(model.classes_, y))
    assert np.allclose(model.predict_proba(Xu), ref.predict_proba(Xu))


def test_logistic_matches_scikit_learn_two_classes():
    from sklearn.linear_model import LogisticRegression

    X, y, Xu = make_data(n_per_class=(40, 10))
    model = build_model(LogisticConfig(kind="logistic"), seed=0).fit(X, y)
    Xs = (X - X.mean(0)) / X.std(0)
    ref = LogisticRegression(class_weight="balanced", max_iter=1000).fit(Xs, y.astype(str))
    assert np.allclose(model.predict_proba(Xu), ref.predict_proba((Xu - X.mean(0)) / X.std(0)), atol=1e-5)


def test_load_rejects_foreign_files(tmp_path):
    (tmp_path / "model.json").write_text('{"format": "other"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="not a Tailwise model"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing")


def test_load_rejects_corrupt_weights(tmp_path):
    X, y, _ = make_data()
    save_model(build_model(LogisticConfig(kind="logistic")).fit(X, y), tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelError, match="unreadable safetensors"):
        load_model(tmp_path)


def test_wrong_config_type_rejected():
    from core.models.mlp import MLPClassifier

    X, y, _ = make_data()
    with pytest.raises(ModelError, match="needs a MLPConfig"):
        MLPClassifier(config=LogisticConfig(kind="logistic")).fit(X, y)


def test_pseudo_labels_are_counted():
    X, y, Xu = make_data()
    model = build_model(MLPConfig(pseudo_label=True, **SMALL_MLP), seed=0).fit(X, y, X_unlabelled=Xu)
    assert 0 < model.n_pseudo_labels_ <= len(Xu)


def test_results_do_not_depend_on_the_thread_setting():
    """Two threads split reductions differently; fit/predict pin one thread so results match."""
    import torch
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:420].astype(np.float32), y[:420].astype(str).astype(object)
    before = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = build_model(MLPConfig(), seed=0).fit(X[:150], y[:150], X_unlabelled=X[150:])
            runs.append(model.predict_proba(X))
            assert torch.get_num_threads() == threads  # restored after fit/predict
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(runs[0], runs[1])


def test_predictions_shared_by_threads_equal_one_thread(monkeypatch):
    """The pool's chunks spread over threads (one torch thread each) give the same numbers."""
    import core.models.mlp as mlp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1_000, 6)).astype(np.float32)
    y = np.array(["a", "b", "c"], dtype=object)[(X[:, 0] > 0).astype(int) + (X[:, 1] > 1)]
    model = build_model(MLPConfig(**SMALL_MLP), seed=0).fit(X[:200], y[:200])
    monkeypatch.setattr(mlp, "PREDICT_CHUNK", 64)  # 16 chunks
    runs = {}
    for workers in (1, 2, 3):
        monkeypatch.setattr(mlp, "PREDICT_WORKERS", workers)
        runs[workers] = (model.predict_proba(X), model.embed(X))
    for workers in (2, 3):
        np.testing.assert_array_equal(runs[workers][0], runs[1][0])
        np.testing.assert_array_equal(runs[workers][1], runs[1][1])


@pytest.mark.parametrize("loss, warns", [("logit_adjusted", True), ("ce", False)])
def test_riws_with_a_rebalancing_loss_warns(loss, warns):
    import warnings

    X, y, _ = make_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_model(MLPConfig(loss=loss, sampler="riws", **SMALL_MLP)).fit(X, y)
    assert any("corrects the imbalance twice" in str(w.message) for w in caught) == warns


def moons(seed: int = 0, n: int = 600):
    """Two interleaved half-moons: no straight line separates them, the kNN graph does."""
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.06, random_state=seed)
    return X.astype(np.float32), np.where(y == 1, "b", "a").astype(object)


def test_label_spreading_labels_each_moon_from_three_labels():
    from core.models.spreading import LabelSpreading

    X, y = moons()
    rng = np.random.default_rng(0)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), 3, replace=False) for c in "ab"])
    rest = np.setdiff1d(np.arange(len(y)), lab)
    codes = (y[lab] == "b").astype(int)
    spread = LabelSpreading(seed=0).fit(X[lab], codes, 2, X[rest])
    proba = spread.predict_proba(X[rest])
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(np.where(proba.argmax(axis=1) == 1, "b", "a") == y[rest]) > 0.95


def test_label_spreading_gives_a_one_label_class_its_cluster():
    # 40 labels of the head class, one of the rare class: the rare class keeps its cluster
    from core.models.spreading import LabelSpreading

    rng = np.random.default_rng(1)
    head = rng.normal(0, 1.0, (400, 2))
    rare = rng.normal((3.2, 0), 0.5, (30, 2))
    X = np.concatenate([head, rare]).astype(np.float32)
    lab = np.concatenate([rng.choice(400, 40, replace=False), [400]])
    rest = np.setdiff1d(np.arange(len(X)), lab)
    codes = (lab >= 400).astype(int)
    proba = LabelSpreading(seed=0).fit(X[lab], codes, 2, X[rest]).predict_proba(X[rest])
    found_rare = proba[rest >= 400].argmax(axis=1) == 1
    assert found_rare.mean() > 0.8
    assert (proba[rest < 400].argmax(axis=1) == 0).mean() > 0.9


def test_auto_blends_label_spreading_while_labels_are_few(tmp_path):
    X, y = moons(seed=2)
    rng = np.random.default_rng(2)
    lab = np.concatenate([rng.choice(np.flatnonzero(y == c), 4, replace=False) for c in "ab"])
    rest = np.setdiff1d(np.arange(len(y)), lab)
    cfg = AutoConfig(candidates=["logistic"], spreading_labels=100)
    blended = build_model(cfg, seed=0).fit(X[lab], y[lab], X_unlabelled=X[rest])
    plain = build_model(cfg, seed=0).fit(X[lab], y[lab])
    assert blended.spreading_ is not None and plain.spreading_ is None
    folder = save_model(blended, tmp_path / "blended")  # the graph is saved with the model
    assert np.array_equal(load_model(folder).predict_proba(X), blended.predict_proba(X))
    acc = {name: np.mean(m.predict(X[rest]) == y[rest]) for name, m in
           (("blended", blended), ("plain", plain))}
    # a straight line gets the moons' tips wrong; the spread labels follow the moons
    assert acc["blended"] > acc["plain"] + 0.05, acc
    # off with spreading_labels 0, and past the label threshold
    off = build_model(AutoConfig(candidates=["logistic"], spreading_labels=0), seed=0)
    assert off.fit(X[lab], y[lab], X_unlabelled=X[rest]).spreading_ is None
    many = build_model(AutoConfig(candidates=["logistic"], spreading_labels=5), seed=0)
    assert many.fit(X[lab], y[lab], X_unlabelled=X[rest]).spreading_ is None
    # on by default below 100 labels (the benchmark: docs/strategies.md)
    default = build_model(AutoConfig(candidates=["logistic"]), seed=0)
    assert default.fit(X[lab], y[lab], X_unlabelled=X[rest]).spreading_ is not None


def test_retrains_spread_labels_over_a_sample_of_the_pool_while_labels_are_few():
    # what the dashboard, headless and CLI retrains do (core.pipeline), as simulate does
    from core.pipeline import SPREADING_ROWS, _unlabelled_kw, fit_labelled
    from core.project import DataConfig, ProjectConfig

    X, y = moons(seed=3, n=4_000)
    project = ProjectConfig(data=DataConfig(kind="csv", path="items.csv", label_column="label"),
                            model=AutoConfig(candidates=["logistic"], spreading_labels=100))
    lab = np.arange(10)
    unlabelled = np.arange(10, len(y))
    kw = _unlabelled_kw(project, X, unlabelled, len(lab))
    assert kw["x_unlabelled"].shape == (SPREADING_ROWS, 2)  # a sample, not the whole pool
    assert fit_labelled(project, X[lab], y[lab], **kw).spreading_ is not None
    assert _unlabelled_kw(project, X, unlabelled, 100) == {}  # enough labels: learner alone
    mlp = project.model_copy(update={"model": MLPConfig(**SMALL_MLP)})
    assert _unlabelled_kw(mlp, X, unlabelled, 10) == {}  # other learners: unchanged


def test_auto_leaves_label_spreading_out_when_it_does_worse_out_of_fold():
    # the class is the sign of one low-variance feature; six high-variance noise features decide
    # who is whose neighbour, so the kNN graph misleads while a linear model finds the feature
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(0, 1, (2000, 1)), rng.normal(0, 4, (2000, 6))], axis=1)
    X = X.astype(np.float32)
    y = np.where(X[:, 0] > 0, "b", "a").astype(object)
    lab = rng.choice(2000, 60, replace=False)
    rest = np.setdiff1d(np.arange(2000), lab)
    model = build_model(AutoConfig(candidates=["logistic"], spreading_labels=100), seed=0).fit(
        X[lab], y[lab], X_unlabelled=X[rest])
    assert model.spreading_ is None
    assert model.spreading_reason_.startswith("off: out-of-fold balanced accuracy")
    # on the moons the graph wins out of fold and is blended in
    Xm, ym = moons(seed=1, n=1000)
    lab = np.random.default_rng(1).choice(1000, 30, replace=False)
    rest = np.setdiff1d(np.arange(1000), lab)
    model = build_model(AutoConfig(candidates=["logistic"], spreading_labels=100), seed=0).fit(
        Xm[lab], ym[lab], X_unlabelled=Xm[rest])
    assert model.spreading_ is not None and model.spreading_reason_.startswith("on: ")


def test_auto_reuses_earlier_out_of_fold_predictions_until_the_labels_grew_by_oof_growth():
    from core.models.selection import EarlierOOF

    X, y = moons(seed=4, n=400)
    config = AutoConfig(candidates=["logistic"], oof_growth=0.25)
    first = build_model(config, seed=0).fit(X[:60], y[:60])
    assert first.oof_at_ == 60 and len(first.oof_rows_) > 10
    earlier = EarlierOOF("logistic", tuple(first.classes_), first.oof_rows_, first.oof_proba_, 60)
    kept = build_model(config, seed=0, earlier_oof=earlier).fit(X[:70], y[:70])
    assert kept.oof_at_ == 60 and np.array_equal(kept.oof_proba_, first.oof_proba_)
    assert np.array_equal(kept.oof_rows_, first.oof_rows_)
    fresh = build_model(config, seed=0).fit(X[:70], y[:70])
    assert fresh.oof_at_ == 70 and len(fresh.oof_rows_) > len(first.oof_rows_)
    # grown by 25 % (75 labels), another learner, or oof_growth 0: computed again
    for model in (build_model(config, seed=0, earlier_oof=earlier).fit(X[:75], y[:75]),
                  build_model(config, seed=0, earlier_oof=replace(earlier, learner="mlp")).fit(
                      X[:70], y[:70]),
                  build_model(config.model_copy(update={"oof_growth": 0.0}), seed=0,
                              earlier_oof=earlier).fit(X[:70], y[:70])):
        assert model.oof_at_ in (70, 75) and not np.array_equal(model.oof_rows_, first.oof_rows_)


def test_a_retrain_lends_its_out_of_fold_predictions_to_the_next_by_item():
    # core.pipeline maps the last round's out-of-fold items onto the new labelled rows
    from core.data.base import Dataset
    from core.pipeline import train_round
    from core.project import DataConfig, ProjectConfig

    X, y = moons(seed=5, n=600)
    ids = np.array([f"m{i}" for i in range(len(y))], dtype=object)
    data = Dataset(ids=ids, features=X, feature_names=["a", "b"])
    project = ProjectConfig(data=DataConfig(kind="csv", path="items.csv", label_column="label"),
                            model=AutoConfig(candidates=["logistic"]))
    rng = np.random.default_rng(0)
    first_rows = rng.choice(len(y), 80, replace=False)
    labels = {ids[r]: y[r] for r in first_rows}
    one = train_round(project, data, X, labels, model_version=1)
    assert one.oof_at == 80
    more = rng.choice(np.setdiff1d(np.arange(len(y)), first_rows), 8, replace=False)
    gone = one.oof_ids[0]  # a retracted label drops out of the lent predictions
    labels2 = {**{i: v for i, v in labels.items() if i != gone}, **{ids[r]: y[r] for r in more}}
    two = train_round(project, data, X, labels2, model_version=2, earlier=one)
    assert two.oof_at == 80 and gone not in set(two.oof_ids)
    before = dict(zip(one.oof_ids.tolist(), map(tuple, one.oof_proba)))
    assert all(before[i] == tuple(p) for i, p in zip(two.oof_ids.tolist(), two.oof_proba))
    assert len(two.oof_ids) == len(one.oof_ids) - 1
    three = train_round(project, data, X, labels2, model_version=3)  # nothing to lend: computed
    assert three.oof_at == 87


def test_ground_truth_metrics_from_integer_codes_equal_evaluate_on_names():
    # core.pipeline hashes the ground truth once and counts by indices; same result as names
    from core.data.base import Dataset
    from core.metrics import evaluate
    from core.pipeline import ground_truth_metrics

    rng = np.random.default_rng(0)
    n = 3_000
    truth = np.array([f"c{k}" for k in rng.integers(0, 6, n)], dtype=object)
    truth[::13] = None
    truth[[5, 6]] = "only-labelled"  # a class whose items are all labelled: not measured
    data = Dataset(ids=np.array([f"i{k}" for k in range(n)], dtype=object),
                   features=np.zeros((n, 1), np.float32), feature_names=["f"], ground_truth=truth)
    classes = ("c0", "c1", "c2", "c3", "c4")  # the model never saw c5
    best = rng.integers(0, len(classes), n)
    rows = np.unique(np.concatenate([rng.choice(n, 200, replace=False), [5, 6]]))
    y = np.asarray(classes, dtype=object)[best[rows]]
    got = ground_truth_metrics(data, rows, y, best, classes, ["c4"])
    held = np.ones(n, bool)
    held[rows] = False
    held &= truth != None  # noqa: E711
    names = sorted(set(truth[held].tolist()) | set(y.tolist()))
    want = evaluate(truth[held], np.asarray(classes, dtype=object)[best[held]], names,
                    tail_classes=["c4"])
    assert "only-labelled" not in got["per_class"] and "c5" in got["per_class"]
    assert got == {**want, "source": "ground_truth", "n_evaluated": int(held.sum())}
    assert ground_truth_metrics(data, rows, y, best, classes, ["c4"]) == got  # cached codes
