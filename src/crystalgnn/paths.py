"""Where crystalgnn keeps what it computes once (graphs, descriptors): the cache folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("crystalgnn")

#: What reading a damaged ``.npy``/``.npz`` cache file raises (truncated, overwritten, not a zip).
UNREADABLE: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def default_cache_dir() -> Path:
    """``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn``."""
    return Path(os.environ.get("CRYSTALGNN_CACHE", Path.home() / ".cache" / "crystalgnn"))


def resolve_cache_dir(cache_dir: str | Path | None) -> Path | None:
    """The cache folder a ``cache_dir`` argument names: ``"default"`` → :func:`default_cache_dir`,
    ``None`` → None (no cache), anything else → ``Path(cache_dir)``."""
    if cache_dir is None:
        return None
    if isinstance(cache_dir, str) and cache_dir == "default":
        return default_cache_dir()
    return Path(cache_dir)


def _cgroup_memory_files() -> list[tuple[Path, Path]]:
    """(limit, usage) files of this process's memory cgroup: v2 ``memory.max`` / ``memory.current``,
    v1 ``memory.limit_in_bytes`` / ``memory.usage_in_bytes``, under the group ``/proc/self/cgroup``
    names and under the mount's root (what a container shows as its own group)."""
    found: list[tuple[Path, Path]] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        group = group.lstrip("/")
        if hierarchy == "0" and controllers == "":
            found.append((Path("/sys/fs/cgroup", group, "memory.max"), Path("/sys/fs/cgroup", group, "memory.current")))
        elif "memory" in controllers.split(","):
            base = Path("/sys/fs/cgroup/memory")
            found.append((base / group / "memory.limit_in_bytes", base / group / "memory.usage_in_bytes"))
    found.append((Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")))
    found.append((Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"), Path("/sys/fs/cgroup/memory/memory.usage_in_bytes")))
    return found


def memory_budget() -> float:
    """Bytes of memory this process may use: the machine's available memory, or less where its
    cgroup (a container, ``systemd-run -p MemoryMax=``, a cluster job) limits it: that limit minus
    what the group uses now (page cache included, which the kernel can reclaim: a low estimate)."""
    import psutil

    budget = float(psutil.virtual_memory().available)
    for limit_file, usage_file in _cgroup_memory_files():
        try:
            text = limit_file.read_text().strip()
            if text == "max" or int(text) >= 2**60:
                continue
            used = int(usage_file.read_text().strip()) if usage_file.exists() else 0
            budget = min(budget, float(max(int(text) - used, 0)))
        except (OSError, ValueError):
            continue
    return budget


@contextlib.contextmanager
def folder_lock(folder: Path | None, what: str = "the cache") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its ``.lock`` file) for the block, so that two
    processes filling the same cache folder take turns: the second waits, then finds the first
    one's work instead of repeating it. ``None``: no lock (no cache). POSIX ``flock``; where it
    does not exist the block runs unlocked."""
    if folder is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another crystalgnn process filling %s (%s)", what, folder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def set_aside(paths: list[Path], reason: str) -> None:
    """Rename unreadable cache files to ``<name>.corrupt`` (kept for inspection, never read again)
    and say so, naming them; what they held is computed again."""
    for path in paths:
        if path.exists():
            os.replace(path, path.with_name(path.name + ".corrupt"))
    shown = ", ".join(str(p) for p in paths)
    log.warning("cache file(s) %s could not be read (%s); set aside as *.corrupt, their entries are computed again", shown, reason)


def write_settings(folder: Path, kind: str, settings: dict) -> None:
    """``folder/settings.json`` once: what its entries were computed with (``crystalgnn cache list``
    shows it; folder names are hashes)."""
    path = folder / "settings.json"
    if path.exists():
        return
    tmp = folder / f".settings.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "settings": settings},
                              indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
