"""What a run directory and the predict / evaluate commands write: prediction CSVs per split,
metrics per split and target, parity or ROC plots, per-site contributions and embeddings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crystalgnn import transforms
from crystalgnn.data.prepared import PreparedData
from crystalgnn.data.splits import Split
from crystalgnn.reports.metrics import classification_metrics, regression_metrics


@dataclass
class TrainResult:
    """What a training run produced: the run directory, metrics per split, and the problems."""

    run_dir: Path
    metrics: dict[str, Any]
    n_skipped: int

    def summary(self) -> str:
        test = self.metrics.get("test", {})
        transform = self.metrics.get("target_transform", "none")
        parts = [f"run: {self.run_dir}"]
        for target, m in test.items():
            if "mae" in m:
                target = transforms.learned_name(target, transform)
                parts.append(f"test {target}: MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  R² {m['r2']:.4f}  MAE/MAD {m['mae_over_mad']:.3f}  (n={m['n']})")
            else:
                parts.append(f"test {target}: accuracy {m['accuracy']:.4f}  ROC-AUC {m['roc_auc']:.4f}  (n={m['n']})")
        for target, c in self.metrics.get("calibration", {}).items():
            target = transforms.learned_name(target, transform)
            parts.append(f"test {target} σ (spread of {self.metrics['ensemble']['members']} members): Spearman ρ(σ, |error|) "
                         f"{c['spearman']:.3f}, within ±1σ {c['coverage_1sigma']:.1%}, ±2σ {c['coverage_2sigma']:.1%}")
        if "epochs_run" in self.metrics:
            m = self.metrics
            parts.append(f"epochs run {m['epochs_run']} of {m['max_epochs']} ({m['stop_reason'].replace('_', ' ')}), "
                         f"best epoch {m.get('best_epoch')}, {m.get('wall_seconds', float('nan')):.1f} s")
        return "\n".join(parts)


def prediction_frame(ids: Sequence[str], truths: np.ndarray | None, values: np.ndarray, target_names: Sequence[str],
                     classification: bool, transform: str = "none", spread: np.ndarray | None = None) -> pd.DataFrame:
    """One row per crystal, the same columns wherever predictions are written (train, evaluate):
    ``id``; for regression ``true_<t>`` / ``pred_<t>`` in the units of the data and, when the run
    learned a transform of the targets, ``true_log10_<t>`` / ``pred_log10_<t>`` as learned (the
    values metrics are computed on); for classification ``true_<t>``, ``predicted_class``,
    ``prob_<c>``. ``truths=None``: no ``true_`` columns. ``spread`` (an ensemble's σ, shaped as
    ``values``): ``pred_<learned>_std`` after each target's columns, in the learned units (the
    mean is taken there), or ``prob_<c>_std`` after each probability."""
    frame = pd.DataFrame({"id": list(ids)})
    if classification:
        if truths is not None:
            frame[f"true_{target_names[0]}"] = truths[:, 0].astype(int)
        frame["predicted_class"] = values.argmax(1) if len(values) else []
        for c in range(values.shape[1]):
            frame[f"prob_{c}"] = values[:, c]
            if spread is not None:
                frame[f"prob_{c}_std"] = spread[:, c]
        return frame
    for t, target in enumerate(target_names):
        learned = transforms.learned_name(target, transform)
        columns = [("true", truths), ("pred", values)] if truths is not None else [("pred", values)]
        for kind, array in columns:
            frame[f"{kind}_{target}"] = transforms.inverse(array[:, t], transform) if learned != target else array[:, t]
        if learned != target:
            for kind, array in columns:
                frame[f"{kind}_{learned}"] = array[:, t]
        if spread is not None:
            frame[f"pred_{learned}_std"] = spread[:, t]
    return frame


def write_outputs(
    data: PreparedData,
    split: Split,
    predictions: dict[str, np.ndarray],
    target_names: Sequence[str],
    classification: bool,
    run_dir: Path,
    transform: str = "none",
    spreads: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Shared by every kind of model (networks and forests): ``predictions[split]`` is (n, T) in
    the units the model learned (after ``transform``), or (n, C) class probabilities. Writes
    ``predictions_<split>.csv`` (see :func:`prediction_frame`; ``spreads[split]``: an ensemble's
    σ beside the predictions) and the parity/ROC plot of the test split (validation when there is
    none); returns the metrics, computed on the learned values."""
    from crystalgnn.reports.plots import parity_plot, roc_plot

    metrics: dict[str, Any] = {}
    truths: dict[str, np.ndarray] = {}
    for name, values in predictions.items():
        idx = split[name]
        y = data.targets[idx]
        spread = spreads[name] if spreads is not None else None
        prediction_frame([data.ids[i] for i in idx], y, values, target_names, classification, transform, spread).to_csv(
            run_dir / f"predictions_{name}.csv", index=False)
        if classification:
            metrics[name] = {target_names[0]: classification_metrics(y[:, 0], values)}
        else:
            metrics[name] = {target: regression_metrics(y[:, t], values[:, t]) for t, target in enumerate(target_names)}
        truths[name] = y
    test = "test" if "test" in truths else "val"
    if classification:
        roc_plot(truths[test][:, 0], predictions[test], run_dir / "roc.png", metrics[test][target_names[0]]["roc_auc"])
    else:
        for t, target in enumerate(target_names):
            suffix = "" if len(target_names) == 1 else f"_{target}"
            parity_plot(
                {k: v[:, t] for k, v in truths.items()}, {k: v[:, t] for k, v in predictions.items()},
                run_dir / f"parity{suffix}.png", transforms.learned_name(target, transform), metrics[test][target], test,
            )
    return metrics


def write_calibration(truths: np.ndarray, values: np.ndarray, spread: np.ndarray, target_names: Sequence[str], run_dir: Path,
                      transform: str = "none") -> dict[str, dict[str, float]]:
    """Calibration of σ per target (:func:`~crystalgnn.reports.metrics.calibration_metrics`, in the
    learned units) and ``calibration.png`` (``calibration_<t>.png`` for several targets)."""
    from crystalgnn.reports.metrics import calibration_metrics
    from crystalgnn.reports.plots import calibration_plot

    out: dict[str, dict[str, float]] = {}
    for t, target in enumerate(target_names):
        out[target] = calibration_metrics(truths[:, t], values[:, t], spread[:, t])
        suffix = "" if len(target_names) == 1 else f"_{target}"
        calibration_plot(spread[:, t], np.abs(truths[:, t] - values[:, t]), run_dir / f"calibration{suffix}.png",
                         transforms.learned_name(target, transform), out[target])
    return out


def write_metrics(metrics: dict[str, Any], run_dir: Path) -> None:
    (Path(run_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def site_contributions_frame(ids: Sequence[str], data: PreparedData, sites: Sequence[np.ndarray], target_names: Sequence[str]) -> pd.DataFrame:
    """One row per site: ``id, site, element`` and the contribution to each target."""
    from pymatgen.core import Element

    store = data.store
    rows = []
    for g, (item, contrib) in enumerate(zip(ids, sites)):
        elements = [Element.from_Z(int(z)).symbol for z in store.atomic_numbers[store.node_ptr[g] : store.node_ptr[g + 1]]]
        for k, (element, c) in enumerate(zip(elements, contrib)):
            rows.append({"id": item, "site": k, "element": element, **{n: c[t] for t, n in enumerate(target_names)}})
    return pd.DataFrame(rows)


def embeddings_frame(ids: Sequence[str], embeddings: np.ndarray) -> pd.DataFrame:
    """``id`` then one column ``e<k>`` per dimension of the pooled crystal vector."""
    frame = pd.DataFrame(embeddings, columns=[f"e{k}" for k in range(embeddings.shape[1])])
    frame.insert(0, "id", list(ids))
    return frame


def evaluation_report(
    ids: Sequence[str], truths: np.ndarray, values: np.ndarray, target_names: Sequence[str], classification: bool,
    output: Path, transform: str = "none",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions on labelled data as ``train`` writes them (:func:`prediction_frame`), their
    metrics (on the learned values, as in training), and one parity plot per target beside
    ``output`` (regression)."""
    from crystalgnn.reports.plots import parity_plot

    frame = prediction_frame(ids, truths, values, target_names, classification, transform)
    metrics: dict[str, Any] = {}
    if classification:
        metrics[target_names[0]] = classification_metrics(truths[:, 0], values)
        return frame, metrics
    for t, name in enumerate(target_names):
        metrics[name] = regression_metrics(truths[:, t], values[:, t])
        parity_plot({"data": truths[:, t]}, {"data": values[:, t]}, output.with_suffix(f".{name}.png"),
                    transforms.learned_name(name, transform), metrics[name], "data")
    return frame, metrics
