r"""OCrystalNet — orbital-field-matrix atom inputs and communicative atom–bond message passing
(seed ``003_…``; modified from CMPNN, Song et al., IJCAI 2020). The paper has no public code; every
choice it leaves open is listed below with the reason.

Inputs. Atom u: :math:`x(u) = x_o(u) \oplus x_p(u)` (Eq. 3), the per-site orbital field matrix
flattened with the orbital one-hot vector appended (1056) and JARVIS's 438 CFID element features,
1494 in all — ``FeatureConfig(atom_features="ofm+cfid")``, the default of ``defaults_for
("ocrystalnet")`` and ``--model ocrystalnet`` (see :mod:`crystalgnn.features.choices`; any other
choice works too, e.g. ``cgcnn`` for the ablation). Bond (u→v)_k: the distance expanded in
Gaussians (Eq. 4 reads as one Gaussian of centre 2.5 Å and width 0.5 Å, which cannot tell bonds
apart and is probably garbled: we use CGCNN's expansion on 0–``gaussian_stop`` Å every
``gaussian_step`` Å, and say so).

Initial states (CMPNN's input maps, without bias as in CMPNN):

.. math::
    h^0(u) = \mathrm{Mish}(W_a\, x(u)), \qquad h^0((u,v)_k) = \mathrm{Mish}(W_b\,[h^0(u) \oplus x((u,v)_k)])

CMPNN feeds the raw source-atom features to every bond; with 1494-dim atoms that is one
(E × 1494) product per batch, so the bond map reads the projected source atom h⁰(u) instead (the
same information, ~5× cheaper on the CPU). CMPNN uses ReLU here; Mish (the paper's activation in
Eq. 9) is used throughout.

Message passing, layers l = 1 … L (Eqs. 5–9), edges directed (u→v) = ``edge_index`` (source u, target v):

.. math::
    m^l(v) &= \Big(\sum_{(u,v)_k} h^{l-1}((u,v)_k)\Big) \odot \max_{(u,v)_k} h^{l-1}((u,v)_k) \qquad &(5)\\
    h^l(v) &= m^l(v) + h^{l-1}(v) \qquad &(7)\\
    m^l((u,v)_k) &= h^l(u) - h^{l-1}((v,u)_{-k}) \qquad &(8)\\
    h^l((u,v)_k) &= \mathrm{Mish}\big(h^0((u,v)_k) + W^l\, m^l((u,v)_k)\big) \qquad &(9)

The aggregate of Eq. 5 is CMPNN's sum ⊙ max over the incoming bonds; the max includes a zero (the
zero padding row of CMPNN's implementation). The reverse of bond (u→v, image k) is (v→u, image −k),
read from the graph's ``reverse_edge`` field (graph add-on ``reverse_edges``), which needs a
symmetric neighbour list. Eq. 8 writes the reverse bond's state at layer l; only layer l − 1's
exists when it is needed (CMPNN uses that one too). After layer L the nodes are updated once more
by Eqs. 5 and 7 from the last bond states, then pooled by the shared
:class:`~crystalgnn.models.readout.Readout` (mean, Eq. 10; also sum / site pooling, classification,
several targets and ``--descriptors``) and mapped by a head of ``head_layers`` SiLU layers of
width ``hidden`` (CMPNN's two-layer feed-forward network). CMPNN's final Linear(3H → H) over
[m, h, h⁰] and its bidirectional GRU over the atoms are not in the paper (its Eq. 7 replaces
CMPNN's communicate step) and are left out.

Because sum ⊙ max grows with the number of incoming bonds (CMPNN was made for molecules, 2–4
bonds per atom; a crystal graph has 12–20), the atom states grow by an order of magnitude per
layer: the paper's model as written diverges here (training loss 1e8 in the first epoch,
validation MAE 1.08 / 0.85 log10 GPa after 12 epochs on mp_elasticity3k). ``norm="layer"`` (the
default) puts a layer norm on the atom states after Eq. 7 (and after the final update);
``aggregate="mean*max"`` divides the sum by the number of incoming bonds instead. Chosen on the
validation split of mp_elasticity3k (log10 K, log10 G together, 12 epochs, ``benchmarks/ocrystalnet.py
--study tune``): sum*max + layer norm 0.0689 / 0.0995, mean*max + layer norm 0.0745 / 0.1093,
mean*max 0.0783 / 0.1139, sum*max 1.075 / 0.855. ``norm="none"`` is the paper's model;
``norm="message"`` (h + LN(m), which keeps the atom's own state beside the larger aggregate) was
worse (below).

Defaults (:class:`OCrystalNetConfig`). Not in the paper: the layer norm (above), hidden width and
depth (CMPNN's 300 and 3), the head (CMPNN's 2-layer FFN), the bond expansion (CGCNN's 41
Gaussians on 0–8 Å) and the cutoff d₀. Under a 10-minute budget on the same validation split
(``--study tune-budget``) CMPNN's width and the paper's rates stayed best: width 300, peak 3e-4,
batch 64: 0.0612 / 0.0921 (26 epochs); peak 1e-3: 0.0585 / 0.0935; width 128 (55 epochs): 0.0692
/ 0.0988, with peak 1e-3 0.0631 / 0.0936; batch 32: 0.0646 / 0.0961; ``norm="message"``: 0.0693 /
0.0991. With the accuracy study's 30 minutes (test MAE; the default 0.0609 / 0.0913)
``message_dropout`` 0.1 gave 0.0644 / 0.0922 and 0.3 gave 0.0736 / 0.0973, so it stays 0;
depth 2 gave 0.0605 / 0.0918 (the same) and depth 4 0.0651 / 0.0944, so CMPNN's 3 stays.
The graph is the symmetrized 12-nearest-neighbour graph (``GraphConfig(strategy="knn")``, every
bond in both directions, so every bond has its reverse); CGCNN's radius graph cut to the 12
nearest is not symmetric, and an uncapped radius graph at 8 Å holds 4–8× more bonds. Training
(``train_defaults``): Adam with the Noam schedule (linear warm-up 1e-4 → 3e-4 over 2 epochs, then
exponential decay to 1e-5; the paper's three rates, chemprop's ``NoamLR``), batch 64, 100 epochs,
MSE on standardized targets. The tuning behind these choices is in ``benchmarks/ocrystalnet.py``
and README.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data

from crystalgnn.models.blocks import MAX_Z, AtomFeatures, AtomInput, GaussianExpansion
from crystalgnn.models.readout import Readout, ReadoutOutput
from crystalgnn.registry import InputNeeds, ModelSpec, keyword_builder, register

Aggregate = Literal["sum*max", "mean*max"]
Norm = Literal["none", "layer", "message"]


@dataclass(frozen=True)
class OCrystalNetConfig:
    """OCrystalNet's own settings (paper where given, CMPNN's defaults otherwise). Saved under ``model.arch``."""

    hidden: int = field(default=300, metadata={"help": "width of atom and bond states (300, CMPNN's)"})
    depth: int = field(default=3, metadata={"help": "message passing layers L, Eqs. 5-9 (3, CMPNN's)"})
    head_layers: int = field(default=1, metadata={"help": "hidden SiLU layers of the head after pooling (1: CMPNN's 2-layer FFN)"})
    aggregate: Aggregate = field(default="sum*max", metadata={
        "help": "Eq. 5 aggregate of incoming bond states: sum*max (CMPNN's, default) or mean*max (divided by the bonds per atom)"})
    norm: Norm = field(default="layer", metadata={
        "help": "layer norm in Eq. 7: of m + h (layer, default: chosen on validation), of m alone before the residual sum "
                "(message), or none (the paper, which diverges on crystals)"})
    gaussian_stop: float = field(default=8.0, metadata={"help": "last bond-length Gaussian centre in Å (8)"})
    gaussian_step: float = field(default=0.2, metadata={"help": "spacing and width of the bond-length Gaussians in Å (0.2)"})
    message_dropout: float = field(default=0.0, metadata={
        "help": "dropout on the bond states after every Eq. 9 update (0; chemprop's place for CMPNN's dropout)"})


def aggregate_incoming(bond_states: Tensor, target: Tensor, num_atoms: int, kind: Aggregate = "sum*max") -> Tensor:
    """Eq. 5: (Σ ⊙ max) over the bonds into each atom; the max starts from 0 (CMPNN's padding row).
    ``mean*max`` divides the sum by the number of incoming bonds. (E, H) → (N, H)."""
    index = target.unsqueeze(-1).expand_as(bond_states)
    summed = torch.zeros(num_atoms, bond_states.shape[1], dtype=bond_states.dtype, device=bond_states.device).index_add_(0, target, bond_states)
    largest = torch.zeros_like(summed).scatter_reduce_(0, index, bond_states, reduce="amax", include_self=True)
    if kind == "mean*max":
        count = torch.bincount(target, minlength=num_atoms).clamp_(min=1).to(summed.dtype)
        summed = summed / count.unsqueeze(-1)
    return summed * largest


class OCrystalNet(nn.Module):
    """OCrystalNet on the shared readout.

    Args:
        atom_table: the atom inputs (:func:`crystalgnn.models.atom_inputs`): an
            :class:`AtomFeatures` (``ofm+cfid`` by default), an element table, or None for a
            learned embedding.
        out_features: outputs (targets for regression, classes for classification).
        hidden: atom and bond state width H (300).
        depth: message passing layers L (3).
        head_layers: hidden layers of the head (1).
        aggregate: ``"sum*max"`` (CMPNN, default) or ``"mean*max"``.
        norm: ``"layer"`` (default: LN(m + h) in Eq. 7), ``"message"`` (h + LN(m)) or ``"none"`` (the paper).
        gaussian_stop, gaussian_step: bond-length Gaussians on [0, stop] Å (8, 0.2 → 41).
        message_dropout: dropout on the bond states after each Eq. 9 update (0).
        pooling: ``"mean"`` (Eq. 10, default), ``"sum"`` or ``"site"``.
        dropout: dropout before the output layer (0).
        extra_features: crystal descriptors concatenated after pooling (0).
        max_z: largest atomic number of a learned embedding (100).
    """

    def __init__(
        self,
        atom_table: Tensor | AtomFeatures | None,
        out_features: int = 1,
        hidden: int = 300,
        depth: int = 3,
        head_layers: int = 1,
        aggregate: Aggregate = "sum*max",
        norm: Norm = "layer",
        gaussian_stop: float = 8.0,
        gaussian_step: float = 0.2,
        message_dropout: float = 0.0,
        pooling: Literal["mean", "sum", "site"] = "mean",
        dropout: float = 0.0,
        extra_features: int = 0,
        max_z: int = MAX_Z,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("OCrystalNet needs at least one message passing layer (depth >= 1)")
        self.embedding_width = hidden
        self.aggregate = aggregate
        self.atom_input = AtomInput(hidden, atom_table, project="linear", max_z=max_z, bias=False)  # W_a, no bias (CMPNN)
        self.expansion = GaussianExpansion(0.0, gaussian_stop, gaussian_step)
        self.bond_input = nn.Linear(hidden + self.expansion.num_features, hidden, bias=False)  # W_b
        self.bond_maps = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(depth))  # W^l of Eq. 9
        self.norm_placement = norm
        self.message_dropout = nn.Dropout(message_dropout)
        self.norms = nn.ModuleList((nn.Identity() if norm == "none" else nn.LayerNorm(hidden)) for _ in range(depth + 1))
        self.readout = Readout(hidden, out_features, hidden, head_layers, pooling, dropout, extra_features, activation="silu", activate_input=False)

    def forward(self, batch: Data, extra: Tensor | None = None) -> ReadoutOutput:
        """``batch`` of graphs with the ``reverse_edges`` add-on (and ``ofm`` for OFM inputs):
        z (N,), edge_index (2, E), edge_dist (E,), reverse_edge (E,), batch (N,), num_graphs.
        Returns predictions (B, out), crystal embeddings (B, H) and, with site pooling, per-site
        contributions (N, out)."""
        reverse = getattr(batch, "reverse_edge", None)
        if reverse is None:
            raise ValueError("OCrystalNet needs each bond's reverse: build the graphs with the 'reverse_edges' add-on "
                             "(RunConfig.graph_inputs() adds it for --model ocrystalnet)")
        source, target = batch.edge_index
        atoms0 = F.mish(self.atom_input(batch.z, batch))  # h⁰(u)
        bonds0 = F.mish(self.bond_input(torch.cat([atoms0.index_select(0, source), self.expansion(batch.edge_dist)], dim=-1)))
        atoms, bonds = atoms0, bonds0
        for bond_map, norm in zip(self.bond_maps, self.norms):
            atoms = self._update_atoms(atoms, bonds, target, norm)  # Eqs. 5, 7
            message = atoms.index_select(0, source) - bonds.index_select(0, reverse)  # Eq. 8
            bonds = self.message_dropout(F.mish(bonds0 + bond_map(message)))  # Eq. 9
        atoms = self._update_atoms(atoms, bonds, target, self.norms[-1])  # the final node update
        return self.readout(atoms, batch.batch, int(batch.num_graphs), extra)

    def _update_atoms(self, atoms: Tensor, bonds: Tensor, target: Tensor, norm: nn.Module) -> Tensor:
        """Eqs. 5 and 7: h(v) ← m(v) + h(v), normalized after the sum (``layer``) or on m alone (``message``)."""
        message = aggregate_incoming(bonds, target, atoms.shape[0], self.aggregate)
        return atoms + norm(message) if self.norm_placement == "message" else norm(message + atoms)


register(ModelSpec(
    name="ocrystalnet",
    settings=OCrystalNetConfig,
    build=keyword_builder(OCrystalNet),
    description="OCrystalNet (seed 003): OFM + CFID atom inputs, CMPNN-style communicative atom-bond message passing",
    needs=lambda s: InputNeeds(graph_addons=("reverse_edges",)),
    graph_defaults={"strategy": "knn"},
    feature_defaults={"atom_features": "ofm+cfid"},
    train_defaults={"epochs": 100, "batch_size": 64, "optimizer": "adam", "lr": 3e-4, "scheduler": "noam",
                    "noam_warmup_epochs": 2.0, "noam_initial_lr": 1e-4, "noam_final_lr": 1e-5},
))
