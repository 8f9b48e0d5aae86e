"""Random-forest baselines on hand-made features, on exactly the items and split of a network run.

* ``features=("descriptors",)``: the Gong et al. structural descriptors ("descriptors + RF" of
  Table S1 and Fig. S6b; by default every descriptor except the space group number).
* ``features=("composition",)``: Magpie element-property statistics of the composition
  (matminer ``ElementProperty.from_preset("magpie")``, 132 features) — a composition-only
  model, the role ROOST plays in Gong et al. Fig. 2.
* both: their concatenation.

The dataset goes through the same reader, graph-building checks and split as :func:`train`, so a
forest and a network trained with the same :class:`RunConfig` see the same test crystals and
their metrics compare directly. Missing descriptor values (NaN) are handled by scikit-learn's
forests natively. The run directory gets ``metrics.json``, ``predictions_<split>.csv``, a parity
(or ROC) plot, ``feature_importance.csv`` and ``forest.json`` (the settings).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from crystalgnn.config import ForestConfig, RunConfig
from crystalgnn.data.prepared import PreparedData, attach_descriptors, prepare
from crystalgnn.data.records import CrystalDataset
from crystalgnn.errors import DatasetError, write_problems
from crystalgnn.paths import resolve_cache_dir

log = logging.getLogger("crystalgnn")


def composition_features(dataset: CrystalDataset, rows: Sequence[int], progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """Magpie statistics (132) of the composition of each structure ``rows`` of ``dataset``."""
    from matminer.featurizers.composition import ElementProperty

    featurizer = ElementProperty.from_preset("magpie", impute_nan=True)
    cache: dict[str, list[float]] = {}
    values = []
    for r in tqdm(rows, desc="composition features", disable=None if progress else True, leave=False):
        comp = dataset.sources[r].load().composition
        formula = comp.reduced_formula
        if formula not in cache:
            cache[formula] = featurizer.featurize(comp)
        values.append(cache[formula])
    return np.asarray(values, dtype=np.float64).reshape(len(rows), -1), list(featurizer.feature_labels())


def feature_matrix(
    data: PreparedData, dataset: CrystalDataset, forest: ForestConfig, cache_dir: Any, workers: int, progress: bool
) -> tuple[np.ndarray, list[str]]:
    """The forest's inputs for the items kept in ``data`` (row order of ``data``)."""
    from crystalgnn.training.hybrid import default_hybrid_descriptors

    blocks, names = [], []
    for kind in forest.features:
        if kind == "descriptors":
            chosen = forest.descriptors or default_hybrid_descriptors()
            problems = attach_descriptors(data, dataset, chosen, cache_dir, workers, progress)
            if problems:
                log.warning("%d descriptor value(s) missing (NaN): the forest handles them as missing", len(problems))
            blocks.append(data.extra.astype(np.float64))
            names += list(chosen)
        elif kind == "composition":
            rows = data.rows if data.rows is not None else np.arange(len(data))
            values, labels = composition_features(dataset, rows, progress)
            blocks.append(values)
            names += labels
        else:
            raise ValueError(f"unknown forest feature set {kind!r}; use 'descriptors' and/or 'composition'")
    return np.concatenate(blocks, axis=1), names


def train_forest(
    data: Any,
    run_dir: str | Path,
    config: RunConfig | None = None,
    forest: ForestConfig = ForestConfig(),
    cache_dir: str | Path | None = "default",
    workers: int = 0,
    progress: bool = True,
):
    """Fit a random forest on hand-made features; same inputs, split and outputs as :func:`train`.

    Returns a :class:`crystalgnn.training.run.TrainResult`.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    from crystalgnn.data.prepared import finalize_config
    from crystalgnn.data.splits import make_split
    from crystalgnn.io.resolve import resolve_dataset
    from crystalgnn.reports.outputs import TrainResult, write_outputs

    cfg = config or RunConfig()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = resolve_cache_dir(cache_dir)
    dataset = resolve_dataset(data, cfg.data.targets, cfg.data.transform)
    prepared = prepare(dataset, cfg.graph_inputs(), cfg.features, cache, workers, progress)
    if prepared.problems:
        if cfg.data.on_error == "raise":
            raise DatasetError(prepared.problems)
        write_problems(prepared.problems, run_dir / "skipped.csv")
    if prepared.targets.shape[1] == 0:
        raise ValueError("no target column selected; pass targets=... (CLI: --target NAME)")
    cfg = finalize_config(cfg, dataset, prepared)
    split = make_split(prepared, cfg)
    x, names = feature_matrix(prepared, dataset, forest, cache, workers, progress)
    classification = cfg.model.task == "classification"
    y = prepared.targets / prepared.store.num_atoms[:, None] if cfg.data.per_atom else prepared.targets
    common = dict(n_estimators=forest.n_estimators, min_samples_leaf=forest.min_samples_leaf, n_jobs=forest.n_jobs, random_state=cfg.train.seed)
    if classification:
        model = RandomForestClassifier(max_features="sqrt", **common)
        model.fit(x[split["train"]], y[split["train"], 0].astype(int))
    else:
        model = RandomForestRegressor(max_features=forest.max_features, **common)
        model.fit(x[split["train"]], y[split["train"]] if y.shape[1] > 1 else y[split["train"], 0])

    predictions: dict[str, np.ndarray] = {}
    for name, idx in split.items():
        if len(idx) == 0:
            continue
        if classification:
            proba = np.zeros((len(idx), cfg.model.n_classes))
            proba[:, model.classes_] = model.predict_proba(x[idx])
            predictions[name] = proba
        else:
            values = model.predict(x[idx]).reshape(len(idx), -1)
            predictions[name] = values * prepared.store.num_atoms[idx, None] if cfg.data.per_atom else values
    metrics = write_outputs(prepared, split, predictions, list(prepared.target_names), classification, run_dir, cfg.data.transform)
    metrics["target_transform"] = cfg.data.transform
    metrics["n_skipped"] = len(prepared.problems)
    metrics["model"] = "random_forest:" + "+".join(forest.features)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (run_dir / "forest.json").write_text(json.dumps({"forest": asdict(forest), "run": json.loads(cfg.to_json())}, indent=2) + "\n")
    order = np.argsort(model.feature_importances_)[::-1]
    lines = ["feature,importance"] + [f"{names[k]},{model.feature_importances_[k]:.6g}" for k in order]
    (run_dir / "feature_importance.csv").write_text("\n".join(lines) + "\n")
    return TrainResult(run_dir, metrics, len(prepared.problems))
