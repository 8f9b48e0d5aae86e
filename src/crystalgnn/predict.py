"""Prediction with a trained run: ``load_model(run_dir).predict(structures)``.

The graph and feature settings are restored from the run's ``config.json``, so inputs are built
exactly as in training; outputs keep the input order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from crystalgnn.config import RunConfig
from crystalgnn.data.prepared import PreparedData, attach_descriptors, make_loader, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.data.splits import Split
from crystalgnn.errors import DatasetError, Problem
from crystalgnn.structures.source import StructureSource, structure_key
from crystalgnn.training.checkpoint import load_weights
from crystalgnn.training.metrics import classification_metrics, regression_metrics
from crystalgnn.training.module import CrystalModule

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
            if self.module.is_classification:
                values.append(torch.softmax(out.prediction, -1).cpu())
            else:
                values.append(self.module.values(out.prediction, batch).cpu())
            embeddings.append(out.embedding.cpu())
            if out.site_contributions is not None:
                per_site = self.module.denormalize(out.site_contributions).cpu().numpy()
                sites.extend(np.split(per_site, batch.ptr[1:-1].cpu().numpy()))
        width = self.cfg.model.n_classes if self.module.is_classification else self.cfg.model.n_targets
        return Predictions(
            ids=[data.ids[i] for i in idx],
            values=torch.cat(values).numpy() if values else np.zeros((0, width)),
            embeddings=torch.cat(embeddings).numpy() if embeddings else np.zeros((0, self.cfg.embedding_width)),
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

        Returns a DataFrame in input order: ``id`` and one column per target (regression) or
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
            for t, name in enumerate(self.target_names):
                frame[name] = pred.values[:, t]
        if data is not None:
            frame.attrs["skipped"] = [(p.id, p.reason) for p in data.problems]
        return frame


def load_model(run_dir: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a trained run (``config.json`` + ``model.safetensors``; no pickle is ever executed)."""
    run_dir = Path(run_dir)
    config_path, weights_path = run_dir / "config.json", run_dir / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: is {run_dir} a finished crystalgnn run directory?")
    cfg = RunConfig.load(config_path)
    state, _ = load_weights(weights_path)
    # The atom feature table is part of the weights: no need to recompute it from element data.
    module = CrystalModule(cfg, atom_table=state.get("model.atom_table"))
    module.load_state_dict(state)
    return Predictor(module, cfg, device)


def sources_from_inputs(inputs: Any, ids: Sequence[str] | None = None) -> CrystalDataset:
    """A target-less dataset from structures, ASE atoms, file paths or folders (order kept).

    Paths go through :func:`crystalgnn.io.load_dataset` (a folder's files in name order, or its
    ``id_prop.csv`` ids), so empty files and duplicate ids are reported as for training data.
    """
    from pymatgen.core import Structure

    from crystalgnn.io import load_dataset

    items: Iterable[Any] = [inputs] if isinstance(inputs, (str, Path, Structure)) else inputs
    names: list[str] = []
    sources: list[StructureSource] = []
    problems: list[Problem] = []
    for k, item in enumerate(items):
        if isinstance(item, (str, Path)):
            if not Path(item).exists():
                raise FileNotFoundError(f"structure file or folder {item} does not exist")
            part = load_dataset(item, targets=[])
            names += part.ids
            sources += part.sources
            problems += part.problems
            continue
        if not isinstance(item, Structure):
            from pymatgen.io.ase import AseAtomsAdaptor

            item = AseAtomsAdaptor.get_structure(item)
        names.append(str(k))
        sources.append(StructureSource(key=structure_key(item), structure=item))
    if ids is not None:
        if len(ids) != len(sources):
            raise ValueError(f"{len(ids)} ids for {len(sources)} structures")
        names = [str(i) for i in ids]
    return CrystalDataset(names, sources, np.zeros((len(sources), 0)), [], problems=problems)


def write_split_outputs(predictor: Predictor, data: PreparedData, split: Split, run_dir: Path) -> dict[str, Any]:
    """Prediction CSV per split, metrics per split and target, and the parity/ROC plot."""
    predictions = {name: predictor.predict_store(data, idx).values for name, idx in split.items() if len(idx)}
    return write_outputs(data, split, predictions, predictor.target_names, predictor.module.is_classification, run_dir)


def write_outputs(
    data: PreparedData,
    split: Split,
    predictions: dict[str, np.ndarray],
    target_names: Sequence[str],
    classification: bool,
    run_dir: Path,
) -> dict[str, Any]:
    """Shared by every kind of model (networks and forests): ``predictions[split]`` is (n, T) in
    target units, or (n, C) class probabilities. Writes ``predictions_<split>.csv`` and the
    parity/ROC plot of the test split (validation when there is none); returns the metrics."""
    from crystalgnn.analysis.plots import parity_plot, roc_plot

    metrics: dict[str, Any] = {}
    truths: dict[str, np.ndarray] = {}
    for name, values in predictions.items():
        idx = split[name]
        frame = pd.DataFrame({"id": [data.ids[i] for i in idx]})
        y = data.targets[idx]
        if classification:
            frame[f"true_{target_names[0]}"] = y[:, 0].astype(int)
            frame["predicted_class"] = values.argmax(1)
            for c in range(values.shape[1]):
                frame[f"prob_{c}"] = values[:, c]
            metrics[name] = {target_names[0]: classification_metrics(y[:, 0], values)}
        else:
            for t, target in enumerate(target_names):
                frame[f"true_{target}"] = y[:, t]
                frame[f"pred_{target}"] = values[:, t]
            metrics[name] = {target: regression_metrics(y[:, t], values[:, t]) for t, target in enumerate(target_names)}
        frame.to_csv(run_dir / f"predictions_{name}.csv", index=False)
        truths[name] = y
    test = "test" if "test" in truths else "val"
    if classification:
        roc_plot(truths[test][:, 0], predictions[test], run_dir / "roc.png", metrics[test][target_names[0]]["roc_auc"])
    else:
        for t, target in enumerate(target_names):
            suffix = "" if len(target_names) == 1 else f"_{target}"
            parity_plot(
                {k: v[:, t] for k, v in truths.items()}, {k: v[:, t] for k, v in predictions.items()},
                run_dir / f"parity{suffix}.png", target, metrics[test][target],
            )
    return metrics


__all__ = ["Predictor", "Predictions", "load_model", "sources_from_inputs"]
