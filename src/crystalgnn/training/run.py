"""``train()``: dataset → cached graphs → split → Lightning fit → run directory.

A run directory holds::

    config.json              the full typed RunConfig (data, graph, features, model, train)
    model.safetensors(.json) best-on-validation weights (+ JSON metadata: targets, best epoch)
    checkpoints/             best.safetensors (weights of the best epoch) and last.safetensors
                             (the whole training state of the latest epoch, for resume); no pickle
    metrics.json             per split and per target metrics (written last: a run is finished)
    predictions_<split>.csv  id, true and predicted values, in input order
    parity.png / roc.png     test-set picture (regression / classification)
    learning_curve.png       loss and validation metric per epoch
    logs/                    Lightning's CSV log
    skipped.csv              items left out with on_error="skip", and why

With ``TrainConfig(ensemble=N)`` (CLI ``--ensemble N``) the run directory is an ensemble's::

    config.json              the ensemble's RunConfig (train.ensemble = N, train.bootstrap)
    members/<k>/             member k = 0..N-1, a run directory as above (seed + k, the same split)
    predictions_<split>.csv  the members' mean in the columns above, pred_<t>_std beside them
    metrics.json             metrics of the mean; calibration of σ on the test split (written last)
    calibration.png          test |error| against σ, binned, with y = x
    parity.png / roc.png     of the mean
    skipped.csv              as above

(see :mod:`crystalgnn.training.ensemble`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from crystalgnn.config import BLEND_HYBRIDS, FOREST_HYBRIDS, FOREST_INPUT_HYBRIDS, RunConfig
from crystalgnn.data.distributed import make_distributed_loader
from crystalgnn.data.prepared import PreparedData, attach_descriptors, finalize_config, make_loader, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.data.splits import Split, make_split
from crystalgnn.descriptors.bank import DescriptorSettings
from crystalgnn.errors import DatasetError, NonFiniteLossError, write_problems
from crystalgnn.io.resolve import resolve_dataset
from crystalgnn.models import crystal_input_width
from crystalgnn.models.blocks import MAX_Z, AtomFeatures
from crystalgnn.parallel import is_rank_zero
from crystalgnn.paths import resolve_cache_dir
from crystalgnn.reports.outputs import TrainResult, write_calibration, write_metrics, write_outputs
from crystalgnn.reports.plots import learning_curve_plot
from crystalgnn.training.checkpoint import load_weights, save_weights
from crystalgnn.training.ensemble import bootstrap_rows, ensemble_size, member_config, member_dir
from crystalgnn.training.hybrid import descriptor_statistics, initialize_from
from crystalgnn.training.module import CrystalModule, build_module, count_parameters
from crystalgnn.training.objectives import TargetNormalizer, normalizer_mode
from crystalgnn.training.predictor import Predictor, load_model
from crystalgnn.training.resume import (
    ResumeState,
    check_same_settings,
    data_fingerprint,
    last_checkpoint,
    last_state,
    prepend_metrics_history,
    read_metrics_history,
    saved_config,
)
from crystalgnn.training.trainer import (
    STOP_REASONS,
    SeenCrystals,
    keep_freed_memory,
    make_trainer,
    quiet_lightning,
    runs_several_processes,
    set_threads,
    stop_report,
)

log = logging.getLogger("crystalgnn")


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


def _prepare_data(dataset: CrystalDataset, cfg: RunConfig, run_dir: Path, cache: Any, workers: int, progress: bool) -> PreparedData:
    """Graphs (and descriptors) of every usable item; every unusable one named, before training."""
    graph = cfg.graph_inputs()
    # OFM atoms and descriptors both need a structure's Voronoi tessellation: one pass makes both
    together = DescriptorSettings() if cfg.model.descriptors and "ofm" in graph.addons and cache is not None else None
    prepared = prepare(dataset, graph, cfg.features, cache, workers, progress, descriptors=together,
                       store_mode=cfg.train.graph_store if cache is not None else "memory")
    if prepared.problems:
        if cfg.data.on_error == "raise":
            raise DatasetError(prepared.problems)
        if is_rank_zero():
            write_problems(prepared.problems, run_dir / "skipped.csv")
        log.warning("skipped %d item(s); see %s", len(prepared.problems), run_dir / "skipped.csv")
    if len(prepared) < 3:
        why = f"; {len(prepared.problems)} item(s) were skipped, e.g. {prepared.problems[0]}" if prepared.problems else ""
        raise ValueError(f"only {len(prepared)} usable item(s); need at least 3 to train, validate and test{why}")
    if prepared.targets.shape[1] == 0:
        raise ValueError("no target column selected; pass targets=... (CLI: --target NAME)")
    if cfg.model.descriptors:
        if cfg.model.pooling == "site":
            raise ValueError("descriptors join the pooled crystal vector; use --pooling mean or sum with them")
        descriptor_problems = attach_descriptors(prepared, dataset, cfg.model.descriptors, cache, workers, progress)
        if descriptor_problems:
            if is_rank_zero():
                write_problems(descriptor_problems, run_dir / "descriptor_problems.csv")
            log.warning("%d descriptor value(s) could not be computed and are read as the training mean; see %s",
                        len(descriptor_problems), run_dir / "descriptor_problems.csv")
    if cfg.data.per_atom and cfg.model.task == "classification":
        raise ValueError("per-atom normalization applies to regression targets only")
    return prepared


def _print_data_check(prepared: PreparedData, cfg: RunConfig) -> None:
    """The few lines of ``crystalgnn check`` that cost nothing (no structure matching), with
    advice only where the run does not already follow it."""
    import sys

    from crystalgnn.reports.datacheck import check_prepared

    if cfg.model.task == "classification":
        return
    normalized = bool(cfg.data.per_atom) or cfg.model.pooling == "sum"
    report = check_prepared(prepared, cfg.graph.cutoff, cfg.data.transform, duplicates=False, normalized=normalized)
    print(report.summary(short=True) + "\n  (the whole report, duplicates included: crystalgnn check DATA -t TARGET; "
          "--no-data-check hides this)", file=sys.stderr, flush=True)


def _fit_blend(module: CrystalModule, predictor: Predictor, prepared: PreparedData, val_rows: np.ndarray) -> None:
    """The blend hybrid's weight of the network against the forest, per target, chosen on the
    validation split (the best epoch's network, the whole-split forest) and kept in the weights."""
    from crystalgnn.training.objectives import fit_blend_weight

    assert prepared.base is not None
    network = predictor.predict_store(prepared, val_rows).values  # blend_weight is still 1: the network alone
    weight = fit_blend_weight(network, prepared.base[val_rows], prepared.targets[val_rows])
    module.objective.blend_weight.copy_(torch.as_tensor(weight))
    log.warning("blend hybrid: prediction = w × network + (1 − w) × forest with w = %s, chosen on the validation split",
                ", ".join(f"{w:.2f}" for w in weight))


def _fit_residual_base(prepared: PreparedData, cfg: RunConfig, split: Split, run_dir: Path) -> np.ndarray:
    """The residual hybrid's forest (saved in ``run_dir``): sets ``prepared.base`` to what the
    network trains against (out-of-fold on the training split) and returns every item's
    whole-split forest prediction (see :mod:`crystalgnn.training.residual`)."""
    from crystalgnn.training.residual import fit_base_forest, save_forest

    assert prepared.extra is not None
    forest, prepared.base, base_for_all = fit_base_forest(
        prepared.extra, prepared.targets, prepared.store.num_atoms, split["train"], cfg.data.per_atom, cfg.train.seed,
        threads=cfg.train.threads)
    if is_rank_zero():  # every rank fits the same seeded forest; one writes it
        save_forest(forest, run_dir)
    return base_for_all


def _initial_module(cfg: RunConfig, prepared: PreparedData, split: Split) -> CrystalModule:
    """Fresh model and objective, with the training split's target and descriptor statistics."""
    mean = std = None
    if cfg.model.task == "regression" and cfg.train.normalize_targets:
        mode = normalizer_mode(cfg.model.pooling, cfg.data.per_atom)
        # the residual hybrid learns y - forest
        learned = prepared.targets - prepared.base if cfg.model.hybrid == "residual" else prepared.targets
        mean, std = TargetNormalizer.statistics(learned[split["train"]], prepared.store.num_atoms[split["train"]], mode)
    module = build_module(cfg, mean, std)
    fit_atom_features(module, prepared, split["train"])
    if prepared.extra is not None and crystal_input_width(cfg):
        reads_forest = prepared.base is not None and cfg.model.hybrid in FOREST_INPUT_HYBRIDS
        crystal_inputs = np.concatenate([prepared.extra, prepared.base], axis=1) if reads_forest else prepared.extra
        module.model.readout.set_extra_statistics(*descriptor_statistics(crystal_inputs[split["train"]]))
    if cfg.train.init_from:
        copied = initialize_from(module, cfg.train.init_from, skip_readout=cfg.train.freeze_encoder)
        log.info("initialized %d tensors from %s", len(copied), cfg.train.init_from)
    return module


def fit_atom_features(module: CrystalModule, prepared: PreparedData, train_rows: np.ndarray) -> list[tuple[str, int, int, int]]:
    """Fit the atom features that learn statistics from the training atoms (CFID's
    standardization); returns the elements whose missing values were imputed (see
    :meth:`crystalgnn.models.blocks.AtomFeatures.fit`)."""
    parts = [m for m in module.model.modules() if isinstance(m, AtomFeatures)]
    if not parts:
        return []
    store = prepared.store
    atoms_of_train = np.repeat(np.isin(np.arange(len(store)), train_rows), store.num_atoms)
    counts = np.bincount(store.atomic_numbers[atoms_of_train].astype(np.int64), minlength=MAX_Z + 1)
    imputed: list[tuple[str, int, int, int]] = []
    for features in parts:
        imputed += features.fit(counts)
    return imputed


def write_imputed_elements(imputed: list[tuple[str, int, int, int]], path: Path) -> None:
    """``imputed_elements.csv``: the training elements whose CFID values were imputed."""
    import pandas as pd

    frame = pd.DataFrame(imputed, columns=["element", "Z", "imputed_columns", "training_atoms"]).drop_duplicates()
    frame.to_csv(path, index=False)
    log.warning("CFID: %d element(s) of the training atoms have missing values, imputed with the training mean (%s); see %s",
                len(frame), ", ".join(frame["element"]), path)


def _check_resumable(run_dir: Path, cfg: RunConfig, fingerprint: str) -> int:
    """Before continuing ``run_dir``: same settings and same data as the interrupted run. Returns
    the last epoch its checkpoint holds."""
    saved = saved_config(run_dir)
    check_same_settings(saved, cfg, run_dir, ignore_targets=False)
    saved_fingerprint, epoch = last_state(run_dir)
    if saved_fingerprint != fingerprint:
        raise ValueError(f"--resume {run_dir}: the data or split differ from the interrupted run's (other items, ids or order); "
                         f"resume with the data it was trained on ({saved.data.source})")
    return epoch


def _write_run_outputs(module: CrystalModule, cfg: RunConfig, prepared: PreparedData, split: Split, run_dir: Path,
                       best_path: str, trainer: L.Trainer, report: dict[str, object], wall_seconds: float) -> dict[str, Any]:
    """Best weights → predictions, metrics, plots and ``model.safetensors``."""
    state, meta = load_weights(best_path)
    module.load_state_dict(state)
    predictor = Predictor(module, cfg, device=trainer.strategy.root_device)
    if cfg.model.hybrid in BLEND_HYBRIDS:
        _fit_blend(module, predictor, prepared, split["val"])
    predictions = {name: predictor.predict_store(prepared, idx).values for name, idx in split.items() if len(idx)}
    metrics = write_outputs(prepared, split, predictions, predictor.target_names, module.is_classification, run_dir, cfg.data.transform)
    metrics["target_transform"] = cfg.data.transform
    metrics["best_epoch"] = int(meta.get("epoch", -1))
    metrics.update(report)
    metrics["n_parameters"] = count_parameters(module.model)
    metrics["n_skipped"] = len(prepared.problems)
    metrics["world_size"] = int(trainer.world_size)
    metrics["wall_seconds"] = round(wall_seconds, 3)  # train() up to the fit's end (this process, when resumed)
    save_weights(module.state_dict(), run_dir / "model.safetensors",
                 {"best_epoch": metrics["best_epoch"], "monitor": module.objective.monitor[0], "target_names": prepared.target_names})
    metrics_csv = run_dir / "logs" / "metrics.csv"
    if metrics_csv.exists():
        learning_curve_plot(metrics_csv, run_dir / "learning_curve.png")
    write_metrics(metrics, run_dir)  # last: a run directory with metrics.json is finished
    return metrics


def _member_to_train(member: Path, expected: RunConfig) -> str:
    """What member ``member`` of an ensemble needs: "finished" (kept), "resume" (continue its last
    checkpoint) or "train" (from the start). A member trained with other settings is an error."""
    if not (member / "config.json").exists():
        return "train"
    finished = (member / "metrics.json").exists()
    if not finished and not last_checkpoint(member).exists():
        return "train"  # killed before its first epoch ended: nothing to keep
    t = expected.train
    if expected.model.descriptors and expected.model.hybrid == "frozen" and not t.init_from:  # as train() saves it
        expected = dataclasses.replace(expected, train=dataclasses.replace(t, init_from=str(member / "representation"), freeze_encoder=True))
    try:
        check_same_settings(RunConfig.load(member / "config.json"), expected, member, ignore_targets=False)
    except ValueError as err:
        raise ValueError(f"ensemble member {member} was trained with other settings than this ensemble's; train the ensemble "
                         f"in a new run directory, or delete {member.parent} to retrain its members\n{err}") from None
    return "finished" if finished else "resume"


def _train_ensemble(data: Any, run_dir: Path, cfg: RunConfig, cache: Any, workers: int, progress: bool, resume: bool,
                    callbacks: list[L.Callback] | None, data_check: bool = False) -> TrainResult:
    """``cfg.train.ensemble`` members in ``run_dir/members/<k>``, one after the other, then the
    ensemble's predictions, metrics and calibration (see :mod:`crystalgnn.training.ensemble`)."""
    started = time.perf_counter()
    n = cfg.train.ensemble
    if cfg.train.devices > 1 or cfg.train.num_nodes > 1:
        raise ValueError(f"an ensemble trains its members one after the other on one device; drop devices={cfg.train.devices} "
                         f"and num_nodes={cfg.train.num_nodes} (CLI --devices, --num-nodes), or train the members as separate runs")
    if resume and (run_dir / "metrics.json").exists():
        raise ValueError(f"--resume {run_dir}: that ensemble has finished (metrics.json exists); nothing to resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").unlink(missing_ok=True)  # the ensemble is finished when it is written again
    set_threads(cfg.train.threads, cfg.train.deterministic)
    keep_freed_memory()
    quiet_lightning()
    # The data are prepared once here (for the ensemble's own predictions); each member prepares
    # them again, reading the graphs this pass left in the cache.
    dataset = resolve_dataset(data, cfg.data.targets, cfg.data.transform)
    prepared = _prepare_data(dataset, cfg, run_dir, cache, workers, progress)
    if data_check and not resume:
        _print_data_check(prepared, cfg)
    cfg = finalize_config(cfg, dataset, prepared)
    split = make_split(prepared, cfg)
    if resume:
        check_same_settings(RunConfig.load(run_dir / "config.json"), cfg, run_dir, ignore_targets=False)
    cfg.save(run_dir / "config.json")
    members: list[dict[str, Any]] = []
    for k in range(n):
        member, member_cfg = member_dir(run_dir, k), member_config(cfg, k)
        todo = _member_to_train(member, member_cfg)
        if todo == "finished":
            log.warning("ensemble member %d of %d: finished in %s, kept", k + 1, n, member)
        else:
            log.warning("ensemble member %d of %d (seed %d%s): %s in %s", k + 1, n, member_cfg.train.seed,
                        ", bootstrap" if member_cfg.train.bootstrap else "", "resuming" if todo == "resume" else "training", member)
            train(dataset, member, member_cfg, cache_dir=cache, workers=workers, progress=progress, resume=todo == "resume",
                  callbacks=callbacks)
        m = json.loads((member / "metrics.json").read_text())
        members.append({"dir": str(Path("members") / str(k)), "seed": member_cfg.train.seed, "best_epoch": m.get("best_epoch"),
                        "epochs_run": m.get("epochs_run"), "test": m.get("test", {})})
    # Predicted as load_model(run_dir) predicts (on the CPU), so a loaded ensemble gives these numbers.
    predictor = load_model(run_dir)
    predicted = {name: predictor.predict_store(prepared, idx) for name, idx in split.items() if len(idx)}
    classification = predictor.module.is_classification
    metrics = write_outputs(prepared, split, {k: p.values for k, p in predicted.items()}, predictor.target_names, classification,
                            run_dir, cfg.data.transform, spreads={k: p.spread for k, p in predicted.items()})  # type: ignore[misc]
    if not classification:
        test = "test" if "test" in predicted else "val"
        metrics["calibration"] = write_calibration(prepared.targets[split[test]], predicted[test].values, predicted[test].spread,  # type: ignore[arg-type]
                                                   predictor.target_names, run_dir, cfg.data.transform)
        metrics["calibration_split"] = test
    metrics["target_transform"] = cfg.data.transform
    metrics["ensemble"] = {"members": n, "bootstrap": cfg.train.bootstrap, "seeds": [m["seed"] for m in members],
                           "split_seed": member_config(cfg, 0).train.split_seed, "spread": "standard deviation over members (ddof=0)"}
    metrics["members"] = members
    metrics["n_skipped"] = len(prepared.problems)
    metrics["wall_seconds"] = round(time.perf_counter() - started, 3)
    write_metrics(metrics, run_dir)  # last: an ensemble directory with metrics.json is finished
    return TrainResult(run_dir, metrics, len(prepared.problems))


def train(
    data: Any,
    run_dir: str | Path,
    config: RunConfig | None = None,
    cache_dir: str | Path | None = "default",
    workers: int = 0,
    progress: bool = True,
    resume: bool = False,
    callbacks: list[L.Callback] | None = None,
    data_check: bool = False,
) -> TrainResult:
    """Train a model and write a run directory (see module docstring).

    ``data``: a path (CGCNN/ALIGNN folder, CSV, JSON, extxyz), a ``chains:short`` spec, or a
    :class:`CrystalDataset` from :func:`crystalgnn.load_dataset`. ``cache_dir``: where graphs are
    cached (``"default"``: ``$CRYSTALGNN_CACHE`` or ``~/.cache/crystalgnn``; ``None``: no cache).
    ``resume=True``: continue the killed run in ``run_dir`` from its last checkpoint
    (``config`` defaults to the saved one; settings and data must be the same, see
    :mod:`crystalgnn.training.resume`). ``callbacks``: extra Lightning callbacks.
    ``config.train.ensemble > 1``: an ensemble of that many members, each an ordinary run in
    ``run_dir/members/<k>`` (see :mod:`crystalgnn.training.ensemble`); training it again in the
    same ``run_dir`` keeps its finished members and continues a killed one. ``data_check``: print
    the short data check (:mod:`crystalgnn.reports.datacheck`, without the duplicate search) to
    stderr before training (the CLI does unless ``--no-data-check``).
    """
    run_dir = Path(run_dir)
    n_members = config.train.ensemble if config is not None else ensemble_size(run_dir) if resume else 1
    if n_members > 1:  # an ensemble's own directory has no checkpoint: its members have them
        if resume and not (run_dir / "config.json").exists():
            raise FileNotFoundError(f"--resume {run_dir}: no config.json there; start the ensemble again without --resume")
        return _train_ensemble(data, run_dir, config or RunConfig.load(run_dir / "config.json"), resolve_cache_dir(cache_dir),
                               workers, progress, resume, callbacks, data_check)
    started = time.perf_counter()
    saved = saved_config(run_dir) if resume else None  # a clear error before any work when there is nothing to resume
    cfg = config or saved or RunConfig()
    cfg.check()
    if cfg.train.deterministic and cfg.train.threads > 1:
        raise ValueError(f"a deterministic run uses one CPU thread; drop threads={cfg.train.threads} (CLI --threads) or --deterministic")
    writer = is_rank_zero()  # under DDP rank 0 alone writes the run directory (Lightning's checkpoints and logs too)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and writer:  # a finished run's metrics.json would make a new run here look finished if it stopped early
        (run_dir / "metrics.json").unlink(missing_ok=True)
    set_threads(cfg.train.threads, cfg.train.deterministic)
    keep_freed_memory()
    quiet_lightning()
    cache = resolve_cache_dir(cache_dir)

    dataset = resolve_dataset(data, cfg.data.targets, cfg.data.transform)
    if cfg.model.descriptors and cfg.model.hybrid == "frozen" and not cfg.train.init_from:
        cfg = _train_representation_first(dataset, run_dir, cfg, cache, workers, progress)
    prepared = _prepare_data(dataset, cfg, run_dir, cache, workers, progress)
    if data_check and not resume:
        _print_data_check(prepared, cfg)
    cfg = finalize_config(cfg, dataset, prepared)
    split = make_split(prepared, cfg)
    if len(split["train"]) == 0 or len(split["val"]) == 0:
        raise ValueError(f"the split leaves {len(split['train'])} training and {len(split['val'])} validation items")
    fingerprint = data_fingerprint(prepared, split)
    resumed_epoch = _check_resumable(run_dir, cfg, fingerprint) if resume else None
    if writer:
        cfg.save(run_dir / "config.json")
    base_for_all = _fit_residual_base(prepared, cfg, split, run_dir) if cfg.model.hybrid in FOREST_HYBRIDS else None

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    module = _initial_module(cfg, prepared, split)
    imputed = [e for m in module.model.modules() if isinstance(m, AtomFeatures) for e in m.imputed]
    if imputed and writer:
        write_imputed_elements(imputed, run_dir / "imputed_elements.csv")
    t = cfg.train
    train_rows = bootstrap_rows(split["train"], t.seed) if t.bootstrap else split["train"]
    several = runs_several_processes(t)
    if several:  # each epoch split over the ranks, every crystal once, orders from (seed, epoch)
        train_loader = make_distributed_loader(prepared, train_rows, t.batch_size, shuffle=True, seed=t.seed, num_workers=t.num_workers)
        val_loader = make_distributed_loader(prepared, split["val"], t.batch_size, num_workers=t.num_workers)
    else:
        train_loader = make_loader(prepared, train_rows, t.batch_size, shuffle=True, num_workers=t.num_workers)
        val_loader = make_loader(prepared, split["val"], t.batch_size, num_workers=t.num_workers)
    state = ResumeState(fingerprint, train_loader.batch_sampler.sampler)  # type: ignore[union-attr]
    extra = [SeenCrystals(os.environ["CRYSTALGNN_SEEN_LOG"], prepared.ids)] if os.environ.get("CRYSTALGNN_SEEN_LOG") else []
    run = make_trainer(t, run_dir, module.objective.monitor, progress, [state, *extra, *(callbacks or [])], own_samplers=several)
    metrics_csv = run_dir / "logs" / "metrics.csv"
    history = read_metrics_history(metrics_csv, resumed_epoch) if resumed_epoch is not None else []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*The number of training batches.*")
        warnings.filterwarnings("ignore", ".*Experiment logs directory.*exists and is not empty.*")
        try:
            run.trainer.fit(module, train_loader, val_loader, ckpt_path=str(last_checkpoint(run_dir)) if resume else None)
        except NonFiniteLossError as err:  # name the crystals, not their positions in the store
            raise NonFiniteLossError(err.loss, err.epoch, err.batch, err.graph_index, [prepared.ids[i] for i in err.graph_index]) from None
    if not run.trainer.is_global_zero:
        return TrainResult(run_dir, {}, len(prepared.problems))
    prepend_metrics_history(metrics_csv, history)
    report = stop_report(run.trainer, t)
    if report["stop_reason"] != "max_epochs":
        log.warning("%s after %d of %d epochs; the best epoch is kept", STOP_REASONS[str(report["stop_reason"])],
                    report["epochs_run"], t.epochs)
    if not run.best.best_model_path:
        raise ValueError(f"training {STOP_REASONS[str(report['stop_reason'])]} before its first validation, so no model was "
                         "kept; allow more time (--max-minutes) or fewer crystals per epoch")
    if base_for_all is not None:  # every split predicted as a loaded model predicts it: whole-split forest
        prepared.base = base_for_all
    metrics = _write_run_outputs(module, cfg, prepared, split, run_dir, run.best.best_model_path, run.trainer, report,
                                 wall_seconds=time.perf_counter() - started)
    return TrainResult(run_dir, metrics, len(prepared.problems))
