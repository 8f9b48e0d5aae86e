"""Many crystal graphs in a few concatenated arrays, and the batch collation that slices them.

Keeping graphs concatenated (as PyG's ``InMemoryDataset`` does) makes the on-disk cache a handful of
``.npz`` files that load in seconds and never execute pickle, and lets a batch be gathered with a
few vectorised numpy calls instead of PyG's generic per-graph ``Batch.from_data_list``.

Every method loops over the field table of :mod:`crystalgnn.graphs.schema`, so a store holds
exactly the parts its graphs were built with (the atom graph, the line graph, any add-on) and needs
no edit when an add-on is registered.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from crystalgnn.graphs import schema
from crystalgnn.graphs.crystal_graph import CrystalGraph, field_attribute
from crystalgnn.graphs.schema import ATOM_GRAPH, Field


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c), without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def _pointer(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)])


def _rows(array: np.ndarray, sel: np.ndarray | slice, f: Field) -> np.ndarray:
    """Rows ``sel`` of ``array`` along the row axis of field ``f``."""
    return array[sel] if f.row_axis == 0 else array[..., sel]


def _row_levels(fields: Sequence[Field]) -> tuple[str, ...]:
    """The row levels (hence pointer arrays) that ``fields`` need, in schema order."""
    used = {f.level for f in fields}
    return tuple(level for level in schema.ROW_LEVELS if level in used)


class RowCounts:
    """What a store answers from its rows per graph (``num_rows``), shared by :class:`GraphStore`
    and the memory-mapped view (:class:`crystalgnn.graphs.sharded.ShardedGraphStore`)."""

    parts: tuple[str, ...]

    def __len__(self) -> int:  # pragma: no cover - both stores define it
        raise NotImplementedError

    def num_rows(self, level: str) -> np.ndarray:  # pragma: no cover - both stores define it
        raise NotImplementedError

    @property
    def num_atoms(self) -> np.ndarray:
        return self.num_rows("node")

    @property
    def num_edges(self) -> np.ndarray:
        return self.num_rows("edge")

    @property
    def num_line_edges(self) -> np.ndarray:
        return self.num_rows("line")

    def _has_rows(self, part: str) -> bool:
        """Whether the store holds ``part`` and any row of it."""
        if part not in self.parts:
            return False
        return any(len(self) > 0 if f.level == "graph" else self.num_rows(f.level).sum() > 0 for f in schema.part_fields(part))

    @property
    def has_line_graphs(self) -> bool:
        """True when the graphs were built with ``GraphConfig.line_graph`` (and have any bond pair)."""
        return self._has_rows(schema.LINE_GRAPH)


@dataclass(eq=False)
class GraphStore(RowCounts):
    """Graphs ``0..n-1`` stored back to back.

    ``arrays`` holds one array per field of ``parts`` (rows of graph i contiguous, graph-level fields
    one row per graph); ``ptrs`` one pointer array of length n + 1 per row level they use
    (``node_ptr``, ``edge_ptr``, ``line_ptr``). Index fields hold row numbers local to each graph
    (``edge_index`` atoms, ``line_index`` edges). Fields and pointers read as attributes
    (``store.edge_index``); a level no held part has (``line_ptr`` without the line graph) reads as
    zero rows per graph.
    """

    keys: np.ndarray  # (n,) bytes, content keys
    ptrs: dict[str, np.ndarray]  # row level -> (n + 1,) int64
    arrays: dict[str, np.ndarray]  # field name -> array, dtype and width as in the schema
    parts: tuple[str, ...] = (ATOM_GRAPH,)

    def __post_init__(self) -> None:
        self.parts = schema.ordered_parts(self.parts)

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    def __getattr__(self, name: str) -> np.ndarray:
        level = name[: -len("_ptr")]
        if name.endswith("_ptr") and level in schema.ROW_LEVELS and "ptrs" in self.__dict__:
            ptr = self.ptrs.get(level)
            return ptr if ptr is not None else np.zeros(len(self) + 1, dtype=np.int64)
        return field_attribute(self, name, lambda lvl: int(self.ptrs[lvl][-1]) if lvl in self.ptrs else 0)

    @property
    def fields(self) -> tuple[Field, ...]:
        return schema.fields_of(self.parts)

    def num_rows(self, level: str) -> np.ndarray:
        """(n,) rows of ``level`` per graph (zeros for a level no held part has)."""
        return np.diff(getattr(self, f"{level}_ptr"))

    def nbytes_per_graph(self) -> dict[str, float]:
        """Mean bytes per crystal of each part as stored (atom graph, line graph, add-ons; 0 when absent)."""
        n = max(len(self), 1)
        names = dict.fromkeys((ATOM_GRAPH, *(a.name for a in schema.addons()), *self.parts))
        return {part: sum(self.arrays[f.name].nbytes for f in schema.part_fields(part)) / n if part in self.parts else 0.0
                for part in names}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_graphs(cls, keys: Sequence[str], graphs: Sequence[CrystalGraph], parts: Sequence[str] | None = None) -> GraphStore:
        """Concatenate ``graphs`` (all built with the same parts). ``parts`` names them when
        ``graphs`` may be empty (default: the parts of the first graph, else the atom graph)."""
        held = schema.ordered_parts(parts if parts is not None else graphs[0].parts if graphs else (ATOM_GRAPH,))
        for g in graphs:
            if set(g.parts) != set(held):
                raise ValueError(f"graphs of different parts in one store: {sorted(g.parts)} vs {sorted(held)}")
        fields = schema.fields_of(held)
        ptrs = {level: _pointer(np.array([g.num_rows(level) for g in graphs], dtype=np.int64)) for level in _row_levels(fields)}
        arrays: dict[str, np.ndarray] = {}
        for f in fields:
            if not graphs:
                arrays[f.name] = f.empty()
            elif f.level == "graph":
                arrays[f.name] = np.stack([g.arrays[f.name] for g in graphs]).astype(f.dtype, copy=False)
            else:
                arrays[f.name] = np.concatenate([g.arrays[f.name] for g in graphs], axis=f.row_axis).astype(f.dtype, copy=False)
        return cls(keys=np.array(list(keys), dtype="S64"), ptrs=ptrs, arrays=arrays, parts=held)

    @classmethod
    def concat(cls, stores: Sequence[GraphStore]) -> GraphStore:
        stores = [s for s in stores if len(s)] or list(stores[:1])
        if not stores:
            raise ValueError("GraphStore.concat needs at least one store")
        if len(stores) == 1:
            return stores[0]
        held = stores[0].parts
        for s in stores[1:]:
            if s.parts != held:
                raise ValueError(f"cannot concatenate stores of different parts: {list(held)} and {list(s.parts)}")
        ptrs = {}
        for level in stores[0].ptrs:
            offsets = np.cumsum([0] + [int(s.ptrs[level][-1]) for s in stores[:-1]])
            ptrs[level] = np.concatenate([[0]] + [s.ptrs[level][1:] + o for s, o in zip(stores, offsets)])
        arrays = {f.name: np.concatenate([s.arrays[f.name] for s in stores], axis=f.row_axis) for f in stores[0].fields}
        return cls(keys=np.concatenate([s.keys for s in stores]), ptrs=ptrs, arrays=arrays, parts=held)

    def take(self, indices: Sequence[int] | np.ndarray) -> GraphStore:
        """A store holding graphs ``indices`` in that order (``self`` when that is all, in order)."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == len(self) and np.array_equal(idx, np.arange(len(self))):
            return self  # no copy: a full cache load would otherwise copy ~0.3 GB for nothing
        sel: dict[str, np.ndarray] = {"graph": idx}
        ptrs = {}
        for level, ptr in self.ptrs.items():
            counts = np.diff(ptr)[idx]
            sel[level] = _ranges(ptr[idx], counts)
            ptrs[level] = _pointer(counts)
        arrays = {f.name: _rows(self.arrays[f.name], sel[f.level], f) for f in self.fields}
        return GraphStore(keys=self.keys[idx], ptrs=ptrs, arrays=arrays, parts=self.parts)

    def graph(self, i: int) -> CrystalGraph:
        arrays = {}
        for f in self.fields:
            if f.level == "graph":
                arrays[f.name] = self.arrays[f.name][i]
            else:
                ptr = self.ptrs[f.level]
                arrays[f.name] = _rows(self.arrays[f.name], slice(ptr[i], ptr[i + 1]), f)
        return CrystalGraph(arrays, self.parts)

    # ------------------------------------------------------------------ disk (no pickle)
    def _payload(self) -> dict[str, np.ndarray]:
        payload = {"keys": self.keys, "parts": np.array(self.parts, dtype="S")}
        payload.update({f"{level}_ptr": ptr for level, ptr in self.ptrs.items()})
        payload.update(self.arrays)
        return payload

    def save(self, path: str | Path) -> None:
        """Write atomically: a reader never sees a half-written shard. ``parts`` records what it holds.

        A path ending in ``.npz`` gets one zip of arrays (read whole); any other path a folder of
        one ``.npy`` per array, which :meth:`load` can memory-map (``mmap=True``).
        """
        path = Path(path)
        if path.suffix == ".npz":
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
            np.savez(tmp, **self._payload())
            os.replace(tmp, path)
            return
        tmp_dir = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp_dir.mkdir(parents=True, exist_ok=False)
        for name, array in self._payload().items():
            np.save(tmp_dir / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp_dir, path)  # a folder appears whole or not at all

    @classmethod
    def load(cls, path: str | Path, mmap: bool = False) -> GraphStore:
        """Read a shard (a ``.npz`` file or a folder of ``.npy``); its parts must be registered.

        ``mmap``: a folder's arrays are memory-mapped read-only instead of read: nothing is read
        until a batch gathers its rows, the OS may drop the pages again, and processes mapping the
        same shard share them. Shards written before the schema (no ``parts``) always hold the
        line-graph arrays, empty when it was not built. Never unpickles.
        """
        path = Path(path)
        if path.is_dir():
            def read(name: str) -> np.ndarray:
                array = np.load(path / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
                # a plain ndarray over the map: indexing a np.memmap costs a subclass round trip per call
                return array.view(np.ndarray) if mmap else array

            parts = schema.ordered_parts(tuple(p.decode() for p in np.load(path / "parts.npy", allow_pickle=False).tolist()))
            fields = schema.fields_of(parts)
            # keys and pointers are small and read on every lookup: always in memory
            return cls(keys=np.load(path / "keys.npy", allow_pickle=False),
                       ptrs={level: np.load(path / f"{level}_ptr.npy", allow_pickle=False) for level in _row_levels(fields)},
                       arrays={f.name: read(f.name) for f in fields}, parts=parts)
        with np.load(path, allow_pickle=False) as data:
            if "parts" in data.files:
                parts = tuple(p.decode() for p in data["parts"].tolist())
            else:
                parts = (ATOM_GRAPH,) + ((schema.LINE_GRAPH,) if int(data["line_ptr"][-1]) > 0 else ())
            parts = schema.ordered_parts(parts)
            fields = schema.fields_of(parts)
            return cls(keys=data["keys"], ptrs={level: data[f"{level}_ptr"] for level in _row_levels(fields)},
                       arrays={f.name: data[f.name] for f in fields}, parts=parts)

    # ------------------------------------------------------------------ batching
    @cached_property
    def _collate_plan(self) -> CollatePlan:
        return collate_plan(self.parts, self._has_rows, tuple(self.ptrs))

    def collate(self, indices: Sequence[int] | np.ndarray, targets: np.ndarray | None = None) -> Data:
        """One PyG ``Data`` batch of graphs ``indices`` (global node numbering, ``batch`` vector).

        Fields: ``z`` (N,), ``pos`` (N, 3), ``edge_index`` (2, E), ``edge_dist`` (E,),
        ``edge_vec`` (E, 3), ``batch`` (N,), ``ptr`` (B + 1,), ``num_graphs``, ``y`` (B, T) if given;
        with line graphs also ``line_index`` (2, T) edge numbers of the batch and ``angle_cos`` (T,);
        then each add-on's fields under their batch names (index fields offset to the batch's rows,
        graph-level fields (B, ...)). Add-ons a store holds no row of are left out, as the line graph.
        """
        plan = self._collate_plan
        idx = np.asarray(indices, dtype=np.int64)
        counts: dict[str, np.ndarray] = {}
        sel: dict[str, np.ndarray] = {"graph": idx}
        for level in plan.levels:
            start = self.ptrs[level][idx]
            counts[level] = self.ptrs[level][idx + 1] - start
            sel[level] = _ranges(start, counts[level])
        return assemble_batch(plan, idx, counts, lambda f: _rows(self.arrays[f.name], sel[f.level], f), targets)


@dataclass(frozen=True)
class CollatePlan:
    """What a collate gathers, worked out once per store: the atom graph's collated fields, those of
    the add-ons with any row (in part order), the row levels to select, and the levels whose batch
    pointers index fields (and the ``batch`` vector) need."""

    atom_fields: tuple[Field, ...]
    addon_fields: tuple[Field, ...]
    levels: tuple[str, ...]
    offset_levels: tuple[str, ...]


def collate_plan(parts: Sequence[str], has_rows: Callable[[str], bool], held_levels: Sequence[str]) -> CollatePlan:
    """The :class:`CollatePlan` of a store of ``parts`` (``has_rows(part)``: any row of it held)."""
    atom = tuple(f for f in schema.part_fields(ATOM_GRAPH) if f.batch_name is not None)
    extra = tuple(f for part in parts[1:] if has_rows(part) for f in schema.part_fields(part) if f.batch_name is not None)
    fields = atom + extra
    needed = {"node", *(f.level for f in fields), *(f.index_of for f in fields if f.index_of is not None)}
    levels = tuple(level for level in held_levels if level in needed)
    offsets = tuple(level for level in levels if level == "node" or any(f.index_of == level for f in fields))
    return CollatePlan(atom, extra, levels, offsets)


def assemble_batch(plan: CollatePlan, idx: np.ndarray, counts: dict[str, np.ndarray], rows_of: Callable[[Field], np.ndarray],
                   targets: np.ndarray | None) -> Data:
    """The batch of graphs ``idx`` (see :meth:`GraphStore.collate`): ``counts`` their rows per level,
    ``rows_of(f)`` the rows of field ``f`` of those graphs, back to back in ``idx`` order."""
    ptr = {level: _pointer(counts[level]) for level in plan.offset_levels}

    def value(f: Field) -> torch.Tensor:
        v = rows_of(f)
        if f.batch_dtype is not None and v.dtype != f.batch_dtype:
            v = v.astype(f.batch_dtype)
        if f.index_of is not None:  # local row numbers -> numbers in the batch
            v = v + np.repeat(ptr[f.index_of][:-1], counts[f.level])
        return torch.from_numpy(np.ascontiguousarray(v))

    atoms = ptr["node"]
    batch = Data(
        **{f.batch_name: value(f) for f in plan.atom_fields},
        batch=torch.from_numpy(np.repeat(np.arange(len(idx)), counts["node"])),
        ptr=torch.from_numpy(atoms),
        num_nodes=int(atoms[-1]),
    )
    for f in plan.addon_fields:
        setattr(batch, f.batch_name, value(f))
    batch.num_graphs = len(idx)
    batch.graph_index = torch.from_numpy(idx)
    if targets is not None:
        batch.y = torch.as_tensor(targets, dtype=torch.float32)
    return batch
