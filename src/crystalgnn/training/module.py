"""Thin Lightning wrapper: loss, target normalization, metrics logging and optimizers.

The model itself (``crystalgnn.models``) knows nothing about training; this module adds what
Lightning needs. Target mean/std are buffers, so they are saved with the weights.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data

from crystalgnn.config import RunConfig
from crystalgnn.models import ReadoutOutput, build_model


class CrystalModule(L.LightningModule):
    """Regression: MSE on standardized targets (CGCNN). Classification: cross-entropy on logits.

    Logged per epoch: ``train_loss``, ``val_loss`` and ``val_mae`` (regression, in target units,
    averaged over targets) or ``val_accuracy`` (classification).
    """

    def __init__(
        self,
        cfg: RunConfig,
        target_mean: np.ndarray | None = None,
        target_std: np.ndarray | None = None,
        atom_table: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = build_model(cfg, atom_table)
        n = cfg.model.n_targets
        mean = torch.zeros(n) if target_mean is None else torch.as_tensor(target_mean, dtype=torch.float32)
        std = torch.ones(n) if target_std is None else torch.as_tensor(target_std, dtype=torch.float32)
        self.register_buffer("target_mean", mean.reshape(n))
        self.register_buffer("target_std", std.reshape(n))

    @property
    def is_classification(self) -> bool:
        return self.cfg.model.task == "classification"

    def forward(self, batch: Data) -> ReadoutOutput:
        return self.model(batch)

    def denormalize(self, values: Tensor) -> Tensor:
        """Model outputs (normalized) → target units. Also valid per site: the mean of
        denormalized site contributions is the denormalized prediction."""
        return values * self.target_std + self.target_mean

    def _loss(self, batch: Data) -> tuple[Tensor, Tensor]:
        out = self(batch).prediction
        if self.is_classification:
            return F.cross_entropy(out, batch.y[:, 0].long()), out
        target = (batch.y - self.target_mean) / self.target_std
        return F.mse_loss(out, target), out

    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=int(batch.num_graphs), sync_dist=True)
        return loss

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        loss, out = self._loss(batch)
        size = int(batch.num_graphs)
        self.log("val_loss", loss, batch_size=size, sync_dist=True, prog_bar=not self.is_classification)
        if self.is_classification:
            accuracy = (out.argmax(-1) == batch.y[:, 0].long()).float().mean()
            self.log("val_accuracy", accuracy, batch_size=size, sync_dist=True, prog_bar=True)
        else:
            mae = (self.denormalize(out) - batch.y).abs().mean()
            self.log("val_mae", mae, batch_size=size, sync_dist=True, prog_bar=True)

    def configure_optimizers(self):  # type: ignore[override]
        t = self.cfg.train
        params = self.parameters()
        optimizer: torch.optim.Optimizer
        if t.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return optimizer
        if t.scheduler == "multistep":
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(t.milestones), t.gamma)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        steps = int(self.trainer.estimated_stepping_batches)
        if t.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=max(steps, 1), pct_start=0.3)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
