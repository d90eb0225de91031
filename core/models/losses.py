"""Imbalance-aware classification losses, selected by the names in ``core.project.LOSSES``.

Every loss is built from the per-class counts of the labelled items and maps
``(logits (b, k), targets (b,))`` to a scalar. References:

* ``class_balanced`` — Cui et al. 2019, weights from the effective number of samples.
* ``focal`` — Lin et al. 2017.
* ``ldam_drw`` — Cao et al. 2019, label-distribution-aware margins plus deferred re-weighting.
* ``logit_adjusted`` — Menon et al. 2021, ``CE(z + tau * log prior)``.
* ``balanced_softmax`` — Ren et al. 2020, ``CE(z + log n_c)`` (the same as ``logit_adjusted`` at
  ``tau = 1``; kept under its own name because users look for it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LDAM_MAX_MARGIN = 0.5
LDAM_SCALE = 2.0  # margins are in logit units times this scale


def class_priors(counts: np.ndarray) -> np.ndarray:
    """Class frequencies ``n_c / n`` (a zero count is floored at one item)."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    return counts / counts.sum()


def class_balanced_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. weights ``(1 - beta) / (1 - beta ** n_c)``, normalised to sum to ``k``."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    if beta <= 0.0:
        raw = np.ones_like(counts)
    else:
        raw = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return raw / raw.sum() * len(counts)


def ldam_margins(counts: np.ndarray, max_margin: float = LDAM_MAX_MARGIN) -> np.ndarray:
    """LDAM margins ``C / n_c ** 0.25`` scaled so the rarest class gets ``max_margin``."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
    m = 1.0 / np.power(counts, 0.25)
    return m * (max_margin / m.max())


def _torch():
    import torch
    import torch.nn.functional as F

    return torch, F


class ImbalanceLoss:
    """Base class: a loss built from class counts. ``reweight()`` starts deferred re-weighting."""

    name = "base"

    def __init__(self, counts: np.ndarray, *, tau: float = 1.0, beta: float = 0.999, gamma: float = 2.0):
        self.counts = np.asarray(counts, dtype=np.float64)
        self.tau = float(tau)
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.device = None
        self._constants: dict = {}

    @property
    def has_deferred_stage(self) -> bool:
        """True when training should run a second, re-weighted stage (LDAM-DRW)."""
        return False

    def reweight(self) -> None:
        """Switch to the deferred, re-weighted stage (no-op for most losses)."""

    def to(self, device) -> ImbalanceLoss:
        self.device = device
        return self

    def _tensor(self, values: np.ndarray):
        torch, _ = _torch()
        return torch.as_tensor(values, dtype=torch.float32, device=self.device)

    def _constant(self, name: str, values: Callable[[], np.ndarray]):
        """``_tensor(values())`` made once per device: the counts, and so the per-class terms,
        never change during a loss's life (a training step then converts nothing)."""
        key = (name, str(self.device))
        if key not in self._constants:
            self._constants[key] = self._tensor(values())
        return self._constants[key]

    def __call__(self, logits, target, sample_weight=None):
        per_item = self.per_item(logits.float(), target)
        if sample_weight is None:
            return per_item.mean()
        return (per_item * sample_weight).sum() / sample_weight.sum().clamp_min(1e-12)

    def per_item(self, logits, target):  # pragma: no cover - abstract
        raise NotImplementedError


class CrossEntropy(ImbalanceLoss):
    """Plain cross-entropy: the baseline every imbalance-aware loss is compared with."""

    name = "ce"

    def per_item(self, logits, target):
        _, F = _torch()
        return F.cross_entropy(logits, target, reduction="none")


class ClassBalancedCE(ImbalanceLoss):
    """Cross-entropy weighted by the inverse effective number of samples per class."""

    name = "class_balanced"

    def per_item(self, logits, target):
        _, F = _torch()
        w = self._constant("weights", lambda: class_balanced_weights(self.counts, self.beta))
        return F.cross_entropy(logits, target, reduction="none") * w[target]


class FocalLoss(ImbalanceLoss):
    """Focal loss ``-(1 - p_t) ** gamma * log p_t``: down-weights easy (mostly head) items."""

    name = "focal"

    def per_item(self, logits, target):
        torch, F = _torch()
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return -torch.pow(1.0 - logp.exp(), self.gamma) * logp


class LDAMDRWLoss(ImbalanceLoss):
    """LDAM margins on the true-class logit; after ``reweight()`` class-balanced weights too."""

    name = "ldam_drw"

    def __init__(self, counts, **kw):
        super().__init__(counts, **kw)
        self._reweighted = False

    @property
    def has_deferred_stage(self) -> bool:
        return True

    def reweight(self) -> None:
        self._reweighted = True

    def per_item(self, logits, target):
        _, F = _torch()
        margins = self._constant("margins", lambda: ldam_margins(self.counts) * LDAM_SCALE)
        shifted = logits.scatter_add(1, target[:, None], -margins[target][:, None])
        loss = F.cross_entropy(shifted, target, reduction="none")
        if self._reweighted:
            loss = loss * self._constant(
                "weights", lambda: class_balanced_weights(self.counts, self.beta))[target]
        return loss


class LogitAdjustedCE(ImbalanceLoss):
    """Cross-entropy on ``z + tau * log prior`` (Menon et al.); ``tau = 0`` is plain CE."""

    name = "logit_adjusted"

    def per_item(self, logits, target):
        _, F = _torch()
        adjust = self._constant("adjust", lambda: self.tau * np.log(class_priors(self.counts)))
        return F.cross_entropy(logits + adjust, target, reduction="none")


class BalancedSoftmaxCE(ImbalanceLoss):
    """Balanced softmax (Ren et al.): cross-entropy on ``z + log n_c``."""

    name = "balanced_softmax"

    def per_item(self, logits, target):
        _, F = _torch()
        adjust = self._constant("adjust", lambda: np.log(np.maximum(self.counts, 1.0)))
        return F.cross_entropy(logits + adjust, target, reduction="none")


LOSS_REGISTRY: dict[str, Callable[..., ImbalanceLoss]] = {
    cls.name: cls
    for cls in (CrossEntropy, ClassBalancedCE, FocalLoss, LDAMDRWLoss, LogitAdjustedCE, BalancedSoftmaxCE)
}


def build_loss(name: str, counts: np.ndarray, *, tau: float = 1.0, beta: float = 0.999,
               gamma: float = 2.0) -> ImbalanceLoss:
    """Build the loss called ``name`` (one of ``core.project.LOSSES``) for these class counts."""
    from core.errors import ModelError

    try:
        cls = LOSS_REGISTRY[name]
    except KeyError:
        raise ModelError(f"loss: unknown loss {name!r}; use one of {', '.join(LOSS_REGISTRY)}") from None
    return cls(counts, tau=tau, beta=beta, gamma=gamma)


# ---------------------------------------------------------------------------- embedding losses
KMEANS_ITERATIONS = 20


def class_clusters(emb: np.ndarray, codes: np.ndarray, *, max_per_class: int, min_size: int,
                   seed: int = 0) -> np.ndarray:
    """Cluster id (unique over classes) of each row: k-means within each class of ``codes``.

    A class of ``n`` items gets ``clamp(n // min_size, 1, max_per_class)`` clusters, so rare
    classes stay whole and only well-populated classes are split into their modes (LMLE's
    cluster-level structure). Deterministic for a seed: k-means++ seeding, then Lloyd steps.
    """
    emb = np.asarray(emb, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    out = np.zeros(len(codes), dtype=np.int64)
    rng = np.random.default_rng(seed)
    next_id = 0
    for c in np.unique(codes):
        rows = np.flatnonzero(codes == c)
        k = int(np.clip(len(rows) // max(min_size, 1), 1, max_per_class))
        out[rows] = next_id + (_kmeans_labels(emb[rows], k, rng) if k > 1 else 0)
        next_id += k
    return out


def _kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Plain k-means on a handful of rows (k-means++ start, a few Lloyd steps)."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = np.min([((x - m) ** 2).sum(axis=1) for m in centres], axis=0)
        total = d2.sum()
        centres.append(x[rng.choice(len(x), p=d2 / total)] if total > 0 else x[rng.integers(len(x))])
    centres = np.array(centres)
    labels = np.zeros(len(x), dtype=np.int64)
    for _ in range(KMEANS_ITERATIONS):
        labels = (((x[:, None, :] - centres[None]) ** 2).sum(axis=2)).argmin(axis=1)
        moved = np.array([x[labels == j].mean(axis=0) if (labels == j).any() else centres[j]
                          for j in range(k)])
        if np.allclose(moved, centres):
            break
        centres = moved
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


class QuintupletLoss:
    """LMLE's triple-header hinge loss (Huang et al. 2016) on a batch of embeddings.

    For each anchor, with squared Euclidean distances ``D``: ``p+`` its farthest neighbour in the
    same cluster, ``p-`` its nearest and ``p--`` its farthest neighbour of the same class in
    another cluster, ``n`` its nearest neighbour of another class. The loss asks
    ``D(p+) + g_cluster < D(p-)``, ``D(p-) + g_cluster < D(p--)`` and
    ``D(farthest same-class) + g_class < D(n)``; the cluster terms count only when the anchor's
    class has another cluster in the batch, the class term only when another class is there.
    Terms are summed per anchor and averaged over anchors.
    """

    def __init__(self, class_margin: float = 0.2, cluster_margin: float = 0.05):
        self.class_margin = float(class_margin)
        self.cluster_margin = float(cluster_margin)

    def terms(self, emb, labels, clusters):
        """``(b, 3)`` hinge values per anchor (cluster, cluster, class); 0 where not defined."""
        torch, F = _torch()
        emb = emb.float()
        sq = (emb * emb).sum(dim=1)
        d = (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0.0)
        eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
        same_class = (labels[:, None] == labels[None, :]) & ~eye
        same_cluster = same_class & (clusters[:, None] == clusters[None, :])
        other_cluster = same_class & ~same_cluster
        other_class = labels[:, None] != labels[None, :]
        inf = torch.tensor(float("inf"), device=emb.device)
        zero = torch.zeros((), device=emb.device)

        def far(mask):  # 0 (the anchor itself) when the mask is empty
            return torch.where(mask, d, zero).amax(dim=1)

        def near(mask):
            return torch.where(mask, d, inf).amin(dim=1)

        has_other_cluster = other_cluster.any(dim=1)
        has_other_class = other_class.any(dim=1)
        p_plus, p_minus, p_far = far(same_cluster), near(other_cluster), far(other_cluster)
        negative = near(other_class)
        g_k, g_c = self.cluster_margin, self.class_margin
        p_minus = torch.where(has_other_cluster, p_minus, zero)  # no inf into the gradient
        negative = torch.where(has_other_class, negative, zero)
        t1 = torch.where(has_other_cluster, F.relu(g_k + p_plus - p_minus), zero)
        t2 = torch.where(has_other_cluster, F.relu(g_k + p_minus - p_far), zero)
        t3 = torch.where(has_other_class, F.relu(g_c + far(same_class) - negative), zero)
        return torch.stack([t1, t2, t3], dim=1)

    def __call__(self, emb, labels, clusters):
        return self.terms(emb, labels, clusters).sum(dim=1).mean()
