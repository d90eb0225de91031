"""Turning the dataset's uint8 images into normalised float tensors, in batches."""

from __future__ import annotations

import numpy as np

from core.data.base import Dataset
from core.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_images(dataset: Dataset, encoder: str) -> np.ndarray:
    """The dataset's images, or a ``ConfigError`` telling the user to pick another encoder."""
    if dataset.images is None:
        raise ConfigError(
            f"encoder.kind: {encoder!r} needs image data but data set {dataset.name!r} has no images; "
            "use encoder kind 'tabular' (or 'self-supervised') for tables"
        )
    images = np.asarray(dataset.images)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise ConfigError(f"data: images must be (n, h, w) or (n, h, w, 3), got shape {images.shape}")
    return images


def image_batch(images: np.ndarray, size: int, *, channels: int = 3, imagenet: bool = True):
    """A float tensor ``(b, channels, size, size)``: grey repeated to RGB, resized, normalised."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.ascontiguousarray(images)).float().div_(255.0)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if imagenet:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()
