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
        parts = [f"run: {self.run_dir}"]
        for target, m in test.items():
            if "mae" in m:
                parts.append(f"test {target}: MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  R² {m['r2']:.4f}  MAE/MAD {m['mae_over_mad']:.3f}  (n={m['n']})")
            else:
                parts.append(f"test {target}: accuracy {m['accuracy']:.4f}  ROC-AUC {m['roc_auc']:.4f}  (n={m['n']})")
        return "\n".join(parts)


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
    from crystalgnn.reports.plots import parity_plot, roc_plot

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
    frame: pd.DataFrame, truths: np.ndarray, values: np.ndarray, target_names: Sequence[str], classification: bool, output: Path
) -> dict[str, Any]:
    """Metrics of predictions on labelled data; adds ``true_<target>`` columns to ``frame`` and
    writes one parity plot per target beside ``output`` (regression)."""
    from crystalgnn.reports.plots import parity_plot

    metrics: dict[str, Any] = {}
    if classification:
        metrics[target_names[0]] = classification_metrics(truths[:, 0], values)
        return metrics
    for t, name in enumerate(target_names):
        frame.insert(1, f"true_{name}", truths[:, t])
        metrics[name] = regression_metrics(truths[:, t], values[:, t])
        parity_plot({"data": truths[:, t]}, {"data": values[:, t]}, output.with_suffix(f".{name}.png"), name, metrics[name])
    return metrics
