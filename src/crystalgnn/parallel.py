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


def process_rank() -> int:
    """This process's global rank in a multi-process (DDP) job, read from what its launcher set
    before any process group exists; 0 for a process on its own.

    torchrun (and anything using ``env://``) sets ``RANK``; SLURM's ``srun`` sets ``SLURM_PROCID``
    (used when the step has several tasks and is not an interactive shell, as Lightning's
    ``SLURMEnvironment`` decides); Lightning's own launcher (``--devices N`` without torchrun)
    gives the processes it starts ``LOCAL_RANK`` and ``NODE_RANK``. The number is exact for
    torchrun and SLURM; under Lightning's launcher only "0 or not" is (it is all callers need).
    """
    env = os.environ
    if env.get("RANK", "").isdigit():
        return int(env["RANK"])
    if (env.get("SLURM_PROCID", "").isdigit() and int(env.get("SLURM_NTASKS", "1") or 1) > 1
            and env.get("SLURM_JOB_NAME") not in ("bash", "interactive")):
        return int(env["SLURM_PROCID"])
    local, node = int(env.get("LOCAL_RANK", "0") or 0), int(env.get("NODE_RANK", "0") or 0)
    return node * int(env.get("LOCAL_WORLD_SIZE", "1") or 1) + local if node else local


def is_rank_zero() -> bool:
    """Whether this process writes shared outputs (caches, the run directory): global rank 0,
    or a process on its own."""
    return process_rank() == 0
