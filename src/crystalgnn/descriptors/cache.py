"""On-disk cache of descriptor rows, keyed by structure content and descriptor settings.

Layout: ``<cache_dir>/descriptors-<DescriptorSettings.key()>/shard-<stamp>.npz``, each shard
holding ``keys`` (structure content keys, bytes), ``names`` (the descriptor names, checked on
load), ``values`` (m, d) float64 with NaN, and ``reasons`` (m, d) fixed-width unicode, the reason
of every NaN ("" otherwise), so the reasons survive the cache. Shards are written to a temporary
file and renamed into place (atomic: a reader never sees half a shard) and loaded with
``np.load(allow_pickle=False)``: the cache never executes code. Structures that could not be read
are not cached (they fail again quickly).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystalgnn.descriptors.bank import DESCRIPTOR_NAMES, DescriptorSettings
from crystalgnn.paths import UNREADABLE, set_aside, write_settings


@dataclass
class DescriptorCache:
    """Descriptor cache for one :class:`DescriptorSettings`; ``root=None`` disables it."""

    settings: DescriptorSettings
    root: Path | None = None
    shard_size: int = 8192

    @property
    def folder(self) -> Path | None:
        return None if self.root is None else Path(self.root) / f"descriptors-{self.settings.key()}"

    def _shards(self) -> list[Path]:
        folder = self.folder
        if folder is None or not folder.exists():
            return []
        return sorted(folder.glob("shard-*.npz"))

    def lookup(self, keys: Sequence[str], values: np.ndarray, reasons: np.ndarray) -> np.ndarray:
        """Fill ``values``/``reasons`` rows of cached ``keys`` in place; return the hit mask."""
        wanted = np.array(list(keys), dtype="S64")
        hit = np.zeros(len(wanted), dtype=bool)
        for shard in self._shards():
            if hit.all():
                break
            try:
                with np.load(shard, allow_pickle=False) as data:
                    shard_keys = data["keys"]
                    rows = np.flatnonzero(np.isin(wanted, shard_keys) & ~hit)
                    if not len(rows):
                        continue
                    if tuple(data["names"].tolist()) != DESCRIPTOR_NAMES:
                        continue  # written by a version with other descriptors
                    position = {k: i for i, k in enumerate(shard_keys.tolist())}
                    take = [position[k] for k in wanted[rows].tolist()]
                    values[rows] = data["values"][take]
                    reasons[rows] = data["reasons"][take]
            except UNREADABLE as err:  # a truncated or overwritten shard: what it held is computed again
                set_aside([shard], f"{type(err).__name__}: {err}")
                continue
            hit[rows] = True
        return hit

    def add(self, keys: Sequence[str], values: np.ndarray, reasons: np.ndarray) -> None:
        folder = self.folder
        if folder is None or len(keys) == 0:
            return
        folder.mkdir(parents=True, exist_ok=True)
        write_settings(folder, "descriptors", dataclasses.asdict(self.settings))
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.perf_counter_ns() % 10**9}"
        reasons = np.asarray(reasons, dtype=str)
        if reasons.dtype.itemsize == 0:
            reasons = reasons.astype("U1")
        for part, start in enumerate(range(0, len(keys), self.shard_size)):
            stop = min(start + self.shard_size, len(keys))
            name = f"shard-{stamp}-{part:04d}.npz"
            tmp = folder / f".{name}.tmp"
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    keys=np.array(list(keys[start:stop]), dtype="S64"),
                    names=np.array(DESCRIPTOR_NAMES, dtype=str),
                    values=np.asarray(values[start:stop], dtype=np.float64),
                    reasons=reasons[start:stop],
                )
            os.replace(tmp, folder / name)
