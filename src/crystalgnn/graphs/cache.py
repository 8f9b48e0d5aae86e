"""Build crystal graphs once, in parallel, and cache them on disk.

Layout: ``<cache_dir>/graphs-<graph_key(GraphConfig)>/`` holds shards ``<name>.npz`` (a
:class:`GraphStore`) each with a small ``<name>.keys.npy`` beside it. A graph is found by its
structure's content key (hash of the file bytes or of the in-memory structure) under the folder of
its graph settings, so changing a setting or a file rebuilds only what changed. Loading is
``np.load(allow_pickle=False)``: the cache never executes code. ``failed-<stamp>.npz`` files
record the structures whose graph could not be built and why (keys, reasons): worker ranks of a
multi-process job, which never build, read them to skip the same items rank 0 skipped.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystalgnn.config import GraphConfig
from crystalgnn.descriptors.bank import DescriptorSettings
from crystalgnn.errors import Problem
from crystalgnn.graphs.crystal_graph import CrystalGraph, build_graph
from crystalgnn.graphs.schema import addon_key, graph_key, parts_for
from crystalgnn.graphs.store import GraphStore
from crystalgnn.parallel import map_items
from crystalgnn.paths import UNREADABLE, cache_is_read_only, folder_lock, read_when_ready, set_aside, write_settings
from crystalgnn.structures.source import StructureSource


def build_one(source: StructureSource, cfg: GraphConfig, describe: DescriptorSettings | None = None):
    """Parse, validate and build one graph; a string is the reason it could not be built.

    With ``describe``, returns ``(graph or reason, descriptors)``: the structure's descriptor row
    as :func:`crystalgnn.descriptors.compute.describe_one` gives it (``(values, reasons)``, or a
    string when the structure could not be read), computed right after the graph so that both
    share the memoised Voronoi tessellation (:func:`crystalgnn.descriptors.voronoi.structure_voronoi`).
    """
    from crystalgnn.errors import StructureError
    from crystalgnn.structures.parse import validate_structure

    structure = source.load_or_reason()
    if isinstance(structure, str):
        return structure if describe is None else (structure, structure)
    graph: CrystalGraph | str | None = validate_structure(structure) or None
    if graph is None:
        try:
            graph = build_graph(structure, cfg)
        except StructureError as err:  # an isolated atom, an uncovered element, ...
            graph = str(err)
    if describe is None:
        return graph
    return graph, _describe_loaded(structure, describe)


def _describe_loaded(structure, settings: DescriptorSettings) -> tuple[np.ndarray, np.ndarray] | str:
    """``describe_one`` of a structure already loaded."""
    from crystalgnn.descriptors.bank import DESCRIPTOR_NAMES, structure_descriptors

    if structure is None or len(structure) == 0:
        return "no atoms in the structure"
    values, reasons = structure_descriptors(structure, settings)
    return values, np.array([reasons.get(name, "") for name in DESCRIPTOR_NAMES], dtype=str)


def _cache_descriptors(settings: DescriptorSettings, cache_dir: str | Path | None, keys: Sequence[str],
                       described: Sequence[tuple[np.ndarray, np.ndarray] | str]) -> None:
    """Write the descriptor rows computed during graph building into the descriptor cache
    (those not cached yet; unreadable structures are never cached, as in ``compute_descriptors``)."""
    from crystalgnn.descriptors.bank import DESCRIPTOR_NAMES
    from crystalgnn.descriptors.cache import DescriptorCache
    from crystalgnn.paths import resolve_cache_dir

    cache = DescriptorCache(settings, resolve_cache_dir(cache_dir))
    rows = [i for i, d in enumerate(described) if not isinstance(d, str)]
    if cache.folder is None or not rows:
        return
    with folder_lock(cache.folder, "the descriptor cache"):
        d = len(DESCRIPTOR_NAMES)
        hit = cache.lookup([keys[i] for i in rows], np.full((len(rows), d), np.nan), np.full((len(rows), d), "", dtype=object))
        new = [r for r, h in zip(rows, hit) if not h]
        if new:
            cache.add([keys[i] for i in new], np.stack([described[i][0] for i in new]),
                      np.stack([described[i][1] for i in new]))


@dataclass
class GraphCache:
    """On-disk graph cache for one :class:`GraphConfig`. ``root=None`` disables disk caching."""

    cfg: GraphConfig
    root: Path | None = None
    #: Graphs per shard file: a lookup of a few crystals then loads a small shard, not the whole cache.
    shard_size: int = 4096

    @property
    def folder(self) -> Path | None:
        return None if self.root is None else Path(self.root) / f"graphs-{graph_key(self.cfg)}"

    def _shard_keys(self) -> list[tuple[Path, np.ndarray]]:
        folder = self.folder
        if folder is None or not folder.exists():
            return []
        found = []
        for keys_file in sorted(folder.glob("*.keys.npy")):
            shard = keys_file.with_name(keys_file.name[: -len(".keys.npy")] + ".npz")
            if shard.exists():
                try:
                    found.append((shard, np.load(keys_file, allow_pickle=False)))
                except UNREADABLE as err:
                    set_aside([keys_file, shard], f"{type(err).__name__}: {err}")
        return found

    def lookup(self, keys: Sequence[str]) -> tuple[GraphStore | None, np.ndarray]:
        """Cached graphs for ``keys``: a store with the hits (in ``keys`` order) and a hit mask."""
        wanted = np.array(list(keys), dtype="S64")
        hit = np.zeros(len(wanted), dtype=bool)
        parts: list[GraphStore] = []
        part_rows: list[np.ndarray] = []
        for shard, shard_keys in self._shard_keys():
            # Rows of `wanted` not yet found whose key is in this shard.
            in_shard = np.isin(wanted, shard_keys) & ~hit
            if not in_shard.any():
                continue
            rows = np.flatnonzero(in_shard)
            position = {k: i for i, k in enumerate(shard_keys.tolist())}
            try:
                store = GraphStore.load(shard)
            except UNREADABLE as err:  # a truncated or overwritten shard: its graphs are rebuilt
                set_aside([shard.with_name(shard.name[: -len(".npz")] + ".keys.npy"), shard], f"{type(err).__name__}: {err}")
                continue
            parts.append(store.take([position[k] for k in wanted[rows].tolist()]))
            part_rows.append(rows)
            hit[rows] = True
        if not parts:
            return None, hit
        merged = GraphStore.concat(parts)
        order = np.argsort(np.concatenate(part_rows), kind="stable")
        return merged.take(order), hit

    def add(self, store: GraphStore) -> None:
        folder = self.folder
        if folder is None or len(store) == 0:
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_settings(folder, "graphs", {"graph": dataclasses.asdict(self.cfg), "addons": addon_key(self.cfg)})
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**9}"
        for part, start in enumerate(range(0, len(store), self.shard_size)):
            shard = store.take(np.arange(start, min(start + self.shard_size, len(store))))
            name = f"shard-{stamp}-{part:04d}"
            shard.save(folder / f"{name}.npz")
            tmp = folder / f".{name}.keys.tmp.npy"
            np.save(tmp, shard.keys)
            os.replace(tmp, folder / f"{name}.keys.npy")  # keys last: a shard is visible only when complete

    def add_failures(self, keys: Sequence[str], reasons: Sequence[str]) -> None:
        """Record why the graphs of ``keys`` could not be built (``failed-<stamp>.npz``), so that a
        worker rank, which never builds, knows which items rank 0 skipped and why."""
        folder = self.folder
        if folder is None or not len(keys):
            return
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**9}"
        tmp = folder / f".failed-{stamp}.tmp.npz"
        np.savez(tmp, keys=np.array(list(keys), dtype="S64"), reasons=np.array(list(reasons), dtype=str))
        os.replace(tmp, folder / f"failed-{stamp}.npz")

    def failures(self) -> dict[bytes, str]:
        """Recorded reasons of graphs that could not be built, by key (see :meth:`add_failures`)."""
        folder = self.folder
        found: dict[bytes, str] = {}
        if folder is None or not folder.exists():
            return found
        for path in sorted(folder.glob("failed-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    found.update(zip(data["keys"].tolist(), data["reasons"].tolist()))
            except UNREADABLE:
                continue  # a worker reads on; rank 0 rewrites what it still cannot build
        return found


def _collect(cfg: GraphConfig, ids: Sequence[str], keys: Sequence[str], missing: np.ndarray,
             built: Sequence[CrystalGraph | str]) -> tuple[GraphStore, list[int], list[Problem]]:
    """The graphs just built as a store, their rows, and a problem per item that could not be built."""
    problems: list[Problem] = []
    new_keys, new_graphs, new_rows = [], [], []
    for row, result in zip(missing, built):
        if isinstance(result, str):
            problems.append(Problem(str(ids[row]), result, stage="structure"))
        else:
            new_keys.append(keys[row])
            new_graphs.append(result)
            new_rows.append(int(row))
    # parts: what every graph of `cfg` holds, also when none was built here
    return GraphStore.from_graphs(new_keys, new_graphs, parts_for(cfg)), new_rows, problems


def build_graphs(
    ids: Sequence[str],
    sources: Sequence[StructureSource],
    cfg: GraphConfig,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
    chunk_size: int = 32,
    describe: DescriptorSettings | None = None,
) -> tuple[GraphStore, np.ndarray, list[Problem]]:
    """Graphs for ``sources``, from the cache where possible, built in parallel otherwise.

    Returns ``(store, ok, problems)``: ``store`` holds the graphs of the items with ``ok[i]`` true,
    in input order; ``problems`` names every item that could not be built and why.
    ``workers=0`` uses every core (``os.cpu_count()``); 1 builds in this process.
    Two processes filling the same cache folder take turns (:func:`crystalgnn.paths.folder_lock`):
    the second waits, then reads what the first built instead of building it again. A worker rank
    of a multi-process job (global rank > 0, :func:`crystalgnn.paths.cache_is_read_only`) never
    writes: it waits until rank 0 has built (or recorded as unbuildable) every item, then reads.

    ``describe``: also compute the descriptors (:mod:`crystalgnn.descriptors`) of every structure
    whose graph is built here, in the same worker call right after its graph (sharing its Voronoi
    tessellation), and write them into the descriptor cache under ``cache_dir``, where a later
    ``compute_descriptors(..., settings=describe, cache_dir=cache_dir)`` finds them. Structures
    whose graph was cached are not described here.
    """
    cache = GraphCache(cfg, Path(cache_dir) if cache_dir is not None else None)
    keys = [s.key for s in sources]
    if cache_is_read_only(cache.folder):
        return _read_rank_zero_graphs(cache, ids, keys)
    with folder_lock(cache.folder, "the graph cache"):
        cached, hit = cache.lookup(keys)
        missing = np.flatnonzero(~hit)
        built: list[CrystalGraph | str] = []
        if len(missing):
            todo = [sources[i] for i in missing]
            if describe is None:
                built = map_items(build_one, todo, (cfg,), workers, chunk_size, "building graphs", progress)
            else:
                pairs = map_items(build_one, todo, (cfg, describe), workers, chunk_size, "building graphs", progress)
                built = [graph for graph, _ in pairs]
                _cache_descriptors(describe, cache_dir, [keys[i] for i in missing], [d for _, d in pairs])
        fresh, new_rows, problems = _collect(cfg, ids, keys, missing, built)
        cache.add(fresh)
        failed = [(keys[row], result) for row, result in zip(missing, built) if isinstance(result, str)]
        cache.add_failures([key for key, _ in failed], [reason for _, reason in failed])

    parts = parts_for(cfg)
    ok = hit.copy()
    ok[np.asarray(new_rows, dtype=np.int64)] = True
    stores = [s for s in (cached, fresh) if s is not None and len(s)]
    if not stores:
        return GraphStore.from_graphs([], [], parts), ok, problems
    rows = np.concatenate(([np.flatnonzero(hit)] if cached is not None else []) + [np.asarray(new_rows, dtype=np.int64)])
    merged = GraphStore.concat(stores)
    store = merged.take(np.argsort(rows, kind="stable"))
    return store, ok, problems


def _read_rank_zero_graphs(cache: GraphCache, ids: Sequence[str], keys: Sequence[str]) -> tuple[GraphStore, np.ndarray, list[Problem]]:
    """:func:`build_graphs` of a worker rank: rank 0's graphs and recorded failures, read once
    every item has one or the other (:func:`crystalgnn.paths.read_when_ready`), so every rank
    ends with the same items in the same order."""
    assert cache.folder is not None

    def look() -> tuple[tuple[GraphStore | None, np.ndarray, dict[bytes, str]], list[str]]:
        cached, hit = cache.lookup(keys)
        failed = cache.failures() if not hit.all() else {}
        missing = [str(ids[i]) for i in np.flatnonzero(~hit) if str(keys[i]).encode() not in failed]
        return (cached, hit, failed), missing

    cached, hit, failed = read_when_ready(cache.folder, "the graph cache", look)
    problems = [Problem(str(ids[i]), failed[str(keys[i]).encode()], stage="structure") for i in np.flatnonzero(~hit)]
    if cached is None:
        cached = GraphStore.from_graphs([], [], parts_for(cache.cfg))
    return cached, hit, problems
