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

    With ``cfg.data.per_atom`` the model learns ``y / N`` (N atoms in the cell; ``target_mean`` /
    ``target_std`` are then per-atom statistics) and :meth:`values` multiplies back, so
    predictions and metrics stay in the units of the data (per cell).

    With sum pooling (Eq. 13) the shift is per atom too: ``y ≈ σ Σ_i FCN(a_i) + μ N`` with μ the
    training mean of ``y / N``, so the whole prediction stays extensive (a per-cell shift would ask
    the summed outputs to produce a constant, whatever the size of the cell).

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

    @property
    def per_atom(self) -> bool:
        return self.cfg.data.per_atom

    def forward(self, batch: Data) -> ReadoutOutput:
        return self.model(batch, getattr(batch, "extra", None))

    @staticmethod
    def atoms_per_crystal(batch: Data) -> Tensor:
        """(B, 1) number of atoms of each crystal in the batch."""
        return (batch.ptr[1:] - batch.ptr[:-1]).to(torch.float32).unsqueeze(-1)

    @property
    def extensive(self) -> bool:
        """Sum pooling on per-cell targets: the target mean is shifted per atom."""
        return self.cfg.model.pooling == "sum" and not self.per_atom and not self.is_classification

    def values(self, out: Tensor, batch: Data) -> Tensor:
        """Regression outputs → predictions in the units of the data (per cell with per_atom)."""
        if self.extensive:
            return out * self.target_std + self.target_mean * self.atoms_per_crystal(batch)
        values = self.denormalize(out)
        return values * self.atoms_per_crystal(batch) if self.per_atom else values

    def denormalize(self, values: Tensor) -> Tensor:
        """Model outputs (normalized) → target units. Also valid per site: the mean of
        denormalized site contributions is the denormalized prediction."""
        return values * self.target_std + self.target_mean

    def _loss(self, batch: Data) -> tuple[Tensor, Tensor]:
        out = self(batch).prediction
        if self.is_classification:
            return F.cross_entropy(out, batch.y[:, 0].long()), out
        atoms = self.atoms_per_crystal(batch)
        if self.extensive:
            target = (batch.y - self.target_mean * atoms) / self.target_std
        else:
            y = batch.y / atoms if self.per_atom else batch.y
            target = (y - self.target_mean) / self.target_std
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
            mae = (self.values(out, batch) - batch.y).abs().mean()
            self.log("val_mae", mae, batch_size=size, sync_dist=True, prog_bar=True)

    def freeze_encoder(self) -> None:
        """Train the readout only (Eq. S5): everything before pooling keeps its weights and its
        batch-norm statistics."""
        for name, param in self.model.named_parameters():
            if not name.startswith("readout."):
                param.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        # Lightning switches every submodule back to training mode around validation; a frozen
        # encoder's batch norm must keep its statistics, so put it back in eval mode each epoch.
        if self.cfg.train.freeze_encoder:
            for name, child in self.model.named_children():
                if name != "readout":
                    child.eval()

    def configure_optimizers(self):  # type: ignore[override]
        t = self.cfg.train
        params = [p for p in self.parameters() if p.requires_grad]
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
