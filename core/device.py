"""Choose the torch device a model or encoder runs on.

``auto`` takes CUDA when PyTorch sees a GPU and the CPU otherwise; asking for ``cuda`` on a machine
without one is a :class:`~core.errors.ModelError` rather than a crash deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Literal

from core.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

DevicePreference = Literal["auto", "cpu", "cuda"]
DEVICE_PREFERENCES: tuple[str, ...] = ("auto", "cpu", "cuda")


def select_device(pref: str = "auto") -> torch.device:
    """Return the ``torch.device`` for a preference ``'auto'``, ``'cpu'`` or ``'cuda'``."""
    import torch

    if pref not in DEVICE_PREFERENCES:
        raise ModelError(
            f"device: unknown preference {pref!r}; use one of {', '.join(DEVICE_PREFERENCES)}"
        )
    if pref == "cpu":
        return torch.device("cpu")
    has_cuda = bool(torch.cuda.is_available())
    if pref == "cuda" and not has_cuda:
        raise ModelError(
            "device: 'cuda' was asked for but PyTorch sees no CUDA GPU on this machine; "
            "set device to 'auto' or 'cpu', or install a CUDA build of torch"
        )
    return torch.device("cuda") if has_cuda else torch.device("cpu")


@contextmanager
def cpu_threads(device: torch.device, n: int = 1) -> Iterator[None]:
    """Run torch with ``n`` intra-op threads on the CPU (restored afterwards); no-op on CUDA.

    Small models are overhead-bound: one thread is as fast as two, far faster on a busy machine,
    and makes results independent of the machine's thread setting (reductions split across
    threads round differently).
    """
    import torch

    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast_for(device: torch.device) -> AbstractContextManager:
    """Mixed precision (bfloat16 autocast) on CUDA; a no-op context on the CPU."""
    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()
