"""Self-supervised encoder trained on the whole unlabelled pool (no labels needed).

* Tables: a denoising autoencoder MLP. Inputs are standardised, corrupted with Gaussian noise and
  random feature masking, and the network learns to reconstruct the clean row; the bottleneck
  (``config.dim``) is the embedding.
* Small images: a convolutional autoencoder on 32x32 grey images with the same denoising trick.

Training is seeded (weights, noise, batch order) so a given seed always gives the same embedding
on the CPU; ``config.epochs`` and ``config.batch_size`` bound the cost.
"""

from __future__ import annotations

import numpy as np

from core.data.base import Dataset
from core.device import autocast_for, select_device
from core.embed.images import image_batch
from core.embed.tabular import standardise
from core.project import EncoderConfig

IMAGE_SIDE = 32
NOISE_STD = 0.3
MASK_RATE = 0.15
LEARNING_RATE = 2e-3


def _table_autoencoder(n_in: int, dim: int):
    from torch import nn

    hidden = max(dim * 2, min(512, n_in * 2))
    enc = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, dim))
    dec = nn.Sequential(nn.ReLU(), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_in))
    return enc, dec


def _image_autoencoder(dim: int):
    from torch import nn

    enc = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),   # 16x16
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),  # 8x8
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 4x4
        nn.Flatten(), nn.Linear(64 * 4 * 4, dim),
    )
    dec = nn.Sequential(
        nn.ReLU(), nn.Linear(dim, 64 * 4 * 4), nn.Unflatten(1, (64, 4, 4)), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
    )
    return enc, dec


class SelfSupervisedEncoder:
    """Denoising autoencoder (MLP for tables, small CNN for images) fitted on every item."""

    name = "self-supervised"
    uses_seed = True

    def settings(self, config: EncoderConfig) -> dict:
        return {"kind": self.name, "dim": config.dim, "epochs": config.epochs,
                "batch_size": config.batch_size, "version": 1}

    def encode(self, dataset: Dataset, config: EncoderConfig, *, seed: int, progress=None,
               model=None) -> np.ndarray:
        import torch

        is_image = dataset.images is not None
        if is_image:
            x = image_batch(np.asarray(dataset.images), IMAGE_SIDE, channels=1, imagenet=False)
            x = (x - 0.5) / 0.5
        else:
            x = torch.as_tensor(standardise(dataset.features))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if is_image:
                enc, dec = _image_autoencoder(config.dim)
            else:
                enc, dec = _table_autoencoder(x.shape[1], config.dim)
            return _train_and_encode(enc, dec, x, config, seed=seed, progress=progress)


def _train_and_encode(enc, dec, x, config: EncoderConfig, *, seed: int, progress) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    device = select_device("auto")
    enc, dec = enc.to(device), dec.to(device)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(list(enc.parameters()) + list(dec.parameters()), lr=LEARNING_RATE,
                            weight_decay=1e-5)
    n = len(x)
    batch = min(config.batch_size, n)
    for epoch in range(config.epochs):
        enc.train(), dec.train()
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch):
            clean = x[order[start:start + batch]]
            noise = torch.randn(clean.shape, generator=gen) * NOISE_STD
            keep = (torch.rand(clean.shape, generator=gen) >= MASK_RATE).to(clean.dtype)
            noisy = ((clean + noise) * keep).to(device)
            with autocast_for(device):
                recon = dec(enc(noisy))
            loss = F.mse_loss(recon.float(), clean.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress is not None:
            progress(epoch + 1, config.epochs, "training self-supervised encoder")
    enc.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, n, 4096):
            out.append(enc(x[start:start + 4096].to(device)).float().cpu().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
