"""Descriptors of many structures: from the on-disk cache (:mod:`.cache`) where possible, computed
with the bank (:mod:`.bank`) in parallel otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crystalgnn.descriptors.bank import (
    DESCRIPTOR_NAMES,
    DescriptorSettings,
    DescriptorTable,
    _problem,
    structure_descriptors,
)
from crystalgnn.descriptors.cache import DescriptorCache
from crystalgnn.errors import Problem
from crystalgnn.parallel import map_items
from crystalgnn.paths import cache_is_read_only, folder_lock, read_when_ready, resolve_cache_dir
from crystalgnn.structures.source import StructureSource


def describe_one(source: StructureSource, settings: DescriptorSettings) -> tuple[np.ndarray, np.ndarray] | str:
    """Load and describe one structure: ``(values, reasons)`` or the reason it could not be loaded."""
    structure = source.load_or_reason()
    if isinstance(structure, str):
        return structure
    if structure is None or len(structure) == 0:
        return "no atoms in the structure"
    values, reasons = structure_descriptors(structure, settings)
    return values, np.array([reasons.get(name, "") for name in DESCRIPTOR_NAMES], dtype=str)


def compute_descriptors(
    ids: Sequence[str],
    sources: Sequence[StructureSource],
    settings: DescriptorSettings = DescriptorSettings(),
    cache_dir: str | Path | None = "default",
    workers: int = 0,
    progress: bool = True,
    chunk_size: int = 16,
) -> DescriptorTable:
    """Descriptors of every structure, from the on-disk cache where possible, in parallel otherwise.

    ``cache_dir="default"``: ``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn`` (see
    :func:`crystalgnn.paths.default_cache_dir`); ``None``: no cache. Entries are keyed by
    ``source.key`` (a content hash) under ``descriptors-<settings.key()>/``. ``workers=0`` uses
    every core, 1 computes in this process. A structure that cannot be read gives a NaN row and
    one problem; a descriptor that cannot be computed a NaN cell and one problem.
    """
    if len(ids) != len(sources):
        raise ValueError("ids and sources must have the same length")
    cache = DescriptorCache(settings, resolve_cache_dir(cache_dir))
    n, d = len(sources), len(DESCRIPTOR_NAMES)
    values = np.full((n, d), np.nan)
    reasons = np.full((n, d), "", dtype=object)
    keys = [s.key for s in sources]
    unreadable: dict[int, str] = {}
    if cache_is_read_only(cache.folder):  # a worker rank: rank 0 computes, this process reads once all are there
        assert cache.folder is not None
        read_when_ready(cache.folder, "the descriptor cache",
                        lambda: (None, [str(ids[i]) for i in np.flatnonzero(~cache.lookup(keys, values, reasons))]))
        return _table(ids, values, reasons, unreadable)
    with folder_lock(cache.folder, "the descriptor cache"):  # two processes take turns, the second reads the first's
        hit = cache.lookup(keys, values, reasons)
        missing = np.flatnonzero(~hit)
        results: list = []
        if len(missing):
            results = map_items(describe_one, [sources[i] for i in missing], (settings,), workers, chunk_size, "computing descriptors", progress)
        new_rows: list[int] = []
        for row, result in zip(missing.tolist(), results):
            if isinstance(result, str):
                unreadable[row] = result
                reasons[row, :] = f"structure could not be read: {result}"
            else:
                values[row], reasons[row] = result
                new_rows.append(row)
        cache.add([keys[r] for r in new_rows], values[new_rows], reasons[new_rows].astype(str))

    return _table(ids, values, reasons, unreadable)


def _table(ids: Sequence[str], values: np.ndarray, reasons: np.ndarray, unreadable: dict[int, str]) -> DescriptorTable:
    """The table of computed (or cached) rows, a problem per unreadable structure and NaN cell."""
    problems: list[Problem] = []
    for row in range(len(ids)):
        if row in unreadable:
            problems.append(Problem(str(ids[row]), unreadable[row], stage="descriptors"))
            continue
        for k in np.flatnonzero(np.isnan(values[row])).tolist():
            problems.append(_problem(str(ids[row]), DESCRIPTOR_NAMES[k], str(reasons[row, k]) or "not computed"))
    return DescriptorTable([str(i) for i in ids], DESCRIPTOR_NAMES, values, problems, reasons.astype(str))
