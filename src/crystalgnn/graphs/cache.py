"""Build crystal graphs once, in parallel, and cache them on disk.

Layout: ``<cache_dir>/graphs-<graph_key(GraphConfig)>/`` holds shards ``<name>/`` (a
:class:`GraphStore` as one ``.npy`` per array, which training can memory-map:
:mod:`crystalgnn.graphs.sharded`; caches written before that hold ``<name>.npz``, still read) each
with a small ``<name>.keys.npy`` beside it, written last. A graph is found by its
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystalgnn.config import GraphConfig
from crystalgnn.descriptors.bank import DescriptorSettings
from crystalgnn.errors import Problem
from crystalgnn.graphs.crystal_graph import CrystalGraph, build_graph
from crystalgnn.graphs.schema import addon_key, graph_key, parts_for
from crystalgnn.graphs.sharded import DEFAULT_MAX_OPEN, ShardedGraphStore, ShardIndex
from crystalgnn.graphs.store import GraphStore
from crystalgnn.parallel import map_items
from crystalgnn.paths import UNREADABLE, cache_is_read_only, folder_lock, read_when_ready, set_aside, write_settings
from crystalgnn.structures.source import KeyColumn, StructureSource, source_keys


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


#: How a prepared dataset holds its graphs: "memory" (one in-memory store, the fastest batching),
#: "mmap" (a view over the memory-mapped cache shards, :mod:`crystalgnn.graphs.sharded`: resident
#: memory bounded by a few shards), "auto" (mmap when the graphs take more than
#: :data:`MMAP_SHARE` of the memory this process may use, see :func:`crystalgnn.paths.memory_budget`).
STORE_MODES = ("auto", "memory", "mmap")
MMAP_SHARE = 0.25


@dataclass
class GraphCache:
    """On-disk graph cache for one :class:`GraphConfig`. ``root=None`` disables disk caching."""

    cfg: GraphConfig
    root: Path | None = None
    #: Graphs per shard: a lookup of a few crystals reads a small shard, a memory-mapped epoch
    #: keeps a few of them resident, and building holds one shard's graphs in memory at a time.
    shard_size: int = 4096

    @property
    def folder(self) -> Path | None:
        return None if self.root is None else Path(self.root) / f"graphs-{graph_key(self.cfg)}"

    @staticmethod
    def shard_of_keys_file(keys_file: Path) -> Path | None:
        """The shard a ``<name>.keys.npy`` announces: folder ``<name>`` (memory-mappable) or ``<name>.npz``."""
        stem = keys_file.name[: -len(".keys.npy")]
        for candidate in (keys_file.with_name(stem), keys_file.with_name(stem + ".npz")):
            if candidate.exists():
                return candidate
        return None

    def _shard_keys(self) -> Iterator[tuple[Path, np.ndarray]]:
        """Each complete shard and its keys, in folder order, read one keys file at a time."""
        folder = self.folder
        if folder is None or not folder.exists():
            return
        for keys_file in sorted(folder.glob("*.keys.npy")):
            shard = self.shard_of_keys_file(keys_file)
            if shard is not None:
                try:
                    keys = np.load(keys_file, allow_pickle=False)
                except UNREADABLE as err:
                    set_aside([keys_file, shard], f"{type(err).__name__}: {err}")
                    continue
                yield shard, keys

    @staticmethod
    def _keys_file(shard: Path) -> Path:
        stem = shard.name[: -len(".npz")] if shard.suffix == ".npz" else shard.name
        return shard.with_name(stem + ".keys.npy")

    def index(self, keys: Sequence[str]) -> tuple[list[Path], np.ndarray, np.ndarray]:
        """Where each of ``keys`` is cached, reading only the small keys files: the shards, and per
        key its shard number (-1: not cached) and row there."""
        # fixed-width bytes as wide as the longest wanted key (40 for SHA-1 hex), not 64
        wanted = keys.array if isinstance(keys, KeyColumn) else np.array(list(keys), dtype="S")
        shard_of = np.full(len(wanted), -1, dtype=np.int32)
        row_of = np.zeros(len(wanted), dtype=np.int64)
        if not len(wanted):
            return [], shard_of, row_of
        width = wanted.dtype.itemsize
        listed: list[Path] = []
        tables: list[np.ndarray] = []
        for shard, shard_keys in self._shard_keys():
            # a key longer than every wanted one matches none: blank it rather than cut it short
            too_long = np.char.str_len(shard_keys) > width
            tables.append(np.where(too_long, b"", shard_keys).astype(f"S{width}"))
            listed.append(shard)
        if not listed:
            return [], shard_of, row_of
        # one sorted table of every cached key: a key in several shards is found in the first
        # (stable sort, leftmost match), as a shard-by-shard search in folder order would
        sizes = [len(t) for t in tables]
        cached = np.concatenate(tables)
        del tables
        shard_no = np.repeat(np.arange(len(listed), dtype=np.int32), sizes)
        row_no = np.concatenate([np.arange(n, dtype=np.int32) for n in sizes])
        order = np.argsort(cached, kind="stable")
        at = order[np.minimum(np.searchsorted(cached, wanted, sorter=order), len(cached) - 1)]
        hit = cached[at] == wanted
        used = np.unique(shard_no[at[hit]])
        renumber = np.full(len(listed), -1, dtype=np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        shard_of[hit] = renumber[shard_no[at[hit]]]
        row_of[hit] = row_no[at[hit]]
        return [listed[int(u)] for u in used], shard_of, row_of

    def lookup(self, keys: Sequence[str]) -> tuple[GraphStore | None, np.ndarray]:
        """Cached graphs for ``keys``: an in-memory store with the hits (in ``keys`` order) and a hit mask."""
        view, hit = self.view(keys)
        return (view.materialize() if view is not None else None), hit

    def view(self, keys: Sequence[str], max_open: int = DEFAULT_MAX_OPEN) -> tuple[ShardedGraphStore | None, np.ndarray]:
        """Cached graphs for ``keys`` as a memory-mapped view (the hits, in ``keys`` order) and a hit
        mask. A shard that cannot be read is set aside and its graphs count as not cached."""
        shards, shard_of, row_of = self.index(keys)
        indexes: list[ShardIndex | None] = []
        for shard in shards:
            try:
                indexes.append(ShardIndex.read(shard))
            except UNREADABLE as err:  # a truncated or overwritten shard: its graphs are rebuilt
                set_aside([self._keys_file(shard), shard], f"{type(err).__name__}: {err}")
                indexes.append(None)
        readable = np.array([i is not None for i in indexes] + [False], dtype=bool)
        hit = readable[shard_of]  # shard_of -1 reads the final False
        if not hit.any():
            return None, hit
        renumber = np.cumsum(readable[:-1]) - 1
        kept = tuple(i for i in indexes if i is not None)
        return ShardedGraphStore(kept, renumber[shard_of[hit]], row_of[hit], max_open), hit

    def add(self, store: GraphStore) -> None:
        """Write ``store`` as new shards (memory-mappable folders), keys files last."""
        folder = self.folder
        if folder is None or len(store) == 0:
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_settings(folder, "graphs", {"graph": dataclasses.asdict(self.cfg), "addons": addon_key(self.cfg)})
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**9}"
        for part, start in enumerate(range(0, len(store), self.shard_size)):
            shard = store.take(np.arange(start, min(start + self.shard_size, len(store))))
            name = f"shard-{stamp}-{part:04d}"
            shard.save(folder / name)
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


def _build(cache: GraphCache, cfg: GraphConfig, ids: Sequence[str], sources: Sequence[StructureSource], keys: Sequence[str],
           missing: np.ndarray, workers: int, progress: bool, chunk_size: int, describe: DescriptorSettings | None,
           cache_dir: str | Path | None) -> tuple[list[GraphStore], np.ndarray, list[Problem]]:
    """Build the ``missing`` items. With a cache folder, ``cache.shard_size`` items at a time, each
    batch written as a shard before the next is built (memory: one shard's graphs) and nothing
    returned but the rows built and the problems; without one, every graph in memory."""
    from tqdm.auto import tqdm

    step = cache.shard_size if cache.folder is not None else max(len(missing), 1)
    fresh: list[GraphStore] = []
    rows: list[np.ndarray] = []  # the rows built, one small array per shard (not an int object each)
    problems: list[Problem] = []
    with tqdm(total=len(missing), desc="building graphs", unit="crystal", disable=None if progress else True, leave=False) as bar:
        for start in range(0, len(missing), step):
            chunk = missing[start : start + step]
            todo = [sources[i] for i in chunk]
            if describe is None:
                built = map_items(build_one, todo, (cfg,), workers, chunk_size, progress=False)
            else:
                pairs = map_items(build_one, todo, (cfg, describe), workers, chunk_size, progress=False)
                built = [graph for graph, _ in pairs]
                _cache_descriptors(describe, cache_dir, [keys[i] for i in chunk], [d for _, d in pairs])
            store, chunk_rows, chunk_problems = _collect(cfg, ids, keys, chunk, built)
            rows.append(np.asarray(chunk_rows, dtype=np.int64))
            problems += chunk_problems
            if cache.folder is not None:
                cache.add(store)  # on disk; read back through the cache view
                failed = [(keys[row], result) for row, result in zip(chunk, built) if isinstance(result, str)]
                cache.add_failures([key for key, _ in failed], [reason for _, reason in failed])
            else:
                fresh.append(store)
            bar.update(len(chunk))
    return fresh, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64), problems


def choose_store_mode(mode: str, nbytes: float) -> str:
    """``"memory"`` or ``"mmap"`` for ``mode`` (one of :data:`STORE_MODES`) and graphs of ``nbytes``."""
    from crystalgnn.paths import memory_budget

    if mode not in STORE_MODES:
        raise ValueError(f"graph store {mode!r}: use one of {', '.join(STORE_MODES)}")
    if mode != "auto":
        return mode
    return "mmap" if nbytes > MMAP_SHARE * memory_budget() else "memory"


def _shard_bytes(view: ShardedGraphStore) -> float:
    """Bytes of the view's graphs, estimated from its shards' sizes on disk (nothing is read)."""
    total = 0.0
    for s, index in enumerate(view.shards):
        files = [index.path] if index.path.is_file() else list(index.path.glob("*.npy"))
        size = sum(f.stat().st_size for f in files)
        total += size * np.count_nonzero(view.shard == s) / max(len(index.keys), 1)
    return total


def build_graphs(
    ids: Sequence[str],
    sources: Sequence[StructureSource],
    cfg: GraphConfig,
    cache_dir: str | Path | None = None,
    workers: int = 0,
    progress: bool = True,
    chunk_size: int = 32,
    describe: DescriptorSettings | None = None,
    store: str = "memory",
    shard_size: int = 4096,
) -> tuple[GraphStore | ShardedGraphStore, np.ndarray, list[Problem]]:
    """Graphs for ``sources``, from the cache where possible, built in parallel otherwise.

    Returns ``(store, ok, problems)``: ``store`` holds the graphs of the items with ``ok[i]`` true,
    in input order; ``problems`` names every item that could not be built and why.
    ``workers=0`` uses every core (``os.cpu_count()``); 1 builds in this process.
    Two processes filling the same cache folder take turns (:func:`crystalgnn.paths.folder_lock`):
    the second waits, then reads what the first built instead of building it again. A worker rank
    of a multi-process job (global rank > 0, :func:`crystalgnn.paths.cache_is_read_only`) never
    writes: it waits until rank 0 has built (or recorded as unbuildable) every item, then reads.

    With a cache folder, building streams: ``GraphCache.shard_size`` crystals are built, written
    as a shard and dropped before the next ones, so building never holds more than one shard's
    graphs. ``store``: ``"memory"`` returns one in-memory :class:`GraphStore`; ``"mmap"`` a
    :class:`~crystalgnn.graphs.sharded.ShardedGraphStore` over the memory-mapped shards (needs a
    cache folder); ``"auto"`` picks by size (:func:`choose_store_mode`). Both hold the same numbers.
    ``shard_size``: crystals per shard written.

    ``describe``: also compute the descriptors (:mod:`crystalgnn.descriptors`) of every structure
    whose graph is built here, in the same worker call right after its graph (sharing its Voronoi
    tessellation), and write them into the descriptor cache under ``cache_dir``, where a later
    ``compute_descriptors(..., settings=describe, cache_dir=cache_dir)`` finds them. Structures
    whose graph was cached are not described here.
    """
    cache = GraphCache(cfg, Path(cache_dir) if cache_dir is not None else None, shard_size)
    keys = source_keys(sources)
    if cache_is_read_only(cache.folder):
        return _read_rank_zero_graphs(cache, ids, keys, store)
    with folder_lock(cache.folder, "the graph cache"):
        view, hit = cache.view(keys)  # reads each shard's index: an unreadable one is set aside and rebuilt
        missing = np.flatnonzero(~hit)
        fresh, new_rows, problems = _build(cache, cfg, ids, sources, keys, missing, workers, progress, chunk_size,
                                           describe, cache_dir)
    built_rows = np.asarray(new_rows, dtype=np.int64)
    if cache.folder is not None and len(built_rows):  # the shards just written join the view
        view, hit = cache.view(keys)
    ok = hit.copy()
    ok[built_rows] = True
    parts = parts_for(cfg)
    if fresh:  # built in memory (no cache folder): merge with what the cache had
        cached = [view.materialize()] if view is not None else []
        rows = np.concatenate([np.flatnonzero(hit), built_rows[~hit[built_rows]]])
        merged = GraphStore.concat(cached + fresh)
        return merged.take(np.argsort(rows, kind="stable")), ok, problems
    if view is None:
        return GraphStore.from_graphs([], [], parts), ok, problems
    if choose_store_mode(store, _shard_bytes(view)) == "mmap":
        return view, ok, problems
    return view.materialize(), ok, problems


def merge_caches(destination: str | Path, sources: Sequence[str | Path]) -> dict[str, int]:
    """Merge graph caches built apart (``crystalgnn graphs DATA --shard i/N`` on a cluster's nodes,
    each into its own folder) into the cache under ``destination``: every ``graphs-<key>`` folder
    of every source joins the folder of the same key (the same graph settings), shard by shard. A
    shard whose keys are all there already is skipped, one with some of them is written again
    without those; keys files are written last, so a reader never sees a half-copied shard.
    Returns counts: ``shards`` copied, ``graphs`` added, ``duplicates`` skipped, ``folders``."""
    import shutil

    counts = {"folders": 0, "shards": 0, "graphs": 0, "duplicates": 0}
    destination = Path(destination)
    for source in sources:
        source = Path(source)
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: no such cache folder to merge")
        for folder in sorted(source.glob("graphs-*")):
            target = destination / folder.name
            target.mkdir(parents=True, exist_ok=True)
            counts["folders"] += 1
            with folder_lock(target, "the graph cache"):
                if (folder / "settings.json").exists() and not (target / "settings.json").exists():
                    shutil.copy2(folder / "settings.json", target / "settings.json")
                have = [np.load(k, allow_pickle=False) for k in target.glob("*.keys.npy")]
                known = np.concatenate(have) if have else np.zeros(0, dtype="S64")
                for keys_file in sorted(folder.glob("*.keys.npy")):
                    shard = GraphCache.shard_of_keys_file(keys_file)
                    if shard is None:
                        continue
                    keys = np.load(keys_file, allow_pickle=False)
                    new = ~np.isin(keys, known)
                    counts["duplicates"] += int((~new).sum())
                    if not new.any():
                        continue
                    name = keys_file.name[: -len(".keys.npy")]
                    if new.all():
                        tmp = target / f".{shard.name}.{os.getpid()}.tmp"
                        (shutil.copytree if shard.is_dir() else shutil.copy2)(shard, tmp)
                        os.replace(tmp, target / shard.name)
                        kept = keys
                    else:
                        part = GraphStore.load(shard).take(np.flatnonzero(new))
                        part.save(target / name)
                        kept = part.keys
                    tmp_keys = target / f".{name}.keys.tmp.npy"
                    np.save(tmp_keys, kept)
                    os.replace(tmp_keys, target / f"{name}.keys.npy")
                    known = np.concatenate([known, kept])
                    counts["shards"] += 1
                    counts["graphs"] += len(kept)
    return counts


def _read_rank_zero_graphs(cache: GraphCache, ids: Sequence[str], keys: Sequence[str],
                           store: str) -> tuple[GraphStore | ShardedGraphStore, np.ndarray, list[Problem]]:
    """:func:`build_graphs` of a worker rank: rank 0's graphs and recorded failures, read once
    every item has one or the other (:func:`crystalgnn.paths.read_when_ready`), so every rank
    ends with the same items in the same order; held as ``store`` says."""
    assert cache.folder is not None

    def look() -> tuple[tuple[ShardedGraphStore | None, np.ndarray, dict[bytes, str]], list[str]]:
        view, hit = cache.view(keys)
        failed = cache.failures() if not hit.all() else {}
        missing = [str(ids[i]) for i in np.flatnonzero(~hit) if str(keys[i]).encode() not in failed]
        return (view, hit, failed), missing

    view, hit, failed = read_when_ready(cache.folder, "the graph cache", look)
    problems = [Problem(str(ids[i]), failed[str(keys[i]).encode()], stage="structure") for i in np.flatnonzero(~hit)]
    if view is None:
        return GraphStore.from_graphs([], [], parts_for(cache.cfg)), hit, problems
    return (view if choose_store_mode(store, _shard_bytes(view)) == "mmap" else view.materialize()), hit, problems
