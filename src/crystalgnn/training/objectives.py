r"""Task objectives: what the training module optimises, and how model outputs become predictions.

The training module (:class:`crystalgnn.training.module.CrystalModule`) takes a built model and one
objective. An objective turns the model's output and a batch into a loss, into validation metrics
(logged per epoch) and into predictions in the units of the data:

* :class:`RegressionObjective` — MSE on targets standardized by one :class:`TargetNormalizer`.
* :class:`ClassificationObjective` — cross-entropy on logits; predictions are probabilities.

A third (masked-atom pretraining) will plug in the same way. Objectives are ``nn.Module``\ s, so
their statistics are buffers saved with the weights (``objective.normalizer.mean``/``std``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data

from crystalgnn.config import BLEND_HYBRIDS

NormalizerMode = Literal["intensive", "per_atom", "extensive"]


def atoms_per_crystal(batch: Data) -> Tensor:
    """(B, 1) number of atoms of each crystal in the batch."""
    return (batch.ptr[1:] - batch.ptr[:-1]).to(torch.float32).unsqueeze(-1)


class TargetNormalizer(nn.Module):
    r"""Standardization of regression targets: the one place where targets are scaled and shifted.

    Modes (N: atoms in the cell, μ and σ buffers of shape (T,)):

    * ``"intensive"`` — the model learns :math:`(y - \mu)/\sigma`; prediction :math:`\sigma o + \mu`
      (CGCNN's normalization).
    * ``"per_atom"`` — the model learns :math:`(y/N - \mu)/\sigma` with per-atom statistics, and the
      prediction is multiplied back: :math:`N(\sigma o + \mu)` (Gong et al.'s per-atom targets).
    * ``"extensive"`` (sum pooling, Eq. 13) — the shift is per atom too:
      :math:`y \approx \sigma \sum_i \mathrm{FCN}(a_i) + \mu N`, with μ the training mean of
      y/N and σ the spread of what remains, so the whole prediction stays extensive (a per-cell
      shift would ask the summed outputs to produce a constant, whatever the size of the cell).

    Site contributions map with :meth:`decode_sites` (σ s + μ): their mean is the prediction of an
    intensive model.
    """

    def __init__(self, n_targets: int, mode: NormalizerMode = "intensive",
                 mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        super().__init__()
        self.mode = mode
        m = torch.zeros(n_targets) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        s = torch.ones(n_targets) if std is None else torch.as_tensor(std, dtype=torch.float32)
        self.register_buffer("mean", m.reshape(n_targets))
        self.register_buffer("std", s.reshape(n_targets))

    @staticmethod
    def statistics(targets: np.ndarray, atoms: np.ndarray, mode: NormalizerMode) -> tuple[np.ndarray, np.ndarray]:
        """μ and σ of the training targets (n, T) with ``atoms`` (n,) per crystal; σ = 0 → 1."""
        atoms = np.asarray(atoms)[:, None]
        if mode == "per_atom":
            targets = targets / atoms
        mean, std = targets.mean(0), targets.std(0)
        if mode == "extensive":
            mean = (targets / atoms).mean(0)
            std = (targets - mean * atoms).std(0)
        return mean, np.where(std > 0, std, 1.0)

    def encode(self, y: Tensor, atoms: Tensor) -> Tensor:
        """Targets (B, T) in data units → what the model learns."""
        if self.mode == "extensive":
            return (y - self.mean * atoms) / self.std
        if self.mode == "per_atom":
            y = y / atoms
        return (y - self.mean) / self.std

    def decode(self, out: Tensor, atoms: Tensor) -> Tensor:
        """Model outputs (B, T) → predictions in data units (per cell)."""
        if self.mode == "extensive":
            return out * self.std + self.mean * atoms
        values = self.decode_sites(out)
        return values * atoms if self.mode == "per_atom" else values

    def decode_sites(self, values: Tensor) -> Tensor:
        """Outputs → target units, without the per-atom factor (also valid per site)."""
        return values * self.std + self.mean


def base_of(batch: Data) -> Tensor | None:
    """A forest hybrid's (stacked or residual) forest predictions (B, T) in data units, or None."""
    return getattr(batch, "base", None)


class RegressionObjective(nn.Module):
    """MSE on normalized targets; logs ``val_mae`` in data units (mean over targets).

    With ``adds_base`` (the residual hybrid), a batch's ``base`` (its forest predictions, data
    units) is learned as the residual ``y - base`` and added back to every prediction. With
    ``blends_base`` (the blend hybrid) the network trains alone and predicts
    ``w · network + (1 − w) · base``, ``w`` (per target, the buffer ``blend_weight``) is 1 while
    training and is fitted on the validation split afterwards (:func:`fit_blend_weight`), so it
    is saved with the weights. Otherwise a ``base`` is only an input of the head (the stacked
    hybrid)."""

    is_classification = False
    monitor = ("val_mae", "min")

    def __init__(self, normalizer: TargetNormalizer, adds_base: bool = False, blends_base: bool = False) -> None:
        super().__init__()
        self.normalizer = normalizer
        self.adds_base = adds_base
        self.blends_base = blends_base
        #: Whether the head reads a batch's ``base`` as an input (stacked and residual).
        self.base_is_input = not blends_base
        if blends_base:
            self.register_buffer("blend_weight", torch.ones(normalizer.mean.shape[-1]))

    def loss(self, out: Tensor, batch: Data) -> Tensor:
        base = base_of(batch) if self.adds_base else None
        target = batch.y if base is None else batch.y - base
        return F.mse_loss(out, self.normalizer.encode(target, atoms_per_crystal(batch)))

    def predict(self, out: Tensor, batch: Data) -> Tensor:
        """(B, T) predictions in the units of the data."""
        values = self.normalizer.decode(out, atoms_per_crystal(batch))
        base = base_of(batch) if self.adds_base or self.blends_base else None
        if base is None:
            return values
        if self.blends_base:
            return self.blend_weight * values + (1 - self.blend_weight) * base
        return values + base

    def validation_metrics(self, out: Tensor, batch: Data) -> dict[str, Tensor]:
        return {"val_mae": (self.predict(out, batch) - batch.y).abs().mean()}


class ClassificationObjective(nn.Module):
    """Cross-entropy on logits over ``n_classes``; logs ``val_accuracy``."""

    is_classification = True
    monitor = ("val_accuracy", "max")

    def loss(self, out: Tensor, batch: Data) -> Tensor:
        return F.cross_entropy(out, batch.y[:, 0].long())

    def predict(self, out: Tensor, batch: Data) -> Tensor:
        """(B, C) class probabilities."""
        return torch.softmax(out, -1)

    def validation_metrics(self, out: Tensor, batch: Data) -> dict[str, Tensor]:
        return {"val_accuracy": (out.argmax(-1) == batch.y[:, 0].long()).float().mean()}


Objective = RegressionObjective | ClassificationObjective


class ModelWithObjective:
    """What the training module and the prediction-only model share: ``self.model`` (batch, extra)
    → ReadoutOutput and ``self.objective``, which turns outputs into predictions."""

    model: nn.Module
    objective: Objective

    @property
    def is_classification(self) -> bool:
        return self.objective.is_classification

    def forward(self, batch: Data):
        extra, base = getattr(batch, "extra", None), base_of(batch)
        if base is not None and getattr(self.objective, "base_is_input", False):  # stacked/residual: the head reads the forest
            extra = torch.cat([extra, base.to(extra.dtype)], dim=-1)
        return self.model(batch, extra)

    def predictions(self, out: Tensor, batch: Data) -> Tensor:
        """Model outputs → predictions in data units (or class probabilities)."""
        return self.objective.predict(out, batch)


def normalizer_mode(pooling: str, per_atom: bool) -> NormalizerMode:
    """The normalizer a regression run uses: per-atom targets, extensive (sum pooling), or plain."""
    if per_atom:
        return "per_atom"
    return "extensive" if pooling == "sum" else "intensive"


def make_objective(task: str, n_targets: int, pooling: str, per_atom: bool,
                   mean: np.ndarray | None = None, std: np.ndarray | None = None, hybrid: str = "end-to-end") -> Objective:
    """The objective of a run: classification, or regression with its normalizer (which learns
    the residual of a forest for ``hybrid="residual"``)."""
    if task == "classification":
        return ClassificationObjective()
    return RegressionObjective(TargetNormalizer(n_targets, normalizer_mode(pooling, per_atom), mean, std), adds_base=hybrid == "residual",
                               blends_base=hybrid in BLEND_HYBRIDS)


#: The weights :func:`fit_blend_weight` chooses from (0: the forest alone, 1: the network alone).
BLEND_GRID = np.linspace(0.0, 1.0, 21)


def fit_blend_weight(network: np.ndarray, base: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(T,) the weight ``w`` of the grid :data:`BLEND_GRID` that minimizes the mean absolute
    error of ``w · network + (1 − w) · base`` against ``y`` (all (n, T), data units), per
    target; ties go to the larger weight (the network)."""
    weights = []
    for t in range(y.shape[1]):
        errors = [np.mean(np.abs(w * network[:, t] + (1 - w) * base[:, t] - y[:, t])) for w in BLEND_GRID]
        best = min(errors)
        weights.append(max(w for w, e in zip(BLEND_GRID, errors) if e <= best + 1e-12))
    return np.array(weights, dtype=np.float32)
