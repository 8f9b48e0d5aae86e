r"""Readout shared by every model: pooling of atom vectors into a crystal vector, then a head.

Pooling choices (``pooling=``):

* ``"mean"`` — CGCNN Eq. S16, :math:`v_c = \frac{1}{N}\sum_i v_i^{(R)}` (size-invariant, intensive).
* ``"sum"`` — Gong et al. Eq. 13, :math:`\hat y = \sum_i \mathrm{FCN}(v_i^{(R)})`: the head maps
  every atom and the outputs are summed, so the prediction (in normalized units) is exactly
  extensive — a 2×2×2 supercell gives 8× — as the paper's "size extensibility" requires. Summing
  the atom vectors *before* a non-linear head would not be extensive and, in large cells, feeds
  the head inputs N times larger than it was initialized for.
* ``"site"`` — CGCNN Eqs. S14–S15: the head maps each atom vector to a scalar (per target)
  :math:`\tilde v_i = W^T h(v_i) + b`, and the prediction is their mean
  :math:`\hat y = \frac{1}{N}\sum_i \tilde v_i`; :math:`\tilde v_i` are the site contributions.

Head (CGCNN reference): softplus → Linear(F→H) → softplus → (n_h − 1)× [Linear(H→H) → softplus]
→ dropout → Linear(H→out). ``n_hidden=0`` is a single Linear(F→out) (ALIGNN's head);
``activation`` picks softplus (CGCNN) or SiLU (ALIGNN) and ``activate_input=False`` drops the
opening activation (ALIGNN pools its atom vectors and maps them linearly). ``first_layer_norm``
puts a layer norm after the first hidden Linear, before its activation (CrysToGraph's head).

Descriptor hybridization (Gong et al. Eq. 14, "de-CGCNN"):
:math:`\hat y = \mathrm{FCN}\big(\tfrac{1}{N}\sum_i v_i \oplus \tilde d\big)` where
:math:`\tilde d = (d - \mu_d) / \sigma_d` are the crystal's descriptors standardized with the
training-set mean and standard deviation (buffers ``extra_mean`` / ``extra_std``, saved with the
weights); a descriptor that could not be computed (NaN) becomes 0, the training mean. The softplus
that opens the head acts on the pooled vector only, so standardized descriptors enter unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter


@dataclass
class ReadoutOutput:
    """``prediction`` (B, out); ``embedding`` (B, F) the pooled crystal vector;
    ``site_contributions`` (N, out) with ``pooling="site"``, else None."""

    prediction: Tensor
    embedding: Tensor
    site_contributions: Tensor | None = None


class Readout(nn.Module):
    """Pool atom vectors (N, F) per crystal and map them to ``out_features`` outputs.

    Args:
        in_features: width F of the atom vectors.
        out_features: number of outputs (targets, or classes for classification).
        hidden_features: width H of the head's hidden layers (CGCNN: 128).
        n_hidden: number of hidden layers (CGCNN: 1).
        pooling: ``"mean"`` (default), ``"sum"`` or ``"site"``.
        dropout: dropout before the output layer (CGCNN classification: 0.5).
        extra_features: width of crystal-level features concatenated after pooling (0: none).
        activation: ``"softplus"`` (CGCNN) or ``"silu"`` (ALIGNN), in the head.
        activate_input: apply the activation to the pooled vector (or atoms) before the head.
        first_layer_norm: layer norm after the first hidden layer's Linear (CrysToGraph).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden_features: int = 128,
        n_hidden: int = 1,
        pooling: Literal["mean", "sum", "site"] = "mean",
        dropout: float = 0.0,
        extra_features: int = 0,
        activation: Literal["softplus", "silu"] = "softplus",
        activate_input: bool = True,
        first_layer_norm: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum", "site"):
            raise ValueError(f"pooling must be 'mean', 'sum' or 'site', not {pooling!r}")
        if pooling == "site" and extra_features:
            raise ValueError("site pooling gives per-site contributions of the structure alone; crystal-level descriptors do not fit it")
        self.pooling = pooling
        self.extra_features = extra_features
        self.register_buffer("extra_mean", torch.zeros(extra_features))
        self.register_buffer("extra_std", torch.ones(extra_features))
        activation_cls = {"softplus": nn.Softplus, "silu": nn.SiLU}[activation]
        self.activation = activation_cls() if activate_input else nn.Identity()
        layers: list[nn.Module] = []
        width = in_features + extra_features
        for index in range(n_hidden):
            layers.append(nn.Linear(width, hidden_features))
            if first_layer_norm and index == 0:
                layers.append(nn.LayerNorm(hidden_features))
            layers.append(activation_cls())
            width = hidden_features
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, out_features))
        self.head = nn.Sequential(*layers)

    def forward(self, x: Tensor, batch: Tensor, num_graphs: int, extra: Tensor | None = None) -> ReadoutOutput:
        """x (N, F), batch (N,) graph index of each atom, extra (B, D) or None."""
        embedding = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="sum" if self.pooling == "sum" else "mean")
        descriptors = None
        if self.extra_features:
            if extra is None or extra.shape[-1] != self.extra_features:
                raise ValueError(f"this readout expects {self.extra_features} descriptors per crystal, got {None if extra is None else extra.shape[-1]}")
            descriptors = self.standardize(extra)
        if self.pooling in ("site", "sum"):
            features = self.activation(x)
            if descriptors is not None:  # Eq. 14 with Eq. 13: each atom sees its crystal's descriptors
                features = torch.cat([features, descriptors[batch]], dim=-1)
            sites = self.head(features)
            prediction = scatter(sites, batch, dim=0, dim_size=num_graphs, reduce="mean" if self.pooling == "site" else "sum")
            return ReadoutOutput(prediction, embedding, sites if self.pooling == "site" else None)
        features = self.activation(embedding)
        if descriptors is not None:
            features = torch.cat([features, descriptors], dim=-1)
        return ReadoutOutput(self.head(features), embedding)

    def standardize(self, extra: Tensor) -> Tensor:
        """Raw descriptors (B, D) → standardized, NaN → 0 (the training mean)."""
        scaled = (extra.to(self.extra_mean.dtype) - self.extra_mean) / self.extra_std
        return torch.nan_to_num(scaled, nan=0.0, posinf=0.0, neginf=0.0)

    def set_extra_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Training-set mean and standard deviation of the descriptors (NaN-aware; a constant
        descriptor gets std 1)."""
        mean_t = torch.as_tensor(np.nan_to_num(np.asarray(mean, np.float64)), dtype=torch.float32)
        std_np = np.nan_to_num(np.asarray(std, np.float64), nan=1.0)
        std_t = torch.as_tensor(np.where(std_np > 1e-12, std_np, 1.0), dtype=torch.float32)
        self.extra_mean.copy_(mean_t.reshape(self.extra_features))
        self.extra_std.copy_(std_t.reshape(self.extra_features))
