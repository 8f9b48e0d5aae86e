"""The crystal graph of one structure, as plain numpy arrays (cacheable without pickle)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure

from crystalgnn.config import GraphConfig
from crystalgnn.graphs.line_graph import line_graph
from crystalgnn.graphs.neighbors import knn_neighbors, radius_neighbors


@dataclass(frozen=True)
class CrystalGraph:
    """Nodes are the atoms of the cell; edges are directed neighbour → centre bonds.

    Shapes: N atoms, E edges. ``edge_index[0]`` is the neighbour j, ``edge_index[1]`` the centre i.
    ``edge_vectors`` (r_j + image·L − r_i) and ``edge_images`` are kept for angle- and line-graph
    models; CGCNN uses only ``edge_distances``. With ``GraphConfig.line_graph``: ``line_index``
    (2, T) pairs of edges (a, b) meeting at an atom and ``angle_cosines`` (T,) the cosine of the
    bond angle there (see :mod:`crystalgnn.graphs.line_graph`); otherwise both are empty.
    """

    atomic_numbers: np.ndarray  # (N,) int16
    positions: np.ndarray  # (N, 3) float32, Cartesian Å
    lattice: np.ndarray  # (3, 3) float32, rows are lattice vectors
    edge_index: np.ndarray  # (2, E) int32
    edge_distances: np.ndarray  # (E,) float32
    edge_vectors: np.ndarray  # (E, 3) float32
    edge_images: np.ndarray  # (E, 3) int16
    line_index: np.ndarray = field(default_factory=lambda: np.zeros((2, 0), np.int32))  # (2, T) int32, edges
    angle_cosines: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (T,) float32

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_distances.shape[0])

    @property
    def num_line_edges(self) -> int:
        return int(self.angle_cosines.shape[0])


def build_graph(structure: Structure, cfg: GraphConfig) -> CrystalGraph:
    """Build the graph of ``structure`` with the neighbour strategy of ``cfg``.

    Raises ``IsolatedAtomError`` when an atom has no neighbour (radius strategy).
    """
    if cfg.strategy == "radius":
        nl = radius_neighbors(structure, cfg.cutoff, cfg.max_neighbors)
    elif cfg.strategy == "knn":
        nl = knn_neighbors(structure, cfg.max_neighbors, cfg.cutoff, cfg.cutoff_growth, cfg.tie_tolerance)
    else:  # pragma: no cover - guarded by the Literal type and the CLI choices
        raise ValueError(f"unknown graph strategy {cfg.strategy!r}; use 'radius' or 'knn'")
    edge_index = np.stack([nl.source, nl.target])
    line_index, cosines = np.zeros((2, 0), np.int64), np.zeros(0)
    if cfg.line_graph:
        line_index, cosines = line_graph(edge_index, nl.vectors, len(structure))
    return CrystalGraph(
        atomic_numbers=np.asarray(structure.atomic_numbers, dtype=np.int16),
        positions=structure.cart_coords.astype(np.float32),
        lattice=structure.lattice.matrix.astype(np.float32),
        edge_index=edge_index.astype(np.int32),
        edge_distances=nl.distances.astype(np.float32),
        edge_vectors=nl.vectors.astype(np.float32),
        edge_images=nl.images.astype(np.int16),
        line_index=line_index.astype(np.int32),
        angle_cosines=cosines.astype(np.float32),
    )
