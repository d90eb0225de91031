"""The imbalance-aware PyTorch MLP head trained on embeddings.

Training (``fit``) runs in up to three stages, each a loss + sampler + the parameters it trains:

1. the main stage with ``config.loss`` and ``config.sampler``;
2. for ``ldam_drw``, a deferred stage with class-balanced re-weighting switched on;
3. with ``config.crt``, classifier re-training: a fresh last layer trained on class-balanced batches
   with the body frozen (Kang et al. 2020).

When every class has at least two labelled items, a stratified share is held out: each stage stops
early on the held-out *class-balanced* loss, and a temperature is fitted on it so probabilities are
calibrated. The last stage then runs a short fine-tune on *all* labelled items (a quarter of its
epochs, at least two), so the rare classes lose no item to the held-out split. With fewer labels
the stages run for ``config.epochs`` and the temperature stays 1.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.device import autocast_for, cpu_threads, select_device
from core.errors import ModelError
from core.models.base import TailwiseModel, softmax
from core.models.calibration import fit_temperature
from core.models.losses import (
    CrossEntropy,
    ImbalanceLoss,
    QuintupletLoss,
    build_loss,
    class_clusters,
)
from core.models.samplers import (
    ClassBalancedBatches,
    epoch_indices,
    item_weights,
    sampled_class_shares,
)
from core.models.validation import check_features, check_labels, column_stats
from core.project import MLPConfig

REBALANCING_LOSSES = frozenset({"class_balanced", "logit_adjusted", "balanced_softmax"})
VALIDATION_SHARE = 0.2
MIN_ITEMS_FOR_VALIDATION = 20
PREDICT_CHUNK = 8192
# Threads that share a pool's chunks when predicting on the CPU (each with one torch thread).
PREDICT_WORKERS = min(2, os.cpu_count() or 1)
PSEUDO_LABEL_THRESHOLD = 0.9
MIN_STEPS_PER_EPOCH = 5  # so a handful of labels still gets enough optimiser steps
FINETUNE_SHARE, MIN_FINETUNE_EPOCHS = 0.25, 2  # fine-tune on all items after the held-out stage
MIN_IMPROVEMENT = 1e-3  # relative drop of the held-out loss that resets early-stopping patience


@dataclass
class _Stage:
    name: str
    loss: ImbalanceLoss
    sampler: str
    head_only: bool = False
    reinit_head: bool = False
    reweight: bool = False
    max_epochs: int = 100


def _build_network(n_in: int, hidden: list[int], n_out: int, dropout: float):
    from torch import nn

    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    net = nn.Module()
    net.body = nn.Sequential(*layers)
    net.head = nn.Linear(width, n_out)
    return net


def _inference_body(net, x):
    """``net.body(x)`` without autograd (under ``torch.no_grad``): the ReLUs work in place, so
    a pool chunk allocates no second activation buffer (same values, ~25 % faster on the CPU)."""
    import torch
    from torch import nn

    for layer in net.body:
        x = torch.relu_(x) if isinstance(layer, nn.ReLU) else layer(x)
    return x


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean length (all-zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class _Quintuplets:
    """The quintuplet term of a training stage: class-balanced batches of the training items and
    their clusters within each class, recomputed on the current embedding by ``refresh``."""

    def __init__(self, cfg: MLPConfig, codes: np.ndarray, batch: int, seed: int):
        self.cfg, self.codes, self.seed = cfg, np.asarray(codes), seed
        n_classes = len(np.unique(self.codes))
        self.batches = ClassBalancedBatches(self.codes, per_class=max(2, batch // n_classes))
        self.criterion = QuintupletLoss(cfg.class_margin, cfg.cluster_margin)
        self.clusters = None
        self.refreshes = 0

    def refresh(self, net, X_train) -> None:
        """k-means within each class on the current (unit-length) embedding of the items."""
        import torch

        net.eval()
        with torch.no_grad():
            emb = unit_rows(net.body(X_train).float().cpu().numpy())
        ids = class_clusters(emb, self.codes, max_per_class=self.cfg.clusters_per_class,
                             min_size=self.cfg.min_cluster_size, seed=self.seed + self.refreshes)
        self.clusters = torch.as_tensor(ids, device=X_train.device)
        self.refreshes += 1

    def loss(self, net, X_t, y_t, train_t, gen):
        import torch.nn.functional as F

        pick = self.batches.draw(gen).to(train_t.device)
        rows = train_t[pick]
        with autocast_for(X_t.device):
            emb = net.body(X_t[rows])
        emb = F.normalize(emb.float(), dim=1)
        return self.cfg.embedding_weight * self.criterion(emb, y_t[rows], self.clusters[pick])


class MLPClassifier(TailwiseModel):
    """PyTorch MLP head with an imbalance-aware loss, sampler, cRT and temperature scaling.

    Parameters
    ----------
    config : MLPConfig, optional
        Loss, sampler, architecture and training settings (defaults: ``MLPConfig()``).
    seed : int
        Seeds weight initialisation, dropout, batch sampling and the held-out split.
    """

    kind = "mlp"
    config_class = MLPConfig

    # ================================================================== fit
    def fit(self, X, y, X_unlabelled=None) -> MLPClassifier:
        """Train on labelled ``X, y``; ``X_unlabelled`` feeds scaling and optional pseudo-labels."""
        import torch

        cfg = self._config()
        if cfg.sampler == "riws" and cfg.loss in REBALANCING_LOSSES:
            warnings.warn(
                f"model: sampler 'riws' with loss {cfg.loss!r} corrects the imbalance twice and "
                "usually leaves the model barely trained; use sampler 'instance' with this loss, "
                "or loss 'ce' (with posthoc_tau: 1) with 'riws'", UserWarning, stacklevel=2)
        X = check_features(X, name="X")
        classes, codes = check_labels(y, len(X))
        Xu = None
        if X_unlabelled is not None and len(X_unlabelled):
            Xu = check_features(X_unlabelled, name="X_unlabelled", n_features=X.shape[1])
        self.device_ = select_device(cfg.device)
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.mean_, self.scale_ = column_stats(X) if Xu is None else column_stats(X, Xu)

        prev_det = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            with torch.random.fork_rng(devices=[]), cpu_threads(self.device_):
                self._fit_codes(cfg, X, codes, n_pseudo=0)
                if cfg.pseudo_label and Xu is not None:
                    Xp, cp = self._pseudo_labels(Xu, codes)
                    if len(Xp):
                        self._fit_codes(cfg, np.concatenate([X, Xp]), np.concatenate([codes, cp]),
                                        n_pseudo=len(Xp))
                    self.n_pseudo_labels_ = len(Xp)
        finally:
            torch.use_deterministic_algorithms(prev_det)
        return self

    def _fit_codes(self, cfg: MLPConfig, X: np.ndarray, codes: np.ndarray, *, n_pseudo: int) -> None:
        """Split, train the stages with early stopping, calibrate, fine-tune on every item."""
        import torch

        k = len(self.classes_)
        n_labelled = len(X) - n_pseudo
        counts = np.bincount(codes, minlength=k)
        self.class_counts_ = counts.astype(np.int64)
        train_idx, val_idx = self._split(codes[:n_labelled], k)
        if n_pseudo:
            train_idx = np.concatenate([train_idx, np.arange(n_labelled, len(X))])
        Xs = (X - self.mean_) / self.scale_
        device = self.device_
        X_t = torch.as_tensor(Xs, dtype=torch.float32, device=device)
        y_t = torch.as_tensor(codes, dtype=torch.long, device=device)

        if val_idx is None:
            epochs = [s.max_epochs for s in self._stages(cfg, counts)]
            self.network_ = self._run_stages(cfg, X_t, y_t, np.arange(len(X)), counts, epochs=epochs)
            self.temperature_ = 1.0
            self.stage_epochs_ = epochs
            return

        train_counts = np.bincount(codes[train_idx], minlength=k)
        net = self._run_stages(cfg, X_t, y_t, train_idx, train_counts, val_idx=val_idx)
        val_logits = self._decision(net, X_t[torch.as_tensor(val_idx, device=device)], train_counts)
        self.temperature_ = fit_temperature(val_logits, codes[val_idx]) if cfg.calibrate else 1.0
        # Fold the held-out items back in: a short fine-tune of the last stage on every item, so
        # the rare classes lose nothing to the split (cheaper than refitting from scratch).
        last = self._stages(cfg, counts)[-1]
        if last.reweight:
            last.loss.reweight()
        last.loss.to(device)
        extra = max(MIN_FINETUNE_EPOCHS, int(np.ceil(FINETUNE_SHARE * max(self.stage_epochs_[-1], 1))))
        self._train_stage(cfg, net, last, X_t, y_t, np.arange(len(X)), codes, counts,
                          torch.Generator().manual_seed(self.seed + 1), max_epochs=extra, val_idx=None)
        net.eval()
        self.finetune_epochs_ = extra
        self.network_ = net

    def _split(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(codes)
        counts = np.bincount(codes, minlength=k)
        if n < MIN_ITEMS_FOR_VALIDATION or counts.min() < 2:
            return np.arange(n), None
        from sklearn.model_selection import StratifiedShuffleSplit

        n_val = max(k, round(VALIDATION_SHARE * n))
        if n - n_val < k:
            return np.arange(n), None
        split = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=self.seed)
        train_idx, val_idx = next(split.split(np.zeros(n), codes))
        return np.sort(train_idx), np.sort(val_idx)

    def _stages(self, cfg: MLPConfig, counts: np.ndarray) -> list[_Stage]:
        loss = build_loss(cfg.loss, counts, tau=cfg.tau, beta=cfg.beta, gamma=cfg.gamma)
        stages = [_Stage("main", loss, cfg.sampler, max_epochs=cfg.epochs)]
        later = max(cfg.patience, cfg.epochs // 4)
        if loss.has_deferred_stage:
            stages.append(_Stage("deferred", loss, cfg.sampler, reweight=True, max_epochs=later))
        if cfg.crt:
            stages.append(_Stage("crt", CrossEntropy(counts), "class_balanced", head_only=True,
                                 reinit_head=True, max_epochs=cfg.epochs))
        return stages

    def _run_stages(self, cfg: MLPConfig, X_t, y_t, train_idx: np.ndarray, counts: np.ndarray, *,
                    val_idx: np.ndarray | None = None, epochs: list[int] | None = None):
        """Train a fresh network through the stages; early-stop on ``val_idx`` when given."""
        import torch

        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        net = _build_network(X_t.shape[1], list(cfg.hidden), len(self.classes_), cfg.dropout).to(self.device_)
        codes = y_t[torch.as_tensor(train_idx, device=self.device_)].cpu().numpy()
        stage_epochs = []
        for i, stage in enumerate(self._stages(cfg, counts)):
            stage.loss.to(self.device_)
            if stage.reweight:
                stage.loss.reweight()
            if stage.reinit_head:
                net.head.reset_parameters()
            max_epochs = stage.max_epochs if epochs is None else epochs[i]
            used = self._train_stage(cfg, net, stage, X_t, y_t, train_idx, codes, counts, gen,
                                     max_epochs=max_epochs, val_idx=val_idx)
            stage_epochs.append(used)
        if val_idx is not None:
            self.stage_epochs_ = stage_epochs
        net.eval()
        return net

    def _train_stage(self, cfg: MLPConfig, net, stage: _Stage, X_t, y_t, train_idx, codes, counts,
                     gen, *, max_epochs: int, val_idx: np.ndarray | None) -> int:
        """Run one stage; returns the number of epochs kept (the best one when validating)."""
        import torch

        if max_epochs <= 0:
            return 0
        device = self.device_
        for p in net.body.parameters():
            p.requires_grad_(not stage.head_only)
        params = [p for p in net.parameters() if p.requires_grad]
        # fused: one kernel per step instead of ~8 ops per tensor (30 % of the fit at ~140 labels;
        # probabilities within 1e-6 of the unfused optimiser's, the same labelling curves)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        weights = item_weights(codes, len(self.classes_), stage.sampler)
        uniform = stage.sampler == "instance"
        train_t = torch.as_tensor(train_idx, device=device)
        batch = min(cfg.batch_size, len(train_idx))
        n_draws = max(len(train_idx), MIN_STEPS_PER_EPOCH * batch)
        val_t = None if val_idx is None else torch.as_tensor(val_idx, device=device)
        margins = None
        if cfg.embedding_loss == "quintuplet" and not stage.head_only:
            margins = _Quintuplets(cfg, codes, batch, self.seed)
        best, best_epoch, best_state, waited = np.inf, 0, None, 0
        for epoch in range(1, max_epochs + 1):
            if margins is not None and (epoch - 1) % cfg.cluster_refresh == 0:
                margins.refresh(net, X_t[train_t])
            net.train()
            if stage.head_only:
                net.body.eval()
            order = epoch_indices(weights, gen, uniform=uniform, n_draws=n_draws).to(device)
            for start in range(0, len(order), batch):
                rows = train_t[order[start:start + batch]]
                with autocast_for(device):
                    logits = net.head(net.body(X_t[rows]))
                loss = stage.loss(logits, y_t[rows])
                if margins is not None:
                    loss = loss + margins.loss(net, X_t, y_t, train_t, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if val_t is None:
                continue
            score = self._balanced_val_loss(net, X_t[val_t], y_t[val_t], counts)
            if score < best * (1.0 - MIN_IMPROVEMENT):
                best, best_epoch, waited = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        for p in net.parameters():
            p.requires_grad_(True)
        if val_t is None:
            return max_epochs
        if best_state is not None:
            net.load_state_dict(best_state)
        return best_epoch

    def _balanced_val_loss(self, net, X_val, y_val, counts: np.ndarray) -> float:
        """Mean over classes of the held-out cross-entropy of the decision logits."""
        import torch
        import torch.nn.functional as F

        logits = torch.as_tensor(self._decision(net, X_val, counts), device=X_val.device)
        per_item = F.cross_entropy(logits, y_val, reduction="none")
        k = len(self.classes_)
        sums = torch.zeros(k, device=X_val.device, dtype=per_item.dtype).index_add_(0, y_val, per_item)
        n = torch.bincount(y_val, minlength=k).clamp_min(1)
        present = torch.bincount(y_val, minlength=k) > 0
        return float((sums / n)[present].mean())

    def _decision(self, net, X_t, counts: np.ndarray) -> np.ndarray:
        """Prediction logits of standardised tensor rows ``X_t`` (see ``_adjust``)."""
        import torch

        net.eval()
        outs = []
        with torch.no_grad():
            for start in range(0, len(X_t), PREDICT_CHUNK):
                with autocast_for(self.device_):
                    z = net.head(_inference_body(net, X_t[start:start + PREDICT_CHUNK]))
                outs.append(z.float().cpu().numpy())
        logits = np.concatenate(outs) if outs else np.zeros((0, len(self.classes_)), np.float32)
        return self._adjust(logits, counts)

    def _adjust(self, logits: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Post-hoc logit adjustment of the network's logits.

        The adjustment (Menon et al.) subtracts ``posthoc_tau * log prior`` where the prior is the
        class mix the last training stage *saw* (its sampler's shares), so a class-balanced
        sampler or cRT, which already balance the classes, are not corrected twice.
        """
        cfg = self._config()
        if not cfg.posthoc_tau:
            return logits
        prior = sampled_class_shares(counts, self._stages(cfg, counts)[-1].sampler)
        return logits - cfg.posthoc_tau * np.log(np.maximum(prior, 1e-12)).astype(np.float32)

    def _pseudo_labels(self, Xu: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Confident pool items, at most enough per class to lift it towards the largest class."""
        proba = self.predict_proba(Xu)
        pred, conf = proba.argmax(axis=1), proba.max(axis=1)
        counts = np.bincount(codes, minlength=len(self.classes_))
        chosen = []
        for c in range(len(self.classes_)):
            cand = np.flatnonzero((pred == c) & (conf >= PSEUDO_LABEL_THRESHOLD))
            room = min(int(counts.max() - counts[c]), 2 * int(counts[c]) + 10)
            if room <= 0 or len(cand) == 0:
                continue
            cand = cand[np.argsort(-conf[cand], kind="stable")][:room]
            chosen.append(cand)
        if not chosen:
            return Xu[:0], codes[:0]
        idx = np.concatenate(chosen)
        return Xu[idx], pred[idx].astype(np.int64)

    # ================================================================== predict
    def _chunks(self, X, forward) -> list[np.ndarray]:
        """``forward(standardised tensor chunk)`` over ``X`` in chunks (bounded memory).

        On the CPU, a pool of several chunks is shared by ``PREDICT_WORKERS`` threads, each
        chunk computed whole by one thread with one torch thread: the values are those of a
        single thread, the time about halved on two free cores."""
        import torch

        X = self._check_X(X)
        net = self.network_
        net.eval()
        device = self.device_

        def one(start: int) -> np.ndarray:
            chunk = (X[start:start + PREDICT_CHUNK] - self.mean_) / self.scale_
            x = torch.as_tensor(chunk, dtype=torch.float32, device=device)
            with torch.no_grad(), autocast_for(device):  # both are per thread
                return forward(net, x).float().cpu().numpy()

        starts = range(0, len(X), PREDICT_CHUNK)
        with cpu_threads(device):
            if device.type != "cpu" or PREDICT_WORKERS < 2 or len(starts) < 2 * PREDICT_WORKERS:
                return [one(start) for start in starts]
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(PREDICT_WORKERS, thread_name_prefix="tailwise-predict") as pool:
                return list(pool.map(one, starts))

    def decision_function(self, X) -> np.ndarray:
        """Logits after post-hoc adjustment, before temperature scaling."""
        outs = self._chunks(X, lambda net, x: net.head(_inference_body(net, x)))
        logits = np.concatenate(outs) if outs else np.zeros((0, len(self.classes_)), np.float32)
        return self._adjust(logits, self.class_counts_)

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities, columns in ``classes_`` order."""
        return softmax(self.decision_function(X) / self.temperature_)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def embed(self, X) -> np.ndarray:
        """The penultimate layer (last hidden activations), float32 ``(n, hidden[-1])``; with
        ``embedding_loss: quintuplet`` scaled to unit length, the geometry the margins shape."""
        cfg = self._config()
        outs = self._chunks(X, _inference_body)
        width = cfg.hidden[-1] if cfg.hidden else self.n_features_in_
        emb = np.concatenate(outs) if outs else np.zeros((0, width), np.float32)
        return unit_rows(emb) if cfg.embedding_loss == "quintuplet" else emb

    # ================================================================== persistence
    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted()
        tensors = {f"network.{k}": v.detach().cpu().numpy() for k, v in self.network_.state_dict().items()}
        tensors.update(mean=self.mean_, scale=self.scale_, class_counts=self.class_counts_)
        meta = {"temperature": float(self.temperature_), "stage_epochs": list(self.stage_epochs_)}
        return tensors, meta

    @classmethod
    def from_state(cls, config, seed, tensors, meta) -> MLPClassifier:
        import torch

        model = cls(config=config, seed=seed)
        cfg = model._config()
        model.device_ = select_device("cpu" if cfg.device == "cuda" and not torch.cuda.is_available()
                                      else cfg.device)
        model.mean_ = np.asarray(tensors["mean"], dtype=np.float32)
        model.scale_ = np.asarray(tensors["scale"], dtype=np.float32)
        model.class_counts_ = np.asarray(tensors["class_counts"], dtype=np.int64)
        model.n_features_in_ = int(meta["n_features_in"])
        model.classes_ = np.array(meta["classes"], dtype=object)
        model.temperature_ = float(meta["temperature"])
        model.stage_epochs_ = list(meta.get("stage_epochs", []))
        net = _build_network(model.n_features_in_, list(cfg.hidden), len(model.classes_), cfg.dropout)
        state = {k[len("network."):]: torch.as_tensor(v) for k, v in tensors.items()
                 if k.startswith("network.")}
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(f"model.safetensors does not match model.json's settings: {err}") from None
        model.network_ = net.to(model.device_).eval()
        return model
