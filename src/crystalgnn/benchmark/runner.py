"""``crystalgnn benchmark``: every (task, model, fold) cell a training run, resumable and shardable.

A study directory holds::

    study.json                     the settings (tasks, models, folds, budget), written first
    runs/<task>/<model>/fold<k>/   the cell's run directory, as ``crystalgnn train`` writes it
                                   (config.json, model.safetensors, predictions_test.csv, ...)
                                   plus cell.json: the cell's score, written last (finished)
    leaderboard.md / .csv          mean ± std over folds, rank per task (see :mod:`.leaderboard`)
    charts/<task>.png              a bar chart per task

Resume: a cell with ``cell.json`` is finished and never retrained; a cell whose run finished
(``metrics.json``) but was killed before ``cell.json`` is scored from its files; any other cell is
trained again from the start (its partial run directory is replaced). Because a finished cell is
only read, a study killed at any point and rerun with the same command ends with the leaderboard
of an uninterrupted one (bit-identical with ``deterministic=True`` and epoch budgets; with a
minutes budget the retrained cell stops where the clock says).

Shards: the cells are ordered task → fold → model and shard ``i/N`` takes every N-th from ``i``,
so N machines (or array jobs) each run their share into their own study directory (or a shared
one); :func:`crystalgnn.benchmark.leaderboard.collect` merges them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystalgnn import transforms
from crystalgnn.benchmark.tasks import Task, score
from crystalgnn.config import DataConfig, RunConfig, defaults_for
from crystalgnn.data.records import CrystalDataset

log = logging.getLogger("crystalgnn")

CELL_FILE = "cell.json"
FAILED_FILE = "cell_failed.json"
STUDY_FILE = "study.json"
MODELS = ("cgcnn", "alignn", "ocrystalnet", "crystograph")


@dataclass(frozen=True)
class Budget:
    """What each run may spend: ``epochs`` (0: the model's own default; ``epochs_by_model``
    overrides per model) and ``minutes`` (0: no limit; the best epoch so far is kept when it
    runs out). Epochs make runs repeatable; minutes make a profile's cost known.
    ``arch_by_model``: model settings that differ from the paper's for cost (e.g. the quick
    profile's ALIGNN at width 64), by model, as ``{"alignn": {"hidden_features": 64}}``."""

    epochs: int = 0
    minutes: float = 0.0
    epochs_by_model: dict[str, int] = field(default_factory=dict)
    arch_by_model: dict[str, dict[str, Any]] = field(default_factory=dict)

    def epochs_for(self, model: str, default: int) -> int:
        return int(self.epochs_by_model.get(model) or self.epochs or default)


@dataclass(frozen=True)
class Cell:
    task: Task
    model: str
    fold: int

    @property
    def key(self) -> str:
        return f"{self.task.name}/{self.model}/fold{self.fold}"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/N"`` → (i, N) with 0 ≤ i < N; None → (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/N (e.g. 0/4: the first of four shards), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= i < N")
    return i, n


def plan(tasks: Sequence[Task], models: Sequence[str], folds: Sequence[int] | None = None, shard: tuple[int, int] = (0, 1)) -> list[Cell]:
    """The cells of a study (task → fold → model), this shard's share."""
    from crystalgnn import registry

    for m in models:
        registry.get(m)  # raises, listing the models
    cells = []
    for task in tasks:
        chosen = task.folds if folds is None else list(folds)
        bad = [f for f in chosen if f not in task.folds]
        if bad:
            raise ValueError(f"task {task.name} has folds {task.folds}; --fold {bad} is not one")
        cells += [Cell(task, m, f) for f in chosen for m in models]
    i, n = shard
    return cells[i::n]


def cell_config(cell: Cell, budget: Budget, threads: int = 1, seed: int = 123, deterministic: bool = False,
                val_fraction: float | None = None) -> RunConfig:
    """The cell's run configuration: the model's reference defaults (:func:`defaults_for`), the
    task's target, transform, problem type and fold protocol, and the budget."""
    cfg = defaults_for(cell.model)
    task = cell.task
    t = cfg.train
    fold_settings = task.train_settings()
    if val_fraction is not None:
        fold_settings["kfold_val_fraction"] = float(val_fraction)
    train = dataclasses.replace(t, fold=cell.fold, epochs=budget.epochs_for(cell.model, t.epochs), max_minutes=float(budget.minutes),
                                threads=threads, seed=seed, deterministic=deterministic, **fold_settings)
    arch = cfg.model.arch
    if budget.arch_by_model.get(cell.model):
        try:
            arch = dataclasses.replace(arch, **budget.arch_by_model[cell.model])
        except TypeError as err:
            raise ValueError(f"arch_by_model[{cell.model!r}]: {err}; the settings of {cell.model} are "
                             f"{[f.name for f in dataclasses.fields(arch)]}") from None
    model = dataclasses.replace(cfg.model, task=task.problem, n_classes=2, arch=arch)
    data = DataConfig(targets=(task.target,), transform=task.transform, on_error="skip")
    return dataclasses.replace(cfg, data=data, model=model, train=train)


def learned_columns(frame: Any, transform: str, classification: bool = False) -> tuple[str, str]:
    """Names of the (truth, prediction) columns of a predictions CSV in the units a model learned
    and is scored in (``true_log10_<t>`` for a log10 target; class-1 probability for classification)."""
    true_cols = [c for c in frame.columns if c.startswith("true_")]
    if classification:
        return true_cols[0], "prob_1"
    learned = transforms.learned_name(true_cols[0][len("true_"):], transform)
    return f"true_{learned}", f"pred_{learned}"


def score_cell(cell: Cell, run_dir: Path, mad: float, budget: Budget, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``cell.json`` of a finished run: the task's metric on the run's test fold, and how it was got."""
    import pandas as pd

    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = pd.read_csv(run_dir / "predictions_test.csv")
    true_col, pred_col = learned_columns(frame, cell.task.transform, cell.task.problem == "classification")
    truth, pred = frame[true_col].to_numpy(float), frame[pred_col].to_numpy(float)
    cfg = RunConfig.load(run_dir / "config.json")
    result = {
        "task": cell.task.name, "model": cell.model, "fold": cell.fold, "metric": cell.task.metric,
        "value": score(cell.task.metric, truth, pred, mad=mad), "lower_is_better": cell.task.lower_is_better,
        "unit": cell.task.unit, "approximates": cell.task.approximates, "group": cell.task.group,
        "n_train": csv_rows(run_dir / "predictions_train.csv"), "n_test": int(len(frame)), "n_skipped": int(metrics.get("n_skipped", 0)),
        "epochs_run": metrics.get("epochs_run"), "max_epochs": metrics.get("max_epochs"), "best_epoch": metrics.get("best_epoch"),
        "stop_reason": metrics.get("stop_reason"), "wall_seconds": metrics.get("wall_seconds"),
        "n_parameters": metrics.get("n_parameters"), "budget": dataclasses.asdict(budget),
        "protocol": {"kind": cell.task.protocol.kind, "n_folds": cfg.train.kfold, "seed": cfg.train.kfold_seed,
                     "val_fraction": cfg.train.kfold_val_fraction},
        "run_dir": str(Path("runs") / cell.task.name / cell.model / f"fold{cell.fold}"),
    }
    result.update(extra or {})
    return result


def csv_rows(csv_path: Path) -> int:
    """Data rows of a CSV with a header (0 when it does not exist)."""
    if not csv_path.exists():
        return 0
    with open(csv_path) as handle:
        return max(0, sum(1 for _ in handle) - 1)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)  # whole or absent: a killed runner never leaves half a cell.json


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform(), "load_at_start": [round(x, 2) for x in load]}


def _check_study(out: Path, settings: dict[str, Any]) -> None:
    """A study directory keeps one budget and one seed: a rerun with others would mix cells."""
    path = out / STUDY_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        for key in ("budget", "seed", "deterministic", "val_fraction"):
            if saved.get(key) != settings.get(key):
                raise ValueError(f"{out} holds a study run with {key} = {saved.get(key)!r}, not {settings.get(key)!r}; rerun with "
                                 "the same settings to resume it, or give another --out for a new study")
        settings = {**saved, "tasks": sorted(set(saved.get("tasks", [])) | set(settings["tasks"])),
                    "models": sorted(set(saved.get("models", [])) | set(settings["models"]))}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(path, settings)


def run_benchmark(
    tasks: Sequence[Task],
    models: Sequence[str],
    out: str | Path,
    folds: Sequence[int] | None = None,
    shard: tuple[int, int] = (0, 1),
    budget: Budget | None = None,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = "default",
    threads: int = 1,
    seed: int = 123,
    deterministic: bool = False,
    val_fraction: float | None = None,
    progress: bool = False,
    datasets: dict[str, CrystalDataset] | None = None,
) -> list[dict[str, Any]]:
    """Run this shard's cells into ``out`` (see the module docstring); returns their cell results.
    ``datasets``: already-read datasets by task name (tests); ``val_fraction`` overrides the
    protocols' inner validation share (0: each training fold used whole)."""
    from crystalgnn.training.run import train

    out = Path(out)
    budget = budget or Budget()
    cells = plan(tasks, models, folds, shard)
    _check_study(out, {"tasks": [t.name for t in tasks], "models": list(models), "budget": dataclasses.asdict(budget), "seed": seed,
                       "deterministic": deterministic, "val_fraction": val_fraction,
                       "task_definitions": {t.name: t.to_dict() for t in tasks}})
    loaded: dict[str, Task] = {}
    results: list[dict[str, Any]] = []
    for n, cell in enumerate(cells, 1):
        run_dir = out / "runs" / cell.task.name / cell.model / f"fold{cell.fold}"
        cell_file = run_dir / CELL_FILE
        if cell_file.exists():
            log.warning("[%d/%d] %s: finished, kept", n, len(cells), cell.key)
            results.append(json.loads(cell_file.read_text()))
            continue
        task = loaded.get(cell.task.name)
        if task is None:
            task = cell.task
            given = (datasets or {}).get(task.name)
            task.load(data_root, cache_dir, dataset=given)
            loaded[task.name] = task
        if not (run_dir / "metrics.json").exists():
            if run_dir.exists():
                shutil.rmtree(run_dir)  # killed mid-training: start the cell again
            log.warning("[%d/%d] %s: training (%d crystals, %s)", n, len(cells), cell.key, len(task.dataset),
                        f"{budget.epochs_for(cell.model, 0) or 'default'} epochs" + (f", ≤ {budget.minutes:g} min" if budget.minutes else ""))
            cfg = cell_config(cell, budget, threads, seed, deterministic, val_fraction)
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=str(task.dataset.meta.get("source", task.name))))
            started = machine()
            try:
                train(task.dataset, run_dir, cfg, cache_dir=cache_dir, progress=progress)
            except Exception as err:  # noqa: BLE001 - one failing cell is reported, the study goes on
                run_dir.mkdir(parents=True, exist_ok=True)
                _write_json(run_dir / FAILED_FILE, {"task": cell.task.name, "model": cell.model, "fold": cell.fold,
                                                    "error": f"{type(err).__name__}: {err}"[:2000]})
                log.error("[%d/%d] %s failed (%s: %s); see %s. The study goes on; rerun the command to retry it",
                          n, len(cells), cell.key, type(err).__name__, str(err).splitlines()[0][:200] if str(err) else "", run_dir / FAILED_FILE)
                continue
        else:
            started = {"scored_after_restart": True}
        result = score_cell(cell, run_dir, task.mad(), budget, {"machine": started, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        _write_json(cell_file, result)
        log.warning("[%d/%d] %s: %s = %.4g", n, len(cells), cell.key, result["metric"], result["value"])
        results.append(result)
    return results
