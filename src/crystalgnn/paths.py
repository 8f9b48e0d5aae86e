"""Where crystalgnn keeps what it computes once (graphs, descriptors): the cache folder."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from crystalgnn.parallel import process_rank

T = TypeVar("T")

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
def folder_lock(folder: Path | None, what: str = "the cache", shared: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its ``.lock`` file) for the block, so that two
    processes filling the same cache folder take turns: the second waits, then finds the first
    one's work instead of repeating it. ``None``: no lock (no cache). POSIX ``flock``; where it
    does not exist the block runs unlocked.

    ``shared=True``: a reader's lock (waits while a writer holds the folder, never blocks other
    readers) that creates nothing: without a folder or a ``.lock`` file the block runs unlocked,
    as nothing has been written there yet."""
    if folder is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    if shared and not (folder / ".lock").exists():
        yield
        return
    if not shared:
        folder.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(folder / ".lock", "r" if shared else "a+") as handle:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another crystalgnn process filling %s (%s)", what, folder)
            fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def set_aside(paths: list[Path], reason: str) -> None:
    """Rename unreadable cache files to ``<name>.corrupt`` (kept for inspection, never read again)
    and say so, naming them; what they held is computed again. A worker rank (:func:`cache_is_read_only`)
    only says so: rank 0 owns the cache's files."""
    if process_rank() != 0:
        log.warning("rank %d: cache file(s) %s could not be read (%s)", process_rank(), ", ".join(map(str, paths)), reason)
        return
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


class CacheNotReadyError(RuntimeError):
    """A worker rank gave up waiting for rank 0 to put items into a shared cache."""


#: Seconds a worker rank waits for rank 0 to fill a cache (``$CRYSTALGNN_RANK_WAIT`` overrides).
RANK_WAIT_SECONDS = 3600.0


def cache_is_read_only(folder: Path | None) -> bool:
    """Whether this process only reads the cache ``folder``: a non-zero rank of a multi-process job
    (:func:`crystalgnn.parallel.process_rank`) where there is a cache. Rank 0 builds and writes;
    the others wait for it and read, so several ranks never write one shared folder."""
    return folder is not None and process_rank() != 0


def read_when_ready(folder: Path, what: str, look: Callable[[], tuple[T, Sequence[str]]],
                    timeout: float | None = None, poll: float = 1.0) -> T:
    """A worker rank's read of a cache that rank 0 fills: ``look()`` returns ``(result, names of the
    items still missing)``; it runs under a shared lock (never while rank 0 writes) and again
    every ``poll`` seconds until nothing is missing. After ``timeout`` seconds
    (``$CRYSTALGNN_RANK_WAIT``, default :data:`RANK_WAIT_SECONDS`) a :class:`CacheNotReadyError`
    names what is missing. Nothing is written."""
    if timeout is None:
        timeout = float(os.environ.get("CRYSTALGNN_RANK_WAIT", RANK_WAIT_SECONDS))
    deadline = time.monotonic() + timeout
    said = False
    while True:
        with folder_lock(folder, what, shared=True):
            result, missing = look()
        if not missing:
            return result
        if time.monotonic() >= deadline:
            shown = ", ".join(map(str, list(missing)[:10])) + (", ..." if len(missing) > 10 else "")
            raise CacheNotReadyError(
                f"rank {process_rank()}: {len(missing)} item(s) are missing from {what} ({folder}) after waiting {timeout:g} s "
                f"for rank 0 to build them: {shown}. Worker ranks only read the cache rank 0 writes: is the cache folder "
                "($CRYSTALGNN_CACHE or --cache-dir) on a filesystem every node shares, and did rank 0 fail? "
                "($CRYSTALGNN_RANK_WAIT sets the wait in seconds)")
        if not said:
            log.warning("rank %d: waiting for rank 0 to put %d item(s) into %s (%s)", process_rank(), len(missing), what, folder)
            said = True
        time.sleep(poll)
