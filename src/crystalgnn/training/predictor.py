"""Prediction with a trained run: :func:`load_model` restores a run directory, :class:`Predictor`
predicts graphs built with the run's own settings, in input order.

Nothing here executes code from the run directory: ``config.json`` is JSON, the weights are
safetensors. Runs written before the model registry (config layout 1) are upgraded on load.
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

from crystalgnn import registry, transforms
from crystalgnn.config import RunConfig
from crystalgnn.data.prepared import PreparedData, attach_descriptors, make_loader, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import DatasetError
from crystalgnn.io.inputs import sources_from_inputs
from crystalgnn.training.checkpoint import load_weights, upgrade_state_dict
from crystalgnn.training.module import CrystalModule, build_module

log = logging.getLogger("crystalgnn")


@dataclass
class Predictions:
    """``values``: (n, T) predictions in target units, or (n, C) class probabilities;
    ``embeddings``: (n, F) pooled crystal vectors; ``sites``: per crystal (N_i, T) site
    contributions (site pooling only), else None."""

    ids: list[str]
    values: np.ndarray
    embeddings: np.ndarray
    sites: list[np.ndarray] | None = None


class Predictor:
    """A trained model with the settings it was trained with."""

    def __init__(self, module: CrystalModule, cfg: RunConfig, device: str | torch.device = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    @property
    def target_names(self) -> list[str]:
        return list(self.cfg.data.targets)

    @torch.no_grad()
    def predict_store(self, data: PreparedData, indices: np.ndarray | None = None, batch_size: int | None = None) -> Predictions:
        """Predictions for graphs already built (``indices`` into ``data``; all by default).

        ``batch_size``: crystals per forward pass, by default the training batch size (larger
        batches are no faster on a CPU: an ALIGNN batch of 256 predicted 2–5× slower than 4 of 64).
        """
        idx = np.arange(len(data)) if indices is None else np.asarray(indices)
        batch_size = batch_size or self.cfg.train.batch_size
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
        data = prepare(dataset, self.cfg.graph, self.cfg.features, cache_dir, workers=workers, progress=progress)
        if data.problems and on_error == "raise":
            raise DatasetError(data.problems)
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
        ``predicted_class`` and ``prob_<c>`` (classification). With ``on_error="skip"`` unusable
        items are left out and listed in ``DataFrame.attrs["skipped"]``.
        """
        data = self.prepare(inputs, ids, on_error, cache_dir)
        return self.to_frame(self.predict_store(data, batch_size=batch_size), data)

    def to_frame(self, pred: Predictions, data: PreparedData | None = None) -> pd.DataFrame:
        frame = pd.DataFrame({"id": pred.ids})
        if self.module.is_classification:
            frame["predicted_class"] = pred.values.argmax(1) if len(pred.values) else []
            for c in range(pred.values.shape[1]):
                frame[f"prob_{c}"] = pred.values[:, c]
        else:
            transform = self.cfg.data.transform
            for t, name in enumerate(self.target_names):
                learned = transforms.learned_name(name, transform)
                frame[name] = transforms.inverse(pred.values[:, t], transform) if learned != name else pred.values[:, t]
                if learned != name:
                    frame[learned] = pred.values[:, t]  # what the model learned (log10_<target>)
        if data is not None:
            frame.attrs["skipped"] = [(p.id, p.reason) for p in data.problems]
        return frame


def load_run_config(run_dir: str | Path) -> tuple[RunConfig, int]:
    """The run's configuration and the layout its ``config.json`` was written in."""
    raw = json.loads((Path(run_dir) / "config.json").read_text())
    return RunConfig.from_json_dict(raw), int(raw.get("config_layout", 1))


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a trained run (``config.json`` + ``model.safetensors``; no pickle is ever executed)."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {run_dir} a finished crystalgnn run directory?")
    cfg, layout = load_run_config(run_dir)
    state, _ = load_weights(weights_path)
    state = upgrade_state_dict(state, layout, dict(registry.get(cfg.model.name).legacy_state_keys), cfg.model.task == "classification")
    # The atom feature table is part of the weights: no need to recompute it from element data.
    module = build_module(cfg, atom_table=state.get("model.atom_input.table"))
    module.load_state_dict(state)
    return Predictor(module, cfg, device)
