"""The Lightning ``Trainer`` of a run: checkpoints (best and last, without pickle), early stopping,
time limit, progress (a bar on a terminal, plain lines otherwise), the CSV log and an optional
TensorBoard or MLflow logger, and the CPU thread count."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from crystalgnn.config import TrainConfig
from crystalgnn.training.checkpoint import load_checkpoint_file, save_checkpoint_file
from crystalgnn.training.resume import BEST, CHECKPOINTS, LAST

log = logging.getLogger("crystalgnn")


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning checkpoint I/O writing checkpoints as safetensors with a JSON header."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(self, path: str | Path, map_location: Any | None = None, weights_only: bool | None = None) -> dict[str, Any]:
        return load_checkpoint_file(path)

    def remove_checkpoint(self, path: str | Path) -> None:
        for p in (Path(path), Path(f"{path}.json")):
            if p.exists():
                p.unlink()


class EpochLines(L.Callback):
    """Progress as plain lines on stderr, for output that is not a terminal (a log file, CI): a
    progress bar there writes a carriage-return line per batch (550 KB for the main job). One line
    per epoch, at most ~``lines`` of them: epoch, train loss, validation metrics, seconds."""

    def __init__(self, lines: int = 50) -> None:
        self.lines = lines
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        epoch, total = trainer.current_epoch, int(trainer.max_epochs or 0)
        every = max(1, total // self.lines) if total > 0 else 1
        if not trainer.is_global_zero or (epoch % every and epoch + 1 != total):
            return
        shown = "  ".join(f"{name} {float(value):.4g}" for name, value in sorted(trainer.callback_metrics.items())
                          if name.startswith(("train_", "val_")))
        print(f"epoch {epoch + 1}/{total}  {shown}  ({time.perf_counter() - self._start:.1f} s)", file=sys.stderr, flush=True)


@dataclass
class RunTrainer:
    """A configured Trainer and its best-on-validation checkpoint callback."""

    trainer: L.Trainer
    best: ModelCheckpoint


def stop_report(trainer: L.Trainer, t: TrainConfig) -> dict[str, object]:
    """How a finished fit ended: epochs run and why training stopped."""
    from lightning.pytorch.callbacks import Timer

    epochs_run = int(trainer.current_epoch)
    reason = "max_epochs" if epochs_run >= t.epochs else "interrupted"
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            reason = "early_stopping"
        elif isinstance(callback, Timer) and epochs_run < t.epochs and (callback.time_remaining("train") or 0) <= 0:
            reason = "time_limit"
    return {"epochs_run": epochs_run, "max_epochs": t.epochs, "stop_reason": reason}


#: Words for the stop reasons of :func:`stop_report`.
STOP_REASONS = {
    "max_epochs": "ran every epoch",
    "early_stopping": "stopped early (no better validation for --patience epochs)",
    "time_limit": "stopped by the time limit (--max-minutes)",
    "interrupted": "stopped before the last epoch",
}


def quiet_lightning() -> None:
    """Lightning logs hardware banners and tips at INFO on every run; keep the console for results."""
    if os.environ.get("CRYSTALGNN_VERBOSE"):
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def busy_cores(seconds: float = 0.25) -> float:
    """How many cores other processes keep busy now: the machine's CPU use over ``seconds`` while
    this process waits (so its own earlier work, e.g. building graphs, does not count, as it
    would in the load average)."""
    import psutil

    return psutil.cpu_percent(interval=seconds) / 100.0 * (psutil.cpu_count() or 1)


def free_cores() -> int:
    """Cores this process may use that other processes are not busy on: the cores it may run on
    (CPU affinity, container limits) less those busy now, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, int(cores - busy_cores() + 0.5)))


#: glibc's ``M_MMAP_THRESHOLD`` option of ``mallopt``.
_M_MMAP_THRESHOLD = -3
_heap_fixed: list[int] = []


def fix_heap_threshold(threshold: int | None = None) -> int:
    """Fix glibc's mmap threshold (``mallopt(M_MMAP_THRESHOLD)``) once per process, when asked:
    ``threshold`` bytes, else the environment's ``CRYSTALGNN_MMAP_THRESHOLD`` (unset or 0:
    leave glibc's dynamic threshold). Returns the threshold set, 0 where nothing was done.

    glibc raises the threshold to the size of each mapped block freed (up to 32 MiB), so after
    the first large tensor is freed, tensors of up to that size come from the heap instead, and a
    heap of blocks of ever-different sizes (every batch has its own atom, bond and pair counts)
    fragments and keeps growing. bf16-mixed suffers most: its bfloat16 copies are half the size of
    the float32 tensors beside them. ALIGNN-64, 1,600 mp_elasticity3k crystals, 5 epochs: peak RSS
    fp32 2.5 GB, bf16-mixed 4.6 GB; with ``CRYSTALGNN_MMAP_THRESHOLD=1048576`` 1.9 and 2.2 GB, the
    same test MAE, but training took about 1.4x as long on that busy machine (every tensor of
    1 MiB and more is mapped and zeroed anew: page faults), hence opt-in
    (``benchmarks/alignn_bf16_memory.py``).
    """
    if _heap_fixed:
        return _heap_fixed[0]
    if threshold is None:
        threshold = int(os.environ.get("CRYSTALGNN_MMAP_THRESHOLD", "0") or 0)
    done = 0
    if threshold > 0 and sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            done = threshold if getattr(libc, "mallopt", None) and libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1 else 0
        except OSError:  # pragma: no cover - no loadable C library
            done = 0
    _heap_fixed.append(done)
    return done


def set_threads(n: int, deterministic: bool = False) -> int:
    """torch's CPU threads: ``n``; 0 (the default) takes the free cores (:func:`free_cores`), since
    threads that share a core with another busy process slow every step (2 threads on a 2-core
    machine with one core busy ran 4x slower than 1); one when the run must be deterministic.
    Also fixes glibc's mmap threshold where asked (:func:`fix_heap_threshold`)."""
    fix_heap_threshold()
    threads = 1 if deterministic else n if n > 0 else free_cores()
    torch.set_num_threads(threads)
    log.info("training on %d CPU thread(s)", threads)
    return threads


#: Set (to anything) to leave glibc's allocator as it is (see :func:`keep_freed_memory`).
DEFAULT_MALLOC_ENV = "CRYSTALGNN_DEFAULT_MALLOC"


def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse instead of handing every large block back to the OS.

    By default glibc serves blocks above 32 MiB with ``mmap`` and unmaps them when freed, so each
    new edge-sized tensor of a training step (a 256-crystal CGCNN batch has ~83,000 edges: 42 MB
    for 128 floats per edge) starts as fresh pages that the kernel must fault in and zero: an
    element-wise add on such a tensor took 44 ms instead of 9 ms, and a CGCNN training step used
    13-20 % more CPU time (``benchmarks/cgcnn_peer.py``, README). Raising the mmap and trim
    thresholds (``mallopt``) keeps those pages in the heap; the peak memory is the same, but the
    process does not shrink after the peak. Process-wide; Linux with glibc only; skipped when
    ``$CRYSTALGNN_DEFAULT_MALLOC`` is set, or ``$CRYSTALGNN_MMAP_THRESHOLD`` fixes a small threshold
    instead (:func:`fix_heap_threshold`: less memory, slower). Returns whether the setting was applied."""
    if os.environ.get(DEFAULT_MALLOC_ENV) or not sys.platform.startswith("linux") or fix_heap_threshold():
        return False  # asked for glibc's own behaviour, or for a small fixed threshold (memory over speed)
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    m_trim_threshold, m_mmap_threshold, limit = -1, -3, ctypes.c_int(2**31 - 1)
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


def loggers(t: TrainConfig, run_dir: Path) -> list:
    """The CSV log (always: ``RUN/logs/metrics.csv``) and the logger ``t.logger`` names."""
    chosen: list = [CSVLogger(run_dir, name="logs", version="")]
    if t.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        chosen.append(TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False))
    elif t.logger == "mlflow":
        from lightning.pytorch.loggers import MLFlowLogger

        uri = t.mlflow_uri or (run_dir.resolve() / "mlruns").as_uri()
        if uri.startswith("file:"):  # MLflow 3 asks file-store users to opt in; a local store is the point here
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no usage reports leave the machine
        chosen.append(MLFlowLogger(experiment_name="crystalgnn", run_name=run_dir.name, tracking_uri=uri))
    return chosen


def runs_several_processes(t: TrainConfig) -> bool:
    """Whether the run may train in several processes (DDP): more than one device or node, a
    distributed strategy, or a launcher (torchrun, srun) that started several. Its loaders then
    split each epoch themselves (:mod:`crystalgnn.data.distributed`); with one process after all
    they give every crystal to it (orders drawn from seed and epoch). ``--strategy ddp --devices
    1`` is thus the one-process run whose global batches a DDP run of batch size B per rank on
    W ranks reproduces with batch size B × W."""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1
    distributed = t.strategy.startswith(("ddp", "fsdp", "deepspeed"))
    return t.devices != 1 or t.num_nodes > 1 or distributed or launched


class SeenCrystals(L.Callback):
    """Debug log of what each rank trains on: with ``$CRYSTALGNN_SEEN_LOG=PATH`` every training
    batch appends a line ``epoch<TAB>rank<TAB>id,id,...`` to ``PATH.rank<r>`` (tests check with it
    that the ranks together see every training crystal exactly once per epoch)."""

    def __init__(self, path: str, ids: list[str]) -> None:
        self.path = path
        self.ids = ids

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        rank = trainer.global_rank
        names = ",".join(self.ids[int(i)] for i in batch.graph_index.tolist())
        with open(f"{self.path}.rank{rank}", "a") as fh:
            fh.write(f"{trainer.current_epoch}\t{rank}\t{names}\n")


def make_trainer(t: TrainConfig, run_dir: Path, monitor: tuple[str, str], progress: bool,
                 callbacks: list[L.Callback] | None = None, own_samplers: bool = False) -> RunTrainer:
    """Trainer for ``t``. Two checkpoints in ``run_dir/checkpoints``: ``best`` (weights of the best
    epoch on ``monitor``) and ``last`` (the whole training state of the latest epoch, for resume).
    ``own_samplers``: the loaders split the epoch over the ranks themselves, so Lightning must not
    wrap them in its (padding) ``DistributedSampler``."""
    name, mode = monitor
    best = ModelCheckpoint(dirpath=run_dir / CHECKPOINTS, filename=BEST, monitor=name, mode=mode, save_weights_only=True)
    last = ModelCheckpoint(dirpath=run_dir / CHECKPOINTS, filename=LAST, monitor=None, save_top_k=1, enable_version_counter=False)
    for checkpoint in (best, last):
        checkpoint.FILE_EXTENSION = ".safetensors"
    all_callbacks: list[L.Callback] = [best, last, *(callbacks or [])]
    bar = progress and sys.stderr.isatty()
    if bar:
        all_callbacks.append(TQDMProgressBar(leave=False))
    elif progress:
        all_callbacks.append(EpochLines())
    if t.early_stopping_patience > 0:
        all_callbacks.append(EarlyStopping(monitor=name, mode=mode, patience=t.early_stopping_patience))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*The number of training batches.*")
        trainer = L.Trainer(
            max_epochs=t.epochs,
            max_time={"minutes": t.max_minutes} if t.max_minutes > 0 else None,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            use_distributed_sampler=not own_samplers,
            precision=t.precision,
            callbacks=all_callbacks,
            logger=loggers(t, run_dir),
            plugins=[SafetensorsCheckpointIO()],
            enable_progress_bar=bar,
            enable_model_summary=False,
            deterministic=t.deterministic,
            log_every_n_steps=1,
        )
    return RunTrainer(trainer, best)
