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
