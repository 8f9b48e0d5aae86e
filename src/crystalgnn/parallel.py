"""Per-structure work (graphs, descriptors, space groups) over a pool of forked processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _run_chunk(args: tuple[Callable[..., Any], list[Any], tuple[Any, ...]]) -> list[Any]:
    func, items, extra = args
    return [func(item, *extra) for item in items]


def map_items(
    func: Callable[..., R],
    items: Sequence[T],
    extra: tuple[Any, ...] = (),
    workers: int = 0,
    chunk_size: int = 16,
    desc: str = "",
    progress: bool = True,
) -> list[R]:
    """``[func(item, *extra) for item in items]``, in order, with a progress bar.

    ``workers=0`` uses one process per core, 1 runs here. Chunks of ``chunk_size`` items go to
    forked workers (they inherit the imported modules, so start-up costs milliseconds, not
    seconds); ``func`` must be a module-level function. Fewer than two chunks run here.
    """
    n_workers = workers or os.cpu_count() or 1
    results: list[R] = []
    # disable=None: no bar when stderr is not a terminal (a redirected log gets no carriage-return lines)
    with tqdm(total=len(items), desc=desc, unit="crystal", disable=None if progress else True, leave=False) as bar:
        if n_workers > 1 and len(items) >= 2 * chunk_size:
            chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
            ctx = get_context("fork") if "fork" in get_all_start_methods() else None
            with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                for part in pool.map(_run_chunk, [(func, c, extra) for c in chunks]):
                    results.extend(part)
                    bar.update(len(part))
        else:
            for item in items:
                results.append(func(item, *extra))
                bar.update(1)
    return results
