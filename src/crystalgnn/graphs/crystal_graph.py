"""The crystal graph of one structure, as plain numpy arrays (cacheable without pickle)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from pymatgen.core import Structure

from crystalgnn.config import GraphConfig
from crystalgnn.graphs import schema
from crystalgnn.graphs.neighbors import knn_neighbors, nearest_neighbors, radius_neighbors


@dataclass(frozen=True, eq=False)
class CrystalGraph:
    """Nodes are the atoms of the cell; edges are directed neighbour → centre bonds.

    ``arrays`` holds one array per field of ``parts`` (the table in :mod:`crystalgnn.graphs.schema`),
    read as attributes: N atoms, E edges. ``edge_index[0]`` is the neighbour j, ``edge_index[1]`` the
    centre i. ``edge_vectors`` (r_j + image·L − r_i) and ``edge_images`` are kept for angle- and
    line-graph models; CGCNN uses only ``edge_distances``. With the line graph
    (``GraphConfig.line_graph``): ``line_index`` (2, T) pairs of edges (a, b) meeting at an atom and
    ``angle_cosines`` (T,) the cosine of the bond angle there (see :mod:`crystalgnn.graphs.line_graph`);
    without it both read as empty, as a graph without bond pairs.
    """

    arrays: Mapping[str, np.ndarray]
    parts: tuple[str, ...] = (schema.ATOM_GRAPH,)

    def __getattr__(self, name: str) -> np.ndarray:
        return field_attribute(self, name, self.num_rows)

    @property
    def lattice(self) -> np.ndarray:
        """(3, 3) float32, rows are lattice vectors (the ``lattices`` field)."""
        return self.arrays["lattices"]

    def num_rows(self, level: str) -> int:
        """Rows of ``level`` in this graph (0 for a level no part of it has)."""
        if level == "graph":
            return 1
        for f in schema.fields_of(self.parts):
            if f.level == level:
                return f.rows(self.arrays[f.name])
        return 0

    @property
    def num_atoms(self) -> int:
        return self.num_rows("node")

    @property
    def num_edges(self) -> int:
        return self.num_rows("edge")

    @property
    def num_line_edges(self) -> int:
        return self.num_rows("line")


def field_attribute(obj: Any, name: str, num_rows: Callable[[str], int]) -> np.ndarray:
    """``obj.arrays[name]`` for a graph or store ``obj``; a field of a level ``obj`` has no rows of
    (``num_rows(level) == 0``) reads as empty: a graph built without the line graph has no bond
    pairs, so its ``line_index`` is (2, 0), as it always was."""
    arrays = obj.__dict__.get("arrays")
    if arrays is None or name.startswith("__"):  # half-built (unpickling): no fields yet
        raise AttributeError(name)
    if name in arrays:
        return arrays[name]
    f = schema.field_named(name)
    if f is not None and f.level != "graph" and num_rows(f.level) == 0:
        return f.empty()
    held = ", ".join(obj.parts)
    raise AttributeError(f"{type(obj).__name__} has no field {name!r} (it holds the parts {held})")


def _atom_graph(structure: Structure, cfg: GraphConfig) -> dict[str, np.ndarray]:
    """The atom graph's arrays at full precision (the add-on builders see these)."""
    if cfg.strategy == "radius":
        nl = radius_neighbors(structure, cfg.cutoff, cfg.max_neighbors)
    elif cfg.strategy == "knn":
        nl = knn_neighbors(structure, cfg.max_neighbors, cfg.cutoff, cfg.cutoff_growth, cfg.tie_tolerance)
    elif cfg.strategy == "nearest":
        nl = nearest_neighbors(structure, cfg.max_neighbors, cfg.cutoff, cfg.cutoff_growth)
    else:  # pragma: no cover - guarded by the Literal type and the CLI choices
        raise ValueError(f"unknown graph strategy {cfg.strategy!r}; use 'radius', 'knn' or 'nearest'")
    return {
        "atomic_numbers": np.asarray(structure.atomic_numbers),
        "positions": structure.cart_coords,
        "lattices": structure.lattice.matrix,
        "edge_index": np.stack([nl.source, nl.target]),
        "edge_distances": nl.distances,
        "edge_vectors": nl.vectors,
        "edge_images": nl.images,
    }


def build_graph(structure: Structure, cfg: GraphConfig) -> CrystalGraph:
    """Build the graph of ``structure``: the atom graph with the neighbour strategy of ``cfg``, then
    every add-on enabled for ``cfg``, in registration order; then cast each array to its field dtype.

    Raises ``IsolatedAtomError`` when an atom has no neighbour (radius strategy).
    """
    raw = _atom_graph(structure, cfg)
    parts = [schema.ATOM_GRAPH]
    for addon in schema.enabled_addons(cfg):
        built = dict(addon.build(structure, MappingProxyType(raw), cfg))
        expected = {f.name for f in addon.fields}
        if set(built) != expected:
            raise ValueError(f"graph add-on {addon.name!r} built {sorted(built)}, expected {sorted(expected)}")
        raw.update(built)
        parts.append(addon.name)
    held = tuple(parts)
    arrays: dict[str, np.ndarray] = {}
    rows: dict[str, int] = {}
    for part in held:
        owner = "atom graph" if part == schema.ATOM_GRAPH else f"graph add-on {part!r}"
        for f in schema.part_fields(part):
            arrays[f.name] = f.conform(raw[f.name], owner)
            if f.level != "graph":  # every field of a level has the same number of rows
                n = rows.setdefault(f.level, f.rows(arrays[f.name]))
                if f.rows(arrays[f.name]) != n:
                    raise ValueError(f"{owner}: field {f.name!r} has {f.rows(arrays[f.name])} rows, its level {f.level!r} has {n}")
    return CrystalGraph(arrays, held)
