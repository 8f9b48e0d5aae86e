r"""CGCNN — Crystal Graph Convolutional Neural Network (Xie & Grossman, PRL 120, 145301, 2018).

Atoms are nodes with input features :math:`v_i^{(0)}` (CGCNN's 92-dim one-hot element vector, or
a learned per-element embedding) mapped to width F by a linear layer; each directed edge
:math:`(i, j)_k` carries the Gaussian-expanded distance :math:`u_{(i,j)_k}` (0–8 Å, step 0.2 → 41).

Gated residual convolution (Eq. 5, default), with
:math:`z_{(i,j)_k} = v_i \oplus v_j \oplus u_{(i,j)_k}`:

.. math::
    v_i^{(t+1)} = g\Big(v_i^{(t)} + \mathrm{BN}\big(\sum_{j,k} \sigma(z W_f + b_f) \odot g(z W_s + b_s)\big)\Big)

with σ the sigmoid and g softplus. As in the reference code, :math:`[zW_f+b_f, zW_s+b_s]` is
one Linear(2F + G → 2F) followed by batch norm over edges, and the residual sum passes one more
batch norm and softplus (the paper's Eq. 5 omits both).

Linear convolution (Eq. 4):

.. math::
    v_i^{(t+1)} = g\Big(\big(\sum_{j,k} v_j^{(t)} \oplus u_{(i,j)_k}\big) W_c + v_i^{(t)} W_s + b\Big)

After R convolutions the shared :class:`~crystalgnn.models.readout.Readout` pools (mean Eq. S16,
sum, or site-linear Eqs. S14–S15) and applies the head.

Defaults (reference code, :class:`CGCNNConfig`): F = 64, R = 3, head width 128 with 1 hidden
layer, gated convolution, Gaussians on 0–8 Å every 0.2 Å of width 0.2; mean pooling;
classification adds dropout 0.5 before the output layer. Graph: the 12 nearest neighbours within
8 Å (``GraphConfig`` defaults). Training: :class:`~crystalgnn.config.TrainConfig` defaults (AdamW
3e-3, one-cycle, batch 256, 100 epochs, MSE on standardized targets); the reference code used SGD
0.01 with a step schedule, which ``--optimizer sgd --scheduler multistep`` reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from crystalgnn.models.blocks import MAX_Z, AtomFeatures, AtomInput, GaussianExpansion
from crystalgnn.models.readout import Readout, ReadoutOutput
from crystalgnn.registry import ModelSpec, keyword_builder, register


@dataclass(frozen=True)
class CGCNNConfig:
    """CGCNN's own settings (defaults of the reference code). Saved under ``model.arch``."""

    atom_fea_len: int = field(default=64, metadata={"help": "atom vector width F (64)"})
    n_conv: int = field(default=3, metadata={"help": "convolution layers R (3)"})
    h_fea_len: int = field(default=128, metadata={"help": "head hidden width (128)"})
    n_h: int = field(default=1, metadata={"help": "head hidden layers (1)"})
    conv: Literal["gated", "linear"] = field(default="gated", metadata={"help": "gated residual Eq. 5 (default) or linear Eq. 4"})
    gaussian_start: float = field(default=0.0, metadata={"help": "first distance Gaussian centre in Å (0)"})
    gaussian_stop: float = field(default=8.0, metadata={"help": "last distance Gaussian centre in Å (8; the reference follows the cutoff)"})
    gaussian_step: float = field(default=0.2, metadata={"help": "spacing of the distance Gaussians in Å (0.2)"})
    gaussian_width: float | None = field(default=None, metadata={"help": "width of the distance Gaussians in Å (default: the spacing, as the reference)"})


class GatedConv(nn.Module):
    """Eq. 5 (with the reference code's batch norms). Shapes: x (N, F), edge_attr (E, G)."""

    def __init__(self, atom_features: int, edge_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * atom_features + edge_features, 2 * atom_features)
        self.bn_edges = nn.BatchNorm1d(2 * atom_features)
        self.bn_sum = nn.BatchNorm1d(atom_features)
        self.softplus = nn.Softplus()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        source, target = edge_index  # neighbour j → centre i
        pre = self.edge_linear(x, source, target, edge_attr)
        gate, core = self.bn_edges(pre).chunk(2, dim=-1)
        messages = torch.sigmoid(gate) * self.softplus(core)
        summed = scatter(messages, target, dim=0, dim_size=x.shape[0], reduce="sum")
        return self.softplus(x + self.bn_sum(summed))

    def edge_linear(self, x: Tensor, source: Tensor, target: Tensor, edge_attr: Tensor) -> Tensor:
        r""":math:`z W^\top + b` with :math:`z = v_i \oplus v_j \oplus u_{ij}`, without forming z.

        With :math:`W = [W_i \mid W_j \mid W_u]` split by columns,
        :math:`zW^\top = (v W_i^\top)_i + (v W_j^\top)_j + u W_u^\top`: the two atom products run
        on the N atoms and are gathered to the E edges, so only the 41-wide distance part is a
        product over edges (E x (2F + G) → E x G multiply-adds). Same weights, same result up to
        float rounding."""
        f = x.shape[1]
        w = self.linear.weight  # (2F, 2F + G)
        per_atom = x @ torch.cat([w[:, :f], w[:, f : 2 * f]], dim=0).t()  # (N, 4F): [v W_i^T | v W_j^T]
        out = torch.addmm(self.linear.bias, edge_attr, w[:, 2 * f :].t())
        out += per_atom[:, : 2 * f].index_select(0, target)  # in place: addmm's backward needs not its output
        out += per_atom[:, 2 * f :].index_select(0, source)
        return out


class LinearConv(nn.Module):
    """Eq. 4: one weight matrix shared by all neighbours. Shapes: x (N, F), edge_attr (E, G)."""

    def __init__(self, atom_features: int, edge_features: int, activation: nn.Module | None = None) -> None:
        super().__init__()
        self.neighbour_weight = nn.Linear(atom_features + edge_features, atom_features, bias=False)  # W_c
        self.self_weight = nn.Linear(atom_features, atom_features)  # W_s and b
        self.activation = activation if activation is not None else nn.Softplus()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        source, target = edge_index
        neighbour_sum = scatter(torch.cat([x[source], edge_attr], dim=-1), target, dim=0, dim_size=x.shape[0], reduce="sum")
        return self.activation(self.neighbour_weight(neighbour_sum) + self.self_weight(x))


class CGCNN(nn.Module):
    """Crystal graph convolutional network.

    Args:
        atom_table: the atom inputs of the run's ``--atom-features`` (:func:`crystalgnn.models.atom_inputs`):
            a (Z_max + 1, A) table per element (CGCNN's one-hot), an ``AtomFeatures`` (OFM, CFID,
            combinations), or ``None`` to learn an embedding of width ``atom_fea_len`` per element.
        out_features: outputs (targets for regression, classes for classification).
        atom_fea_len: atom vector width F (64).
        n_conv: number of convolutions R (3).
        h_fea_len: head hidden width (128).
        n_h: head hidden layers (1).
        conv: ``"gated"`` (Eq. 5, default) or ``"linear"`` (Eq. 4).
        pooling: ``"mean"`` (default), ``"sum"`` or ``"site"``.
        dropout: dropout before the output layer (0; 0.5 for classification in the reference).
        gaussian_start, gaussian_stop, gaussian_step, gaussian_width: the distance expansion
            (0, 8, 0.2 Å; width None: the step).
        max_z: largest atomic number for the learned embedding (100).
        extra_features: crystal-level features concatenated after pooling (0).
    """

    def __init__(
        self,
        atom_table: Tensor | AtomFeatures | None,
        out_features: int = 1,
        atom_fea_len: int = 64,
        n_conv: int = 3,
        h_fea_len: int = 128,
        n_h: int = 1,
        conv: Literal["gated", "linear"] = "gated",
        pooling: Literal["mean", "sum", "site"] = "mean",
        dropout: float = 0.0,
        gaussian_start: float = 0.0,
        gaussian_stop: float = 8.0,
        gaussian_step: float = 0.2,
        gaussian_width: float | None = None,
        max_z: int = MAX_Z,
        extra_features: int = 0,
    ) -> None:
        super().__init__()
        self.embedding_width = atom_fea_len
        self.atom_input = AtomInput(atom_fea_len, atom_table, project="linear", max_z=max_z)
        self.expansion = GaussianExpansion(gaussian_start, gaussian_stop, gaussian_step, gaussian_width)
        conv_cls = {"gated": GatedConv, "linear": LinearConv}[conv]
        self.convs = nn.ModuleList(conv_cls(atom_fea_len, self.expansion.num_features) for _ in range(n_conv))
        self.readout = Readout(atom_fea_len, out_features, h_fea_len, n_h, pooling, dropout, extra_features)

    def forward(self, batch: Data, extra: Tensor | None = None) -> ReadoutOutput:
        """``batch`` from :meth:`GraphStore.collate`: z (N,), edge_index (2, E), edge_dist (E,),
        batch (N,), num_graphs. Returns predictions (B, out), crystal embeddings (B, F) and, with
        site pooling, per-site contributions (N, out)."""
        x = self.atom_input(batch.z, batch)
        edge_attr = self.expansion(batch.edge_dist)
        for conv in self.convs:
            x = conv(x, batch.edge_index, edge_attr)
        return self.readout(x, batch.batch, int(batch.num_graphs), extra)


register(ModelSpec(
    name="cgcnn",
    settings=CGCNNConfig,
    build=keyword_builder(CGCNN),
    description="CGCNN (Xie & Grossman 2018): gated convolutions on the radius graph",
    # Weights saved before the registry held the atom input as model.atom_table / model.embedding.
    legacy_state_keys={"model.atom_table": "model.atom_input.table", "model.embedding.": "model.atom_input.project."},
))
