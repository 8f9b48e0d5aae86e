"""``train()``: dataset → cached graphs → split → Lightning fit → run directory.

A run directory holds::

    config.json              the full typed RunConfig (data, graph, features, model, train)
    model.safetensors(.json) best-on-validation weights (+ JSON metadata: ids, targets, metrics)
    checkpoints/             Lightning's best checkpoint, also safetensors + JSON
    metrics.json             per split and per target metrics
    predictions_<split>.csv  id, true and predicted values, in input order
    parity.png / roc.png     test-set picture (regression / classification)
    learning_curve.png       loss and validation metric per epoch
    logs/                    Lightning's CSV log
    skipped.csv              items left out with on_error="skip", and why
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from crystalgnn.config import RunConfig
from crystalgnn.data.prepared import PreparedData, attach_descriptors, make_loader, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.data.splits import Split, file_split, fraction_split, kfold_split
from crystalgnn.errors import DatasetError, write_problems
from crystalgnn.io.resolve import resolve_dataset
from crystalgnn.paths import resolve_cache_dir
from crystalgnn.training.checkpoint import SafetensorsCheckpointIO, load_weights, save_weights
from crystalgnn.training.hybrid import descriptor_statistics, initialize_from
from crystalgnn.reports.outputs import TrainResult, write_outputs
from crystalgnn.reports.plots import learning_curve_plot
from crystalgnn.training.module import build_module, count_parameters
from crystalgnn.training.objectives import TargetNormalizer, normalizer_mode
from crystalgnn.training.predictor import Predictor

log = logging.getLogger("crystalgnn")




def make_split(prepared: PreparedData, cfg: RunConfig) -> Split:
    t = cfg.train
    if t.split_file:
        return file_split(prepared.ids, t.split_file)
    if t.kfold:
        labels = prepared.targets[:, 0].astype(int) if cfg.model.task == "classification" else None
        return kfold_split(len(prepared), t.kfold, t.fold, t.kfold_seed, labels=labels)
    return fraction_split(len(prepared), t.split_fractions, t.seed)


def finalize_config(cfg: RunConfig, dataset: CrystalDataset, prepared: PreparedData) -> RunConfig:
    """Fill in what the data decides: source, target names, number of targets / classes."""
    model = cfg.model
    if model.task == "classification":
        labels = prepared.targets[:, 0]
        if not np.all(labels == np.round(labels)) or labels.min() < 0:
            raise ValueError("classification targets must be class labels 0, 1, 2, ...")
        model = dataclasses.replace(model, n_targets=1, n_classes=max(int(labels.max()) + 1, model.n_classes))
        if model.dropout == 0.0:
            model = dataclasses.replace(model, dropout=0.5)  # CGCNN's classification default
    else:
        model = dataclasses.replace(model, n_targets=prepared.targets.shape[1])
    data = dataclasses.replace(
        cfg.data, source=str(dataset.meta.get("source", cfg.data.source)), targets=tuple(prepared.target_names)
    )
    return dataclasses.replace(cfg, model=model, data=data)


def quiet_lightning() -> None:
    """Lightning logs hardware banners and tips at INFO on every run; keep the console for results."""
    if os.environ.get("CRYSTALGNN_VERBOSE"):
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*isinstance.treespec, LeafSpec.*")


def set_threads(n: int) -> None:
    torch.set_num_threads(n if n > 0 else max(os.cpu_count() or 1, 1))


def _train_representation_first(dataset: CrystalDataset, run_dir: Path, cfg: RunConfig, cache: Any, workers: int, progress: bool) -> RunConfig:
    """Eq. S5, stage 1: train the plain model into ``run_dir/representation``; return the config of
    stage 2 (a new head on the frozen representation ⊕ descriptors)."""
    stage_dir = run_dir / "representation"
    plain = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, descriptors=(), hybrid="end-to-end"))
    if (stage_dir / "model.safetensors").exists():
        log.warning("reusing the representation already trained in %s", stage_dir)
    else:
        log.warning("frozen hybrid, stage 1 of 2: training the plain model in %s", stage_dir)
        train(dataset, stage_dir, plain, cache_dir=cache, workers=workers, progress=progress)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(stage_dir), freeze_encoder=True))


def train(
    data: Any,
    run_dir: str | Path,
    config: RunConfig | None = None,
    cache_dir: str | Path | None = "default",
    workers: int = 0,
    progress: bool = True,
) -> TrainResult:
    """Train a model and write a run directory (see module docstring).

    ``data``: a path (CGCNN/ALIGNN folder, CSV, JSON, extxyz), a ``chains:short`` spec, or a
    :class:`CrystalDataset` from :func:`crystalgnn.load_dataset`. ``cache_dir``: where graphs are
    cached (``"default"``: ``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn``; ``None``: no cache).
    """
    cfg = config or RunConfig()
    cfg.check()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.train.threads)
    quiet_lightning()
    cache = resolve_cache_dir(cache_dir)

    dataset = resolve_dataset(data, cfg.data.targets, cfg.data.transform)
    if cfg.model.descriptors and cfg.model.hybrid == "frozen" and not cfg.train.init_from:
        cfg = _train_representation_first(dataset, run_dir, cfg, cache, workers, progress)
    prepared = prepare(dataset, cfg.graph, cfg.features, cache, workers, progress)
    if prepared.problems:
        if cfg.data.on_error == "raise":
            raise DatasetError(prepared.problems)
        write_problems(prepared.problems, run_dir / "skipped.csv")
        log.warning("skipped %d item(s); see %s", len(prepared.problems), run_dir / "skipped.csv")
    if len(prepared) < 3:
        raise ValueError(f"only {len(prepared)} usable item(s); need at least 3 to train, validate and test")
    if prepared.targets.shape[1] == 0:
        raise ValueError("no target column selected; pass targets=... (CLI: --target NAME)")
    if cfg.model.descriptors:
        if cfg.model.pooling == "site":
            raise ValueError("descriptors join the pooled crystal vector; use --pooling mean or sum with them")
        descriptor_problems = attach_descriptors(prepared, dataset, cfg.model.descriptors, cache, workers, progress)
        if descriptor_problems:
            write_problems(descriptor_problems, run_dir / "descriptor_problems.csv")
            log.warning("%d descriptor value(s) could not be computed and are read as the training mean; see %s",
                        len(descriptor_problems), run_dir / "descriptor_problems.csv")
    if cfg.data.per_atom and cfg.model.task == "classification":
        raise ValueError("per-atom normalization applies to regression targets only")
    cfg = finalize_config(cfg, dataset, prepared)
    cfg.save(run_dir / "config.json")
    split = make_split(prepared, cfg)
    if len(split["train"]) == 0 or len(split["val"]) == 0:
        raise ValueError(f"the split leaves {len(split['train'])} training and {len(split['val'])} validation items")

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    mean, std = None, None
    if cfg.model.task == "regression" and cfg.train.normalize_targets:
        mode = normalizer_mode(cfg.model.pooling, cfg.data.per_atom)
        mean, std = TargetNormalizer.statistics(prepared.targets[split["train"]], prepared.store.num_atoms[split["train"]], mode)
    module = build_module(cfg, mean, std)
    if prepared.extra is not None:
        module.model.readout.set_extra_statistics(*descriptor_statistics(prepared.extra[split["train"]]))
    if cfg.train.init_from:
        copied = initialize_from(module, cfg.train.init_from, skip_readout=cfg.train.freeze_encoder)
        log.info("initialized %d tensors from %s", len(copied), cfg.train.init_from)

    t = cfg.train
    train_loader = make_loader(
        prepared, split["train"], t.batch_size, shuffle=True, num_workers=t.num_workers,
        drop_last=len(split["train"]) > t.batch_size,  # a lone last crystal would break batch norm
    )
    val_loader = make_loader(prepared, split["val"], t.batch_size, num_workers=t.num_workers)
    monitor, mode = module.objective.monitor
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=monitor, mode=mode, save_weights_only=True)
    checkpoint.FILE_EXTENSION = ".safetensors"
    callbacks: list[L.Callback] = [checkpoint]
    if progress:
        callbacks.append(TQDMProgressBar(leave=False))
    if t.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=t.early_stopping_patience))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*The number of training batches.*")
        trainer = L.Trainer(
            max_epochs=t.epochs,
            max_time={"minutes": t.max_minutes} if t.max_minutes > 0 else None,
            accelerator=t.accelerator,
            devices=t.devices,
            strategy=t.strategy,
            precision=t.precision,
            callbacks=callbacks,
            logger=CSVLogger(run_dir, name="logs", version=""),
            plugins=[SafetensorsCheckpointIO()],
            enable_progress_bar=progress,
            enable_model_summary=False,
            deterministic=False,
            log_every_n_steps=1,
        )
        trainer.fit(module, train_loader, val_loader)
    if not trainer.is_global_zero:
        return TrainResult(run_dir, {}, len(prepared.problems))

    state, meta = load_weights(checkpoint.best_model_path)
    module.load_state_dict(state)
    predictor = Predictor(module, cfg, device=trainer.strategy.root_device)
    predictions = {name: predictor.predict_store(prepared, idx).values for name, idx in split.items() if len(idx)}
    metrics = write_outputs(prepared, split, predictions, predictor.target_names, module.is_classification, run_dir)
    metrics["best_epoch"] = int(meta.get("epoch", -1))
    metrics["n_parameters"] = count_parameters(module.model)
    metrics["n_skipped"] = len(prepared.problems)
    metrics["world_size"] = int(trainer.world_size)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    save_weights(
        module.state_dict(),
        run_dir / "model.safetensors",
        {"best_epoch": metrics["best_epoch"], "monitor": monitor, "target_names": prepared.target_names},
    )
    metrics_csv = run_dir / "logs" / "metrics.csv"
    if metrics_csv.exists():
        learning_curve_plot(metrics_csv, run_dir / "learning_curve.png")
    return TrainResult(run_dir, metrics, len(prepared.problems))
