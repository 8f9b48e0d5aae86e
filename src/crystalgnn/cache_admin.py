"""What is in the cache folder, and removing what is no longer needed (``crystalgnn cache``).

The cache (``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn``) holds one folder per graph setting
(``graphs-<hash>``) and per descriptor setting (``descriptors-<hash>``); each folder's
``settings.json`` (written since crystalgnn records it) says what its entries were computed with.
A folder is *stale* when it was written by graph- or descriptor-building code older than this
crystalgnn's (its ``code_version``): nothing reads it again.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crystalgnn.config import GRAPH_CODE_VERSION
from crystalgnn.descriptors.bank import DESCRIPTOR_CODE_VERSION

KINDS = {"graphs": "graphs-", "descriptors": "descriptors-"}


@dataclass
class CacheFolder:
    """One folder of the cache: what it holds and whether it is still read."""

    path: Path
    kind: str
    entries: int
    bytes: int
    last_written: float  # seconds since the epoch, newest file
    settings: dict | None
    corrupt: int  # files set aside as *.corrupt

    @property
    def stale(self) -> bool | None:
        """True when written by older building code; None when the folder does not say."""
        if self.settings is None:
            return None
        settings = self.settings.get("settings", {})
        version = settings.get("graph", {}).get("code_version") if self.kind == "graphs" else settings.get("code_version")
        current = GRAPH_CODE_VERSION if self.kind == "graphs" else DESCRIPTOR_CODE_VERSION
        return None if version is None else int(version) < current

    def days_unused(self, now: float | None = None) -> float:
        return ((now or time.time()) - self.last_written) / 86400


def _entries(folder: Path, kind: str) -> int:
    total = 0
    if kind == "graphs":
        for keys in folder.glob("*.keys.npy"):
            try:
                total += len(np.load(keys, allow_pickle=False))
            except (OSError, ValueError, EOFError):
                continue
        return total
    for shard in folder.glob("shard-*.npz"):
        try:
            with np.load(shard, allow_pickle=False) as data:
                total += len(data["keys"])
        except Exception:  # noqa: BLE001 - an unreadable shard counts nothing; lookup sets it aside
            continue
    return total


def cache_folders(root: Path) -> list[CacheFolder]:
    """Every graph and descriptor folder under ``root``, oldest first."""
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        kind = next((k for k, prefix in KINDS.items() if folder.name.startswith(prefix)), None)
        if kind is None or not folder.is_dir():
            continue
        files = [f for f in folder.rglob("*") if f.is_file()]
        settings_file = folder / "settings.json"
        try:
            settings = json.loads(settings_file.read_text()) if settings_file.exists() else None
        except ValueError:
            settings = None
        found.append(CacheFolder(
            path=folder, kind=kind, entries=_entries(folder, kind), bytes=sum(f.stat().st_size for f in files),
            last_written=max((f.stat().st_mtime for f in files), default=folder.stat().st_mtime),
            settings=settings, corrupt=sum(1 for _ in folder.glob("*.corrupt")),
        ))
    return sorted(found, key=lambda f: f.last_written)


def prune(root: Path, older_than_days: float = 30.0, dry_run: bool = False) -> list[Path]:
    """Remove stale folders, folders unused for ``older_than_days`` days, and set-aside
    ``*.corrupt`` files; returns what was (or, with ``dry_run``, would be) removed."""
    removed: list[Path] = []
    now = time.time()
    for folder in cache_folders(root):
        if folder.stale or folder.days_unused(now) > older_than_days:
            removed.append(folder.path)
            if not dry_run:
                shutil.rmtree(folder.path)
            continue
        for corrupt in folder.path.glob("*.corrupt"):
            removed.append(corrupt)
            if not dry_run:
                if corrupt.is_dir():  # a graph shard is a folder
                    shutil.rmtree(corrupt)
                else:
                    corrupt.unlink()
    return removed


def clear(root: Path, dry_run: bool = False) -> list[Path]:
    """Remove every graph and descriptor folder (the cache rebuilds what a run needs)."""
    removed = [f.path for f in cache_folders(root)]
    if not dry_run:
        for path in removed:
            shutil.rmtree(path)
    return removed
