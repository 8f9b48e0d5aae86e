"""Graphs read out of core: a view over memory-mapped cache shards that never loads them whole.

A :class:`ShardedGraphStore` holds, per crystal, the shard it lives in and its row there, plus each
shard's keys and pointer arrays (a few bytes per crystal). The arrays themselves (positions, bonds,
their features, the line graph, ...) stay in the shard folders' ``.npy`` files and are
memory-mapped on first use; at most ``max_open`` shards are mapped at a time (least recently used
unmapped first), so the pages a process keeps resident are bounded by a few shards however many
crystals the store has, and the OS can drop them under memory pressure. Forked DataLoader workers
inherit the view and map the same files: the page cache is shared, nothing is copied; a pickled view
(spawned workers) carries the shard paths only and maps again on the other side.

It answers what training, prediction and the reports ask of a :class:`GraphStore` (``len``,
``keys``, ``num_atoms`` / ``num_rows``, the ``*_ptr`` pointers, ``take``, ``collate``, ``graph``,
fields read as attributes), so the code above it does not know which of the two it holds. A field
read as an attribute (``store.atomic_numbers``) is gathered into memory in view order once and
kept: meant for the per-atom and per-crystal fields the reports read (1–2 bytes per atom for the
atomic numbers), not for bond arrays; :meth:`materialize` makes an in-memory store of the whole view.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch_geometric.data import Data

from crystalgnn.graphs import schema
from crystalgnn.graphs.crystal_graph import CrystalGraph
from crystalgnn.graphs.schema import Field
from crystalgnn.graphs.store import CollatePlan, GraphStore, RowCounts, _pointer, _ranges, _row_levels, assemble_batch, collate_plan

#: Shards mapped at once per process: a shuffled epoch's window (see
#: :class:`crystalgnn.data.prepared.ShardShuffleSampler`) plus the validation loader's shard.
DEFAULT_MAX_OPEN = 8


@dataclass
class ShardIndex:
    """What a view keeps of one shard in memory: its folder, keys and row pointers."""

    path: Path
    keys: np.ndarray
    ptrs: dict[str, np.ndarray]
    parts: tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> ShardIndex:
        store = GraphStore.load(path, mmap=True)  # maps the field arrays without reading them
        keys = store.keys
        if path.is_dir():  # mapped too: a view of millions of graphs rarely reads its keys
            keys = np.load(path / "keys.npy", mmap_mode="r", allow_pickle=False).view(np.ndarray)
        return cls(path=path, keys=keys, ptrs=store.ptrs, parts=store.parts)


@dataclass(eq=False)
class ShardedGraphStore(RowCounts):
    """Graph ``i`` of the view is row ``row[i]`` of shard ``shard[i]`` (see the module docstring)."""

    shards: tuple[ShardIndex, ...]
    shard: np.ndarray  # (n,) int32
    row: np.ndarray  # (n,) int64
    max_open: int = DEFAULT_MAX_OPEN
    _open: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _gathered: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.shard = np.asarray(self.shard, dtype=np.int32)
        self.row = np.asarray(self.row, dtype=np.int64)
        held = {s.parts for s in self.shards}
        if len(held) > 1:
            raise ValueError(f"shards of different parts in one view: {sorted(held)}")

    # ------------------------------------------------------------------ shape and bookkeeping
    def __len__(self) -> int:
        return int(self.row.shape[0])

    @property
    def parts(self) -> tuple[str, ...]:
        return self.shards[0].parts if self.shards else (schema.ATOM_GRAPH,)

    @property
    def fields(self) -> tuple[Field, ...]:
        return schema.fields_of(self.parts)

    @property
    def levels(self) -> tuple[str, ...]:
        return _row_levels(self.fields)

    @property
    def keys(self) -> np.ndarray:
        return self._per_graph("keys", lambda s: s.keys, np.dtype("S64"))

    def num_rows(self, level: str) -> np.ndarray:
        """(n,) rows of ``level`` per graph (zeros for a level the parts do not have)."""
        if level not in self.levels:
            return np.zeros(len(self), dtype=np.int64)
        return self._per_graph(f"{level}_count", lambda s: np.diff(s.ptrs[level]), np.dtype(np.int64))

    @property
    def ptrs(self) -> dict[str, np.ndarray]:
        """Pointers of the view's own row numbering (as if the view were one concatenated store)."""
        return {level: _pointer(self.num_rows(level)) for level in self.levels}

    def _per_graph(self, name: str, per_shard, dtype: np.dtype) -> np.ndarray:
        """A per-graph array of the view, gathered from each shard's in-memory index once."""
        if name not in self._gathered:
            out = np.zeros(len(self), dtype=dtype)
            for s, index in enumerate(self.shards):
                mine = self.shard == s
                if mine.any():
                    out[mine] = per_shard(index)[self.row[mine]]
            self._gathered[name] = out
        return self._gathered[name]

    def nbytes_per_graph(self) -> dict[str, float]:
        """Mean bytes per crystal of each part in the shards the view reads (0 when absent)."""
        totals: dict[str, float] = {}
        graphs = 0
        for s in np.unique(self.shard):
            store = self._store(int(s))
            graphs += len(store)
            for part, per in store.nbytes_per_graph().items():
                totals[part] = totals.get(part, 0.0) + per * len(store)
        return {part: total / max(graphs, 1) for part, total in totals.items()}

    # ------------------------------------------------------------------ mapping shards
    def _store(self, s: int) -> GraphStore:
        """Shard ``s`` memory-mapped, the least recently used mapping dropped past ``max_open``."""
        store = self._open.get(s)
        if store is None:
            store = GraphStore.load(self.shards[s].path, mmap=True)
            self._open[s] = store
            while len(self._open) > max(self.max_open, 1):
                self._open.popitem(last=False)  # its arrays unmap when the last batch copied from them is gone
        else:
            self._open.move_to_end(s)
        return store

    def close(self) -> None:
        """Unmap every shard (the view stays usable: the next access maps again)."""
        self._open.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # maps and gathered arrays are rebuilt in the other process
        state["_gathered"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ reading graphs
    def take(self, indices: Sequence[int] | np.ndarray) -> ShardedGraphStore:
        """The view of graphs ``indices`` in that order (no graph is read)."""
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == len(self) and np.array_equal(idx, np.arange(len(self))):
            return self
        return ShardedGraphStore(self.shards, self.shard[idx], self.row[idx], self.max_open)

    def _gather(self, idx: np.ndarray) -> GraphStore:
        """Graphs ``idx`` of the view in memory, in that order (copied from the mapped shards)."""
        shard_of = self.shard[idx]
        groups = [(int(s), np.flatnonzero(shard_of == s)) for s in np.unique(shard_of)]
        if len(groups) == 1:
            return self._store(groups[0][0]).take(self.row[idx])
        pieces = [self._store(s).take(self.row[idx[positions]]) for s, positions in groups]
        merged = GraphStore.concat(pieces)
        placed = np.concatenate([positions for _, positions in groups])
        return merged.take(np.argsort(placed, kind="stable"))

    @property
    def _collate_plan(self) -> CollatePlan:
        if "plan" not in self._gathered:
            self._gathered["plan"] = collate_plan(self.parts, self._has_rows, self.levels)
        return self._gathered["plan"]

    def collate(self, indices: Sequence[int] | np.ndarray, targets: np.ndarray | None = None) -> Data:
        """As :meth:`GraphStore.collate` (``graph_index`` numbers graphs of this view): each field's
        rows are gathered from the mapped shards straight into the batch, one copy."""
        idx = np.asarray(indices, dtype=np.int64)
        shard_of, rows = self.shard[idx], self.row[idx]
        plan = self._collate_plan
        if len(idx) and (shard_of == shard_of[0]).all() and self._store(int(shard_of[0]))._collate_plan == plan:
            batch = self._store(int(shard_of[0])).collate(rows, targets)  # one shard: its own collate
            batch.graph_index = batch.graph_index.new_tensor(idx)
            return batch
        counts = {level: self.num_rows(level)[idx] for level in plan.levels}
        batch_ptr = {level: _pointer(c) for level, c in counts.items()}
        groups = [(int(s), np.flatnonzero(shard_of == s)) for s in np.unique(shard_of)]
        stores = {s: self._store(s) for s, _ in groups}

        def rows_of(f: Field) -> np.ndarray:
            if f.level == "graph":
                out = np.empty((len(idx), *f.shape), dtype=f.dtype)
                for s, positions in groups:
                    out[positions] = stores[s].arrays[f.name][rows[positions]]
                return out
            total = int(batch_ptr[f.level][-1])
            out = np.empty((total, *f.shape) if f.row_axis == 0 else (*f.shape, total), dtype=f.dtype)
            for s, positions in groups:
                n = counts[f.level][positions]
                src = _ranges(stores[s].ptrs[f.level][rows[positions]], n)
                dst = _ranges(batch_ptr[f.level][positions], n)
                if f.row_axis == 0:
                    out[dst] = stores[s].arrays[f.name][src]
                else:
                    out[..., dst] = stores[s].arrays[f.name][..., src]
            return out

        return assemble_batch(plan, idx, counts, rows_of, targets)

    def graph(self, i: int) -> CrystalGraph:
        return self._store(int(self.shard[i])).graph(int(self.row[i]))

    def materialize(self) -> GraphStore:
        """The whole view as one in-memory :class:`GraphStore` (what a small dataset trains on)."""
        if len(self) == 0:
            return GraphStore.from_graphs([], [], self.parts)
        store = self._gather(np.arange(len(self)))
        # a whole shard in order comes back as the mapped shard itself: copy it, so that nothing
        # in memory still reads a file the cache may later set aside or prune
        arrays = {name: a if a.flags.owndata else np.array(a) for name, a in store.arrays.items()}
        return GraphStore(keys=store.keys, ptrs=store.ptrs, arrays=arrays, parts=store.parts)

    def __getattr__(self, name: str) -> np.ndarray:
        """A field (``atomic_numbers``, ``lattices``, ...) of every graph in view order, or a pointer."""
        if name.startswith("_") or "shards" not in self.__dict__:
            raise AttributeError(name)
        level = name[: -len("_ptr")]
        if name.endswith("_ptr") and level in schema.ROW_LEVELS:
            if name not in self._gathered:
                self._gathered[name] = _pointer(self.num_rows(level))
            return self._gathered[name]
        f = schema.field_named(name)
        if f is None or f not in self.fields:
            raise AttributeError(f"{type(self).__name__} has no field {name!r} (it holds the parts {', '.join(self.parts)})")
        key = f"field:{name}"
        if key not in self._gathered:
            self._gathered[key] = self._gather_field(f)
        return self._gathered[key]

    def _gather_field(self, f: Field) -> np.ndarray:
        """Field ``f`` of every graph in view order, read shard by shard (one shard mapped at a time)."""
        if f.level == "graph":
            out = np.zeros((len(self), *f.shape), dtype=f.dtype)
        else:
            counts = self.num_rows(f.level)
            out_ptr = _pointer(counts)
            total = int(out_ptr[-1])
            out = np.zeros((total, *f.shape) if f.row_axis == 0 else (*f.shape, total), dtype=f.dtype)
        for s in np.unique(self.shard):
            mine = np.flatnonzero(self.shard == s)
            source = GraphStore.load(self.shards[int(s)].path, mmap=True).arrays[f.name]
            rows = self.row[mine]
            if f.level == "graph":
                out[mine] = source[rows]
                continue
            shard_ptr = self.shards[int(s)].ptrs[f.level]
            n = counts[mine]
            src = _ranges(shard_ptr[rows], n)
            dst = _ranges(out_ptr[mine], n)
            if f.row_axis == 0:
                out[dst] = source[src]
            else:
                out[..., dst] = source[..., src]
        return out
