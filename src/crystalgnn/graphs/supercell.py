r"""Supercell graphs made from a cell's cached graph, without a new neighbour search.

Masked-atom pretraining (CrysToGraph) expands a cell of n < 8 atoms to an m×m×m supercell,
:math:`m = \lceil (8/n)^{1/3} \rceil`, so that masking one atom does not mask every periodic image
of it. Every atom of the supercell has the environment of its atom in the cell, so the supercell's
graph is the cell's graph repeated m³ times with its edges rewired: the bond j → i through image
s of the atom i in sub-cell c reaches atom j in sub-cell (c + s) mod m, through supercell image
⌊(c + s) / m⌋. Distances and bond vectors are unchanged. This is the graph a neighbour search on
the supercell gives (up to the order of equidistant neighbours), at the cost of an index
computation instead of another search (tested against ``structure * m``).

Only the atom graph is expanded; add-ons (line graph, per-site features) are not carried over.
"""

from __future__ import annotations

import math

import numpy as np

from crystalgnn.graphs import schema
from crystalgnn.graphs.crystal_graph import CrystalGraph
from crystalgnn.graphs.store import GraphStore


def supercell_multiplier(n_atoms: int, min_atoms: int = 8) -> int:
    """m = ⌈(min_atoms / n)^{1/3}⌉ for a cell of ``n_atoms`` < ``min_atoms``, else 1."""
    if n_atoms <= 0:
        raise ValueError(f"a cell of {n_atoms} atoms cannot be expanded")
    if n_atoms >= min_atoms:
        return 1
    m = math.ceil((min_atoms / n_atoms) ** (1.0 / 3.0))
    # (8/1)^{1/3} is 2.0000000000000004 in floating point: an integer cube root must not round up
    if (m - 1) ** 3 * n_atoms >= min_atoms:
        m -= 1
    return m


def expand_graph(graph: CrystalGraph, m: int) -> CrystalGraph:
    """The atom graph of the m×m×m supercell of ``graph``'s cell (atoms numbered sub-cell-major:
    atom i of sub-cell c = (c₀, c₁, c₂) is c·n + i with c = c₀m² + c₁m + c₂)."""
    if m == 1:
        return graph
    n = graph.num_atoms
    lattice = np.asarray(graph.lattice, dtype=np.float64)
    cells = np.stack(np.meshgrid(np.arange(m), np.arange(m), np.arange(m), indexing="ij"), axis=-1).reshape(-1, 3)
    n_cells = len(cells)
    positions = (np.asarray(graph.positions, dtype=np.float64)[None] + (cells @ lattice)[:, None]).reshape(-1, 3)
    source, target = np.asarray(graph.edge_index, dtype=np.int64)
    images = np.asarray(graph.edge_images, dtype=np.int64)
    reached = cells[:, None, :] + images[None]  # (cells, E, 3): sub-cell of the neighbour, before wrapping
    new_images = np.floor_divide(reached, m)
    wrapped = reached - m * new_images
    cell_id = lambda c: (c[..., 0] * m + c[..., 1]) * m + c[..., 2]  # noqa: E731
    new_source = cell_id(wrapped) * n + source[None]
    new_target = np.arange(n_cells)[:, None] * n + target[None]
    arrays = {
        "atomic_numbers": np.tile(graph.atomic_numbers, n_cells),
        "positions": positions,
        "edge_index": np.stack([new_source.ravel(), new_target.ravel()]),
        "edge_distances": np.tile(graph.edge_distances, n_cells),
        "edge_vectors": np.tile(graph.edge_vectors, (n_cells, 1)),
        "edge_images": new_images.reshape(-1, 3),
        "lattices": lattice * m,
    }
    fields = schema.part_fields(schema.ATOM_GRAPH)
    return CrystalGraph({f.name: f.conform(arrays[f.name], "supercell graph") for f in fields}, (schema.ATOM_GRAPH,))


def expand_small_cells(store: GraphStore, min_atoms: int = 8) -> tuple[GraphStore, np.ndarray]:
    """The atom graphs of ``store`` with every cell of fewer than ``min_atoms`` atoms replaced by its
    supercell graph (:func:`supercell_multiplier`). Returns the new store and m per graph."""
    counts = store.num_atoms
    multipliers = np.array([supercell_multiplier(int(n), min_atoms) for n in counts], dtype=np.int64)
    atom_only = store if store.parts == (schema.ATOM_GRAPH,) else GraphStore(
        keys=store.keys, ptrs={level: store.ptrs[level] for level in ("node", "edge")},
        arrays={f.name: store.arrays[f.name] for f in schema.part_fields(schema.ATOM_GRAPH)}, parts=(schema.ATOM_GRAPH,))
    if (multipliers == 1).all():
        return atom_only, multipliers
    graphs = [expand_graph(atom_only.graph(i), int(m)) for i, m in enumerate(multipliers)]
    return GraphStore.from_graphs(list(atom_only.keys), graphs, (schema.ATOM_GRAPH,)), multipliers
