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

Defaults (reference ``ALIGNNConfig`` and paper, :class:`ALIGNNConfig`): 4 ALIGNN + 4 GCN layers,
hidden 256, embedding 64, 80 distance and 40 angle centres, layer norm. Graph: the k-nearest graph
(12, ties kept, cutoff 8 Å growing by 2 Å) with its line graph. Training defaults (the
registry's ``train_defaults``, used by ``defaults_for("alignn")`` and ``--model alignn``): AdamW
peak lr 1e-2 (the reference ``TrainingConfig``; on mp_elasticity3k it beat 1e-3 after 10 epochs,
val MAE 0.096 vs 0.112), weight decay 1e-5 (paper), one-cycle, batch 64, 300 epochs, MSE.

Implementation notes (the convolution is :class:`crystalgnn.models.blocks.EdgeGatedConv`): the
updates nothing reads (angles after the last ALIGNN layer, bonds after the last GCN layer) are
skipped. On the line graph the per-pair work (``W_e t``, gathers, the gated sums over ~14 pairs per
bond) dominates: it is the price of angles. Measured against the ``alignn`` package's pure-torch
model see ``benchmarks/alignn_peer.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor, nn
from torch_geometric.data import Data

from crystalgnn.models.blocks import MAX_Z, AtomFeatures, AtomInput, EdgeGatedConv, MLPLayer, Norm, RBFExpansion
from crystalgnn.models.readout import Readout, ReadoutOutput
from crystalgnn.registry import InputNeeds, ModelSpec, keyword_builder, register


@dataclass(frozen=True)
class ALIGNNConfig:
    """ALIGNN's own settings (Choudhary & DeCost 2021; defaults of the reference ``ALIGNNConfig``).
    Saved under ``model.arch``.

    Bond lengths are expanded by ``edge_bins`` radial basis functions on [0, ``edge_max``] Å and
    bond-angle cosines by ``angle_bins`` on [−1, 1], both exp(−(u − μ_k)²/Δ) with Δ the centre
    spacing, then embedded by two MLP layers (→ ``embedding_features`` → ``hidden_features``).
    ``norm``: layer norm, as in the reference package's current pure-torch model; "batch" is the
    paper's batch norm, which breaks down in evaluation mode on degenerate inputs (1D chains, where
    every bond angle is 0° or 180°: validation MAE 1e9 Å) and was no better on log10 G_VRH (test
    MAE 0.0864 vs 0.0848 with layer norm, width 64, 40 epochs).

    ``head_layers``: hidden layers of the head after pooling (reference: 0, a single linear map);
    ``descriptor_head_layers`` replaces it when descriptors join (Gong et al.'s de-ALIGNN: two
    layers of width hidden + descriptors).
    """

    alignn_layers: int = field(default=4, metadata={"help": "ALIGNN layers: edge-gated convolution on the atom graph, then on the line graph (4)"})
    gcn_layers: int = field(default=4, metadata={"help": "edge-gated convolutions on the atom graph after them (4)"})
    hidden_features: int = field(default=256, metadata={"flag": "--hidden", "help": "width of atom, bond and angle vectors (256)"})
    embedding_features: int = field(default=64, metadata={"flag": "--embedding", "help": "width of the first bond/angle embedding layer (64)"})
    edge_bins: int = field(default=80, metadata={"help": "distance RBF centres (80)"})
    edge_max: float = field(default=8.0, metadata={"help": "largest distance RBF centre in Å (8)"})
    angle_bins: int = field(default=40, metadata={"help": "bond-angle cosine RBF centres on [-1, 1] (40)"})
    norm: Literal["batch", "layer"] = field(default="layer", metadata={
        "help": "normalization in convolutions and embeddings: layer (default) or batch (the paper's; breaks down on 1D chains)"})
    head_layers: int = field(default=0, metadata={"help": "hidden SiLU layers of the head (0: a linear map, as the reference)"})
    descriptor_head_layers: int = field(default=2, metadata={"help": "head hidden layers with --descriptors (2, de-ALIGNN)"})

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
        atom_table: the atom inputs of the run's ``--atom-features`` (:func:`crystalgnn.models.atom_inputs`):
            a (Z_max + 1, A) table per element (CGCNN's one-hot), an ``AtomFeatures`` (OFM, CFID,
            combinations), or ``None`` to learn an embedding of width ``hidden_features`` per element.
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
        atom_table: Tensor | AtomFeatures | None,
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
        max_z: int = MAX_Z,
    ) -> None:
        super().__init__()
        self.embedding_width = hidden_features
        self.atom_input = AtomInput(hidden_features, atom_table, project="mlp", norm=norm, max_z=max_z)
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

    def forward(self, batch: Data, extra: Tensor | None = None) -> ReadoutOutput:
        """``batch`` from :meth:`GraphStore.collate` of graphs built with ``line_graph=True``:
        z (N,), edge_index (2, E), edge_dist (E,), line_index (2, T), angle_cos (T,), batch (N,),
        num_graphs. Returns predictions (B, out), crystal embeddings (B, hidden) and, with site
        pooling, per-site contributions (N, out)."""
        if len(self.alignn_layers) and getattr(batch, "line_index", None) is None:
            raise ValueError("ALIGNN needs line graphs: build the graphs with GraphConfig(line_graph=True) (the CLI does for --model alignn)")
        x = self.atom_input(batch.z, batch)
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


register(ModelSpec(
    name="alignn",
    settings=ALIGNNConfig,
    build=keyword_builder(ALIGNN),
    description="ALIGNN (Choudhary & DeCost 2021): edge-gated convolutions on the kNN graph and its line graph of bond angles",
    needs=lambda s: InputNeeds(line_graph=s.alignn_layers > 0),
    graph_defaults={"strategy": "knn", "line_graph": True},
    train_defaults={"epochs": 300, "batch_size": 64, "optimizer": "adamw", "lr": 1e-2, "weight_decay": 1e-5, "scheduler": "onecycle"},
    # Weights saved before the registry held the atom input as model.atom_table / model.atom_embedding.
    legacy_state_keys={"model.atom_table": "model.atom_input.table", "model.atom_embedding.": "model.atom_input.project."},
))
