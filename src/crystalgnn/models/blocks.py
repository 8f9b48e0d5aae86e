r"""Layers shared by the models: atom input, bond expansions, MLP layers, the edge-gated convolution.

Models import these blocks, never each other. Each block is small, typed and documented with its
equation; the models' files say which defaults they use.

* :class:`AtomInput` — atomic numbers → atom vectors: a fixed feature table (CGCNN's 92-dim
  one-hot) mapped by a linear layer or an MLP layer, or a learned embedding per element.
* :class:`GaussianExpansion` — CGCNN's :math:`\exp(-(d - \mu_k)^2 / w^2)`.
* :class:`RBFExpansion` — ALIGNN's :math:`\exp(-(u - \mu_k)^2 / \Delta)`, Δ the centre spacing.
* :class:`MLPLayer` — Linear → norm → SiLU.
* :class:`EdgeGatedConv` — the edge-gated graph convolution (Dwivedi et al.; ALIGNN Eqs. 1–3).

Expansions run inside the model, per batch (on the GPU when there is one), rather than being
stored: 41–80 floats per edge would make the graph cache 40–80× larger.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from crystalgnn.features.atom import SUPPORTED_MAX_Z

Norm = Literal["batch", "layer"]

#: Largest atomic number of the atom inputs (CGCNN's table and the learned embedding: 1–100).
MAX_Z = SUPPORTED_MAX_Z


def norm_layer(features: int, kind: Norm) -> nn.Module:
    """Batch norm or layer norm over ``features``."""
    return nn.BatchNorm1d(features) if kind == "batch" else nn.LayerNorm(features)


class MLPLayer(nn.Sequential):
    """Linear → norm → SiLU."""

    def __init__(self, in_features: int, out_features: int, norm: Norm = "layer") -> None:
        super().__init__(nn.Linear(in_features, out_features), norm_layer(out_features, norm), nn.SiLU())


class AtomInput(nn.Module):
    """Atoms → (N, width) initial atom vectors, from the run's atom features.

    ``table`` is what :func:`crystalgnn.models.atom_inputs` makes of ``FeatureConfig``: ``None``
    (a learned embedding of ``width`` per element, Z 0..``max_z``), a (Z_max + 1, A) element
    table (CGCNN's one-hot; row 0 unused), or an :class:`AtomFeatures` (element-table parts such as
    CFID, and per-site parts such as the orbital field matrix, concatenated in the order chosen).
    The raw vector is mapped to ``width`` by ``project="linear"`` (CGCNN: Linear(A → F)) or
    ``"mlp"`` (ALIGNN: Linear → norm → SiLU); ``bias=False`` drops the linear map's bias (CMPNN's
    input maps). Tables are buffers, so they travel with the weights and the device.
    """

    def __init__(
        self,
        width: int,
        table: Tensor | AtomFeatures | None = None,
        project: Literal["linear", "mlp"] = "linear",
        norm: Norm = "layer",
        max_z: int = MAX_Z,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.width = width
        self.features: AtomFeatures | None = None
        if isinstance(table, AtomFeatures):
            self.features = table
            in_features = table.width
            self.table = None
        elif table is not None:
            self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32))
            in_features = self.table.shape[1]
        else:
            self.table = None
            self.project: nn.Module = nn.Embedding(max_z + 1, width)
            return
        self.project = nn.Linear(in_features, width, bias=bias) if project == "linear" else MLPLayer(in_features, width, norm)

    def forward(self, z: Tensor, batch: Any = None) -> Tensor:
        """(N,) atomic numbers (and the batch, for per-site features) → (N, width)."""
        if self.features is not None:
            return self.project(self.features(z, batch))
        if self.table is not None:
            return self.project(self.table.index_select(0, z))
        return self.project(z)


class AtomFeatures(nn.Module):
    """The raw atom feature vector of a combined choice (``"ofm+cfid"``, ``"cgcnn+ofm"``, ...).

    ``parts``: the parts in order; ``element_table``: (Z_max + 1, A_e) the element-table parts
    side by side, in their order among ``parts`` (None when there are none); ``part_widths``: the
    width of each part. ``standardize``: (A_e,) bool, the element-table columns that are fit on the
    training atoms (CFID's: :meth:`fit`). ``orbital_table``: (95, 39) the orbital one-hot vectors
    when the OFM is a part, expanded per batch from the stored per-site sums ``batch.ofm_sums``
    (:func:`crystalgnn.features.ofm.expand_ofm` in torch): 32² + 32, or 39² + 39 with ``period_tag``.
    """

    def __init__(self, parts: tuple[str, ...], part_widths: tuple[int, ...], element_table: Tensor | None,
                 standardize: Tensor | None = None, orbital_table: Tensor | None = None, period_tag: bool = False) -> None:
        super().__init__()
        self.parts = tuple(parts)
        self.part_widths = tuple(int(w) for w in part_widths)
        self.width = sum(self.part_widths)
        self.period_tag = period_tag
        #: Elements of the training atoms whose missing values :meth:`fit` imputed.
        self.imputed: list[tuple[str, int, int, int]] = []
        self.register_buffer("element_table", None if element_table is None else torch.as_tensor(element_table, dtype=torch.float32))
        self.register_buffer("orbital_table", None if orbital_table is None else torch.as_tensor(orbital_table, dtype=torch.float32))
        if standardize is not None and bool(torch.as_tensor(standardize).any()):
            self.register_buffer("standardize", torch.as_tensor(standardize, dtype=torch.bool))
            # 0 until fit: a model whose standardized columns were never fit refuses to run
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        else:
            self.standardize = None
            self.fitted = None

    def fit(self, atom_counts: np.ndarray) -> list[tuple[str, int, int, int]]:
        """Standardize the ``standardize`` columns of the element table on the training atoms
        (``atom_counts[z]``: atoms of element z in the training crystals), imputing missing values
        (NaN) with the training mean (0 after standardization). Returns the imputed elements
        present in the training atoms: (symbol, Z, missing columns, atoms)."""
        from crystalgnn.features.cfid import cfid_table, fit_cfid_standardizer, imputed_elements

        if self.standardize is None:
            return []
        counts = np.zeros(self.element_table.shape[0])
        given = np.asarray(atom_counts, dtype=np.float64)[: len(counts)]
        counts[: len(given)] = given
        columns = self.standardize.cpu().numpy()
        table = self.element_table.cpu().double().numpy()
        max_z = len(counts) - 1
        table[:, columns] = fit_cfid_standardizer(counts).apply(cfid_table(max_z))
        self.element_table.copy_(torch.as_tensor(table, dtype=torch.float32))
        self.fitted.fill_(True)
        self.imputed = imputed_elements(counts)
        return self.imputed

    def forward(self, z: Tensor, batch: Any) -> Tensor:
        if self.fitted is not None and not bool(self.fitted):
            raise RuntimeError("the atom features' standardized columns (CFID) were never fit on training atoms (AtomFeatures.fit)")
        element_rows = None if self.element_table is None else self.element_table.index_select(0, z)
        pieces, column = [], 0
        for part, width in zip(self.parts, self.part_widths):
            if part == "ofm":
                if batch is None or getattr(batch, "ofm_sums", None) is None:
                    raise ValueError("OFM atom features need the graphs' per-site orbital sums (graph add-on 'ofm')")
                size = 39 if self.period_tag else 32
                orbitals = self.orbital_table.index_select(0, z)[:, :size]
                sums = batch.ofm_sums[:, :size]
                pieces.append(torch.cat([(sums.unsqueeze(2) * orbitals.unsqueeze(1)).flatten(1), orbitals], dim=1))
            else:
                pieces.append(element_rows[:, column : column + width])
                column += width
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)


#: exp(x) below this exponent is a subnormal float32 (under 1.2e-38) or zero.
_SUBNORMAL_EXPONENT = -87.0


def exp_without_subnormals(exponent: Tensor) -> Tensor:
    """``exp(exponent)``, with the values that would be subnormal floats (below 1.6e-38) set to 0.

    A Gaussian basis yields such values for every distance about 9.3–10 widths from a centre, and
    CPU matrix products slow down many times on subnormal operands: CGCNN's weight gradients on
    the 41 distance Gaussians took 470 ms instead of 61 ms per layer on a batch of 64 crystals of
    55 atoms (the whole training step 2.1 s against 0.61 s; ``benchmarks/subnormal_gaussians.py``).
    Each value changes by less than 1.6e-38.

    The exponent is clamped before ``exp`` (the clamped values are then set to 0): ``exp`` of far
    negative arguments takes a slow path on CPU (79 ms instead of 1.4 ms for CGCNN's 82,764 x 41
    Gaussians of a 256-crystal batch); the result and its gradient are unchanged."""
    small = exponent < _SUBNORMAL_EXPONENT
    return torch.exp(exponent.clamp(min=_SUBNORMAL_EXPONENT)).masked_fill(small, 0.0)


class GaussianExpansion(nn.Module):
    r"""Gaussian basis: :math:`u_k(d) = \exp(-(d - \mu_k)^2 / w^2)`, :math:`\mu_k = start + k\,step`.

    CGCNN defaults: start 0, stop 8 Å, step 0.2, width 0.2 → 41 features (reference
    ``GaussianDistance(dmin=0, dmax=8, step=0.2)``; its ``var`` is our ``width``, the step when
    not given).
    """

    def __init__(self, start: float = 0.0, stop: float = 8.0, step: float = 0.2, width: float | None = None) -> None:
        super().__init__()
        n = int(round((stop - start) / step)) + 1
        self.register_buffer("centers", start + step * torch.arange(n, dtype=torch.float32), persistent=False)
        self.width = float(width if width is not None else step)

    @property
    def num_features(self) -> int:
        return int(self.centers.numel())

    def forward(self, distances: Tensor) -> Tensor:
        """(E,) → (E, num_features)."""
        return exp_without_subnormals(-((distances.unsqueeze(-1) - self.centers) ** 2) / self.width**2)


class RBFExpansion(nn.Module):
    r""":math:`u \mapsto \exp(-(u - \mu_k)^2 / \Delta)`, ``bins`` centres evenly on [vmin, vmax],
    Δ their spacing (the ALIGNN reference's ``lengthscale``; note: Δ, not Δ²)."""

    def __init__(self, vmin: float, vmax: float, bins: int) -> None:
        super().__init__()
        self.register_buffer("centers", torch.linspace(vmin, vmax, bins), persistent=False)
        self.gamma = (bins - 1) / (vmax - vmin)

    def forward(self, values: Tensor) -> Tensor:
        """(M,) → (M, bins)."""
        return exp_without_subnormals(-self.gamma * (values.unsqueeze(-1) - self.centers) ** 2)


class EdgeGatedConv(nn.Module):
    r"""Edge-gated graph convolution with residual updates of nodes and edges (Dwivedi et al.;
    ALIGNN Eqs. 1–3), messages from j to i:

    .. math::
        m_{ij} &= W_s h_i + W_d h_j + W_e e_{ij},\qquad \hat e_{ij} = \frac{\sigma(m_{ij})}{\sum_{k} \sigma(m_{ik}) + 10^{-6}} \\
        h_i' &= h_i + \mathrm{SiLU}\big(\mathrm{Norm}(U_s h_i + \textstyle\sum_j \hat e_{ij} \odot U_d h_j)\big) \\
        e_{ij}' &= e_{ij} + \mathrm{SiLU}(\mathrm{Norm}(m_{ij}))

    ``edge_index`` rows are (source j, target i). Shapes: x (N, F), e (E, F).

    Implementation: the four maps that act on nodes are one Linear(F → 4F), applied to the nodes
    before gathering (the exact rewrite of applying them per edge); each gathered map is gathered
    on its own and W_e e is added in place into the gathered sum; gathers use ``index_select``
    (its backward is one fast ``index_add_``, several times faster on a CPU than the accumulating
    ``index_put_`` of ``x[index]``); W_e has no bias (W_s's bias already adds one constant per
    feature to m).
    """

    def __init__(self, features: int, norm: Norm = "layer") -> None:
        super().__init__()
        self.features = features
        # W_s (gate, target side), W_d (gate, source side), U_d (neighbour), U_s (self), in that order.
        self.node_maps = nn.Linear(features, 4 * features)
        self.edge_gate = nn.Linear(features, features, bias=False)
        self.norm_nodes = norm_layer(features, norm)
        self.norm_edges = norm_layer(features, norm)

    def forward(self, x: Tensor, edge_index: Tensor, e: Tensor, update_edges: bool = True) -> tuple[Tensor, Tensor]:
        """Returns updated (x, e); with ``update_edges=False`` (the last layer to touch them) the
        edge update, whose result nothing reads, is skipped and ``e`` is returned as is."""
        source, target = edge_index
        f = self.features
        maps = self.node_maps(x)
        # m = W_s h_i + W_d h_j + W_e e_ij, the product added in place into the sum of the two
        # gathers (an out-of-place addmm would copy that (pairs × F) sum first; add's backward does
        # not need its output, so autograd allows it).
        m = maps[:, :f].index_select(0, target) + maps[:, f : 2 * f].index_select(0, source)
        # In-place ops are not autocast: cast to m's dtype as autocast's addmm would (no-ops in fp32).
        m = m.addmm_(e.to(m.dtype), self.edge_gate.weight.t().to(m.dtype))
        sigma = torch.sigmoid(m)
        # Gathered on its own (not together with W_d h as one (pairs × 2F) block): the backward of
        # splitting that block concatenated two (pairs × F) gradients into a new (pairs × 2F) one.
        neighbour_update = maps[:, 2 * f : 3 * f].index_select(0, source)
        self_update = maps[:, 3 * f :]
        # Σ σ ⊙ U_d h_j and Σ σ: two scatters read no more than one of their concatenation,
        # which would cost an extra pass over the (pairs × 2F) tensor.
        numerator = torch.zeros_like(self_update).index_add_(0, target, sigma * neighbour_update)
        denominator = torch.zeros_like(self_update).index_add_(0, target, sigma)
        x_new = x + F.silu(self.norm_nodes(self_update + numerator / (denominator + 1e-6)))
        if not update_edges:
            return x_new, e
        return x_new, e + F.silu(self.norm_edges(m))
