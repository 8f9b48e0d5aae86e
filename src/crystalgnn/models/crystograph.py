r"""CrysToGraph — transformer graph convolutions on the atom graph and its line graph, then a
graph-wise transformer over the atoms of each crystal (seed ``004_…``; reference code
howardwang1997/CrysToGraph, branch ``feat/run_benchmark``).

Inputs. Atoms: the run's atom features (``FeatureConfig.atom_features``; the paper's 156 =
CGCNN's 92 ⊕ a 64-dim embedding from masked-atom pretraining, ``cgcnn+pretrained:RUN``; CGCNN's 92
alone by default) mapped by Linear(A → ``hidden``). Bonds (j → i), bond vector
:math:`\mathbf r = \mathbf x_j + \mathbf n L - \mathbf x_i`, every Gaussian
:math:`\exp(-(u - \mu)^2/\Delta^2)` with Δ its centre spacing:

* ``edge_features="invariant"`` (default): Gaussians of r on 0–8 Å every 0.2 (41) ⊕ [r > 8 Å] = 42;
  bond angles enter through the line graph only, so the model is invariant to rotations.
* ``edge_features="reference"``: also Gaussians of the polar angle θ = arccos(z/r) on 0–3.2 every
  0.2 (17) and of the azimuth φ = atan2(y, x) on −3.2–3.2 every 0.4 (17): 76, the reference's
  features. θ and φ are taken in the lab frame of the Cartesian coordinates, so predictions change
  when the crystal is rotated (a CIF's cell is put in pymatgen's standard orientation when read;
  POSCAR / extxyz / JSON cells keep theirs).

Both are computed per batch from the cached bond vectors (76 floats per bond would make the cache
76× larger) and mapped by Linear(· → ``edge_width``) (76). Bond pairs of the line graph
(a = j → i, b = i → k): Gaussians of the bond-angle cosine on −1.4…1.5 every 0.1 (30), mapped by
Linear(30 → ``angle_width``).

eTGC, edge-engaged transformer graph convolution, on a graph with node states x (width F) and
edge states e (width F_e); messages j → i, H heads of width d (:class:`EdgeTransformerConv`):

.. math::
    q_i, k_i, v_i &= W_Q x_i,\ W_K x_i,\ W_V x_i \in \mathbb R^{H\times d},\qquad
    \epsilon_{ij} = W_e e_{ij} \quad(\text{no bias})\\
    k'_{ij} &= K_e[k_i \oplus k_j \oplus \epsilon_{ij}],\qquad
    v'_{ij} = V_e[v_i \oplus v_j \oplus \epsilon_{ij}] \quad(\text{Linear}(3d \to d),\ \text{shared by the heads})\\
    \alpha_{ij} &= \operatorname{softmax}_{j \in \mathcal N(i)}\big(q_i \cdot k'_{ij} / \sqrt d\big)\\
    \tilde x_i &= x_i + \mathrm{LN}\big(W_O \textstyle\sum_j \alpha_{ij} v'_{ij}\big),\qquad
    \tilde e_{ij} = e_{ij} + \mathrm{LN}\big(W_{FE}\, \alpha_{ij}\epsilon_{ij}\big)\\
    x'_i &= \mathrm{Softplus}\big(\tilde x_i + \mathrm{BN}(W_2\,\mathrm{GELU}(W_1 \tilde x_i))\big),\qquad
    e'_{ij} = \mathrm{Softplus}\big(\tilde e_{ij} + \mathrm{BN}(W_2^e\,\mathrm{GELU}(W_1^e \tilde e_{ij}))\big)

with the feed-forward layers 4× wide. A block updates the line graph first (nodes: bonds, width
76, 8 heads of 24; edges: bond pairs, width 30), then the atom graph (nodes: atoms, 256, 8 heads of
32; edges: the bonds just updated). As in the reference, the bond-pair states are not updated:
every block reads the embedded cosines (the reference computes the update and discards it, so it
is not computed here: the line graph's ~144 pairs per atom set the cost of the model).

After the blocks: batch norm on atoms and on bonds, then the positional encodings
(:mod:`crystalgnn.graphs.positional`: 20 Laplacian eigenvectors, whose signs are flipped at random
per crystal and per vector while training, and 20 random-walk probabilities) are added through
Linear(40 → ``hidden``).

GwT, graph-wise transformer (:class:`GraphWiseTransformer`), over the atoms of each crystal c:

.. math::
    x_i &\leftarrow x_i + \operatorname{mean}_{j \to i,\ j \ne i}\ W_E e_{ji} \\
    \mathrm{Attn}_i &= \textstyle\sum_{j \in c} \operatorname{softmax}_{j \in c}\big(q_i\cdot k_j/\sqrt d\big)\, v_j
        \quad(\text{per head; } W_K \text{ without bias})\\
    h_i &= x_i + \mathrm{LN}(W_O\,\mathrm{Attn}_i),\qquad
    x'_i = \mathrm{Softplus}\big(h_i + \mathrm{LN}(W_2\,\mathrm{GELU}(W_1 h_i)) + b\big)

(FFN 2× wide, b a learned bias starting at 0). The edge mean runs over every bond into i; the
reference leaves out bonds from i's own periodic images (``remove_self_loops``), which makes the
model depend on the choice of cell (in a supercell such a bond joins two copies and counts), so
only the ``sum-broadcast`` reproduction does that.
Attention runs crystal by crystal (crystals of equal size together, one batched call each), so its
memory is Σ_c N_c² per head, never the (Σ_c N_c)² of a dense masked attention over the batch.
``gwt="sum-broadcast"`` reproduces the reference block, which calls PyG's ``softmax`` with every
atom in a group of its own: every weight is 1, each atom receives the plain sum Σ_{j∈c} v_j over its
crystal, and W_Q, W_K get exactly zero gradient (the published numbers come from this block; it is
also not invariant to the choice of cell, since the sum grows with a supercell). ``gwt="none"``
leaves the GwT out (an ablation).

Head (the reference's): mean pooling → Softplus → Linear(256, 256) → LayerNorm → (``head_layers``
− 1) × (Softplus → Linear) → Softplus → dropout → Linear(256 → out), through the shared
:class:`~crystalgnn.models.readout.Readout` (so sum / site pooling, classification, several targets
and ``--descriptors`` work too).

Defaults (:class:`CrysToGraphConfig`; paper Table A1 and the run script): 3 eTGC blocks, 1 GwT
layer, 1 head layer, width 256, bonds 76, bond pairs 30, 8 heads. Graph: exactly the 12 nearest
neighbours per atom, directed neighbour → centre, the radius grown from 8 Å by 2 Å
(``GraphConfig(strategy="nearest")``), with its line graph and the positional encodings. Training
(``train_defaults``): AdamW lr 1e-4, β = (0.9, 0.99), no weight decay, batch 32, one LR step ×0.1
at a third of the epochs, 300 epochs (the reference trains 500–2000, no validation set, last epoch
kept, raw targets; we standardize targets and keep the best epoch on validation, as for every
model). Ablations: ``--gwt none``, ``--no-line-graph-convs``, ``--no-positional-encoding``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.data import Data
from torch_geometric.utils import scatter, softmax

from crystalgnn.models.blocks import MAX_Z, AtomFeatures, AtomInput, GaussianExpansion
from crystalgnn.models.readout import Readout, ReadoutOutput
from crystalgnn.registry import InputNeeds, ModelSpec, keyword_builder, register

GwTMode = Literal["attention", "sum-broadcast", "none"]
EdgeFeatures = Literal["invariant", "reference"]

#: Width of the positional encodings the graph add-on stores (20 Laplacian + 20 random walk).
POSITIONAL_WIDTH = 40


@dataclass(frozen=True)
class CrysToGraphConfig:
    """CrysToGraph's own settings (paper Table A1, reference run script). Saved under ``model.arch``."""

    hidden: int = field(default=256, metadata={"help": "width of the atom states (256)"})
    edge_width: int = field(default=76, metadata={"help": "width of the bond states (76, the reference's bond features)"})
    angle_width: int = field(default=30, metadata={"help": "width of the bond-pair (angle) states (30)"})
    heads: int = field(default=8, metadata={"help": "attention heads of every eTGC and GwT layer (8)"})
    atom_head_dim: int = field(default=32, metadata={"help": "width of one head on the atom graph and in the GwT (32)"})
    bond_head_dim: int = field(default=24, metadata={"help": "width of one head on the line graph (24)"})
    etgc_layers: int = field(default=3, metadata={"help": "eTGC blocks, each line graph then atom graph (3, Table A1; the run script: 5)"})
    gwt_layers: int = field(default=1, metadata={"help": "graph-wise transformer layers (1)"})
    head_layers: int = field(default=1, metadata={"help": "hidden layers of the head after pooling (1)"})
    gwt: GwTMode = field(default="attention", metadata={
        "help": "graph-wise transformer: attention (per-crystal softmax self-attention, default), sum-broadcast "
                "(the reference block: every weight 1, each atom gets the sum over its crystal), none (left out)"})
    edge_features: EdgeFeatures = field(default="invariant", metadata={
        "help": "bond features: invariant (distance Gaussians + r > 8 Å flag, 42; rotation-invariant, default) or "
                "reference (also lab-frame polar and azimuth angle Gaussians, 76; changes under rotation)"})
    line_graph: bool = field(default=True, metadata={"flag": "--line-graph-convs",
                                                     "help": "eTGC on the line graph of bond pairs (on); --no-line-graph-convs is the ablation"})
    positional_encoding: bool = field(default=True, metadata={
        "help": "add Laplacian + random-walk positional encodings before the GwT (on); --no-positional-encoding is the ablation"})


class EdgeTransformerConv(nn.Module):
    """One eTGC layer with its feed-forward block (module docstring), updating nodes and edges.

    Args:
        width: node state width F.
        edge_width: edge state width F_e.
        heads: H.
        head_dim: d, the width of one head.
        update_edges: also return updated edge states; False returns the edges unchanged and
            skips their update (the line graph's bond pairs, whose updates the reference discards):
            then the edge terms of K_e and V_e are one product of e with K_e∘W_e and V_e∘W_e, the
            same numbers without the (E, H, d) intermediate, on the line graph's many pairs.
    """

    def __init__(self, width: int, edge_width: int, heads: int, head_dim: int, update_edges: bool = True) -> None:
        super().__init__()
        self.heads, self.head_dim, self.update_edges = heads, head_dim, update_edges
        inner = heads * head_dim
        self.query = nn.Linear(width, inner)
        self.key = nn.Linear(width, inner)
        self.value = nn.Linear(width, inner)
        self.edge_project = nn.Linear(edge_width, inner, bias=False)  # W_e
        self.edge_key = nn.Linear(3 * head_dim, head_dim)  # K_e
        self.edge_value = nn.Linear(3 * head_dim, head_dim)  # V_e
        self.node_out = nn.Linear(inner, width)  # W_O
        self.node_norm = nn.LayerNorm(width)
        self.node_ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.BatchNorm1d(width))
        if update_edges:
            self.edge_out = nn.Linear(inner, edge_width)  # W_FE
            self.edge_norm = nn.LayerNorm(edge_width)
            self.edge_ffn = nn.Sequential(nn.Linear(edge_width, 4 * edge_width), nn.GELU(), nn.Linear(4 * edge_width, edge_width),
                                          nn.BatchNorm1d(edge_width))

    def forward(self, x: Tensor, edge_index: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, F), edge_index (2, E) rows (source j, target i), e (E, F_e) → (x', e')."""
        source, target = edge_index
        n, h, d = x.shape[0], self.heads, self.head_dim
        q, k, v = (layer(x).view(n, h, d) for layer in (self.query, self.key, self.value))
        eps, k_on_edge, v_on_edge = self._edge_terms(e)
        k_edge = _node_terms(self.edge_key, k, source, target) + k_on_edge
        score = (q.index_select(0, target) * k_edge).sum(-1) / math.sqrt(d)  # (E, H)
        alpha = softmax(score, target, num_nodes=n).unsqueeze(-1)
        v_edge = _node_terms(self.edge_value, v, source, target) + v_on_edge
        aggregated = scatter(alpha * v_edge, target, dim=0, dim_size=n, reduce="sum")
        x = x + self.node_norm(self.node_out(aggregated.reshape(n, h * d)))
        x = F.softplus(x + self.node_ffn(x))
        if not self.update_edges:
            return x, e
        e = e + self.edge_norm(self.edge_out((alpha * eps).reshape(-1, h * d)))
        return x, F.softplus(e + self.edge_ffn(e))

    def _edge_terms(self, e: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """ε = W_e e (E, H, d) (None when edges are not updated) and the ε blocks of K_e and V_e
        applied to it, with their biases."""
        h, d = self.heads, self.head_dim
        on_key, on_value = self.edge_key.weight[:, 2 * d :], self.edge_value.weight[:, 2 * d :]
        if self.update_edges:
            eps = self.edge_project(e).view(-1, h, d)
            return eps, F.linear(eps, on_key, self.edge_key.bias), F.linear(eps, on_value, self.edge_value.bias)
        per_head = self.edge_project.weight.view(h, d, -1)  # W_e of each head, (H, d, F_e)
        composed = torch.cat([torch.einsum("ij,hjf->hif", on_key, per_head).reshape(h * d, -1),
                              torch.einsum("ij,hjf->hif", on_value, per_head).reshape(h * d, -1)])
        bias = torch.cat([self.edge_key.bias.repeat(h), self.edge_value.bias.repeat(h)])
        k_part, v_part = F.linear(e, composed, bias).view(-1, 2, h, d).unbind(1)
        return None, k_part, v_part


def _node_terms(layer: nn.Linear, nodes: Tensor, source: Tensor, target: Tensor) -> Tensor:
    """The node blocks of ``layer([nodes_i ⊕ nodes_j ⊕ ε_ij])`` for every edge j → i: its weight's
    first two column blocks act once per node and are then gathered, instead of concatenating and
    multiplying (E, H, 3d) rows (the same numbers, several times less work on the line graph's many
    pairs; the ε block is :meth:`EdgeTransformerConv._edge_terms`). nodes (N, H, d) → (E, H, d)."""
    d = nodes.shape[-1]
    on_target, on_source = layer.weight[:, :d], layer.weight[:, d : 2 * d]
    return (nodes @ on_target.T).index_select(0, target) + (nodes @ on_source.T).index_select(0, source)


def crystal_attention(q: Tensor, k: Tensor, v: Tensor, sizes: Tensor) -> Tensor:
    """Softmax self-attention among the atoms of each crystal, scale 1/√d.

    q, k, v (N, H, d) with the atoms of each crystal contiguous; ``sizes`` (B,) atoms per crystal.
    Crystals of equal size are stacked and attended in one call, so the scores held are
    Σ_c N_c² per head. Returns (N, H, d)."""
    offsets = torch.cumsum(sizes, 0) - sizes
    pieces, rows = [], []
    for size in torch.unique(sizes).tolist():
        chosen = offsets[sizes == size]
        index = (chosen.unsqueeze(1) + torch.arange(size, device=q.device)).reshape(-1)
        group = len(chosen)
        shaped = [t.index_select(0, index).view(group, size, *t.shape[1:]).transpose(1, 2) for t in (q, k, v)]  # (G, H, n, d)
        out = F.scaled_dot_product_attention(*shaped)
        pieces.append(out.transpose(1, 2).reshape(group * size, *v.shape[1:]))
        rows.append(index)
    return torch.zeros_like(v).index_copy(0, torch.cat(rows), torch.cat(pieces))


def sum_broadcast(q: Tensor, k: Tensor, v: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """The reference GwT's aggregation: PyG ``softmax`` over groups of one atom, so every weight is
    exactly 1 (its gradient, and so W_Q's and W_K's, is exactly 0) and each atom receives the sum
    of v over its crystal. (N, H, d) → (N, H, d)."""
    score = (q * k).sum(-1, keepdim=True)
    weight = torch.exp(score - score)  # a softmax over a single element: 1, with zero gradient
    totals = scatter(weight * v, batch, dim=0, dim_size=num_graphs, reduce="sum")
    return totals.index_select(0, batch)


class GraphWiseTransformer(nn.Module):
    """One GwT layer (module docstring). ``mode``: "attention" or "sum-broadcast"."""

    def __init__(self, width: int, edge_width: int, heads: int, head_dim: int, mode: GwTMode = "attention") -> None:
        super().__init__()
        if mode not in ("attention", "sum-broadcast"):
            raise ValueError(f"GwT mode {mode!r}: choose 'attention' or 'sum-broadcast'")
        self.mode, self.heads, self.head_dim = mode, heads, head_dim
        inner = heads * head_dim
        self.edge_embed = nn.Linear(edge_width, width)  # W_E
        self.query = nn.Linear(width, inner)
        self.key = nn.Linear(width, inner, bias=False)
        self.value = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)
        self.attention_norm = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.ffn_norm = nn.LayerNorm(width)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: Tensor, batch: Tensor, sizes: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        """x (N, F) atoms, batch (N,) crystal of each atom, sizes (B,) atoms per crystal,
        edge_index (2, E), e (E, F_e) bond states → (N, F)."""
        source, target = edge_index
        n = x.shape[0]
        if self.mode == "sum-broadcast":  # the reference leaves out bonds to an atom's own periodic images
            other = source != target
            e, target = e[other], target[other]
        x = x + scatter(self.edge_embed(e), target, dim=0, dim_size=n, reduce="mean")
        q, k, v = (layer(x).view(n, self.heads, self.head_dim) for layer in (self.query, self.key, self.value))
        if self.mode == "attention":
            attended = crystal_attention(q, k, v, sizes)
        else:
            attended = sum_broadcast(q, k, v, batch, int(sizes.numel()))
        h = x + self.attention_norm(self.out(attended.reshape(n, -1)))
        return F.softplus(h + self.ffn_norm(self.ffn(h)) + self.bias)


class CrysToGraph(nn.Module):
    """CrysToGraph on the shared readout.

    Args:
        atom_table: the atom inputs (:func:`crystalgnn.models.atom_inputs`): CGCNN's table, an
            :class:`AtomFeatures` (e.g. ``cgcnn+pretrained:RUN``), or None for a learned embedding.
        out_features: outputs (targets for regression, classes for classification).
        hidden: atom state width (256).
        edge_width: bond state width (76).
        angle_width: bond-pair state width (30).
        heads: attention heads (8).
        atom_head_dim: head width on atoms and in the GwT (32).
        bond_head_dim: head width on the line graph (24).
        etgc_layers: eTGC blocks (3).
        gwt_layers: GwT layers (1).
        head_layers: hidden layers of the head (1).
        gwt: ``"attention"`` (default), ``"sum-broadcast"`` (the reference) or ``"none"``.
        edge_features: ``"invariant"`` (default, 42) or ``"reference"`` (lab-frame angles, 76).
        line_graph: eTGC on the line graph (True).
        positional_encoding: add the positional encodings before the GwT (True).
        pooling: ``"mean"`` (default), ``"sum"`` or ``"site"``.
        dropout: dropout before the output layer (0).
        extra_features: crystal descriptors concatenated after pooling (0).
        max_z: largest atomic number of a learned embedding (100).
    """

    def __init__(
        self,
        atom_table: Tensor | AtomFeatures | None,
        out_features: int = 1,
        hidden: int = 256,
        edge_width: int = 76,
        angle_width: int = 30,
        heads: int = 8,
        atom_head_dim: int = 32,
        bond_head_dim: int = 24,
        etgc_layers: int = 3,
        gwt_layers: int = 1,
        head_layers: int = 1,
        gwt: GwTMode = "attention",
        edge_features: EdgeFeatures = "invariant",
        line_graph: bool = True,
        positional_encoding: bool = True,
        pooling: Literal["mean", "sum", "site"] = "mean",
        dropout: float = 0.0,
        extra_features: int = 0,
        max_z: int = MAX_Z,
    ) -> None:
        super().__init__()
        if etgc_layers < 1:
            raise ValueError("CrysToGraph needs at least one eTGC block (etgc_layers >= 1)")
        if edge_features not in ("invariant", "reference"):
            raise ValueError(f"edge_features {edge_features!r}: choose 'invariant' or 'reference'")
        self.embedding_width = hidden
        self.edge_features = edge_features
        self.use_line_graph = line_graph
        self.use_positional_encoding = positional_encoding
        self.atom_input = AtomInput(hidden, atom_table, project="linear", max_z=max_z)
        self.distance_expansion = GaussianExpansion(0.0, 8.0, 0.2)  # 41
        self.polar_expansion = GaussianExpansion(0.0, 3.2, 0.2)  # 17
        self.azimuth_expansion = GaussianExpansion(-3.2, 3.2, 0.4)  # 17
        self.cosine_expansion = GaussianExpansion(-1.4, 1.5, 0.1)  # 30
        bond_features = self.distance_expansion.num_features + 1
        if edge_features == "reference":
            bond_features += self.polar_expansion.num_features + self.azimuth_expansion.num_features
        self.bond_input = nn.Linear(bond_features, edge_width)
        self.angle_input = nn.Linear(self.cosine_expansion.num_features, angle_width) if line_graph else None
        # bond pairs keep their embedded cosines: the reference discards their updates (above)
        self.line_convs = nn.ModuleList(EdgeTransformerConv(edge_width, angle_width, heads, bond_head_dim, update_edges=False)
                                        for _ in range(etgc_layers)) if line_graph else None
        self.atom_convs = nn.ModuleList(EdgeTransformerConv(hidden, edge_width, heads, atom_head_dim) for _ in range(etgc_layers))
        self.atom_norm = nn.BatchNorm1d(hidden)
        self.bond_norm = nn.BatchNorm1d(edge_width)
        self.positional = nn.Linear(POSITIONAL_WIDTH, hidden) if positional_encoding else None
        self.gwts = nn.ModuleList(GraphWiseTransformer(hidden, edge_width, heads, atom_head_dim, gwt)
                                  for _ in range(gwt_layers if gwt != "none" else 0))
        self.readout = Readout(hidden, out_features, hidden, head_layers, pooling, dropout, extra_features,
                               activation="softplus", activate_input=True, first_layer_norm=True)

    def bond_features(self, edge_vec: Tensor, edge_dist: Tensor) -> Tensor:
        """(E, 3) bond vectors, (E,) lengths → (E, 42) invariant or (E, 76) reference features."""
        pieces = [self.distance_expansion(edge_dist)]
        if self.edge_features == "reference":
            polar = torch.acos(torch.clamp(edge_vec[:, 2] / edge_dist.clamp_min(1e-12), -1.0, 1.0))
            azimuth = torch.atan2(edge_vec[:, 1], edge_vec[:, 0])
            pieces += [self.polar_expansion(polar), self.azimuth_expansion(azimuth)]
        pieces.append((edge_dist > 8.0).to(edge_dist.dtype).unsqueeze(-1))
        return torch.cat(pieces, dim=-1)

    def positional_encodings(self, batch: Data) -> Tensor:
        """(N, 40): Laplacian eigenvectors (signs flipped at random per crystal and vector while
        training) ⊕ random-walk probabilities, from the graph add-on ``positional_encodings``."""
        laplacian, walks = getattr(batch, "laplacian_pe", None), getattr(batch, "random_walk_pe", None)
        if laplacian is None or walks is None:
            raise ValueError("CrysToGraph's positional encodings need the graph add-on 'positional_encodings' "
                             "(RunConfig.graph_inputs() adds it), or --no-positional-encoding")
        if self.training:
            signs = torch.randint(0, 2, (int(batch.num_graphs), laplacian.shape[1]), device=laplacian.device) * 2 - 1
            laplacian = laplacian * signs.to(laplacian.dtype).index_select(0, batch.batch)
        return torch.cat([laplacian, walks], dim=-1)

    def forward(self, batch: Data, extra: Tensor | None = None) -> ReadoutOutput:
        """``batch`` of graphs: z (N,), edge_index (2, E), edge_vec (E, 3), edge_dist (E,), batch (N,),
        num_graphs; with the line graph line_index (2, T), angle_cos (T,); with positional
        encodings laplacian_pe, random_walk_pe (N, 20). Returns predictions (B, out), crystal
        embeddings (B, hidden) and, with site pooling, per-site contributions (N, out)."""
        atoms = self.atom_input(batch.z, batch)
        bonds = self.bond_input(self.bond_features(batch.edge_vec, batch.edge_dist))
        angles = None
        if self.line_convs is not None:
            line_index = getattr(batch, "line_index", None)
            if line_index is None:
                raise ValueError("CrysToGraph with the line graph needs GraphConfig(line_graph=True) (--line-graph), or --no-line-graph")
            angles = self.angle_input(self.cosine_expansion(batch.angle_cos))
        for index, atom_conv in enumerate(self.atom_convs):
            if self.line_convs is not None:
                bonds, angles = self.line_convs[index](bonds, line_index, angles)
            atoms, bonds = atom_conv(atoms, batch.edge_index, bonds)
        atoms, bonds = self.atom_norm(atoms), self.bond_norm(bonds)
        if self.positional is not None:
            atoms = atoms + self.positional(self.positional_encodings(batch))
        num_graphs = int(batch.num_graphs)
        if len(self.gwts):
            sizes = torch.bincount(batch.batch, minlength=num_graphs)
            for gwt in self.gwts:
                atoms = gwt(atoms, batch.batch, sizes, batch.edge_index, bonds)
        return self.readout(atoms, batch.batch, num_graphs, extra)


def _needs(settings: CrysToGraphConfig) -> InputNeeds:
    return InputNeeds(line_graph=settings.line_graph,
                      graph_addons=("positional_encodings",) if settings.positional_encoding else ())


register(ModelSpec(
    name="crystograph",
    settings=CrysToGraphConfig,
    build=keyword_builder(CrysToGraph),
    description="CrysToGraph (seed 004): eTGC transformer convolutions on the atom and line graphs, a graph-wise transformer, "
                "positional encodings",
    needs=_needs,
    graph_defaults={"strategy": "nearest", "line_graph": True},
    train_defaults={"epochs": 300, "batch_size": 32, "optimizer": "adamw", "lr": 1e-4, "weight_decay": 0.0, "adam_beta2": 0.99,
                    "scheduler": "multistep", "milestones": (), "gamma": 0.1},
))
