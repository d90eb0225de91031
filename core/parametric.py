"""Projectors: functions from an embedding to 2-D map coordinates that can be saved and shipped.

:class:`ParametricMap` is a small torch network trained to reproduce a fitted map (UMAP on a
sample); :class:`LinearMap` is the PCA map.

UMAP is fitted on a sample of the pool (tens of seconds); the network then learns the sample's
``embedding -> (x, y)`` mapping and places every other item in batches: about a second per
10^6 rows of a 64-d embedding on one core, with memory bounded by the batch. Because it is a
function of the embedding alone, items added later land where their neighbours are, and the same
weights place the rows of a Parquet partition on any Dask worker (``core.scoring``).

The weights are plain arrays (``state()`` / ``from_state``, or safetensors bytes), never pickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from core.errors import DataError

Progress = Callable[[int, int, str], None]

HIDDEN = 256
STEPS = 1500
BATCH = 512
LEARNING_RATE = 3e-3
APPLY_CHUNK = 65_536


def _one_thread():
    """Torch on one CPU thread: a row's position must not depend on the machine's thread count."""
    import torch

    from core.device import cpu_threads

    return cpu_threads(torch.device("cpu"), 1)


def _network(n_in: int, hidden: int):
    from torch import nn

    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 2))


class ParametricMap:
    """``embedding (n, d) -> map coordinates (n, 2)`` learned from a fitted sample.

    ``fit(x, xy)`` regresses the (centred, scaled) coordinates on the (standardised) embedding
    with a two-hidden-layer ReLU network, ``steps`` Adam steps on random batches (one-cycle
    learning rate), seeded. ``transform`` applies it in chunks on one CPU thread, so a row's
    position does not depend on the chunk or the machine it is computed on.
    """

    def __init__(self, hidden: int = HIDDEN, steps: int = STEPS, seed: int = 0) -> None:
        self.hidden = hidden
        self.steps = steps
        self.seed = seed

    # ------------------------------------------------------------------ fit / apply
    def fit(self, x: np.ndarray, xy: np.ndarray, progress: Progress | None = None) -> ParametricMap:
        """Learn the map from ``x (m, d)`` to its fitted coordinates ``xy (m, 2)``."""
        import torch

        x = np.asarray(x, dtype=np.float32)
        xy = np.asarray(xy, dtype=np.float32)
        if x.ndim != 2 or xy.shape != (len(x), 2) or len(x) < 2:
            raise DataError(f"parametric map: need (m, d) inputs and (m, 2) targets, got {x.shape} "
                            f"and {xy.shape}")
        self.mean_ = x.mean(axis=0)
        self.scale_ = np.where(x.std(axis=0) > 1e-6, x.std(axis=0), 1.0).astype(np.float32)
        self.centre_ = xy.mean(axis=0)
        self.spread_ = np.float32(max(float(xy.std()), 1e-6))
        inputs = torch.as_tensor((x - self.mean_) / self.scale_)
        targets = torch.as_tensor((xy - self.centre_) / self.spread_)
        with torch.random.fork_rng(devices=[]), _one_thread():
            torch.manual_seed(self.seed)
            net = _network(x.shape[1], self.hidden)
            opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE,
                                                        total_steps=self.steps)
            gen = torch.Generator().manual_seed(self.seed)
            batch = min(BATCH, len(x))
            report_every = max(1, self.steps // 20)
            for step in range(self.steps):
                idx = torch.randint(0, len(x), (batch,), generator=gen)
                loss = torch.nn.functional.mse_loss(net(inputs[idx]), targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if progress is not None and (step + 1) % report_every == 0:
                    progress(step + 1, self.steps, "training the parametric map")
        self.network_ = net.eval()
        return self

    def transform(self, x: np.ndarray, chunk: int = APPLY_CHUNK,
                  progress: Progress | None = None) -> np.ndarray:
        """Map coordinates of ``x (n, d)`` as float32 ``(n, 2)``, computed ``chunk`` rows at a time."""
        import torch

        if not hasattr(self, "network_"):
            raise DataError("parametric map: not fitted; call fit(x, xy) first")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != len(self.mean_):
            raise DataError(f"parametric map: expected {len(self.mean_)} columns, got shape {x.shape}")
        out = np.empty((len(x), 2), dtype=np.float32)
        with torch.no_grad(), _one_thread():
            for start in range(0, len(x), chunk):
                block = (np.asarray(x[start:start + chunk], dtype=np.float32) - self.mean_) / self.scale_
                out[start:start + chunk] = self.network_(torch.as_tensor(block)).numpy()
                if progress is not None:
                    progress(min(start + chunk, len(x)), len(x), "placing items on the map")
        out *= self.spread_
        out += self.centre_
        return out

    # ------------------------------------------------------------------ persistence (no pickle)
    def state(self) -> dict[str, np.ndarray]:
        """Every learned array, for safetensors."""
        tensors = {f"network.{k}": v.detach().cpu().numpy()
                   for k, v in self.network_.state_dict().items()}
        tensors.update(mean=self.mean_, scale=self.scale_, centre=self.centre_,
                       spread=np.asarray([self.spread_], dtype=np.float32),
                       hidden=np.asarray([self.hidden], dtype=np.int64))
        return tensors

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray]) -> ParametricMap:
        """Rebuild a fitted map from :meth:`state`."""
        import torch

        try:
            model = cls(hidden=int(tensors["hidden"][0]))
            model.mean_ = np.asarray(tensors["mean"], dtype=np.float32)
            model.scale_ = np.asarray(tensors["scale"], dtype=np.float32)
            model.centre_ = np.asarray(tensors["centre"], dtype=np.float32)
            model.spread_ = np.float32(tensors["spread"][0])
            net = _network(len(model.mean_), model.hidden)
            net.load_state_dict({k[len("network."):]: torch.as_tensor(v)
                                 for k, v in tensors.items() if k.startswith("network.")})
        except (KeyError, RuntimeError, IndexError) as err:
            raise DataError(f"parametric map: the saved weights are incomplete or do not match ({err})"
                            ) from None
        model.network_ = net.eval()
        return model

    def to_bytes(self) -> bytes:
        """The weights as safetensors bytes (what a Dask worker receives)."""
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in self.state().items()})




class LinearMap:
    """The PCA map: ``(x - mean) @ components.T``, signs fixed so the picture never flips."""

    FIT_ROWS = 50_000

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean_ = np.asarray(mean, dtype=np.float32)
        self.components_ = np.asarray(components, dtype=np.float32)

    @classmethod
    def fit(cls, x: np.ndarray) -> LinearMap:
        """Principal axes of (at most ``FIT_ROWS`` leading rows of) ``x``."""
        x = np.asarray(x, dtype=np.float32)
        mean = x.mean(axis=0)
        if x.shape[1] < 2:
            return cls(mean, np.array([[1.0], [0.0]], dtype=np.float32))
        head = x[: cls.FIT_ROWS] - mean
        _, _, vt = np.linalg.svd(head, full_matrices=False)
        components = vt[:2].copy()
        xy = head @ components.T
        # A fixed sign convention keeps the picture from flipping between runs.
        components *= np.sign(xy[np.abs(xy).argmax(axis=0), [0, 1]])[:, None]
        return cls(mean, components)

    def transform(self, x: np.ndarray, chunk: int = APPLY_CHUNK,
                  progress: Progress | None = None) -> np.ndarray:
        x = np.asarray(x)
        out = np.empty((len(x), 2), dtype=np.float32)
        for start in range(0, len(x), chunk):
            block = np.asarray(x[start:start + chunk], dtype=np.float32) - self.mean_
            out[start:start + chunk] = block @ self.components_.T
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "components": self.components_}

    @classmethod
    def from_state(cls, tensors: dict[str, np.ndarray]) -> LinearMap:
        try:
            return cls(tensors["mean"], tensors["components"])
        except KeyError as err:
            raise DataError(f"linear map: the saved arrays lack {err.args[0]!r}") from None

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in self.state().items()})


class Projector(Protocol):
    """What the map and the Dask workers need from a projector."""

    def transform(self, x: np.ndarray, chunk: int = APPLY_CHUNK,
                  progress: Progress | None = None) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...

    def to_bytes(self) -> bytes: ...


def projector_from_state(tensors: dict[str, np.ndarray]) -> Projector:
    """A :class:`LinearMap` or :class:`ParametricMap` from its saved arrays."""
    if "components" in tensors:
        return LinearMap.from_state(tensors)
    return ParametricMap.from_state(tensors)


def projector_from_bytes(data: bytes) -> Projector:
    """:func:`projector_from_state` of safetensors bytes."""
    from safetensors.numpy import load

    return projector_from_state(load(data))
