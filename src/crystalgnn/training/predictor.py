"""Prediction with a trained run: :func:`load_model` restores a run directory, :class:`Predictor`
predicts graphs built with the run's own settings, in input order.

Nothing here executes code from the run directory: ``config.json`` is JSON, the weights are
safetensors. Runs written before the model registry (config layout 1) are upgraded on load. An
ensemble run directory (:mod:`crystalgnn.training.ensemble`) loads as an :class:`EnsemblePredictor`:
the members' mean, with their spread in :attr:`Predictions.spread`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from crystalgnn import registry, transforms
from crystalgnn.config import FOREST_HYBRIDS, RunConfig
from crystalgnn.data.prepared import PreparedData, attach_descriptors, make_loader, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import DatasetError
from crystalgnn.io.inputs import sources_from_inputs
from crystalgnn.models import build_model
from crystalgnn.training.checkpoint import load_weights, upgrade_state_dict
from crystalgnn.training.ensemble import ensemble_size, mean_and_spread, member_dir
from crystalgnn.training.objectives import ModelWithObjective, Objective, make_objective

log = logging.getLogger("crystalgnn")


class TrainedModel(ModelWithObjective, nn.Module):
    """A model and its task objective, for prediction: the training module's weights by the same
    names (``model.*``, ``objective.*``), without Lightning (whose import alone costs a second)."""

    def __init__(self, model: nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective


def build_trained(cfg: RunConfig, atom_table: Tensor | None = None) -> TrainedModel:
    """The model of ``cfg`` with the objective of its task (fresh weights, to load a state into)."""
    m = cfg.model
    return TrainedModel(build_model(cfg, atom_table), make_objective(m.task, m.n_targets, m.pooling, cfg.data.per_atom, hybrid=m.hybrid))


@dataclass
class Predictions:
    """``values``: (n, T) predictions in target units, or (n, C) class probabilities;
    ``embeddings``: (n, F) pooled crystal vectors; ``sites``: per crystal (N_i, T) site
    contributions (site pooling only), else None; ``spread``: an ensemble's standard deviation
    over members, shaped as ``values`` (None for a single model)."""

    ids: list[str]
    values: np.ndarray
    embeddings: np.ndarray
    sites: list[np.ndarray] | None = None
    spread: np.ndarray | None = None


class Predictor:
    """A trained model with the settings it was trained with. ``module``: a :class:`TrainedModel`
    (from :func:`load_model`) or the training module itself (at the end of training)."""

    def __init__(self, module: nn.Module, cfg: RunConfig, device: str | torch.device = "cpu", base_forest: Any = None) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        #: A forest hybrid's descriptor forest (:mod:`crystalgnn.training.residual`), else None
        #: (then the data must carry its ``base``, as at the end of training).
        self.base_forest = base_forest

    @property
    def target_names(self) -> list[str]:
        return list(self.cfg.data.targets)

    @torch.no_grad()
    def predict_store(self, data: Any, indices: np.ndarray | None = None, batch_size: int | None = None) -> Predictions:
        """Predictions with embeddings and site contributions, for graphs already built
        (``data`` from :meth:`prepare`; ``indices`` into it, all by default) or for anything
        :meth:`predict` accepts (structures, paths, folders: prepared here, unusable ones raise).

        ``batch_size``: crystals per forward pass, by default the training batch size (larger
        batches are no faster on a CPU: an ALIGNN batch of 256 predicted 2–5× slower than 4 of 64).
        """
        if not isinstance(data, PreparedData):
            data = self.prepare(data)
        idx = np.arange(len(data)) if indices is None else np.asarray(indices)
        batch_size = batch_size or self.cfg.train.batch_size
        if self.base_forest is not None:  # this model's own forest (ensemble members each have one)
            from crystalgnn.training.residual import base_predictions

            data.base = base_predictions(self.base_forest, data.extra, data.store.num_atoms, self.cfg.data.per_atom, self.cfg.model.n_targets)
        elif self.cfg.model.hybrid in FOREST_HYBRIDS and data.base is None:
            raise ValueError("a forest-hybrid model (stacked or residual) predicts with its descriptor forest: load it with load_model(run_dir)")
        values, embeddings, sites = [], [], []
        for batch in make_loader(data, idx, batch_size):
            batch = batch.to(self.device)
            out = self.module(batch)
            values.append(self.module.predictions(out.prediction, batch).cpu())
            embeddings.append(out.embedding.cpu())
            if out.site_contributions is not None:
                per_site = self.module.objective.normalizer.decode_sites(out.site_contributions).cpu().numpy()
                sites.extend(np.split(per_site, batch.ptr[1:-1].cpu().numpy()))
        width = self.cfg.model.n_classes if self.module.is_classification else self.cfg.model.n_targets
        return Predictions(
            ids=[data.ids[i] for i in idx],
            values=torch.cat(values).numpy() if values else np.zeros((0, width)),
            embeddings=torch.cat(embeddings).numpy() if embeddings else np.zeros((0, self.module.model.embedding_width)),
            sites=sites if sites else None,
        )

    def prepare(self, inputs: Any, ids: Sequence[str] | None = None, on_error: str = "raise", cache_dir: str | Path | None = None, progress: bool = False) -> PreparedData:
        """Build graphs for ``inputs`` with the training settings."""
        dataset = inputs if isinstance(inputs, CrystalDataset) else sources_from_inputs(inputs, ids)
        workers = 1 if len(dataset) < 256 else 0
        data = prepare(dataset, self.cfg.graph_inputs(), self.cfg.features, cache_dir, workers=workers, progress=progress)
        if data.problems and on_error == "raise":
            raise DatasetError(data.problems, hint=(
                "Fix these inputs, or pass on_error='skip' (CLI: --on-error skip): each unusable input then gets a row "
                "with empty values and the reason in its 'problem' column."))
        if self.cfg.model.descriptors:
            missing = attach_descriptors(data, dataset, self.cfg.model.descriptors, cache_dir, workers, progress)
            for problem in missing:
                log.warning("%s (read as the training mean)", problem)
        return data

    def predict(
        self,
        inputs: Any,
        ids: Sequence[str] | None = None,
        on_error: str = "raise",
        cache_dir: str | Path | None = None,
        batch_size: int | None = None,
    ) -> pd.DataFrame:
        """Predict structures (pymatgen/ASE objects, file paths, folders, or a CrystalDataset).

        Returns a DataFrame in input order: ``id`` and one column per target in the units of the
        data (regression; a run that learned log10 of a target also gives ``log10_<target>``) or
        ``predicted_class`` and ``prob_<c>`` (classification). With ``on_error="skip"`` every
        input still has its row: an unusable one with empty values and the reason in a
        ``problem`` column (also listed in ``DataFrame.attrs["skipped"]``); inputs a reader could
        not list (an empty file in a folder) come after the others.
        """
        data = self.prepare(inputs, ids, on_error, cache_dir)
        return self.to_frame(self.predict_store(data, batch_size=batch_size), data)

    def to_frame(self, pred: Predictions, data: PreparedData | None = None) -> pd.DataFrame:
        frame = pd.DataFrame({"id": pred.ids})
        if self.module.is_classification:
            frame["predicted_class"] = pred.values.argmax(1) if len(pred.values) else []
            for c in range(pred.values.shape[1]):
                frame[f"prob_{c}"] = pred.values[:, c]
                if pred.spread is not None:
                    frame[f"prob_{c}_std"] = pred.spread[:, c]
        else:
            transform = self.cfg.data.transform
            for t, name in enumerate(self.target_names):
                learned = transforms.learned_name(name, transform)
                frame[name] = transforms.inverse(pred.values[:, t], transform) if learned != name else pred.values[:, t]
                if learned != name:
                    frame[learned] = pred.values[:, t]  # what the model learned (log10_<target>)
                if pred.spread is not None:
                    frame[f"{learned}_std"] = pred.spread[:, t]  # in the learned units, where the mean is taken
        if data is not None:
            frame.attrs["skipped"] = [(p.id, p.reason) for p in data.problems]
            if data.problems and len(pred.ids) == len(data):
                frame = _with_skipped_rows(frame, data)
        return frame


class EnsemblePredictor(Predictor):
    """The members of an ensemble run as one predictor: :meth:`predict_store` gives the members'
    mean in ``values`` and their standard deviation in ``spread`` (probabilities for
    classification), site contributions averaged, and the members' embeddings side by side
    (each member learned its own space, so they are not averaged); :meth:`predict` adds a
    ``<target>_std`` column (learned units) beside each target."""

    def __init__(self, members: Sequence[Predictor], cfg: RunConfig) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.cfg = cfg
        self.base_forest = None  # each member adds its own forest's base
        self.device = self.members[0].device
        self.module = self.members[0].module  # the task and shapes, shared by every member

    @torch.no_grad()
    def predict_store(self, data: Any, indices: np.ndarray | None = None, batch_size: int | None = None) -> Predictions:
        if not isinstance(data, PreparedData):
            data = self.prepare(data)  # once: every member uses the same graphs
        each = [m.predict_store(data, indices, batch_size) for m in self.members]
        mean, spread = mean_and_spread([p.values for p in each])
        sites = None
        if each[0].sites is not None:
            sites = [np.mean(np.stack([np.asarray(p.sites[g], np.float64) for p in each]), axis=0) for g in range(len(each[0].sites))]  # type: ignore[index]
        return Predictions(ids=each[0].ids, values=mean, embeddings=np.concatenate([p.embeddings for p in each], axis=1),
                           sites=sites, spread=spread)


def _with_skipped_rows(frame: pd.DataFrame, data: PreparedData) -> pd.DataFrame:
    """``frame`` (one row per usable item, in order) with a row per unusable input: empty values
    and the reason in ``problem``. Items the reader listed keep their place; those it could not
    list (a missing or empty file, a repeated id) follow at the end."""
    reasons: dict[str, list[str]] = {}
    for p in data.problems:
        reasons.setdefault(p.id, []).append(p.reason)
    listed = data.source_ids if data.source_ids is not None else list(data.ids)
    kept = set(int(r) for r in (data.rows if data.rows is not None else range(len(data))))
    rows: list[dict[str, Any]] = []
    usable = iter(frame.to_dict("records"))
    for position, item in enumerate(listed):
        if position in kept:
            rows.append({**next(usable), "problem": ""})
        else:
            why = reasons.get(item) or ["not usable"]
            rows.append({"id": item, "problem": why.pop(0)})
    for item, why in reasons.items():
        rows.extend({"id": item, "problem": reason} for reason in why)
    out = pd.DataFrame(rows, columns=[*frame.columns, "problem"])
    out.attrs.update(frame.attrs)
    return out


def load_run_config(run_dir: str | Path) -> tuple[RunConfig, int]:
    """The run's configuration and the layout its ``config.json`` was written in."""
    raw = json.loads((Path(run_dir) / "config.json").read_text())
    return RunConfig.from_json_dict(raw), int(raw.get("config_layout", 1))


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a trained run (``config.json`` + ``model.safetensors``; no pickle is ever executed),
    or an ensemble run (its members, as an :class:`EnsemblePredictor`). ``zoo:NAME``: a model
    of the zoo shipped in the package (:mod:`crystalgnn.zoo`)."""
    from crystalgnn import zoo

    run_dir = Path(zoo.resolve(run_dir))
    n_members = ensemble_size(run_dir)
    if n_members > 1:
        missing = [str(member_dir(run_dir, k)) for k in range(n_members) if not (member_dir(run_dir, k) / "model.safetensors").exists()]
        if missing:
            raise FileNotFoundError(f"{run_dir} is an ensemble of {n_members} whose member(s) {', '.join(missing)} have not finished "
                                    "training; run the same training again in that directory to complete it")
        cfg, _ = load_run_config(run_dir)
        return EnsemblePredictor([load_model(member_dir(run_dir, k), device) for k in range(n_members)], cfg)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {run_dir} a finished crystalgnn run directory?")
    cfg, layout = load_run_config(run_dir)
    state, _ = load_weights(weights_path)
    state = upgrade_state_dict(state, layout, dict(registry.get(cfg.model.name).legacy_state_keys), cfg.model.task == "classification")
    # The atom feature table is part of the weights: no need to recompute it from element data, or
    # to read a pretraining run again (pretrained:RUN), which may have moved since.
    table = state.get("model.atom_input.table", state.get("model.atom_input.features.element_table"))
    module = build_trained(cfg, atom_table=table)
    module.load_state_dict(state)
    forest = None
    if cfg.model.hybrid in FOREST_HYBRIDS:
        from crystalgnn.training.residual import load_forest

        forest = load_forest(run_dir, len(cfg.model.descriptors))
    return Predictor(module, cfg, device, base_forest=forest)
