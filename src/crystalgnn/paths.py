"""Where crystalgnn keeps what it computes once (graphs, descriptors): the cache folder."""

from __future__ import annotations

import os
from pathlib import Path


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
