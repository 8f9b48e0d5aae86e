"""Helpers shared by the benchmark scripts: data locations, one-time extraction of mp37k, timing.

The shared data folder is read-only and the repository must never hold data, so the mp37k archive
is extracted once into a cache folder outside the repository (default
``~/.cache/crystalgnn/datasets/mp37k``). A marker file says the extraction finished; extraction
goes to a temporary sibling folder that is renamed into place, so a crash or a concurrent run
never leaves a half-extracted folder that looks complete.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MP37K = DATA / "mp37k"
RESULTS = ROOT / "benchmarks" / "results"

#: Parent of the extracted datasets (``--data-cache``); mp37k lands in ``<this>/mp37k``.
DEFAULT_DATA_CACHE = Path.home() / ".cache" / "crystalgnn" / "datasets"
#: Graph cache used by the benchmarks (kept apart from the user cache so cold timings are clean).
DEFAULT_GRAPH_CACHE = Path.home() / ".cache" / "crystalgnn" / "benchmark-graphs"

_MARKER = ".extracted-ok"
_CSV_FILES = ("id_prop.csv", "id_prop_fo.csv", "id_prop_bg.csv", "id_prop_fe.csv", "id_prop_mm.csv",
              "material_id_hash.csv", "atom_init.json")


def _mp37k_folder(data_cache: str | os.PathLike | None) -> Path:
    """``<data_cache>/mp37k``; a path already named ``mp37k`` is taken as the folder itself."""
    base = Path(data_cache).expanduser() if data_cache is not None else DEFAULT_DATA_CACHE
    return base if base.name == "mp37k" else base / "mp37k"


def extracted_mp37k(data_cache: str | os.PathLike | None = None, verbose: bool = True) -> Path:
    """Folder holding mp37k in CGCNN layout (``id_prop*.csv`` + ``data/<id>.cif``), extracted once.

    ``data_cache`` is the parent folder (``~/.cache/crystalgnn/datasets`` by default) or the
    ``mp37k`` folder itself. The archive is unpacked with ``tarfile``'s ``filter="data"`` (no
    absolute paths, links out of the tree or device files); the small CSV files are copied beside
    ``data/`` so that the folder alone is a complete dataset.
    """
    folder = _mp37k_folder(data_cache)
    if (folder / _MARKER).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    start = time.perf_counter()
    if verbose:
        print(f"extracting {MP37K / 'cifs_data.tar.gz'} -> {folder} (once) ...", file=sys.stderr, flush=True)
    try:
        with tarfile.open(MP37K / "cifs_data.tar.gz") as archive:
            archive.extractall(tmp, filter="data")
        for name in _CSV_FILES:
            if (MP37K / name).exists():
                shutil.copyfile(MP37K / name, tmp / name)  # copyfile: not the read-only mode bits
        (tmp / _MARKER).write_text(json.dumps({"source": str(MP37K), "seconds": time.perf_counter() - start}) + "\n")
        if folder.exists() and not (folder / _MARKER).exists():
            shutil.rmtree(folder)  # an unfinished folder from an older layout; ours are renamed in whole
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / _MARKER).exists():  # not a concurrent run that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(f"extracted in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return folder


def load_mp37k(data_cache: str | os.PathLike | None, n: int | None, target_file: str = "id_prop_fo.csv", targets: Any = None):
    """The first ``n`` items of mp37k (all if ``n`` is falsy) as a lazy ``CrystalDataset``."""
    from crystalgnn.io import load_dataset

    folder = extracted_mp37k(data_cache)
    return load_dataset(folder / target_file, targets, structures_dir=folder, max_rows=n or None)


def mp37k_subset(data_cache: str | os.PathLike | None, n: int | None, subset: str = "first", seed: int = 0,
                 target_file: str = "id_prop_fo.csv"):
    """``n`` items of mp37k: the first rows (``subset="first"``) or a seeded random sample in file
    order (``"random"``; mp37k's first ids are smaller crystals than average). Falsy ``n``: all."""
    if subset == "first" or not n:
        return load_mp37k(data_cache, n, target_file)
    if subset != "random":
        raise ValueError(f"subset must be 'first' or 'random', not {subset!r}")
    import numpy as np

    ds = load_mp37k(data_cache, None, target_file)
    pick = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(int(n), len(ds)), replace=False))
    return ds.subset(pick)


@contextmanager
def timer(store: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        store[name] = time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def image_peak_rss_mb() -> float:
    """Peak RSS of this process image (``VmHWM``), for a benchmark's child process: unlike
    ``ru_maxrss``, which a child started with fork + exec inherits from its parent, it starts afresh
    at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return peak_rss_mb()


def current_rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process().memory_info().rss / 2**20


def machine_info() -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    try:
        info["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import pymatgen.core

        info["pymatgen"] = getattr(pymatgen.core, "__version__", None)
    except ImportError:
        pass
    return info


def write_results(name: str, results: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return path


def print_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print(line)
    for r in rows:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


def epoch_timer():
    """A Lightning callback that times the training part of every epoch: ``seconds[k]`` runs from
    the epoch's start to the end of its last training batch (Lightning validates before
    ``on_train_epoch_end``, so timing up to that hook would count validation too) and
    ``crystals[k]`` counts the crystals trained on, so an epoch cut short by the time budget
    still gives a true rate (:func:`training_rate`)."""
    import lightning as L

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.crystals: list[int] = []
            self._start = 0.0

        def on_train_epoch_start(self, trainer, module) -> None:
            self._start = time.perf_counter()
            self.seconds.append(0.0)
            self.crystals.append(0)

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.seconds[-1] = time.perf_counter() - self._start
            self.crystals[-1] += int(batch.num_graphs)

    return EpochTimer()


def training_rate(timer) -> float:
    """Training crystals per second of an :func:`epoch_timer`, leaving out the first epoch (warm-up)
    when there are more; NaN before any batch."""
    seconds, crystals = (timer.seconds[1:], timer.crystals[1:]) if len(timer.seconds) > 1 else (timer.seconds, timer.crystals)
    return sum(crystals) / sum(seconds) if sum(seconds) > 0 else float("nan")


def run_processes(label: str, jobs: list[tuple[str, list[str], Path]], parallel: int) -> None:
    """Run each job (name, argv, log file) as a subprocess, ``parallel`` at a time, reporting
    starts and ends (a failed job names its log; the others go on)."""
    import subprocess

    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            name, argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            print(f"[{label}] {name}: started (log {log})", flush=True)
            running.append((name, subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)))
        time.sleep(2.0)
        for name, proc in list(running):
            if proc.poll() is not None:
                running.remove((name, proc))
                state = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}; see its log)"
                print(f"[{label}] {name}: {state}", flush=True)
