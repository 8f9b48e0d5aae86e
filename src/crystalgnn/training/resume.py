"""Resuming a killed run: what is saved with every epoch, and the checks before continuing.

Every epoch the run directory's ``checkpoints/last.safetensors`` is rewritten (atomically) with
everything the next epoch needs: weights, optimizer and scheduler states, the loop counters,
the callbacks' states (best score so far, early-stopping patience, elapsed time) and — through
:class:`ResumeState` — torch's global random state and a fingerprint of the data and split.
``train(..., resume=True)`` (CLI: ``crystalgnn train --resume RUN_DIR``) reloads it, so a killed
run loses at most the epoch it was in, and ends with the numbers an uninterrupted run gives.

Random state: the training order of each epoch is drawn from torch's global generator when the
epoch's loader starts, as ``DataLoader(shuffle=True)`` does. The state saved at the end of epoch
k is handed to the training sampler (:class:`~crystalgnn.data.prepared.ShuffleSampler`), which
sets it just before it draws epoch k + 1's order — after the one draw the loader makes first for
its worker seed, which is replayed. A run of several processes (DDP) draws each epoch's order
from the seed and the epoch alone (:mod:`crystalgnn.data.distributed`), so resumed with the same
number of processes it replays the same orders and global batches; only dropout's randomness is
not restored there (each rank draws its own). Every rank checks at the start of training that
all ranks prepared the same items and split (their data fingerprints agree).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import lightning as L
import torch

from crystalgnn.config import RunConfig
from crystalgnn.data.prepared import PreparedData, ShuffleSampler
from crystalgnn.data.splits import Split
from crystalgnn.training.checkpoint import load_checkpoint_file

CHECKPOINTS = "checkpoints"
LAST = "last"
BEST = "best"
#: Settings that may differ between the interrupted and the resumed process: where and how fast
#: it runs, not what it computes.
HARDWARE_SETTINGS = ("threads", "num_workers", "graph_store", "accelerator", "devices", "num_nodes", "strategy", "logger", "mlflow_uri")


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{LAST}.safetensors"


def data_fingerprint(prepared: PreparedData, split: Split) -> str:
    """SHA-1 of the item ids of each split, in order: the same data and split, or not."""
    h = hashlib.sha1()
    for name in ("train", "val", "test"):
        h.update(name.encode())
        for i in split.get(name, []):
            h.update(str(prepared.ids[int(i)]).encode() + b"\0")
    return h.hexdigest()


class ResumeState(L.Callback):
    """Saves torch's random state and the data fingerprint with each checkpoint; on resume checks
    the fingerprint and rewinds the training sampler to the saved state."""

    def __init__(self, fingerprint: str, sampler: object | None = None) -> None:
        self.fingerprint = fingerprint
        # only a ShuffleSampler draws from the global random state; a distributed order needs no rewind
        self.sampler = sampler if isinstance(sampler, ShuffleSampler) else None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Under DDP: stop every rank, with the reason, when the ranks prepared other items or
        splits (other data on a node, a cache entry one rank read and another did not): their
        positions would name other crystals and the epoch would not be every crystal once."""
        if trainer.world_size <= 1:
            return
        same = trainer.strategy.broadcast(self.fingerprint, src=0) == self.fingerprint
        if not trainer.strategy.reduce_boolean_decision(same, all=True):
            raise RuntimeError(f"rank {trainer.global_rank}: the processes of this run prepared different items or splits "
                               f"(data fingerprint {self.fingerprint[:12]}{'' if same else ' differs from rank 0'}); give every node "
                               "the same data and a shared cache folder")

    @property
    def state_key(self) -> str:
        return "ResumeState"

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"rng_state": torch.get_rng_state(), "data": self.fingerprint}
        if torch.cuda.is_available():
            state["cuda_rng_states"] = list(torch.cuda.get_rng_state_all())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("data") != self.fingerprint:
            raise ValueError("the checkpoint was written for other data or another split than this run's")
        saved = state_dict["rng_state"]
        # Replay the loader's worker-seed draw that preceded the sampler's draw in the first run.
        current = torch.get_rng_state()
        torch.set_rng_state(saved)
        torch.empty((), dtype=torch.int64).random_()
        at_sampler = torch.get_rng_state()
        torch.set_rng_state(current)
        if self.sampler is not None:
            self.sampler.restore_before_next_epoch(at_sampler)
        cuda = state_dict.get("cuda_rng_states")
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def saved_config(run_dir: str | Path) -> RunConfig:
    """The configuration of a run that can be resumed; a clear error when it cannot."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--resume {run_dir}: no such run directory")
    if not (run_dir / "config.json").exists():
        raise FileNotFoundError(f"--resume {run_dir}: no config.json there; is it a crystalgnn run directory "
                                "(killed before its data were prepared)? Start the run again without --resume")
    if (run_dir / "metrics.json").exists():
        raise ValueError(f"--resume {run_dir}: that run has finished (metrics.json exists); nothing to resume")
    if not last_checkpoint(run_dir).exists():
        raise FileNotFoundError(f"--resume {run_dir}: no {CHECKPOINTS}/{LAST}.safetensors: the run was killed before its first "
                                "epoch ended (or written by a crystalgnn without resume); start it again without --resume")
    return RunConfig.load(run_dir / "config.json")


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    d = dataclasses.asdict(cfg)
    for key in HARDWARE_SETTINGS:
        d["train"].pop(key, None)
    d.pop("crystalgnn_version", None)
    return d


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if a == b else [f"{path}: saved {a!r}, now {b!r}"]


def check_same_settings(saved: RunConfig, given: RunConfig, run_dir: str | Path, ignore_targets: bool = True) -> None:
    """Raise ``ValueError`` listing every setting of ``given`` that differs from the saved run's
    (hardware settings may differ; target names are checked once the data are read)."""
    a, b = _comparable(saved), _comparable(given)
    if ignore_targets:
        for d in (a, b):
            d["data"].pop("targets", None)
    differences = _differences(a, b)
    if differences:
        shown = "\n  ".join(differences[:12])
        raise ValueError(f"--resume {run_dir} was trained with other settings than these:\n  {shown}\n"
                         "Resume with the saved settings (drop the flags that change them), or start a new run directory")


def last_state(run_dir: str | Path) -> tuple[str | None, int]:
    """The data fingerprint and the epoch stored in the run's last checkpoint (one read)."""
    checkpoint = load_checkpoint_file(last_checkpoint(run_dir))
    return checkpoint.get("callbacks", {}).get("ResumeState", {}).get("data"), int(checkpoint.get("epoch", -1))


def read_metrics_history(metrics_csv: Path, through_epoch: int) -> list[dict[str, str]]:
    """Rows of Lightning's CSV log up to and including ``through_epoch`` (the log of the
    interrupted process, which a new CSV logger would delete)."""
    if not metrics_csv.exists():
        return []
    with metrics_csv.open(newline="") as fh:
        return [row for row in csv.DictReader(fh) if row.get("epoch", "") != "" and int(float(row["epoch"])) <= through_epoch]


def prepend_metrics_history(metrics_csv: Path, history: list[dict[str, str]]) -> None:
    """Put ``history`` back in front of the resumed process's log (columns merged)."""
    if not history:
        return
    rows = history
    if metrics_csv.exists():
        with metrics_csv.open(newline="") as fh:
            rows = history + list(csv.DictReader(fh))
    columns = sorted({k for row in rows for k in row})
    with metrics_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
