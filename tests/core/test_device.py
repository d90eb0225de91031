"""Device selection: auto/cpu/cuda with and without a GPU (CUDA presence monkeypatched)."""

import pytest
import torch

from core.device import autocast_for, select_device
from core.errors import ModelError


@pytest.mark.parametrize("has_cuda, pref, expected", [
    (False, "auto", "cpu"),
    (True, "auto", "cuda"),
    (True, "cpu", "cpu"),
    (False, "cpu", "cpu"),
    (True, "cuda", "cuda"),
])
def test_select_device(monkeypatch, has_cuda, pref, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: has_cuda)
    assert select_device(pref).type == expected


def test_cuda_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="no CUDA GPU"):
        select_device("cuda")


def test_unknown_preference_names_the_choices():
    with pytest.raises(ModelError, match="auto, cpu, cuda"):
        select_device("tpu")


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_only_on_cuda():
    ctx = autocast_for(torch.device("cpu"))
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
    assert isinstance(autocast_for(torch.device("cuda")), torch.autocast)


def test_mlp_asking_for_missing_cuda_fails_before_training(monkeypatch):
    import numpy as np

    from core.models import build_model
    from core.project import MLPConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ModelError, match="no CUDA GPU"):
        build_model(MLPConfig(device="cuda")).fit(X, np.array(["a", "b", "a", "b"], dtype=object))


def test_cpu_threads_sets_and_restores():
    from core.device import cpu_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with cpu_threads(torch.device("cpu"), 1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with cpu_threads(torch.device("cuda"), 1):  # no-op off the CPU
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
