"""Many crystal graphs in a few concatenated arrays, and the batch collation that slices them.

Keeping graphs concatenated (as PyG's ``InMemoryDataset`` does) makes the on-disk cache a handful of
``.npz`` files that load in seconds and never execute pickle, and lets a batch be gathered with a
few vectorised numpy calls instead of PyG's generic per-graph ``Batch.from_data_list``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from crystalgnn.graphs.crystal_graph import CrystalGraph

_NODE_FIELDS = ("atomic_numbers", "positions")
_EDGE_FIELDS = ("edge_distances", "edge_vectors", "edge_images")


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


@dataclass
class GraphStore:
    """Graphs ``0..n-1`` stored back to back. ``node_ptr``/``edge_ptr``/``line_ptr`` have length
    n + 1; ``line_index`` holds edge numbers local to each graph (empty without line graphs)."""

    keys: np.ndarray  # (n,) bytes, content keys
    node_ptr: np.ndarray  # (n + 1,) int64
    edge_ptr: np.ndarray  # (n + 1,) int64
    atomic_numbers: np.ndarray  # (sum N,) int16
    positions: np.ndarray  # (sum N, 3) float32
    lattices: np.ndarray  # (n, 3, 3) float32
    edge_index: np.ndarray  # (2, sum E) int32, local to each graph
    edge_distances: np.ndarray  # (sum E,) float32
    edge_vectors: np.ndarray  # (sum E, 3) float32
    edge_images: np.ndarray  # (sum E, 3) int16
    line_ptr: np.ndarray  # (n + 1,) int64
    line_index: np.ndarray  # (2, sum T) int32, local to each graph's edges
    angle_cosines: np.ndarray  # (sum T,) float32

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_atoms(self) -> np.ndarray:
        return np.diff(self.node_ptr)

    @property
    def num_edges(self) -> np.ndarray:
        return np.diff(self.edge_ptr)

    @property
    def num_line_edges(self) -> np.ndarray:
        return np.diff(self.line_ptr)

    @property
    def has_line_graphs(self) -> bool:
        """True when the graphs were built with ``GraphConfig.line_graph`` (and have any bond pair)."""
        return bool(self.line_ptr[-1] > 0)

    def nbytes_per_graph(self) -> dict[str, float]:
        """Mean bytes per crystal of the atom graph and of the line graph, as stored."""
        n = max(len(self), 1)
        atom = sum(getattr(self, f).nbytes for f in _NODE_FIELDS + _EDGE_FIELDS + ("edge_index",))
        line = self.line_index.nbytes + self.angle_cosines.nbytes
        return {"atom_graph": atom / n, "line_graph": line / n}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_graphs(cls, keys: Sequence[str], graphs: Sequence[CrystalGraph]) -> GraphStore:
        n_atoms = np.array([g.num_atoms for g in graphs], dtype=np.int64)
        n_edges = np.array([g.num_edges for g in graphs], dtype=np.int64)
        n_pairs = np.array([g.num_line_edges for g in graphs], dtype=np.int64)

        def cat(name: str, empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
            if not graphs:
                return np.zeros(empty_shape, dtype=dtype)
            return np.concatenate([getattr(g, name) for g in graphs], axis=-1 if name.endswith("_index") else 0).astype(dtype, copy=False)

        return cls(
            keys=np.array(list(keys), dtype="S64"),
            node_ptr=np.concatenate([[0], np.cumsum(n_atoms)]),
            edge_ptr=np.concatenate([[0], np.cumsum(n_edges)]),
            atomic_numbers=cat("atomic_numbers", (0,), np.int16),
            positions=cat("positions", (0, 3), np.float32),
            lattices=np.stack([g.lattice for g in graphs]) if graphs else np.zeros((0, 3, 3), np.float32),
            edge_index=cat("edge_index", (2, 0), np.int32),
            edge_distances=cat("edge_distances", (0,), np.float32),
            edge_vectors=cat("edge_vectors", (0, 3), np.float32),
            edge_images=cat("edge_images", (0, 3), np.int16),
            line_ptr=np.concatenate([[0], np.cumsum(n_pairs)]),
            line_index=cat("line_index", (2, 0), np.int32),
            angle_cosines=cat("angle_cosines", (0,), np.float32),
        )

    @classmethod
    def concat(cls, stores: Sequence[GraphStore]) -> GraphStore:
        stores = [s for s in stores if len(s)] or list(stores[:1])
        if len(stores) == 1:
            return stores[0]
        node_off = np.cumsum([0] + [int(s.node_ptr[-1]) for s in stores[:-1]])
        edge_off = np.cumsum([0] + [int(s.edge_ptr[-1]) for s in stores[:-1]])
        line_off = np.cumsum([0] + [int(s.line_ptr[-1]) for s in stores[:-1]])
        return cls(
            keys=np.concatenate([s.keys for s in stores]),
            node_ptr=np.concatenate([[0]] + [s.node_ptr[1:] + o for s, o in zip(stores, node_off)]),
            edge_ptr=np.concatenate([[0]] + [s.edge_ptr[1:] + o for s, o in zip(stores, edge_off)]),
            atomic_numbers=np.concatenate([s.atomic_numbers for s in stores]),
            positions=np.concatenate([s.positions for s in stores]),
            lattices=np.concatenate([s.lattices for s in stores]),
            edge_index=np.concatenate([s.edge_index for s in stores], axis=1),
            edge_distances=np.concatenate([s.edge_distances for s in stores]),
            edge_vectors=np.concatenate([s.edge_vectors for s in stores]),
            edge_images=np.concatenate([s.edge_images for s in stores]),
            line_ptr=np.concatenate([[0]] + [s.line_ptr[1:] + o for s, o in zip(stores, line_off)]),
            line_index=np.concatenate([s.line_index for s in stores], axis=1),
            angle_cosines=np.concatenate([s.angle_cosines for s in stores]),
        )

    def take(self, indices: Sequence[int] | np.ndarray) -> GraphStore:
        """A store holding graphs ``indices`` in that order (``self`` when that is all, in order)."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == len(self) and np.array_equal(idx, np.arange(len(self))):
            return self  # no copy: a full cache load would otherwise copy ~0.3 GB for nothing
        n_atoms, n_edges, n_pairs = self.num_atoms[idx], self.num_edges[idx], self.num_line_edges[idx]
        node_sel = _ranges(self.node_ptr[idx], n_atoms)
        edge_sel = _ranges(self.edge_ptr[idx], n_edges)
        pair_sel = _ranges(self.line_ptr[idx], n_pairs)
        return GraphStore(
            keys=self.keys[idx],
            node_ptr=np.concatenate([[0], np.cumsum(n_atoms)]),
            edge_ptr=np.concatenate([[0], np.cumsum(n_edges)]),
            atomic_numbers=self.atomic_numbers[node_sel],
            positions=self.positions[node_sel],
            lattices=self.lattices[idx],
            edge_index=self.edge_index[:, edge_sel],
            edge_distances=self.edge_distances[edge_sel],
            edge_vectors=self.edge_vectors[edge_sel],
            edge_images=self.edge_images[edge_sel],
            line_ptr=np.concatenate([[0], np.cumsum(n_pairs)]),
            line_index=self.line_index[:, pair_sel],
            angle_cosines=self.angle_cosines[pair_sel],
        )

    def graph(self, i: int) -> CrystalGraph:
        ns, ne = slice(self.node_ptr[i], self.node_ptr[i + 1]), slice(self.edge_ptr[i], self.edge_ptr[i + 1])
        nt = slice(self.line_ptr[i], self.line_ptr[i + 1])
        return CrystalGraph(
            atomic_numbers=self.atomic_numbers[ns],
            positions=self.positions[ns],
            lattice=self.lattices[i],
            edge_index=self.edge_index[:, ne],
            edge_distances=self.edge_distances[ne],
            edge_vectors=self.edge_vectors[ne],
            edge_images=self.edge_images[ne],
            line_index=self.line_index[:, nt],
            angle_cosines=self.angle_cosines[nt],
        )

    # ------------------------------------------------------------------ disk (no pickle)
    def save(self, path: str | Path) -> None:
        """Write atomically: a reader never sees a half-written file."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **{name: getattr(self, name) for name in self.__dataclass_fields__})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> GraphStore:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    # ------------------------------------------------------------------ batching
    def collate(self, indices: Sequence[int] | np.ndarray, targets: np.ndarray | None = None) -> Data:
        """One PyG ``Data`` batch of graphs ``indices`` (global node numbering, ``batch`` vector).

        Fields: ``z`` (N,), ``pos`` (N, 3), ``edge_index`` (2, E), ``edge_dist`` (E,),
        ``edge_vec`` (E, 3), ``batch`` (N,), ``ptr`` (B + 1,), ``num_graphs``, ``y`` (B, T) if given;
        with line graphs also ``line_index`` (2, T) edge numbers of the batch and ``angle_cos`` (T,).
        """
        idx = np.asarray(indices, dtype=np.int64)
        n_atoms, n_edges = self.num_atoms[idx], self.num_edges[idx]
        node_sel = _ranges(self.node_ptr[idx], n_atoms)
        edge_sel = _ranges(self.edge_ptr[idx], n_edges)
        ptr = np.concatenate([[0], np.cumsum(n_atoms)])
        offsets = np.repeat(ptr[:-1], n_edges)
        edge_index = self.edge_index[:, edge_sel].astype(np.int64) + offsets
        batch = Data(
            z=torch.from_numpy(self.atomic_numbers[node_sel].astype(np.int64)),
            pos=torch.from_numpy(self.positions[node_sel]),
            edge_index=torch.from_numpy(edge_index),
            edge_dist=torch.from_numpy(self.edge_distances[edge_sel]),
            edge_vec=torch.from_numpy(self.edge_vectors[edge_sel]),
            batch=torch.from_numpy(np.repeat(np.arange(len(idx)), n_atoms)),
            ptr=torch.from_numpy(ptr),
            num_nodes=int(ptr[-1]),
        )
        if self.has_line_graphs:
            n_pairs = self.num_line_edges[idx]
            pair_sel = _ranges(self.line_ptr[idx], n_pairs)
            edge_ptr = np.concatenate([[0], np.cumsum(n_edges)])
            line_index = self.line_index[:, pair_sel].astype(np.int64) + np.repeat(edge_ptr[:-1], n_pairs)
            batch.line_index = torch.from_numpy(line_index)
            batch.angle_cos = torch.from_numpy(self.angle_cosines[pair_sel])
        batch.num_graphs = len(idx)
        batch.graph_index = torch.from_numpy(idx)
        if targets is not None:
            batch.y = torch.as_tensor(targets, dtype=torch.float32)
        return batch
