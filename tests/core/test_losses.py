"""Loss and sampler sanity: known identities, the class-balanced formula, and tail recall on IR 100."""

import numpy as np
import pytest
import torch

from core.models import build_model
from core.models.losses import (
    LOSS_REGISTRY,
    build_loss,
    class_balanced_weights,
    ldam_margins,
)
from core.models.samplers import item_weights
from core.project import LOSSES, MLPConfig


def _batch(k=4, n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g), torch.randint(0, k, (n,), generator=g)


def test_logit_adjusted_with_tau_zero_is_cross_entropy():
    logits, target = _batch()
    counts = np.array([500, 50, 5, 1])
    la = build_loss("logit_adjusted", counts, tau=0.0)(logits, target)
    ce = build_loss("ce", counts)(logits, target)
    assert torch.allclose(la, ce, atol=1e-6)
    la1 = build_loss("logit_adjusted", counts, tau=1.0)(logits, target)
    assert not torch.allclose(la1, ce, atol=1e-3)


def test_balanced_softmax_equals_logit_adjustment_at_tau_one():
    logits, target = _batch(seed=1)
    counts = np.array([300, 30, 3, 3])
    bs = build_loss("balanced_softmax", counts)(logits, target)
    la = build_loss("logit_adjusted", counts, tau=1.0)(logits, target)
    assert torch.allclose(bs, la, atol=1e-5)


def test_class_balanced_weights_follow_effective_number():
    counts = np.array([1000, 100, 10, 1])
    beta = 0.99
    raw = (1 - beta) / (1 - beta ** counts.astype(float))
    expected = raw / raw.sum() * len(counts)
    assert np.allclose(class_balanced_weights(counts, beta), expected)
    assert class_balanced_weights(counts, beta).sum() == pytest.approx(4.0)
    assert np.allclose(class_balanced_weights(counts, 0.0), 1.0)


def test_class_balanced_loss_uses_those_weights():
    logits, target = _batch(k=3, n=64, seed=2)
    counts = np.array([100, 10, 1])
    w = torch.tensor(class_balanced_weights(counts, 0.999), dtype=torch.float32)
    per_item = torch.nn.functional.cross_entropy(logits, target, reduction="none") * w[target]
    got = build_loss("class_balanced", counts, beta=0.999)(logits, target)
    assert torch.allclose(got, per_item.mean(), atol=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _batch(seed=3)
    counts = np.array([10, 10, 10, 10])
    assert torch.allclose(build_loss("focal", counts, gamma=0.0)(logits, target),
                          build_loss("ce", counts)(logits, target), atol=1e-6)


def test_ldam_margins_largest_for_rarest_and_drw_switches_weights():
    counts = np.array([625, 16, 1])
    m = ldam_margins(counts)
    assert m.argmax() == 2 and m[0] < m[1] < m[2] and m.max() == pytest.approx(0.5)
    logits, target = _batch(k=3, seed=4)
    loss = build_loss("ldam_drw", counts)
    before = loss(logits, target)
    loss.reweight()
    assert not torch.allclose(before, loss(logits, target))


@pytest.mark.parametrize("name",
                         ["class_balanced", "ldam_drw", "logit_adjusted", "balanced_softmax"])
def test_per_class_terms_are_made_once_and_give_the_same_loss(name):
    """A loss converts its per-class terms to a tensor once per device, not at every step."""
    logits, target = _batch(k=3, seed=5)
    loss = build_loss(name, np.array([90, 9, 1]))
    first = loss(logits, target)
    made = {k: id(v) for k, v in loss._constants.items()}
    assert made and torch.equal(loss(logits, target), first)
    assert {k: id(v) for k, v in loss._constants.items()} == made  # reused, not rebuilt
    loss.to(torch.device("cpu"))  # another device: the terms are made again there
    assert torch.equal(loss(logits, target), first) and len(loss._constants) == 2 * len(made)
    fresh = build_loss(name, np.array([90, 9, 1]))
    assert torch.equal(fresh(logits, target), first)
    other = build_loss(name, np.array([1, 9, 90]))  # other counts: other terms
    assert not torch.equal(other(logits, target), first)


def test_loss_registry_matches_project_names():
    assert tuple(LOSS_REGISTRY) == LOSSES


@pytest.mark.parametrize("sampler, expected_share", [
    ("instance", [0.9, 0.1]), ("class_balanced", [0.5, 0.5]), ("sqrt", [0.75, 0.25]),
    ("riws", [0.1, 0.9]),
])
def test_sampler_class_shares(sampler, expected_share):
    codes = np.array([0] * 9 + [1])  # 9 : 1
    w = item_weights(codes, 2, sampler)
    shares = [w[codes == 0].sum(), w[codes == 1].sum()]
    assert np.allclose(shares, expected_share)


def long_tailed_blobs(seed=0, k=6, n_head=400, ir=100, d=8, spread=2.0):
    """Gaussian classes with counts decaying exponentially from n_head to n_head / ir."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    counts = np.round(n_head * ir ** (-np.arange(k) / (k - 1))).astype(int)
    X = np.concatenate([rng.normal(c, 1.0, size=(n, d)) for c, n in zip(centres, counts)])
    y = np.concatenate([[f"c{i}"] * n for i, n in enumerate(counts)]).astype(object)
    Xt = np.concatenate([rng.normal(c, 1.0, size=(200, d)) for c in centres])
    yt = np.repeat([f"c{i}" for i in range(k)], 200).astype(object)
    return X.astype(np.float32), y, Xt.astype(np.float32), yt, [f"c{i}" for i in range(k - 2, k)]


@pytest.fixture(scope="module")
def long_tail():
    return long_tailed_blobs()


def _tail_recall(loss, data, seed=0, **kw):
    X, y, Xt, yt, tail = data
    model = build_model(MLPConfig(loss=loss, hidden=[64], epochs=150, patience=15, **kw), seed=seed)
    pred = model.fit(X, y).predict(Xt)
    return np.mean([np.mean(pred[yt == c] == c) for c in tail])


@pytest.fixture(scope="module")
def ce_tail_recall(long_tail):
    return _tail_recall("ce", long_tail)


@pytest.mark.parametrize("loss", ["class_balanced", "ldam_drw", "logit_adjusted", "balanced_softmax"])
def test_balanced_losses_beat_cross_entropy_on_the_tail(loss, long_tail, ce_tail_recall):
    assert _tail_recall(loss, long_tail) > ce_tail_recall + 0.05


def test_class_balanced_sampler_beats_instance_sampling_on_the_tail(long_tail, ce_tail_recall):
    assert _tail_recall("ce", long_tail, sampler="class_balanced") > ce_tail_recall + 0.05


# ---------------------------------------------------------------------------- quintuplet
def test_quintuplet_terms_by_hand():
    """1-D embeddings: anchor 0 with a same-cluster item at 1, same-class items of another
    cluster at 2 and 3, another class at 2.5; squared distances 1, 4, 9 and 6.25."""
    from core.models.losses import QuintupletLoss

    emb = torch.tensor([[0.0], [1.0], [2.0], [3.0], [2.5]])
    labels = torch.tensor([0, 0, 0, 0, 1])
    clusters = torch.tensor([0, 0, 1, 1, 2])
    loss = QuintupletLoss(class_margin=0.5, cluster_margin=0.25)
    terms = loss.terms(emb, labels, clusters)
    # anchor 0: p+ = 1, p- = 4, p-- = 9, farthest of its class = 9, nearest other class = 6.25
    # -> relu(0.25 + 1 - 4) = 0, relu(0.25 + 4 - 9) = 0, relu(0.5 + 9 - 6.25) = 3.25
    assert torch.allclose(terms[0], torch.tensor([0.0, 0.0, 3.25]))
    # anchor 1: p+ = 1, p- = 1 (item 2), p-- = 4, farthest = 4, nearest other = 2.25
    # -> relu(0.25 + 1 - 1) = 0.25, relu(0.25 + 1 - 4) = 0, relu(0.5 + 4 - 2.25) = 2.25
    assert torch.allclose(terms[1], torch.tensor([0.25, 0.0, 2.25]))
    # anchor 4 (alone in its class and cluster): only the class term, D(itself) = 0,
    # nearest other class at 0.25 -> relu(0.5 + 0 - 0.25) = 0.25
    assert torch.allclose(terms[4], torch.tensor([0.0, 0.0, 0.25]))
    assert torch.isclose(loss(emb, labels, clusters), terms.sum(dim=1).mean())


def test_quintuplet_is_zero_when_the_margins_hold_and_has_gradients_otherwise():
    from core.models.losses import QuintupletLoss

    labels, clusters = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1])
    apart = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0]])
    assert QuintupletLoss()(apart, labels, clusters).item() == 0.0
    mixed = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.2, 0.0], [1.1, 0.0]], requires_grad=True)
    value = QuintupletLoss()(mixed, labels, clusters)
    value.backward()
    assert value.item() > 0 and torch.isfinite(mixed.grad).all() and mixed.grad.abs().sum() > 0


def test_class_clusters_split_only_populated_classes():
    from core.models.losses import class_clusters

    rng = np.random.default_rng(0)
    head = np.concatenate([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    rare = rng.normal(-5, 0.1, (3, 2))
    emb = np.concatenate([head, rare])
    codes = np.array([0] * 40 + [1] * 3)
    ids = class_clusters(emb, codes, max_per_class=2, min_size=8, seed=0)
    assert len(set(ids[:20])) == 1 and len(set(ids[20:40])) == 1 and ids[0] != ids[20]
    assert set(ids[40:]) == {2}  # the rare class stays one cluster, numbered after the head's
    assert np.array_equal(ids, class_clusters(emb, codes, max_per_class=2, min_size=8, seed=0))


def test_class_balanced_batches_take_every_class_equally():
    from core.models.samplers import ClassBalancedBatches

    codes = np.array([0] * 50 + [1] * 5 + [2] * 1)
    batch = ClassBalancedBatches(codes, per_class=4).draw(torch.Generator().manual_seed(0))
    assert np.bincount(codes[batch.numpy()]).tolist() == [4, 4, 1]
    assert len(set(batch.tolist())) == len(batch)  # no item twice
