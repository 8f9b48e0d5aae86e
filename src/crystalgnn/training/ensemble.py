"""Deep ensembles of any registered model: N members that differ by their seed (and, with
``bootstrap``, by a resample of the training split); their mean is the prediction and their
spread (standard deviation over members) its uncertainty σ.

An ensemble run directory (``TrainConfig(ensemble=N)``, CLI ``--ensemble N``) holds::

    config.json              the ensemble's RunConfig (train.ensemble = N, train.bootstrap)
    members/<k>/             member k = 0..N-1: an ordinary run directory (seed + k, the split
                             of the ensemble's own seed), loadable alone with ``load_model``
    predictions_<split>.csv  the ensemble mean in the columns of a single run, and the spread
                             beside the learned prediction (``pred_<t>_std``; ``prob_<c>_std``)
    metrics.json             metrics of the mean per split and target, ``calibration`` of σ on
                             the test split, ``ensemble`` settings, each member's test metrics
                             (written last: the ensemble is finished)
    calibration.png          test |error| against σ, binned, with y = x (regression)
    parity.png / roc.png     of the mean, as for a single run
    skipped.csv              items left out with on_error="skip", and why

Re-running the same training in the same directory trains only what is missing: a finished
member (``metrics.json``) is kept, a killed one continues from its last checkpoint. The helpers
here are light (no Lightning): prediction imports them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crystalgnn.config import RunConfig

MEMBERS = "members"


def member_dir(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / MEMBERS / str(k)


def member_config(cfg: RunConfig, k: int) -> RunConfig:
    """Member ``k`` of the ensemble ``cfg``: a single run with seed ``seed + k`` that keeps the
    ensemble's split (``split_seed``), so every member sees the same train/val/test items."""
    t = cfg.train
    split_seed = t.seed if t.split_seed is None else t.split_seed
    return dataclasses.replace(cfg, train=dataclasses.replace(t, ensemble=1, seed=t.seed + k, split_seed=split_seed))


def bootstrap_rows(rows: np.ndarray, seed: int) -> np.ndarray:
    """A bootstrap resample of ``rows`` (as many, drawn with replacement), the same for the same seed."""
    rows = np.asarray(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=len(rows), replace=True))


def ensemble_size(run_dir: str | Path) -> int:
    """Members of the run in ``run_dir`` by its ``config.json`` (1: a single run, or no run)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        return 1
    return int(json.loads(path.read_text()).get("train", {}).get("ensemble", 1))


def mean_and_spread(values: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over members (``ddof=0``) of the members' (n, T) predictions,
    in float64 (the members predict in float32)."""
    stack = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    return stack.mean(axis=0), stack.std(axis=0)
