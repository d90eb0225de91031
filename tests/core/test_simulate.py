"""``core.simulate`` and ``tailwise simulate`` on the digits-LT demo."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.cli import app
from core.data.demos import build_demo
from core.errors import ConfigError
from core.project import LogisticConfig
from core.simulate import simulate


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory):
    demo = build_demo("digits-lt", seed=0)
    feats = demo.images.reshape(len(demo.ids), -1).astype(np.float32) / 255.0
    frame = pd.DataFrame(feats, columns=[f"px{i}" for i in range(feats.shape[1])])
    frame.insert(0, "item", demo.ids.astype(str))
    frame["digit"] = demo.labels.astype(str)
    path = tmp_path_factory.mktemp("digits") / "digits.csv"
    frame.to_csv(path, index=False)
    return path, len(set(demo.labels.tolist()))


def check_outputs(out, n_classes, budget):
    curve = pd.read_csv(out / "curve.csv")
    assert list(curve.columns[:6]) == [
        "round",
        "labels",
        "balanced_accuracy",
        "macro_f1",
        "tail_recall",
        "classes_found",
    ]
    assert curve["labels"].is_monotonic_increasing and curve["labels"].iloc[-1] == budget
    assert curve["round"].tolist() == list(range(len(curve)))
    for col in ("balanced_accuracy", "macro_f1", "tail_recall"):
        assert curve[col].between(0, 1).all()
    assert curve["classes_found"].is_monotonic_increasing
    assert curve["classes_found"].max() <= n_classes
    assert (curve["seconds_select"] >= 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_classes"] == n_classes and summary["budget"] == budget
    assert 0 <= summary["auc_balanced_accuracy"] <= 1
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return curve, summary


def test_cli_simulate_on_a_csv(digits_csv, tmp_path):
    path, n_classes = digits_csv
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--data",
            str(path),
            "--id-column",
            "item",
            "--label-column",
            "digit",
            "--strategy",
            "auto",
            "--budget",
            "50",
            "--batch",
            "10",
            "--seed",
            "3",
            "--out",
            str(out),
            "--model",
            "logistic",
            "--cold-start",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "balanced accuracy" in result.output
    curve, summary = check_outputs(out, n_classes, 50)
    assert len(curve) == 5  # 10, 20, ..., 50 labels
    assert summary["strategy"] == "auto" and "strategy_state" in summary
    # auto learns something: better than chance at the end
    assert curve["balanced_accuracy"].iloc[-1] > 1.5 / n_classes


def test_cli_simulate_from_a_demo_project(tmp_path):
    from core.data import make_demo

    project = make_demo("digits-lt", tmp_path / "demo")
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--project",
            str(project),
            "--strategy",
            "margin",
            "--model",
            "logistic",
            "--budget",
            "30",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    check_outputs(out, 10, 30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label-column", "nope"], "nope"),
        (["--label-column", "digit", "--features", "px0,bogus"], "bogus"),
        (["--label-column", "digit", "--strategy", "clever"], "unknown strategy 'clever'"),
        ([], "--label-column"),
        (["--label-column", "digit", "--noise", "1.0"], "--noise"),
        (["--label-column", "digit", "--noise", "-0.2"], "[0, 1)"),
        (["--label-column", "digit", "--noise", "0.1", "--noise-mode", "odd"], "--noise-mode"),
    ],
)
def test_cli_simulate_reports_bad_input(digits_csv, tmp_path, args, message):
    path, _ = digits_csv
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--data",
            str(path),
            "--id-column",
            "item",
            "--budget",
            "20",
            "--out",
            str(tmp_path / "x"),
            *args,
        ],
    )
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_simulate_needs_data_or_project(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--data" in result.output


def test_simulate_is_deterministic_and_respects_the_budget():
    demo = build_demo("digits-lt", seed=1)
    x = demo.images.reshape(len(demo.ids), -1).astype(np.float32)
    runs = [
        simulate(
            x,
            demo.labels,
            demo.ids,
            strategy="class_balanced_margin",
            budget=40,
            batch=7,
            seed=5,
            cold_start=5,
        )
        for _ in range(2)
    ]
    assert runs[0].curve == [
        dict(
            r,
            seconds_train=runs[0].curve[i]["seconds_train"],
            seconds_select=runs[0].curve[i]["seconds_select"],
        )
        for i, r in enumerate(runs[1].curve)
    ]
    assert runs[0].labelled_ids == runs[1].labelled_ids
    labels = [r["labels"] for r in runs[0].curve]
    assert labels == [5, 12, 19, 26, 33, 40]
    assert len(set(runs[0].labelled_ids)) == 40
    with pytest.raises(ConfigError, match="batch"):
        simulate(x, demo.labels, strategy="random", batch=0)


def test_a_simulation_without_held_out_items_or_with_an_unknown_target_class_is_refused():
    x, y = _axis_aligned(0)
    with pytest.raises(ConfigError, match="no item is held out for evaluation"):
        simulate(x, y, strategy="random", budget=20, test_fraction=0.0)
    with pytest.raises(ConfigError, match="no item is held out"):
        simulate(x, y, strategy="random", budget=20, test_rows=np.zeros(0, dtype=np.int64))
    with pytest.raises(ConfigError, match=r"target_class 'e' is not a class.*'a', 'b', 'c', 'd'"):
        simulate(x, y, strategy="target_class", budget=20, target_class="e")


@pytest.mark.parametrize("model", ["auto", "mlp", "logistic", "random_forest", "gradient_boosting",
                                   "cluster_knn"])
def test_cli_simulate_takes_every_learner_and_auto_by_default(digits_csv, tmp_path, model):
    path, n_classes = digits_csv
    out = tmp_path / "run"
    args = ["simulate", "--data", str(path), "--id-column", "item", "--label-column", "digit",
            "--strategy", "margin", "--budget", "40", "--out", str(out)]
    if model != "auto":
        args += ["--model", model]  # auto is the default, also with --data
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    curve, summary = check_outputs(out, n_classes, 40)
    assert summary["model"] == model
    if model == "auto":
        choice = summary["model_choice"]
        assert choice["chosen"] in {"mlp", "logistic", "random_forest", "gradient_boosting"}
        assert set(choice["candidates"]) == {"mlp", "logistic", "random_forest", "gradient_boosting"}
        assert choice["reason"] and f"learner: {choice['reason']}" in result.output
        assert curve["learner"].iloc[-1] == choice["chosen"]
    else:
        assert summary["model_choice"] is None and set(curve["learner"]) == {model}


def _axis_aligned(seed: int, n: int = 240, d: int = 12):
    """Classes cut by thresholds on three of twelve uniform features: trees' home ground."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, d)).astype(np.float32)
    y = np.where(x[:, 0] > 0.6, "a", np.where(x[:, 1] > 0.5, "b", np.where(x[:, 2] > 0.7, "c", "d")))
    return x, y.astype(object)


def _rotated_gaussians(seed: int, n: int = 240, d: int = 12):
    """Gaussian classes with a shared covariance, randomly rotated: linear boundaries that no
    single feature draws."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    means = rng.normal(size=(3, d)) * 1.2
    y = rng.integers(0, 3, n)
    x = (means[y] + rng.normal(size=(n, d))) @ q
    return x.astype(np.float32), np.array([f"c{v}" for v in y], dtype=object)


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_picks_trees_on_axis_aligned_data_and_smooth_learners_on_rotated_gaussians(seed):
    from core.models import build_model
    from core.project import AutoConfig, MLPConfig

    config = AutoConfig(mlp=MLPConfig(epochs=60, device="cpu"))
    trees = build_model(config, seed=seed).fit(*_axis_aligned(seed))
    assert trees.choice_.chosen in {"random_forest", "gradient_boosting"}, trees.choice_.reason
    smooth = build_model(config, seed=seed).fit(*_rotated_gaussians(seed))
    assert smooth.choice_.chosen in {"logistic", "mlp"}, smooth.choice_.reason
    for model in (trees, smooth):
        scores = model.choice_.candidates
        assert scores[model.choice_.chosen] == max(scores.values())


@pytest.mark.parametrize("mode", ["uniform", "class"])
def test_cli_simulate_with_a_noisy_oracle_records_the_rate(digits_csv, tmp_path, mode):
    path, n_classes = digits_csv
    out = tmp_path / "noisy"
    result = CliRunner().invoke(app, [
        "simulate", "--data", str(path), "--id-column", "item", "--label-column", "digit",
        "--strategy", "random", "--budget", "60", "--batch", "20", "--seed", "1", "--model",
        "logistic", "--noise", "0.2", "--noise-mode", mode, "--out", str(out)])
    assert result.exit_code == 0, result.output
    _, summary = check_outputs(out, n_classes, 60)
    assert summary["noise"] == 0.2 and summary["noise_mode"] == mode
    assert 3 <= summary["n_flipped"] <= 25  # about 12 of 60 answers wrong
    assert f"{summary['n_flipped']} of 60 oracle answers flipped" in result.output


def test_noise_flips_the_oracle_answers_and_leaves_the_rest_of_the_run_alone():
    demo = build_demo("digits-lt", seed=1)
    x = demo.images.reshape(len(demo.ids), -1).astype(np.float32)
    kw = dict(strategy="random", budget=60, batch=20, seed=2, cold_start=20,
              model=LogisticConfig())
    clean = simulate(x, demo.labels, demo.ids, **kw)
    noisy = simulate(x, demo.labels, demo.ids, noise=0.3, **kw)
    assert clean.labelled_ids == noisy.labelled_ids  # random picks: the same items asked
    truth = dict(zip(demo.ids.astype(str).tolist(), demo.labels.astype(str).tolist()))
    wrong = [i for i, given in zip(noisy.labelled_ids, noisy.labels_given) if given != truth[i]]
    assert len(wrong) == noisy.summary["n_flipped"] > 5
    assert clean.summary["noise"] == 0.0 and clean.summary["n_flipped"] == 0
    assert all(given == truth[i] for i, given in zip(clean.labelled_ids, clean.labels_given))


def test_simulate_records_stopping_guidance_every_round():
    demo = build_demo("digits-lt", seed=1)
    x = demo.images.reshape(len(demo.ids), -1).astype(np.float32)
    res = simulate(x, demo.labels, demo.ids, strategy="random", budget=60, batch=20, seed=2,
                   cold_start=20, model=LogisticConfig())
    rounds = res.summary["stopping"]
    assert [r["labels"] for r in rounds] == [r["labels"] for r in res.curve]
    assert rounds[0]["prediction_change"] is None
    assert all(0.0 <= r["prediction_change"] <= 1.0 for r in rounds[1:])
    watched = res.summary["stopping_classes"]
    assert watched == res.summary["tail_classes"]
    for r in rounds:
        assert r["advice"] in ("continue", "diminishing") and r["text"]
        assert r["rare_unfound"] >= 0 and "_predicted" not in r
        if r["rare_in_pool"] is not None:
            assert r["rare_in_pool"]["low"] <= r["rare_in_pool"]["estimate"] <= r["rare_in_pool"]["high"]
    # the true rare items left shrink as labels are given (random picks: some are rare)
    assert rounds[-1]["rare_unfound"] <= rounds[0]["rare_unfound"]
    json.dumps(res.summary)  # summary.json takes it as is
