"""From a :class:`CrystalDataset` to graphs ready for batching, with every unusable item reported."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Element
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler
from torch_geometric.data import Data

from crystalgnn.config import FeatureConfig, GraphConfig, RunConfig
from crystalgnn.data.records import CrystalDataset
from crystalgnn.descriptors.bank import DescriptorSettings
from crystalgnn.errors import Problem
from crystalgnn.features.atom import SUPPORTED_MAX_Z
from crystalgnn.graphs.cache import build_graphs
from crystalgnn.graphs.sharded import ShardedGraphStore
from crystalgnn.graphs.store import GraphStore

#: Largest atomic number the atom features cover (CGCNN's table and the learned embedding: 1–100).
MAX_SUPPORTED_Z = SUPPORTED_MAX_Z


@dataclass
class PreparedData:
    """Usable items only, in input order: graphs, targets, and the problems of the others."""

    ids: list[str]
    store: GraphStore | ShardedGraphStore
    targets: np.ndarray  # (n, T)
    target_names: list[str]
    problems: list[Problem] = field(default_factory=list)
    #: Row of each kept item in the source :class:`CrystalDataset`.
    rows: np.ndarray | None = None
    #: (n, D) crystal-level inputs of a descriptor-hybridized model (raw values, NaN allowed).
    extra: np.ndarray | None = None
    #: Every item the reader listed, usable or not, in input order (the dataset's ids).
    source_ids: list[str] | None = None
    #: (n, T) a residual hybrid's descriptor-forest predictions in data units, which the
    #: objective adds to the network's output (:mod:`crystalgnn.training.residual`).
    base: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def _graphs_beyond(atomic_numbers: np.ndarray, node_ptr: np.ndarray, max_z: int) -> dict[int, list[int]]:
    """Graph rows with an atom above ``max_z``, and those atomic numbers (sorted, unique)."""
    bad_atoms = np.flatnonzero(atomic_numbers > max_z)
    graph_of_atom = np.searchsorted(node_ptr, bad_atoms, side="right") - 1
    return {int(g): sorted(set(atomic_numbers[node_ptr[g] : node_ptr[g + 1]].tolist()) - set(range(max_z + 1)))
            for g in np.unique(graph_of_atom)}


def unsupported_element_problems(ids: Sequence[str], store: GraphStore | ShardedGraphStore, max_z: int = MAX_SUPPORTED_Z) -> dict[int, Problem]:
    """Items containing an element the atom features do not cover, by position in ``store``.
    A memory-mapped view is checked shard by shard: its atoms are never gathered into memory."""
    if isinstance(store, ShardedGraphStore):
        found: dict[int, list[int]] = {}
        for s, index in enumerate(store.shards):
            shard = GraphStore.load(index.path, mmap=True)
            for row, zs in _graphs_beyond(shard.atomic_numbers, shard.node_ptr, max_z).items():
                for position in np.flatnonzero((store.shard == s) & (store.row == row)):
                    found[int(position)] = zs
    else:
        found = _graphs_beyond(store.atomic_numbers, store.node_ptr, max_z)
    problems: dict[int, Problem] = {}
    for g, zs in sorted(found.items()):
        names = ", ".join(f"{Element.from_Z(int(z)).symbol} (Z={z})" for z in zs)
        problems[int(g)] = Problem(
            ids[g], f"element(s) {names} not covered by the atom features (Z 1–{max_z})", stage="features"
        )
    return problems


def prepare(
    dataset: CrystalDataset,
    graph_cfg: GraphConfig,
    feature_cfg: FeatureConfig,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
    descriptors: DescriptorSettings | None = None,
    store_mode: str = "memory",
) -> PreparedData:
    """Build (or load cached) graphs for every item and drop, with a reason, what cannot be used.

    ``descriptors``: compute the descriptors of every structure whose graph is built, in the same
    pass (one Voronoi tessellation per structure for both), into the descriptor cache under
    ``cache_dir`` (:func:`crystalgnn.graphs.cache.build_graphs`), so that :func:`attach_descriptors`
    with the same ``cache_dir`` only reads them.

    ``store_mode``: how the graphs are held (:data:`crystalgnn.graphs.cache.STORE_MODES`): in
    memory, or a view over the memory-mapped cache shards for datasets larger than memory.
    """
    store, ok, problems = build_graphs(dataset.ids, dataset.sources, graph_cfg, cache_dir, workers, progress,
                                       describe=descriptors, store=store_mode)
    kept_rows = np.flatnonzero(ok)
    kept_ids = [dataset.ids[i] for i in kept_rows]
    element_problems = unsupported_element_problems(kept_ids, store)
    if element_problems:
        keep = np.array([i not in element_problems for i in range(len(kept_rows))])
        store = store.take(np.flatnonzero(keep))
        kept_rows = kept_rows[keep]
        problems = problems + list(element_problems.values())
    return PreparedData(
        ids=[dataset.ids[i] for i in kept_rows],
        store=store,
        targets=dataset.targets[kept_rows],
        target_names=list(dataset.target_names),
        problems=list(dataset.problems) + problems,
        rows=kept_rows,
        source_ids=list(dataset.ids),
    )


def attach_descriptors(
    data: PreparedData,
    dataset: CrystalDataset,
    names: Sequence[str],
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
) -> list[Problem]:
    """Compute (or load cached) descriptors ``names`` of the kept items into ``data.extra``.

    Returns the descriptors that could not be computed (their cells stay NaN and the model
    reads them as the training mean), one problem per item and descriptor.
    """
    from crystalgnn.descriptors import compute_descriptors

    rows = data.rows if data.rows is not None else np.arange(len(data))
    table = compute_descriptors(
        [dataset.ids[r] for r in rows], [dataset.sources[r] for r in rows], cache_dir=cache_dir, workers=workers, progress=progress
    ).select(tuple(names))
    data.extra = table.values.astype(np.float32)
    return list(table.problems)


class _IndexDataset(Dataset):
    """Yields global item indices; the collator gathers graphs for a whole batch at once."""

    def __init__(self, indices: np.ndarray) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        return int(self.indices[i])


class ShuffleSampler(RandomSampler):
    """``RandomSampler`` (each epoch's order drawn from torch's global generator, exactly as
    ``DataLoader(shuffle=True)``) that a resumed run can rewind: :meth:`restore_before_next_epoch`
    sets the global random state the interrupted run had at this point, so the next epoch's
    order, and every draw after it (dropout), are the uninterrupted run's."""

    def __init__(self, data_source: Dataset) -> None:
        super().__init__(data_source)
        self._pending_state: torch.Tensor | None = None

    def restore_before_next_epoch(self, rng_state: torch.Tensor) -> None:
        self._pending_state = rng_state

    def __iter__(self):  # type: ignore[override]
        if self._pending_state is not None:
            torch.set_rng_state(self._pending_state)
            self._pending_state = None
        return super().__iter__()


class ShardShuffleSampler(ShuffleSampler):
    """A shuffled epoch that reads memory-mapped shards a few at a time instead of at random.

    Each epoch: the shards in a random order, taken ``window`` at a time; the crystals of a window
    in a random order, one after the other window. Every crystal once per epoch, as
    :class:`ShuffleSampler`; a batch draws from at most ``window`` shards (and the one before), so
    an epoch maps each shard about once and the resident pages stay a few shards' worth however
    large the store. Draws come from torch's global generator (resume rewinds them the same way).
    With every shard in one window it is exactly :class:`ShuffleSampler` (the same order).
    """

    def __init__(self, data_source: Dataset, shard_of: np.ndarray, window: int = 4) -> None:
        super().__init__(data_source)
        self.shard_of = np.asarray(shard_of)
        self.window = max(int(window), 1)
        shards, self._members = np.unique(self.shard_of, return_inverse=True)
        self.n_shards = len(shards)

    def __iter__(self):  # type: ignore[override]
        if self.n_shards <= self.window:
            yield from super().__iter__()
            return
        if self._pending_state is not None:
            torch.set_rng_state(self._pending_state)
            self._pending_state = None
        positions = [np.flatnonzero(self._members == s) for s in range(self.n_shards)]
        shard_order = torch.randperm(self.n_shards).numpy()
        for start in range(0, self.n_shards, self.window):
            pool = np.concatenate([positions[s] for s in shard_order[start : start + self.window]])
            yield from pool[torch.randperm(len(pool)).numpy()].tolist()


class NoLoneBatchSampler(BatchSampler):
    """Batches of ``batch_size`` in the sampler's order, where a last batch of a single crystal
    joins the batch before it: batch norm cannot normalise one crystal of one atom, and dropping
    it (``drop_last``) would leave crystals unseen every epoch. ``drop_last`` is accepted for
    Lightning (which rebuilds batch samplers under DDP) and must be False."""

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False) -> None:
        if drop_last:
            raise ValueError("NoLoneBatchSampler keeps every crystal: drop_last must be False")
        super().__init__(sampler, batch_size, drop_last=False)

    def __iter__(self):  # type: ignore[override]
        pending: list[int] | None = None
        for batch in super().__iter__():
            if pending is not None:
                if len(batch) == 1:  # the lone last crystal: one batch with the one before
                    batch = pending + batch
                else:
                    yield pending
            pending = batch
        if pending is not None:
            yield pending

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        full, rest = divmod(n, self.batch_size)
        return full + (rest > 0) - (rest == 1 and full > 0)


class Collator:
    """Picklable collate function (works with ``num_workers > 0``; graphs are never rebuilt)."""

    def __init__(self, store: GraphStore | ShardedGraphStore, targets: np.ndarray | None, extra: np.ndarray | None = None,
                 base: np.ndarray | None = None) -> None:
        self.store = store
        self.targets = targets
        self.extra = extra
        self.base = base

    def __call__(self, indices: list[int]) -> Data:
        idx = np.asarray(indices, dtype=np.int64)
        batch = self.store.collate(idx, None if self.targets is None else self.targets[idx])
        if self.extra is not None:
            batch.extra = torch.from_numpy(self.extra[idx])
        if self.base is not None:
            batch.base = torch.from_numpy(self.base[idx])
        return batch


def _shuffled(dataset: _IndexDataset, store: GraphStore | ShardedGraphStore) -> ShuffleSampler:
    if isinstance(store, ShardedGraphStore):
        return ShardShuffleSampler(dataset, store.shard[dataset.indices])
    return ShuffleSampler(dataset)


def make_loader(
    data: PreparedData,
    indices: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """Batches of graphs ``indices`` of ``data``; ``shuffle`` (training): a new order every epoch
    (:class:`ShuffleSampler`; :class:`ShardShuffleSampler` on a memory-mapped store), every
    crystal in every epoch (:class:`NoLoneBatchSampler`)."""
    dataset = _IndexDataset(indices)
    if not shuffle:
        return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                          collate_fn=Collator(data.store, data.targets, data.extra, data.base), persistent_workers=num_workers > 0)
    return DataLoader(
        dataset,
        batch_sampler=NoLoneBatchSampler(_shuffled(dataset, data.store), batch_size),
        num_workers=num_workers,
        collate_fn=Collator(data.store, data.targets, data.extra, data.base),
        persistent_workers=num_workers > 0,
    )


def finalize_config(cfg: RunConfig, dataset: CrystalDataset, prepared: PreparedData) -> RunConfig:
    """Fill in what the data decides: source, target names, number of targets / classes."""
    model = cfg.model
    if model.task == "classification":
        labels = prepared.targets[:, 0]
        if not np.all(labels == np.round(labels)) or labels.min() < 0:
            raise ValueError("classification targets must be class labels 0, 1, 2, ...")
        model = dataclasses.replace(model, n_targets=1, n_classes=max(int(labels.max()) + 1, model.n_classes))
        if model.dropout == 0.0:
            model = dataclasses.replace(model, dropout=0.5)  # CGCNN's classification default
    else:
        model = dataclasses.replace(model, n_targets=prepared.targets.shape[1])
    data = dataclasses.replace(
        cfg.data, source=str(dataset.meta.get("source", cfg.data.source)), targets=tuple(prepared.target_names)
    )
    return dataclasses.replace(cfg, model=model, data=data)
