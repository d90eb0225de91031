"""Mini-batch samplers, selected by the names in ``core.project.SAMPLERS``.

Each sampler gives every class a share of the draws proportional to ``n_c ** q``:

* ``instance`` (q = 1): every item equally likely, the data's own imbalance.
* ``sqrt`` (q = 1/2): square-root sampling (Mahajan et al. 2018), a middle way.
* ``class_balanced`` (q = 0): every class equally likely (Kang et al. 2020).
* ``riws`` (q = -1): reverse-imbalance weighted sampling: the rarer the class the more it is drawn
  (the reversed sampler of BBN, Zhou et al. 2020).
"""

from __future__ import annotations

import numpy as np

from core.errors import ModelError

SAMPLER_EXPONENTS: dict[str, float] = {"instance": 1.0, "class_balanced": 0.0, "sqrt": 0.5, "riws": -1.0}


def sampled_class_shares(counts: np.ndarray, sampler: str) -> np.ndarray:
    """Share of the draws each class gets under ``sampler`` (``n_c ** q``, normalised)."""
    try:
        q = SAMPLER_EXPONENTS[sampler]
    except KeyError:
        raise ModelError(
            f"sampler: unknown sampler {sampler!r}; use one of {', '.join(SAMPLER_EXPONENTS)}"
        ) from None
    counts = np.asarray(counts, dtype=np.float64)
    share = np.zeros(len(counts))
    present = counts > 0
    share[present] = np.power(counts[present], q)
    return share / share.sum()


def item_weights(codes: np.ndarray, n_classes: int, sampler: str) -> np.ndarray:
    """Per-item draw probabilities (summing to one) for ``sampler``."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    class_share = sampled_class_shares(counts, sampler)
    w = class_share[codes] / counts[codes]
    return w / w.sum()


def epoch_indices(weights: np.ndarray, generator, *, uniform: bool, n_draws: int | None = None):
    """Indices of one epoch (``n_draws``, default ``len(weights)``, as a torch tensor).

    ``uniform`` gives back-to-back random permutations (every item once per pass); otherwise items
    are drawn with replacement according to ``weights``.
    """
    import torch

    n = len(weights)
    n_draws = n if n_draws is None else int(n_draws)
    if uniform:
        passes = -(-n_draws // n)
        return torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])[:n_draws]
    w = torch.as_tensor(weights, dtype=torch.float64)
    return torch.multinomial(w, n_draws, replacement=True, generator=generator)



class ClassBalancedBatches:
    """Batches with ``min(per_class, n_c)`` items of every class, drawn without replacement:
    the class-balanced batches of the quintuplet loss (``draw`` gives indices into ``codes``)."""

    def __init__(self, codes: np.ndarray, per_class: int):
        import torch

        codes = np.asarray(codes)
        self.per_class = int(per_class)
        self.members = [torch.as_tensor(np.flatnonzero(codes == c)) for c in np.unique(codes)]

    def draw(self, generator):
        import torch

        return torch.cat([m[torch.randperm(len(m), generator=generator)[:self.per_class]]
                          for m in self.members])
