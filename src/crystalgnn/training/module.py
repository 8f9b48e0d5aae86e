"""Thin Lightning wrapper around a built model and a task objective: loss, logging, optimizers.

The model (``crystalgnn.models``) knows nothing about training, and the objective
(:mod:`crystalgnn.training.objectives`) knows nothing about optimisation: this module joins them
for Lightning. Everything it holds that predictions need (the objective's target statistics) is
a buffer, saved with the weights.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from crystalgnn.config import RunConfig, TrainConfig
from crystalgnn.errors import NonFiniteLossError
from crystalgnn.models import build_model
from crystalgnn.training.objectives import ModelWithObjective, Objective, make_objective


def _count(batch: Data) -> float:
    """The crystals of ``batch`` as the weight of its logged means. A float: Lightning sums each
    rank's weighted values and counts, then averages both over ranks (``sync_dist``), and gloo
    averages an integer count with integer division (9 crystals on 2 ranks counted as 8); a
    float count keeps the epoch mean the exact per-crystal mean over all ranks (and changes
    nothing in one process: counts are exact in float32 up to 2**24)."""
    return float(batch.num_graphs)


class CrystalModule(ModelWithObjective, L.LightningModule):
    """``model`` (batch, extra) → ReadoutOutput, trained on ``objective`` with ``train`` settings.

    Logged per epoch: ``train_loss``, ``val_loss`` and the objective's validation metrics
    (``val_mae`` in data units for regression, ``val_accuracy`` for classification).
    ``freeze_encoder``: train the readout only (Eq. S5), see :meth:`freeze_encoder`.
    """

    def __init__(self, model: nn.Module, objective: Objective, train: TrainConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.train_cfg = train or TrainConfig()
        if self.train_cfg.freeze_encoder:
            self.freeze_encoder()

    def training_step(self, batch: Data, batch_idx: int) -> Tensor:
        loss = self.objective.loss(self(batch).prediction, batch)
        if not torch.isfinite(loss):
            # Stop at the first bad batch: every later step would only spread NaN through the weights.
            index = batch.graph_index.tolist() if hasattr(batch, "graph_index") else []
            raise NonFiniteLossError(float(loss), int(self.current_epoch), batch_idx, index)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=_count(batch), sync_dist=True)
        return loss

    def validation_step(self, batch: Data, batch_idx: int) -> None:
        out = self(batch).prediction
        size = _count(batch)
        self.log("val_loss", self.objective.loss(out, batch), batch_size=size, sync_dist=True, prog_bar=not self.is_classification)
        for name, value in self.objective.validation_metrics(out, batch).items():
            self.log(name, value, batch_size=size, sync_dist=True, prog_bar=True)

    def freeze_encoder(self) -> None:
        """Train the readout only (Eq. S5): everything before pooling keeps its weights and its
        batch-norm statistics."""
        for name, param in self.model.named_parameters():
            if not name.startswith("readout."):
                param.requires_grad_(False)

    def on_train_epoch_start(self) -> None:
        # Lightning switches every submodule back to training mode around validation; a frozen
        # encoder's batch norm must keep its statistics, so put it back in eval mode each epoch.
        if self.train_cfg.freeze_encoder:
            for name, child in self.model.named_children():
                if name != "readout":
                    child.eval()

    def configure_optimizers(self):  # type: ignore[override]
        t = self.train_cfg
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer: torch.optim.Optimizer
        if t.optimizer == "sgd":
            optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        elif t.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=t.lr, betas=(0.9, t.adam_beta2), weight_decay=t.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=t.lr, betas=(0.9, t.adam_beta2), weight_decay=t.weight_decay)
        if t.scheduler == "none":
            return optimizer
        if t.scheduler == "multistep":
            milestones = list(t.milestones) or [max(int(self.trainer.max_epochs or 1) // 3, 1)]
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, t.gamma)
            self._schedule_length = int(self.trainer.max_epochs or 1)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        steps = int(self.trainer.estimated_stepping_batches)
        self._schedule_length = max(steps, 1)
        if t.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
        elif t.scheduler == "noam":
            # chemprop's NoamLR (CMPNN, OCrystalNet): linear warm-up from noam_initial_lr to lr over
            # noam_warmup_epochs, then exponential decay reaching noam_final_lr at the last step taken
            # (chemprop reaches it one step later, after training ends). Step s's rate, s = 0..last.
            per_epoch = steps / max(int(self.trainer.max_epochs or 1), 1)
            last = max(steps - 1, 0)
            warmup = min(int(round(t.noam_warmup_epochs * per_epoch)), last)
            peak, initial, final = t.lr, t.noam_initial_lr, t.noam_final_lr

            def noam_factor(step: int) -> float:  # multiplies the optimizer's lr (the peak)
                if step < warmup:
                    return (initial + (peak - initial) * step / warmup) / peak
                if step >= last:
                    return final / peak if last > warmup else 1.0
                return (final / peak) ** ((step - warmup) / (last - warmup))

            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, noam_factor)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=t.lr, total_steps=max(steps, 1), pct_start=0.3)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def lr_scheduler_step(self, scheduler, metric) -> None:  # type: ignore[override]
        """One step of the schedule, then, under a time budget, the steps the clock is ahead by.

        The schedule's position is ``max(steps taken, elapsed / budget × length)`` (``length``: its
        steps, or epochs for multistep), never past its end: a one-cycle run stopped by
        ``max_minutes`` has annealed by then, whatever ``epochs`` said. The elapsed time is
        Lightning's ``Timer`` (saved in checkpoints, so a resumed run continues the same clock);
        under DDP rank 0's reading is broadcast, so every rank keeps the same learning rate."""
        length = getattr(self, "_schedule_length", None)
        if length is not None and scheduler.last_epoch >= length:
            return  # the schedule is over (the clock got there first): hold its last rate
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)
        fraction = self._budget_fraction()
        if fraction is None or length is None:
            return
        target = min(int(fraction * length), length)
        while scheduler.last_epoch < target:
            scheduler.step()

    def _budget_fraction(self) -> float | None:
        """Share of ``max_minutes`` used so far, or None when the schedule follows steps alone."""
        from lightning.pytorch.callbacks import Timer

        t = self.train_cfg
        if t.max_minutes <= 0 or not t.schedule_to_budget:
            return None
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)  # type: ignore[attr-defined]
        if timer is None:
            return None
        fraction = float(timer.time_elapsed("train")) / (t.max_minutes * 60.0)
        if self.trainer.world_size > 1:
            fraction = float(self.trainer.strategy.broadcast(fraction, src=0))
        return fraction


def build_module(
    cfg: RunConfig,
    target_mean: np.ndarray | None = None,
    target_std: np.ndarray | None = None,
    atom_table: Tensor | None = None,
) -> CrystalModule:
    """The model of ``cfg`` (fresh weights, through the registry) with the objective of its task."""
    model = build_model(cfg, atom_table)
    m = cfg.model
    objective = make_objective(m.task, m.n_targets, m.pooling, cfg.data.per_atom, target_mean, target_std, m.hybrid)
    return CrystalModule(model, objective, cfg.train)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
