r"""ALIGNN — Atomistic Line Graph Neural Network (Choudhary & DeCost, npj Comput. Mater. 7, 185, 2021).

Two graphs per crystal (see :mod:`crystalgnn.graphs.line_graph`): the atom graph G (k-nearest
neighbours, every bond in both directions) and its line graph L(G), whose nodes are the bonds of G
and whose edges are pairs of bonds meeting at an atom, carrying the bond-angle cosine.

Inputs: atoms :math:`h_i^0 = \mathrm{MLP}(v_i)` (CGCNN's 92-dim element vector, or a learned
per-element embedding); bonds :math:`e_{ij}^0 = \mathrm{MLP}(\mathrm{MLP}(\mathrm{RBF}(d_{ij})))`
(80 centres on 0–8 Å); angles :math:`t_{ijk}^0 = \mathrm{MLP}(\mathrm{MLP}(\mathrm{RBF}(\cos\theta_{ijk})))`
(40 centres on −1…1). RBF: :math:`\exp(-(u - \mu_k)^2 / \Delta)`, Δ the spacing of the centres;
MLP: Linear → norm → SiLU, widths 64 (embedding) then 256 (hidden). Norm: layer norm by default
(the reference package's current models); the paper's batch norm with ``norm="batch"``.

Edge-gated graph convolution (Dwivedi et al.; ALIGNN Eqs. 1–3), messages from j to i:

.. math::
    m_{ij} &= W_s h_i + W_d h_j + W_e e_{ij},\qquad \hat e_{ij} = \frac{\sigma(m_{ij})}{\sum_{k} \sigma(m_{ik}) + 10^{-6}} \\
    h_i' &= h_i + \mathrm{SiLU}\big(\mathrm{Norm}(U_s h_i + \textstyle\sum_j \hat e_{ij} \odot U_d h_j)\big) \\
    e_{ij}' &= e_{ij} + \mathrm{SiLU}(\mathrm{Norm}(m_{ij}))

An ALIGNN layer is one edge-gated convolution on G (updating atoms and bonds), then one on L(G)
with the updated bonds as nodes and the angles as edges (updating bonds and angles). After
``alignn_layers`` ALIGNN layers come ``gcn_layers`` edge-gated convolutions on G alone. The atom
vectors then go through the shared :class:`~crystalgnn.models.readout.Readout`: mean pooling and a
linear map by default (reference ``AvgPooling → Linear``), or sum / site pooling, classification,
several targets, and Gong et al.'s de-ALIGNN (descriptors concatenated after pooling; the head then
has ``descriptor_head_layers`` SiLU layers of width hidden + descriptors, as in their code).

Defaults (reference ``ALIGNNConfig`` and paper): 4 ALIGNN + 4 GCN layers, hidden 256, embedding
64, 80 distance and 40 angle centres, layer norm. Training defaults (in
:func:`crystalgnn.config.defaults_for`): AdamW peak lr 1e-2, weight decay 1e-5, one-cycle, batch 64,
300 epochs, MSE.

Implementation notes. The four linear maps of a convolution that act on nodes are one
Linear(F → 4F) and the two source-side maps are gathered together; gathers use ``index_select``
(whose backward is a fast ``index_add_``); W_e has no bias (W_s's is the same constant); the
updates nothing reads (angles after the last ALIGNN layer, bonds after the last GCN layer) are
skipped. On the line graph the per-pair work (``W_e t``, gathers, the gated sums over ~14 pairs per
bond) dominates: it is the price of angles. Measured against the ``alignn`` package's pure-torch
model see ``benchmarks/alignn_peer.py``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data

from crystalgnn.models.readout import Readout, ReadoutOutput

Norm = Literal["batch", "layer"]


def _norm(features: int, kind: Norm) -> nn.Module:
    return nn.BatchNorm1d(features) if kind == "batch" else nn.LayerNorm(features)


class RBFExpansion(nn.Module):
    r""":math:`u \mapsto \exp(-(u - \mu_k)^2 / \Delta)`, ``bins`` centres evenly on [vmin, vmax],
    Δ their spacing (the reference's ``lengthscale``; note: Δ, not Δ²)."""

    def __init__(self, vmin: float, vmax: float, bins: int) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins), persistent=False)
        self.gamma = (bins - 1) / (vmax - vmin)

    def forward(self, values: Tensor) -> Tensor:
        """(M,) → (M, bins)."""
        return torch.exp(-self.gamma * (values.unsqueeze(-1) - self.centers) ** 2)


class MLPLayer(nn.Sequential):
    """Linear → norm → SiLU."""

    def __init__(self, in_features: int, out_features: int, norm: Norm = "layer") -> None:
        super().__init__(nn.Linear(in_features, out_features), _norm(out_features, norm), nn.SiLU())


class EdgeGatedConv(nn.Module):
    """Edge-gated graph convolution with residual updates of nodes and edges (module docstring).

    ``edge_index`` rows are (source j, target i); messages go j → i. Shapes: x (N, F), e (E, F).
    """

    def __init__(self, features: int, norm: Norm = "layer") -> None:
        super().__init__()
        self.features = features
        # One matrix for the four maps of atoms: W_s (gate, target side), W_d (gate, source side),
        # U_d (neighbour), U_s (self), in that order.
        self.node_maps = nn.Linear(features, 4 * features)
        # W_e without a bias: W_s's bias already adds one constant per feature to m.
        self.edge_gate = nn.Linear(features, features, bias=False)
        self.norm_nodes = _norm(features, norm)
        self.norm_edges = _norm(features, norm)

    def forward(self, x: Tensor, edge_index: Tensor, e: Tensor, update_edges: bool = True) -> tuple[Tensor, Tensor]:
        """Returns updated (x, e); with ``update_edges=False`` (the last layer to touch them) the
        edge update, whose result nothing reads, is skipped and ``e`` is returned as is."""
        source, target = edge_index
        f = self.features
        maps = self.node_maps(x)
        # index_select, not x[index]: its backward is one index_add_, several times faster on
        # CPU than the accumulating index_put_ of advanced indexing. Source-side maps in one gather.
        gate_target = maps[:, :f].index_select(0, target)
        gate_source, neighbour_update = maps[:, f : 3 * f].index_select(0, source).chunk(2, dim=-1)
        self_update = maps[:, 3 * f :]
        m = torch.addmm(gate_target + gate_source, e, self.edge_gate.weight.t())
        sigma = torch.sigmoid(m)
        # Σ σ ⊙ U_d h_j and Σ σ: two scatters read no more than one of their concatenation,
        # which would cost an extra pass over the (pairs × 2F) tensor.
        numerator = torch.zeros_like(self_update).index_add_(0, target, sigma * neighbour_update)
        denominator = torch.zeros_like(self_update).index_add_(0, target, sigma)
        x_new = x + F.silu(self.norm_nodes(self_update + numerator / (denominator + 1e-6)))
        if not update_edges:
            return x_new, e
        return x_new, e + F.silu(self.norm_edges(m))


class ALIGNNLayer(nn.Module):
    """Edge-gated convolution on the atom graph, then on the line graph (bonds as nodes)."""

    def __init__(self, features: int, norm: Norm = "layer") -> None:
        super().__init__()
        self.atom_conv = EdgeGatedConv(features, norm)
        self.bond_conv = EdgeGatedConv(features, norm)

    def forward(
        self, x: Tensor, e: Tensor, t: Tensor, edge_index: Tensor, line_index: Tensor, update_angles: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        x, m = self.atom_conv(x, edge_index, e)
        e, t = self.bond_conv(m, line_index, t, update_edges=update_angles)
        return x, e, t


class ALIGNN(nn.Module):
    """Atomistic line graph neural network on the shared readout.

    Args:
        atom_table: (Z_max + 1, A) input feature row per element (CGCNN's 92-dim table); ``None``
            learns an embedding of width ``hidden_features`` per element.
        out_features: outputs (targets for regression, classes for classification).
        alignn_layers: ALIGNN layers (4).
        gcn_layers: edge-gated layers on the atom graph after them (4).
        hidden_features: width of atom, bond and angle vectors (256).
        embedding_features: width of the first bond/angle embedding layer (64).
        edge_bins, edge_max: distance RBF centres on [0, edge_max] Å (80, 8.0).
        angle_bins: angle-cosine RBF centres on [−1, 1] (40).
        norm: ``"layer"`` (default) or ``"batch"`` (paper) normalization in convolutions and
            embeddings; batch norm breaks down in evaluation mode on degenerate inputs (1D chains).
        pooling: ``"mean"`` (default), ``"sum"`` or ``"site"``.
        head_layers: hidden SiLU layers of the head (0: a linear map, as the reference).
        dropout: dropout before the output layer (0).
        extra_features: crystal descriptors concatenated after pooling (0; de-ALIGNN).
        descriptor_head_layers: head hidden layers when ``extra_features`` > 0 (2, width
            hidden + extra_features).
        max_z: largest atomic number for the learned embedding (100).
    """

    def __init__(
        self,
        atom_table: Tensor | None,
        out_features: int = 1,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        hidden_features: int = 256,
        embedding_features: int = 64,
        edge_bins: int = 80,
        edge_max: float = 8.0,
        angle_bins: int = 40,
        norm: Norm = "layer",
        pooling: Literal["mean", "sum", "site"] = "mean",
        head_layers: int = 0,
        dropout: float = 0.0,
        extra_features: int = 0,
        descriptor_head_layers: int = 2,
        max_z: int = 100,
    ) -> None:
        super().__init__()
        if atom_table is not None:
            self.register_buffer("atom_table", torch.as_tensor(atom_table, dtype=torch.float32))
            self.atom_embedding: nn.Module = MLPLayer(self.atom_table.shape[1], hidden_features, norm)
        else:
            self.atom_table = None
            self.atom_embedding = nn.Embedding(max_z + 1, hidden_features)
        self.edge_embedding = nn.Sequential(
            RBFExpansion(0.0, edge_max, edge_bins),
            MLPLayer(edge_bins, embedding_features, norm),
            MLPLayer(embedding_features, hidden_features, norm),
        )
        self.angle_embedding = nn.Sequential(
            RBFExpansion(-1.0, 1.0, angle_bins),
            MLPLayer(angle_bins, embedding_features, norm),
            MLPLayer(embedding_features, hidden_features, norm),
        )
        self.alignn_layers = nn.ModuleList(ALIGNNLayer(hidden_features, norm) for _ in range(alignn_layers))
        self.gcn_layers = nn.ModuleList(EdgeGatedConv(hidden_features, norm) for _ in range(gcn_layers))
        n_hidden = descriptor_head_layers if extra_features else head_layers
        self.readout = Readout(
            hidden_features,
            out_features,
            hidden_features + extra_features,
            n_hidden,
            pooling,
            dropout,
            extra_features,
            activation="silu",
            activate_input=False,
        )

    def atom_inputs(self, z: Tensor) -> Tensor:
        """(N,) atomic numbers → (N, hidden) initial atom vectors."""
        if self.atom_table is not None:
            return self.atom_embedding(self.atom_table.index_select(0, z))
        return self.atom_embedding(z)

    def forward(self, batch: Data, extra: Tensor | None = None) -> ReadoutOutput:
        """``batch`` from :meth:`GraphStore.collate` of graphs built with ``line_graph=True``:
        z (N,), edge_index (2, E), edge_dist (E,), line_index (2, T), angle_cos (T,), batch (N,),
        num_graphs. Returns predictions (B, out), crystal embeddings (B, hidden) and, with site
        pooling, per-site contributions (N, out)."""
        if len(self.alignn_layers) and getattr(batch, "line_index", None) is None:
            raise ValueError("ALIGNN needs line graphs: build the graphs with GraphConfig(line_graph=True) (the CLI does for --model alignn)")
        x = self.atom_inputs(batch.z)
        e = self.edge_embedding(batch.edge_dist)
        if len(self.alignn_layers):
            t = self.angle_embedding(batch.angle_cos)
            last = len(self.alignn_layers) - 1
            for i, layer in enumerate(self.alignn_layers):
                # The angle update of the last ALIGNN layer and the bond update of the last layer
                # would feed nothing: skip them (a large saving on the line graph).
                x, e, t = layer(x, e, t, batch.edge_index, batch.line_index, update_angles=i < last)
        for i, conv in enumerate(self.gcn_layers):
            x, e = conv(x, batch.edge_index, e, update_edges=i < len(self.gcn_layers) - 1)
        return self.readout(x, batch.batch, int(batch.num_graphs), extra)
